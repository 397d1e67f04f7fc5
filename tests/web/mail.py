"""Mail in by SMTP and out to the sink, for the browser tests (synchronous: Playwright's API is)."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid

from stack import SmtpSink, Stack

SUPPORT = "support@switchboard.local"


def customer_mail(
    stack: Stack,
    subject: str,
    text: str,
    *,
    sender: str = "Grace Hopper <grace@example.org>",
    to: str = SUPPORT,
    cc: str | None = None,
    html: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        smtp.send_message(message)
    return str(message["Message-ID"])


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return body.get_content() if body is not None else ""


def wait_for_mail(
    sink: SmtpSink, wanted: Callable[[EmailMessage], bool], seconds: float = 60
) -> EmailMessage:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in list(sink.received):
            if wanted(message):
                return message
        time.sleep(0.2)
    raise AssertionError(f"no such mail reached the SMTP sink in {seconds:.0f} s")

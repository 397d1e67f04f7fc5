"""The mail edge's card-number redaction of raw MIME (pure: no servers)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from switchboard.ingestion.redaction import redact_card_numbers

CARD = "4111111111111111"


def _mail(text: str, *, cte: str, html: str | None = None, filename: str | None = None) -> bytes:
    mail = EmailMessage()
    mail["From"] = "a@example.com"
    mail["To"] = "support@switchboard.local"
    mail["Subject"] = "Hello"
    mail.set_content(text, cte=cte)
    if html is not None:
        mail.add_alternative(html, subtype="html", cte=cte)
    if filename is not None:
        mail.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename=filename)
    return mail.as_bytes()


def test_numbers_in_encoded_parts_and_names_are_masked_and_the_rest_kept() -> None:
    raw = _mail(
        f"card {CARD}\n",
        cte="base64",
        html="<p>card <b>5555-5555-5555-4444</b></p>",
        filename=f"receipt {CARD}.pdf",
    )
    assert f"card {CARD}" not in raw.decode()  # base64: a byte search alone would miss it
    masked, count = redact_card_numbers(raw)
    assert count == 3
    parsed = email.message_from_bytes(masked, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert body is not None and html is not None
    assert body.get_content() == "card ************1111\n"
    assert "****-****-****-4444" in html.get_content()
    names = [p.get_filename() for p in parsed.iter_attachments()]
    assert names == ["receipt ************1111.pdf"]
    assert parsed["Subject"] == "Hello" and parsed["From"] == "a@example.com"


def test_a_mail_without_a_number_is_kept_byte_for_byte() -> None:
    raw = _mail("order 12345, phone +1 212 555 0123\n", cte="quoted-printable")
    assert redact_card_numbers(raw) == (raw, 0)
    assert redact_card_numbers(b"not a mail at all") == (b"not a mail at all", 0)

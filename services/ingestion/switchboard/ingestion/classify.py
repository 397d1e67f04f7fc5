"""Is this mail from a person, a robot answering, a bounce, or a list? No I/O.

Threading uses the answer to avoid mail loops (never auto-answer an auto-answer or a bounce).
Order matters: a bounce is a bounce even when it also says Auto-Submitted; a list post is a list
post even when it carries Precedence: list.
"""

from __future__ import annotations

import re
from email.message import Message

from switchboard.contracts.mail import Classification
from switchboard.ingestion.headers import normalize_message_id

_BOUNCE_SENDERS = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.I)
_BOUNCE_SUBJECTS = re.compile(
    r"(undeliver|delivery status notification|delivery (has )?failed|returned mail|"
    r"failure notice|mail delivery (failed|system)|non[- ]?delivery|"
    r"unzustellbar|nicht zustellbar|non remis|non distribu|échec de (la )?remise)",
    re.I,
)
_AUTO_SUBJECTS = re.compile(
    r"^\s*(automatic reply|auto(matische)?[- ]?(reply|response|antwort)|autoreply|"
    r"out of (the )?office|abwesenheitsnotiz|abwesend|réponse automatique|"
    r"absence|auto:)",
    re.I,
)
_MSGID_IN_TEXT = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+>)", re.I | re.M)


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:
        return ""
    return str(value or "").strip()


def classify(
    msg: Message, sender: str, subject: str, text: str
) -> tuple[Classification, str | None]:
    """(classification, Message-ID of the bounced mail if it is a bounce)."""
    if _is_bounce(msg, sender, subject):
        return "bounce", bounced_message_id(msg, text)
    if any(_header(msg, h) for h in ("List-Id", "List-Unsubscribe", "List-Post", "Mailing-List")):
        return "mailing_list", None
    if msg.get_content_type() == "multipart/report":  # read receipts and other reports
        return "auto_reply", None
    auto_submitted = _header(msg, "Auto-Submitted").lower()
    precedence = _header(msg, "Precedence").lower()
    if (
        (auto_submitted and auto_submitted != "no")
        or _header(msg, "X-Autoreply")
        or _header(msg, "X-Autorespond")
        or _header(msg, "X-Auto-Response-Suppress")
        or precedence in {"bulk", "junk", "list", "auto_reply"}
        or _AUTO_SUBJECTS.match(subject)
    ):
        return "auto_reply", None
    return "normal", None


def _is_bounce(msg: Message, sender: str, subject: str) -> bool:
    if msg.get_content_type() == "multipart/report":
        report = (msg.get_param("report-type") or "").__str__().lower()
        if report in {"delivery-status", ""}:
            return True
    if _BOUNCE_SENDERS.match(sender):
        return True
    return bool(_BOUNCE_SUBJECTS.search(subject)) and not _header(msg, "In-Reply-To")


def bounced_message_id(msg: Message, text: str) -> str | None:
    """The Message-ID of the original mail: from the returned message or headers, else the text."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in {"message/rfc822", "message/global", "message/rfc822-headers"}:
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("message-id"):
                found = normalize_message_id(str(inner.get("message-id")))
                if found:
                    return found
        if ctype in {"text/rfc822-headers", "message/rfc822-headers"}:
            try:
                data = part.get_payload(decode=True)
            except Exception:
                data = None
            if isinstance(data, bytes):
                match = _MSGID_IN_TEXT.search(data.decode("utf-8", "replace"))
                if match:
                    return normalize_message_id(match.group(1))
    match = _MSGID_IN_TEXT.search(text)
    return normalize_message_id(match.group(1)) if match else None

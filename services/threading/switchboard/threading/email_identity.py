"""When two inbound mails are one email: a Message-ID is not enough. No I/O.

The same mail reaches us more than once (several of our mailboxes, IMAP and SMTP, a resend):
one email. But some notifiers and broken mailers give every mail one Message-ID: keyed by the
Message-ID alone, each later mail would be taken for a copy of the first and its text never
shown. So an email also records its *content key* (who sent it, the subject, the text, the
attachments; not the transport headers, which differ between copies, nor the Date, which a
resend changes), and a mail with a known Message-ID but another content key is a new email of
its own, stored under a key of its own and flagged ``message_id_reused``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from switchboard.contracts.mail import EmailReceived

REUSED_MARK = "#reused-"
_SPACE = re.compile(r"\s+")


def content_key(event: EmailReceived) -> str:
    """SHA-256 of what a reader sees of the mail, the same for every copy of it."""
    parts = [
        event.sender.address.strip().lower(),
        _SPACE.sub(" ", event.subject).strip(),
        _SPACE.sub(" ", event.text).strip(),
        *sorted(a.attachment_id for a in event.attachments),
    ]
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()


def is_other_mail(stored: dict[str, Any], content: str) -> bool:
    """Whether a stored email with the same Message-ID is another mail. Emails stored before
    content keys existed, and our own outbound mail, count as the same (as they always did)."""
    known = stored.get("content_key")
    return stored.get("direction") == "inbound" and bool(known) and known != content


def reused_key(message_id_key: str, content: str) -> str:
    """The key of a mail that reuses a Message-ID: the same for every copy of that mail.
    Ingestion's masking reads the Message-ID before the mark."""
    return f"{message_id_key}{REUSED_MARK}{content[:24]}"

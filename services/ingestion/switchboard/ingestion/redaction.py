"""Card numbers never stored: the mail edge masks them in the raw bytes before anything else.

Every text form a person could read a number from is looked at: the Subject of the mail (and of
mails attached to it), every text part that is not an attachment (plain and HTML: the HTML's
text is in its source), attachment file names, and the content of attachments
(``attachment_cards``: text files masked, a PDF holding a number withheld). Where a number is
found, that part is written again with the number masked (last four digits kept) and the raw
copy that is stored, parsed, served and published is the masked one; a mail without a number
is kept byte for byte. The stored mail document records how many were masked
(``cards_masked``) and threading records the fact on the email (who: the system, when, what
kind).
"""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

from switchboard.ingestion.attachment_cards import mask_attachment
from switchboard.runtime.cards import mask_card_numbers


def _mask_header(part: EmailMessage, name: str) -> int:
    value = part.get(name)
    if value is None:
        return 0
    masked, count = mask_card_numbers(str(value))
    if count:
        part.replace_header(name, masked)
    return count


def _mask_filename(part: EmailMessage) -> int:
    name = part.get_filename()
    if not name:
        return 0
    masked, count = mask_card_numbers(name)
    if count:
        if part.get_param("filename", header="content-disposition") is not None:
            part.set_param("filename", masked, header="content-disposition")
        if part.get_param("name", header="content-type") is not None:
            part.set_param("name", masked, header="content-type")
    return count


def _mask_text_part(part: EmailMessage) -> int:
    if part.get_content_maintype() != "text" or part.is_attachment():
        return 0
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):
        return 0  # an unknown charset or a broken encoding: the parser reports it
    if not isinstance(content, str):
        return 0
    masked, count = mask_card_numbers(content)
    if count:
        part.set_content(masked, subtype=part.get_content_subtype(), charset="utf-8")
    return count


def redact_card_numbers(raw: bytes) -> tuple[bytes, int]:
    """The raw mail with every card number masked, and how many were; unchanged without one."""
    try:
        msg = message_from_bytes(raw, policy=policy.default)
    except Exception:
        return raw, 0  # not a mail the parser can read: quarantined as it is
    if not isinstance(msg, EmailMessage):
        return raw, 0
    count = 0
    try:
        for part in msg.walk():
            assert isinstance(part, EmailMessage)
            count += _mask_header(part, "Subject")
            count += _mask_filename(part)
            if not part.is_multipart():
                count += _mask_text_part(part) + mask_attachment(part)
        if not count:
            return raw, 0
        return msg.as_bytes(), count
    except Exception:
        # a structure the email package cannot write again: keep the mail (nothing is lost);
        # threading still masks the text it files
        return raw, 0

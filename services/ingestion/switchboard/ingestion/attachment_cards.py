"""Card numbers inside attachments: masked where the file is text, withheld where it is a PDF.

A customer may send a card number inside a file rather than in the mail: a note, a CSV export,
an HTML page, a scanned form turned PDF. Text files (``text/*``, and ``.txt``/``.csv``/``.tsv``/
``.htm``/``.html`` sent as ``application/octet-stream`` or ``application/csv``) are masked in
place like the mail's own text. A PDF cannot be rewritten that simply, so when its text (read
with pypdf) holds a card number the file is withheld: the part is replaced by a short text note
that names it, and the clear number is never stored. A PDF whose text cannot be read (encrypted,
broken, only images) is kept as it is: nothing can be looked for in it (docs/security.md).
"""

from __future__ import annotations

import io
import logging
from email.message import EmailMessage

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from switchboard.runtime.cards import mask_card_numbers

TEXT_EXTENSIONS = (".txt", ".csv", ".tsv", ".htm", ".html")
LOOSE_TYPES = ("application/octet-stream", "application/csv")
MAX_PDF_PAGES = 200
"""Pages of a PDF read for card numbers (a bound on the work one mail can cause)."""

logging.getLogger("pypdf").setLevel(logging.ERROR)  # a broken PDF is the customer's, not ours


def _is_text(part: EmailMessage, name: str) -> bool:
    if part.get_content_maintype() == "text":
        return True
    return part.get_content_type() in LOOSE_TYPES and name.lower().endswith(TEXT_EXTENSIONS)


def _is_pdf(part: EmailMessage, name: str) -> bool:
    return part.get_content_type() == "application/pdf" or (
        part.get_content_type() in LOOSE_TYPES and name.lower().endswith(".pdf")
    )


def _text_of(part: EmailMessage) -> str | None:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):
        return None
    if isinstance(content, bytes):
        return content.decode("utf-8", errors="replace")
    return content if isinstance(content, str) else None


def pdf_text(data: bytes) -> str | None:
    """The text of a PDF's first pages, or None when it cannot be read."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            return None
        return "\n".join(page.extract_text() or "" for page in reader.pages[:MAX_PDF_PAGES])
    except (PyPdfError, ValueError, TypeError, KeyError, IndexError, OSError):
        return None


def mask_attachment(part: EmailMessage) -> int:
    """Mask (text) or withhold (PDF) card numbers in this attachment; how many were found."""
    if part.is_multipart() or not part.is_attachment():
        return 0
    name = part.get_filename() or ""
    if _is_text(part, name):
        text = _text_of(part)
        if text is None:
            return 0
        masked, count = mask_card_numbers(text)
        if count:
            subtype = (
                part.get_content_subtype() if part.get_content_maintype() == "text" else "plain"
            )
            part.set_content(
                masked, subtype=subtype, charset="utf-8", disposition="attachment", filename=name
            )
        return count
    if _is_pdf(part, name):
        data = part.get_payload(decode=True)
        text = pdf_text(data) if isinstance(data, bytes) else None
        if text is None:
            return 0
        _, count = mask_card_numbers(text)
        if count:
            note = (
                f"The attachment {name or '(unnamed PDF)'} was withheld by the mail edge: it held"
                f" {count} payment card number(s). Ask the customer for the file without them."
            )
            part.set_content(
                note,
                subtype="plain",
                charset="utf-8",
                disposition="attachment",
                filename=f"{name or 'attachment.pdf'} (withheld).txt",
            )
        return count
    return 0

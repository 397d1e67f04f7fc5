"""Card numbers inside attachments: text files masked, a PDF holding one withheld.

A real mail through the mail edge (its HTTP intake, the same path SMTP takes) carries a card
number inside a plain-text note, a CSV export, an HTML page and a PDF form. Then every stored
document and GridFS file of every service and every attachment as the agent downloads it are
searched for the digits.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from email.utils import make_msgid

from switchboard.ingestion.attachment_cards import pdf_text
from tests.security.conftest import SUPPORT, Stack, until_ok
from tests.security.test_card_numbers import leaks, needles, stored_everywhere

NOTE_CARD = "4111 1111 1111 1111"
CSV_CARD = "5555-5555-5555-4444"
HTML_CARD = "6011111111111117"
PDF_CARD = "4012 8888 8888 1881"
CLEAN_PDF_WORDS = "Invoice 2026-118 total 42.00 EUR"


def pdf_with_text(text: str) -> bytes:
    """A one-page PDF whose page shows ``text`` (Helvetica), with a correct cross-reference."""
    stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def mail_with_attachments(subject: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Ann Customer <ann@example.com>"
    mail["To"] = SUPPORT
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="example.com")
    mail.set_content("Hello, the details are in the files.")
    mail.add_attachment(f"My card is {NOTE_CARD}, exp 12/29.\n", filename="note.txt")
    mail.add_attachment(
        f"name,card\nAnn,{CSV_CARD}\n".encode(), maintype="text", subtype="csv", filename="a.csv"
    )
    mail.add_attachment(
        f"<html><body><p>Card: <b>{HTML_CARD}</b></p></body></html>",
        subtype="html",
        filename="page.html",
    )
    mail.add_attachment(
        pdf_with_text(f"Card number {PDF_CARD}"),
        maintype="application",
        subtype="pdf",
        filename="form.pdf",
    )
    mail.add_attachment(
        pdf_with_text(CLEAN_PDF_WORDS),
        maintype="application",
        subtype="pdf",
        filename="invoice.pdf",
    )
    return mail.as_bytes()


def test_the_pdf_of_the_test_is_read_as_text() -> None:
    """The PDFs below are real PDFs whose text pypdf reads (else the test would prove nothing)."""
    assert PDF_CARD in (pdf_text(pdf_with_text(f"Card number {PDF_CARD}")) or "")


async def test_card_numbers_inside_attachments_are_masked_or_the_pdf_withheld(
    stack: Stack,
) -> None:
    await stack.login("alice")
    alice = stack.headers["alice"]
    await stack.deliver(mail_with_attachments("Files for my refund"))
    case = await stack.take_case("alice", "Files for my refund")
    view = (await until_ok(lambda: stack.http.get(f"/cases/{case}", headers=alice))).json()
    inbound = next(e for e in view["emails"] if e["direction"] == "inbound")
    assert inbound["masked"], inbound  # the fact is recorded on the email
    files: dict[str, bytes] = {}
    for attachment in inbound["attachments"]:
        got = await stack.http.get(
            f"/cases/{case}/attachments/{attachment['attachment_id']}", headers=alice
        )
        assert got.status_code == 200, got.text
        files[attachment["filename"]] = got.content

    # text files: masked in place, the rest of the file and its last four digits kept
    assert files["note.txt"].decode() == "My card is **** **** **** 1111, exp 12/29.\n"
    assert files["a.csv"].decode().replace("\r\n", "\n") == "name,card\nAnn,****-****-****-4444\n"
    assert "************1117" in files["page.html"].decode()
    # the PDF holding a number is withheld (a note in its place); a clean PDF is kept as sent
    withheld = files["form.pdf (withheld).txt"].decode()
    assert "form.pdf" in withheld and "withheld" in withheld
    assert "form.pdf" not in files
    assert files["invoice.pdf"] == pdf_with_text(CLEAN_PDF_WORDS)

    secrets = needles(NOTE_CARD, CSV_CARD, HTML_CARD, PDF_CARD)
    places = {f"stored {k}": v for k, v in (await stored_everywhere(stack)).items()}
    places |= {f"download {k}": v.decode("latin-1") for k, v in files.items()}
    found = {where: leaks(text, secrets) for where, text in places.items()}
    found = {where: hits for where, hits in found.items() if hits}
    assert not found, json.dumps(found, indent=1)[:4000]

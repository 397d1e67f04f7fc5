"""Parsing and classification, straight on the domain functions (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.contracts.html import sanitize_html
from switchboard.contracts.mail import Address, EmailReceived
from switchboard.ingestion.parsing import ParsedMail, Unparseable, parse

CORPUS = Path(__file__).parent / "corpus"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _parse(name: str) -> ParsedMail:
    result = parse((CORPUS / name).read_bytes(), received_at=NOW)
    assert isinstance(result, ParsedMail), result
    return result


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda p: p.name)
def test_every_corpus_mail_is_parsed_or_quarantined_with_a_reason(path: Path) -> None:
    result = parse(path.read_bytes(), received_at=NOW)
    if isinstance(result, Unparseable):
        assert result.reason
        return
    # whatever was parsed fits the contract (single-line header fields, aware dates, ...)
    # and goes on the bus: no lone surrogate anywhere (the event would not serialise)
    event = EmailReceived(
        email_id="x",
        channel="upload",
        mailbox="support@switchboard.local",
        service="support",
        received_at=NOW,
        size=1,
        internet_message_id=result.internet_message_id,
        sender=Address(name=result.sender.name, address=result.sender.address),
        to=[Address(name=a.name, address=a.address) for a in result.to],
        subject=result.subject,
        sent_at=result.sent_at,
        text=result.text,
        classification=result.classification,
        defects=result.defects,
        cc=[Address(name=a.name, address=a.address) for a in result.cc],
        reply_to=[Address(name=a.name, address=a.address) for a in result.reply_to],
        in_reply_to=result.in_reply_to,
        references=result.references,
        thread_header=result.thread_header,
        bounced_message_id=result.bounced_message_id,
    )
    event.model_dump_json().encode("utf-8")
    for text in (result.html or "", *(a.filename for a in result.attachments)):
        text.encode("utf-8")
    assert result.internet_message_id.startswith("<") and result.internet_message_id.endswith(">")
    assert "\x00" not in result.text


def test_quarantine_reasons() -> None:
    assert parse(b"", received_at=NOW) == Unparseable("empty message")
    garbage = parse((CORPUS / "21-binary-garbage.eml").read_bytes(), received_at=NOW)
    assert isinstance(garbage, Unparseable) and "header" in garbage.reason
    nobody = parse((CORPUS / "24-no-sender.eml").read_bytes(), received_at=NOW)
    assert isinstance(nobody, Unparseable) and "sender" in nobody.reason


def test_envelope_sender_rescues_a_mail_without_from() -> None:
    raw = (CORPUS / "24-no-sender.eml").read_bytes()
    result = parse(raw, received_at=NOW, envelope_sender="bounce@example.com")
    assert isinstance(result, ParsedMail)
    assert result.sender.address == "bounce@example.com"
    assert any(d.startswith("from_missing") for d in result.defects)


def test_plain_utf8_with_rfc2047_headers() -> None:
    mail = _parse("01-plain-utf8.eml")
    assert mail.sender.name == "Jürgen Müller"
    assert mail.sender.address == "juergen.mueller@example.de"
    assert mail.subject == "Rückfrage zu Bestellung 4711"
    assert mail.internet_message_id == "<CAF1234.plain@example.de>"
    assert not mail.message_id_synthesized
    assert mail.sent_at == datetime(2026, 11, 16, 8, 30, tzinfo=UTC)
    assert "Grüße aus Köln" in mail.text
    assert mail.classification == "normal" and mail.defects == []


def test_latin1_declared_outlook_text_is_read_as_windows_1252() -> None:
    mail = _parse("02-latin1-outlook-quotes.eml")
    expected = (
        "The invoice says \u201cpaid\u201d but I was charged \u20ac20 twice \u2013 café au lait."
    )
    assert mail.text == expected
    assert mail.sender.name == "O'Brien, Pat"


def test_a_wrong_declared_charset_is_detected_and_flagged() -> None:
    mail = _parse("03-declared-utf8-is-latin1.eml")
    assert "le colis n'est pas arrivé" in mail.text and "très rapidement" in mail.text
    assert mail.subject == "Problème de livraison"
    assert mail.sender.name == "François"
    assert any(d.startswith("charset_wrong") for d in mail.defects)
    assert any(d.startswith("header_8bit") for d in mail.defects)


@pytest.mark.parametrize(
    ("name", "subject", "text"),
    [
        ("17-iso-2022-jp.eml", "注文の件", "こんにちは、注文について質問があります。"),
        ("18-koi8-r.eml", "Заказ", "Здравствуйте! Мой заказ до сих пор не доставлен."),
        ("19-gb2312-declared-gbk-content.eml", "询价", "您好，请问这个产品的价格是多少？谢谢。镕"),  # noqa: RUF001
        ("20-outlook-tnef-ks_c.eml", "문의", "안녕하세요, 주문 관련 문의입니다."),
        ("26-lf-only-8bit-headers.eml", "Spørgsmål om ordre", "Hej, jeg har et spørgsmål."),
    ],
)
def test_many_charsets(name: str, subject: str, text: str) -> None:
    mail = _parse(name)
    assert mail.subject == subject
    assert mail.text == text


def test_html_only_mail_is_sanitised_and_converted_to_text() -> None:
    mail = _parse("04-html-only.eml")
    assert mail.html is not None
    for bad in ("<script", "onload", "onerror", "javascript:", "<iframe", "<style", "alert("):
        assert bad not in mail.html
    assert "<b>team</b>" in mail.html
    assert "Hello team" in mail.text and "item two" in mail.text
    assert "<" not in mail.text


def test_sanitiser_keeps_inline_image_references() -> None:
    assert 'src="cid:logo@x"' in sanitize_html('<img src="cid:logo@x" onload="x()">')
    assert "data:" not in sanitize_html('<img src="data:text/html;base64,PHNjcmlwdD4=">')


def test_alternative_with_related_inline_image() -> None:
    mail = _parse("05-alternative-related-inline-image.eml")
    assert mail.text == "See the logo below, it is broken."
    assert mail.html is not None and "cid:logo123@example.com" in mail.html
    [image] = mail.attachments
    assert image.content_id == "logo123@example.com" and image.inline
    assert image.content_type == "image/png" and image.content.startswith(b"\x89PNG")
    assert [a.address for a in mail.to] == ["support@switchboard.local", "sales@switchboard.local"]
    assert mail.cc[0].name == "Boss"


def test_rfc2231_and_rfc2047_filenames_and_no_paths() -> None:
    mail = _parse("06-rfc2231-filenames.eml")
    names = [a.filename for a in mail.attachments]
    assert names == [
        "€ Preisliste Köln.pdf",
        "Vertrag für  Großkunden.docx",
        "äöü Umsätze.xls",
        "passwd",
    ]
    assert mail.attachments[0].content.startswith(b"%PDF")


def test_nested_message_is_kept_whole_and_its_attachment_listed() -> None:
    mail = _parse("07-nested-forward.eml")
    assert mail.text == "Forwarding the complaint below."
    kinds = [(a.filename, a.content_type) for a in mail.attachments]
    assert ("Complaint about delivery.eml", "message/rfc822") in kinds
    assert ("damage.jpg", "image/jpeg") in kinds
    forwarded = next(a for a in mail.attachments if a.content_type == "message/rfc822")
    assert b"Message-ID: <fwd-inner-1@example.net>" in forwarded.content


def test_dsn_bounce_names_the_original_message() -> None:
    mail = _parse("08-dsn-bounce.eml")
    assert mail.classification == "bounce"
    assert mail.bounced_message_id == "<sb.out.42@switchboard.local>"


def test_plain_mailer_daemon_bounce() -> None:
    mail = _parse("09-mailer-daemon-plain-bounce.eml")
    assert mail.classification == "bounce"
    assert mail.bounced_message_id == "<sb.out.77@switchboard.local>"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("10-auto-reply.eml", "auto_reply"),
        ("11-exchange-ooo-german.eml", "auto_reply"),
        ("12-mailing-list.eml", "mailing_list"),
        ("25-read-receipt-mdn.eml", "auto_reply"),
        ("22-reply-with-thread-header.eml", "normal"),
    ],
)
def test_classification(name: str, kind: str) -> None:
    assert _parse(name).classification == kind


def test_missing_message_id_is_synthesised_stably_and_flagged() -> None:
    raw = (CORPUS / "13-no-message-id-no-date-no-content-type.eml").read_bytes()
    first = parse(raw, received_at=NOW)
    again = parse(b"Received: from relay2\r\n" + raw, received_at=NOW)
    assert isinstance(first, ParsedMail) and isinstance(again, ParsedMail)
    assert first.message_id_synthesized
    assert first.internet_message_id == again.internet_message_id
    assert first.internet_message_id.endswith("@synthesized.switchboard.invalid>")
    assert first.sent_at == NOW and first.sent_at_flagged
    assert any(d.startswith("message_id_missing") for d in first.defects)


def test_broken_mime_duplicate_headers_and_nul_bytes() -> None:
    mail = _parse("14-broken-mime-duplicate-headers-nul.eml")
    assert mail.subject == "First subject"
    assert "This body has NUL bytes" in mail.text and "\x00" not in mail.text
    codes = {d.split(":")[0] for d in mail.defects}
    assert {"nul_bytes", "duplicate_header", "StartBoundaryNotFoundDefect"} <= codes


def test_uuencoded_files_become_attachments() -> None:
    inline = _parse("15-inline-uuencode.eml")
    assert [(a.filename, a.content) for a in inline.attachments] == [
        ("notes.txt", b"uuencoded notes: hello world")
    ]
    assert "begin 644" not in inline.text and "Regards" in inline.text
    part = _parse("23-x-uuencode-part.eml")
    assert [(a.filename, a.content) for a in part.attachments] == [("app.log", b"ERROR disk full")]


def test_future_date_and_very_long_subject() -> None:
    mail = _parse("16-future-date-long-subject.eml")
    assert mail.sent_at == NOW and mail.sent_at_flagged
    assert len(mail.subject) == 1000 and mail.subject.startswith("Sehr lange Betreffzeile")
    assert any(d.startswith("subject_truncated") for d in mail.defects)


def test_thread_header_and_reply_ids_pass_through() -> None:
    mail = _parse("22-reply-with-thread-header.eml")
    assert mail.thread_header == "JXA6PDRNQ2SO"
    assert mail.in_reply_to == "<sb.out.42@switchboard.local>"
    assert mail.references == ["<first@example.com>", "<sb.out.42@switchboard.local>"]


def test_header_values_never_carry_line_breaks() -> None:
    raw = (
        b"From: =?utf-8?q?Evil=0D=0ABcc=3A_x=40y=2Ez?= <evil@example.com>\r\n"
        b"Subject: =?utf-8?q?hello=0D=0AX-Injected=3A_yes?=\r\n\r\nbody\r\n"
    )
    mail = parse(raw, received_at=NOW)
    assert isinstance(mail, ParsedMail)
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert "\n" not in mail.sender.name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash_the_parser(raw: bytes) -> None:
    result = parse(raw, received_at=NOW)
    assert isinstance(result, ParsedMail | Unparseable)


_header_names = st.sampled_from(
    [
        "From",
        "To",
        "Cc",
        "Subject",
        "Date",
        "Message-ID",
        "References",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "MIME-Version",
        "Reply-To",
    ]
)
_header_values = st.one_of(
    st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=80),
    st.sampled_from(
        [
            b"multipart/mixed; boundary=X",
            b"text/plain; charset=bogus",
            b"base64",
            b"quoted-printable",
            b"x-uuencode",
            b"=?utf-8?b?invalid===?=",
            b"<a@b>",
            b'"" <>',
            b"attachment; filename*=bad''%ZZ",
            b"message/rfc822",
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_header_names, _header_values), max_size=12),
    st.binary(max_size=2048),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_mail_shaped_bytes_never_crash_the_parser(
    headers: list[tuple[str, bytes]], body: bytes, eol: bytes
) -> None:
    raw = b"".join(n.encode() + b": " + v.replace(b"\n", b" ") + eol for n, v in headers)
    raw += eol + b"--X" + eol + body + eol + b"--X--" + eol
    result = parse(raw, received_at=NOW)
    assert isinstance(result, ParsedMail | Unparseable)
    if isinstance(result, ParsedMail):
        for value in (result.subject, result.sender.name, result.sender.address):
            assert "\r" not in value and "\n" not in value


_CORPUS_BYTES = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml")) if p.stat().st_size]
_SPLICES = [
    b"=?",
    b"?=",
    b"\r\n",
    b"--",
    b"<",
    b'"',
    b";",
    b"*",
    b"%",
    b"\x00",
    b"\xff\xfe",
    b"begin 644 x\r\n",
    b"=?utf-8?q?",
    b"''",
    b"charset=\x00",
    b"boundary=",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_CORPUS_BYTES),
    st.lists(
        st.tuples(
            st.floats(0, 1), st.integers(0, 2), st.binary(max_size=8), st.sampled_from(_SPLICES)
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_damaged_real_mail_is_parsed_or_quarantined_never_a_parser_error(
    original: bytes, edits: list[tuple[float, int, bytes, bytes]]
) -> None:
    raw = bytearray(original)
    for where, kind, noise, splice in edits:
        at = int(where * len(raw))
        if kind == 0:
            raw[at : at + len(noise)] = noise
        elif kind == 1:
            del raw[at : at + 1 + len(noise)]
        else:
            raw[at:at] = splice
    result = parse(bytes(raw), received_at=NOW)
    if isinstance(result, Unparseable):
        assert not result.reason.startswith("parser error"), result.reason


def _texts(mail: ParsedMail) -> list[str]:
    people = [mail.sender, *mail.to, *mail.cc, *mail.reply_to]
    return [
        mail.subject,
        mail.text,
        mail.html or "",
        *(p.name for p in people),
        *(p.address for p in people),
        *(a.filename for a in mail.attachments),
        *mail.defects,
    ]


@pytest.mark.parametrize(
    ("raw", "defect"),
    [
        # an ISO-2022-JP display name whose bytes do not decode (the stdlib keeps surrogates)
        (
            b"From: =?ISO-2022-JP?B?GyRC//6AgRsoQg==?= <a@example.jp>\r\nSubject: x\r\n\r\nhi\r\n",
            "encoded_word_invalid: From",
        ),
        (
            b"From: a@example.jp\r\nSubject: =?ISO-2022-JP?B?GyRC//6AgRsoQg==?=\r\n\r\nhi\r\n",
            "encoded_word_invalid: Subject",
        ),
        (
            b"From: a@example.jp\r\nSubject: =?x-nonsense?Q?caf=E9?=\r\n\r\nhi\r\n",
            "encoded_word_charset_unknown: Subject",
        ),
        # raw 8-bit header bytes without any charset
        (b"From: J\xfcrgen <j@example.de>\r\nSubject: K\xf6ln\r\n\r\nhi\r\n", "header_8bit"),
        # an RFC 2231 filename whose bytes are invalid in its charset
        (
            b"From: a@example.jp\r\nContent-Type: application/pdf\r\n"
            b"Content-Disposition: attachment; filename*=iso-2022-jp''%1B%24B%FF%FE%1B%28B.pdf"
            b"\r\n\r\nxx\r\n",
            "filename_undecodable",
        ),
        # a nested message whose subject does not decode
        (
            b"From: a@example.jp\r\nContent-Type: message/rfc822\r\n\r\n"
            b"From: b@example.jp\r\nSubject: =?ISO-2022-JP?B?GyRC//6AgRsoQg==?=\r\n\r\ninner\r\n",
            "encoded_word_invalid: Subject",
        ),
        # UTF-7 can spell half an emoji
        (
            b"From: a@example.jp\r\nSubject: =?utf-7?Q?+2D3-?=\r\n\r\nhi\r\n",
            "encoded_word_invalid: Subject",
        ),
    ],
)
def test_undecodable_header_bytes_never_leave_surrogates(raw: bytes, defect: str) -> None:
    mail = parse(raw, received_at=NOW)
    assert isinstance(mail, ParsedMail), mail
    for text in _texts(mail):
        text.encode("utf-8")  # raises on a lone surrogate
    assert any(d.startswith(defect) for d in mail.defects), mail.defects


def test_an_invalid_encoded_word_keeps_the_text_around_it() -> None:
    mail = _parse("28-invalid-encoded-word-iso-2022-jp.eml")
    assert mail.sender.name.endswith(" 山田") and mail.subject.endswith("注文について")
    assert "\ufffd" in mail.sender.name and "\ufffd" in mail.subject


def test_lines_longer_than_998_characters_are_flagged() -> None:
    assert any(d.startswith("line_too_long") for d in _parse("30-long-unwrapped-lines.eml").defects)
    assert not any(d.startswith("line_too_long") for d in _parse("01-plain-utf8.eml").defects)

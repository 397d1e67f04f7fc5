"""Raw RFC 822 bytes -> the facts of ``email.received``. Pure functions, no I/O.

The stdlib ``email`` package (``policy.default``) does the MIME work; this module decides what to
do with what it finds: which part is the body, what is an attachment, how to decode text whose
charset is wrong, which header wins when there are two. :func:`parse` never raises: it returns a
:class:`ParsedMail` or, for bytes that are not a mail at all, an :class:`Unparseable` with the
reason. Everything odd but survivable is recorded in ``defects`` (short ``code: detail`` strings).
"""

from __future__ import annotations

import binascii
import codecs
import dataclasses
import hashlib
import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.header import decode_header
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from typing import Any

import charset_normalizer
from inscriptis import get_text  # type: ignore[import-untyped]
from tnefparse import TNEF  # type: ignore[import-untyped]

from switchboard.contracts.html import sanitize_html
from switchboard.contracts.mail import Classification
from switchboard.ingestion.classify import classify

MAX_SUBJECT_CHARS = 1000
MAX_ADDRESSES = 500
MAX_REFERENCES = 50
MAX_DEFECTS = 100
MAX_PARTS = 1000
FUTURE_TOLERANCE = timedelta(days=1)
OLDEST_PLAUSIBLE = datetime(1980, 1, 1, tzinfo=UTC)
THREAD_HEADER = "X-Switchboard-Thread"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Lone surrogates: what Python keeps for bytes it could not decode. UTF-8 cannot carry them, so
# one left in any text makes the event unserialisable (and the mail deferred for ever).
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"[\r\n\t\x00\x85\u2028\u2029]+")
_MSGID = re.compile(r"<([^<>\s]+)>")
_LONG_LINE = re.compile(rb"[^\r\n]{999}")  # RFC 5322 2.1.1: at most 998 characters a line
_BARE_MSGID = re.compile(r"^[^<>\s@]+@[^<>\s@]+$")
_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} (?P<name>[^\r\n]+)\r?$", re.MULTILINE)
_CHARSET_ALIASES = {
    # What mail clients declare -> what they actually mean (as web browsers decode them).
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "unicode-1-1-utf-7": "utf-7",
}
_UNKNOWN_CHARSETS = {"unknown-8bit", "x-unknown", "unknown", "8bit", "binary", "default"}


@dataclass(frozen=True)
class ParsedAddress:
    name: str
    address: str


@dataclass(frozen=True)
class ParsedAttachment:
    content: bytes
    filename: str
    content_type: str
    content_id: str | None = None
    inline: bool = False


@dataclass
class ParsedMail:
    internet_message_id: str
    message_id_synthesized: bool
    in_reply_to: str | None
    references: list[str]
    sender: ParsedAddress
    to: list[ParsedAddress]
    cc: list[ParsedAddress]
    reply_to: list[ParsedAddress]
    subject: str
    sent_at: datetime
    sent_at_flagged: bool
    text: str
    html: str | None
    attachments: list[ParsedAttachment]
    thread_header: str | None
    classification: Classification
    bounced_message_id: str | None
    defects: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Unparseable:
    reason: str


def parse(
    raw: bytes, *, received_at: datetime, envelope_sender: str | None = None
) -> ParsedMail | Unparseable:
    """Parse one raw message; never raises."""
    try:
        return _parse(raw, received_at, envelope_sender)
    except RecursionError:
        return Unparseable("MIME structure nested too deeply")
    except Exception as exc:  # a parser bug must not lose the mail: quarantine it
        return Unparseable(f"parser error: {type(exc).__name__}: {exc}"[:500])


# --------------------------------------------------------------------------- the message


def _parse(
    raw: bytes, received_at: datetime, envelope_sender: str | None
) -> ParsedMail | Unparseable:
    if not raw.strip():
        return Unparseable("empty message")
    msg = message_from_bytes(raw, policy=policy.default)
    if not isinstance(msg, EmailMessage) or not list(msg.keys()):
        return Unparseable("no header section: the bytes do not start with mail headers")
    defects = _Defects()
    if b"\x00" in raw:
        defects.add("nul_bytes", "NUL bytes removed")
    if _LONG_LINE.search(raw):
        defects.add("line_too_long", "a line longer than 998 characters (RFC 5322 2.1.1)")
    _record_duplicates(msg, defects)

    senders = _addresses(msg, "From", defects) or _addresses(msg, "Sender", defects)
    reply_to = _addresses(msg, "Reply-To", defects)
    if not senders and reply_to:
        senders = reply_to[:1]
        defects.add("from_missing", "sender taken from Reply-To")
    if not senders and envelope_sender and "@" in envelope_sender:
        senders = [ParsedAddress("", _clean_line(envelope_sender))]
        defects.add("from_missing", "sender taken from the SMTP envelope")
    if not senders:
        return Unparseable("no sender address (no usable From, Sender, Reply-To or envelope)")
    if len(_raw_values(msg, "From")) > 1 or len(senders) > 1:
        defects.add("from_multiple", f"{len(senders)} senders; the first is used")

    subject = _header_text(msg, "Subject", defects)
    if len(subject) > MAX_SUBJECT_CHARS:
        defects.add("subject_truncated", f"{len(subject)} characters")
        subject = subject[:MAX_SUBJECT_CHARS]

    message_id = _first_msgid(msg, "Message-ID", defects)
    synthesized = message_id is None
    if message_id is None:
        message_id = _synthesize_message_id(msg, raw)
        defects.add("message_id_missing", "a stable id was derived from the content")
    in_reply_to = _first_msgid(msg, "In-Reply-To", defects)
    references = _msgids(" ".join(_header_texts(msg, "References", defects)))
    if len(references) > MAX_REFERENCES:
        defects.add("references_truncated", f"{len(references)} ids")
        references = references[:1] + references[-(MAX_REFERENCES - 1) :]

    sent_at, date_flagged = _sent_at(msg, received_at, defects)
    body = _Body(defects)
    body.collect(msg)
    text = body.text()
    html = body.html()
    thread = _header_text(msg, THREAD_HEADER, defects) or None
    try:
        kind, bounced = classify(msg, senders[0].address, subject, text)
    except Exception as exc:
        defects.add("classification_failed", type(exc).__name__)
        kind, bounced = "normal", None

    for where, part in _walk(msg):
        for defect in part.defects:
            detail = str(defect).strip()
            defects.add(type(defect).__name__, f"{where}: {detail}" if detail else where)
    parsed = ParsedMail(
        internet_message_id=message_id,
        message_id_synthesized=synthesized,
        in_reply_to=in_reply_to,
        references=references,
        sender=senders[0],
        to=_capped(_addresses(msg, "To", defects), "to", defects),
        cc=_capped(_addresses(msg, "Cc", defects), "cc", defects),
        reply_to=_capped(reply_to, "reply_to", defects),
        subject=subject,
        sent_at=sent_at,
        sent_at_flagged=date_flagged,
        text=text,
        html=html,
        attachments=body.attachments,
        thread_header=thread[:200] if thread else None,
        classification=kind,
        bounced_message_id=bounced,
    )
    parsed = _without_surrogates(parsed, "mail", defects)
    assert isinstance(parsed, ParsedMail)
    parsed.defects = defects.items
    return parsed


def _without_surrogates(value: Any, where: str, defects: _Defects) -> Any:
    """Every text of the parsed mail with lone surrogates replaced by U+FFFD (flagged): the
    last net under the decoders, so no byte sequence can make the event unserialisable."""
    if isinstance(value, str):
        if _SURROGATES.search(value) is None:
            return value
        defects.add("undecodable_text", where)
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(v, f"{where}[{i}]", defects) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _without_surrogates(getattr(value, f.name), f"{where}.{f.name}", defects)
            for f in dataclasses.fields(value)
            if f.name != "defects"
        }
        return dataclasses.replace(value, **changes)
    return value


class _Defects:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, code: str, detail: str = "") -> None:
        entry = f"{code}: {detail}" if detail else code
        entry = _clean_line(entry)[:300]
        if entry not in self.items and len(self.items) < MAX_DEFECTS:
            self.items.append(entry)


def _walk(msg: Message, where: str = "message", depth: int = 0) -> list[tuple[str, Message]]:
    """Every part, nested messages included, with a short location."""
    found = [(where, msg)]
    if depth > 20 or not msg.is_multipart():
        return found
    payload = msg.get_payload()
    if isinstance(payload, list):
        for i, sub in enumerate(payload, 1):
            if isinstance(sub, Message) and len(found) < MAX_PARTS:
                found.extend(_walk(sub, f"{where}/{i}", depth + 1))
    return found


def _record_duplicates(msg: Message, defects: _Defects) -> None:
    counts: dict[str, int] = {}
    for name in msg:
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    for name in ("subject", "date", "message-id", "in-reply-to", "to", "cc", "reply-to"):
        if counts.get(name, 0) > 1:
            defects.add("duplicate_header", f"{name} x{counts[name]}; the first is used")


# --------------------------------------------------------------------------- headers


def _raw_values(msg: Message, name: str) -> list[str]:
    return [value for key, value in msg.raw_items() if key.lower() == name.lower()]


def _repair_8bit(value: str, defects: _Defects, name: str) -> str:
    """Raw 8-bit header bytes (kept by the parser as surrogates) -> text."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    defects.add("header_8bit", name)
    return guess_decode(value.encode("ascii", "surrogateescape"))


def guess_decode(data: bytes) -> str:
    """Undeclared 8-bit text: UTF-8, else detection when there is enough to go on, else cp1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if len(data) >= 64:
        detected = detect_charset(data)
        if detected:
            return data.decode(detected, errors="replace")
    return data.decode("cp1252", errors="replace")


def detect_charset(data: bytes) -> str | None:
    """charset-normalizer's guess, preferring cp1252 (mail's commonest legacy charset) on a tie."""
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        return None
    best = matches[0]
    for preferred in ("utf_8", "cp1252"):
        for match in matches:
            if match.encoding == preferred and match.chaos <= best.chaos + 0.05:
                return preferred
    return str(best.encoding)


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", value)


def _decode_words(value: str, defects: _Defects, where: str) -> str:
    """RFC 2047 encoded-words -> text, each word on its own: a word whose bytes are invalid in
    its declared charset is decoded as far as it goes (U+FFFD for the rest) and flagged, and
    the raw bytes stay in the raw-mail store."""
    if "=?" not in value:
        return value
    try:
        chunks = decode_header(value)
    except Exception as exc:
        defects.add("encoded_word_invalid", f"{where}: {type(exc).__name__}; kept as written")
        return value
    pieces: list[str] = []
    for data, charset in chunks:
        if isinstance(data, str):
            pieces.append(data)
        elif charset is None:
            pieces.append(data.decode("raw-unicode-escape", "replace"))
        else:
            pieces.append(_decode_word(data, charset, defects, where))
    return "".join(pieces)


def _decode_word(data: bytes, charset: str, defects: _Defects, where: str) -> str:
    name = charset.lower().split("*", 1)[0]  # RFC 2231 adds "*language"
    codec = _CHARSET_ALIASES.get(name, name)
    try:
        codecs.lookup(codec)
    except (LookupError, ValueError):
        defects.add("encoded_word_charset_unknown", f"{where}: {charset}")
        return guess_decode(data)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        defects.add("encoded_word_invalid", f"{where}: bytes invalid in {charset}")
        return data.decode(codec, errors="replace")


def _clean_line(value: str) -> str:
    """One line of text: no CR/LF/NUL/control characters, no lone surrogates (header-safe)."""
    value = _SURROGATES.sub("\ufffd", _LINE_BREAKS.sub(" ", value))
    return _CONTROL.sub("", value).strip()


def _header_texts(msg: Message, name: str, defects: _Defects) -> list[str]:
    texts = []
    for raw in _raw_values(msg, name):
        text = _decode_words(_unfold(_repair_8bit(raw, defects, name)).strip(), defects, name)
        texts.append(_clean_line(text))
    return texts


def _header_text(msg: Message, name: str, defects: _Defects) -> str:
    texts = _header_texts(msg, name, defects)
    return texts[0] if texts else ""


def _addresses(msg: Message, name: str, defects: _Defects) -> list[ParsedAddress]:
    found: list[ParsedAddress] = []
    for raw in _raw_values(msg, name):
        value = _unfold(_repair_8bit(raw, defects, name))
        try:
            header: Any = policy.default.header_factory(name, value)
            addresses = list(header.addresses)
        except Exception as exc:
            defects.add("address_unparseable", f"{name}: {type(exc).__name__}")
            addresses = []
        for address in addresses:
            if _SURROGATES.search(address.display_name or ""):
                # the parser keeps an undecodable encoded-word's bytes as surrogates
                defects.add("encoded_word_invalid", f"{name}: display name")
            addr = _clean_line(address.addr_spec or "")
            if not addr or "@" not in addr or addr.startswith("@") or addr.endswith("@"):
                if addr or address.display_name:
                    defects.add("address_invalid", f"{name}: {addr or address.display_name}")
                continue
            found.append(ParsedAddress(_clean_line(address.display_name or ""), addr))
        if not addresses:
            # Last resort for headers the parser could not read: bare addresses in the text.
            for bare in re.findall(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", value):
                found.append(ParsedAddress("", bare))
    return found


def _capped(found: list[ParsedAddress], name: str, defects: _Defects) -> list[ParsedAddress]:
    if len(found) > MAX_ADDRESSES:
        defects.add("addresses_truncated", f"{name}: {len(found)}")
        return found[:MAX_ADDRESSES]
    return found


def normalize_message_id(value: str) -> str | None:
    """``<id@host>`` (angle brackets kept), or None when there is no id in the text."""
    found = _msgids(value)
    return found[0] if found else None


def _msgids(value: str) -> list[str]:
    found = [f"<{m}>" for m in _MSGID.findall(value)]
    if not found:
        found = [f"<{t}>" for t in value.split() if _BARE_MSGID.match(t)]
    return [_clean_line(i)[:500] for i in found]


def _first_msgid(msg: Message, name: str, defects: _Defects) -> str | None:
    texts = _header_texts(msg, name, defects)
    if not texts:
        return None
    found = normalize_message_id(texts[0])
    if found is None and texts[0]:
        defects.add("message_id_invalid", f"{name}: {texts[0][:80]}")
    return found


def _synthesize_message_id(msg: Message, raw: bytes) -> str:
    """Stable for the same mail however it reached us (trace headers are left out)."""
    digest = hashlib.sha256()
    for key, value in msg.raw_items():
        if key.lower() in {"from", "to", "cc", "date", "subject"}:
            digest.update(f"{key.lower()}:{value}\n".encode("utf-8", "surrogateescape"))
    _, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    digest.update(body.replace(b"\r\n", b"\n"))
    return f"<{digest.hexdigest()[:32]}@synthesized.switchboard.invalid>"


def _sent_at(msg: Message, received_at: datetime, defects: _Defects) -> tuple[datetime, bool]:
    texts = _header_texts(msg, "Date", defects)
    if not texts or not texts[0]:
        defects.add("date_missing", "received time used")
        return received_at, True
    try:
        when = parsedate_to_datetime(texts[0])
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.add("date_invalid", f"{texts[0][:60]}; received time used")
        return received_at, True
    if when.tzinfo is None:
        defects.add("date_without_zone", "taken as UTC")
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    if when > received_at + FUTURE_TOLERANCE or when < OLDEST_PLAUSIBLE:
        defects.add("date_implausible", f"{when.isoformat()}; received time used")
        return received_at, True
    return when, False


# --------------------------------------------------------------------------- bodies


def decode_text(data: bytes, declared: str | None, defects: _Defects, where: str) -> str:
    """Bytes of a text part -> str: declared charset, then detection; never raises."""
    charset = (declared or "").strip().strip('"').lower()
    candidates: list[str] = []
    if charset and charset not in _UNKNOWN_CHARSETS:
        candidates.append(_CHARSET_ALIASES.get(charset, charset))
        if charset in {"us-ascii", "ascii"}:
            candidates.append("cp1252")
    elif not charset:
        candidates.append("utf-8")
    for candidate in candidates:
        try:
            codecs.lookup(candidate)
        except (LookupError, ValueError):
            defects.add("charset_unknown", f"{where}: {charset}")
            continue
        try:
            text = data.decode(candidate)
        except UnicodeDecodeError:
            continue
        if candidate != candidates[0]:
            defects.add("charset_wrong", f"{where}: declared {charset}, decoded as {candidate}")
        return text
    if len(data) >= 64:
        detected = detect_charset(data)
        if detected:
            if charset:
                defects.add("charset_wrong", f"{where}: declared {charset}, detected {detected}")
            return data.decode(detected, errors="replace")
    defects.add("charset_undetected", f"{where}: declared {charset or 'none'}, decoded as cp1252")
    return data.decode("cp1252", errors="replace")


def _payload_bytes(part: Message, defects: _Defects, where: str) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:
        defects.add("payload_undecodable", f"{where}: {type(exc).__name__}")
        data = None
    if isinstance(data, bytes):
        return data
    try:
        raw = part.get_payload()
    except Exception:
        return b""
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def _filename(part: Message, defects: _Defects, where: str) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
        defects.add("filename_unparseable", where)
    if not name:
        try:
            name = part.get_param("name")  # type: ignore[assignment]
        except Exception:
            name = None
        if isinstance(name, tuple):
            name = name[2]
    if not name or not isinstance(name, str):
        return None
    name = _clean_line(_decode_words(_repair_8bit(name, defects, "filename"), defects, "filename"))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    if "\ufffd" in name:  # bytes invalid in the declared charset (RFC 2231 or 2047)
        defects.add("filename_undecodable", f"{where}: {name[:80]}")
    return unicodedata.normalize("NFC", name)[:255] or None


def html_to_text(html: str) -> str:
    try:
        return str(get_text(html)).strip()
    except Exception:
        return re.sub(r"<[^>]*>", " ", html)


class _Body:
    """Walks the MIME tree once: text parts to show, HTML, and every attachment."""

    def __init__(self, defects: _Defects) -> None:
        self.defects = defects
        self.plain: list[str] = []
        self.htmls: list[str] = []
        self.attachments: list[ParsedAttachment] = []
        self.forwarded: list[str] = []
        self.tnef_bodies: list[str] = []
        self._parts = 0

    def text(self) -> str:
        text = "\n\n".join(t for t in self.plain if t.strip())
        if not text.strip() and self.htmls:
            text = "\n\n".join(html_to_text(h) for h in self.htmls)
        if not text.strip() and self.tnef_bodies:
            text = "\n\n".join(self.tnef_bodies)
        if not text.strip() and self.forwarded:
            text = "\n\n".join(self.forwarded)
        return _tidy(text)

    def html(self) -> str | None:
        if not self.htmls:
            return None
        joined = "\n<hr>\n".join(self.htmls)
        return sanitize_html(joined.replace("\x00", ""))

    def collect(self, part: Message, where: str = "1", depth: int = 0) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            self.defects.add("too_many_parts", f"more than {MAX_PARTS}; the rest ignored")
            return
        if depth > 30:
            self.defects.add("nesting_too_deep", where)
            return
        try:
            self._collect(part, where, depth)
        except RecursionError:
            raise
        except Exception as exc:
            # a part whose headers the stdlib cannot read: keep its bytes as an attachment
            self.defects.add("part_unreadable", f"{where}: {type(exc).__name__}: {exc}")
            try:
                data = part.get_payload(decode=True)
            except Exception:
                data = None
            if isinstance(data, bytes):
                name = f"part-{where}.bin"
                self.attachments.append(ParsedAttachment(data, name, "application/octet-stream"))

    def _collect(self, part: Message, where: str, depth: int) -> None:
        ctype = part.get_content_type()
        maintype = part.get_content_maintype()
        if maintype == "multipart" and not part.is_multipart():
            # the boundary never appears: the parser kept the body as text; show it as text
            data = _payload_bytes(part, self.defects, where)
            self.defects.add("multipart_without_parts", f"{where}: body kept as text")
            text = decode_text(data, part.get_content_charset(), self.defects, where)
            self.plain.append(text.replace("\x00", ""))
            return
        if part.is_multipart():
            payload = part.get_payload()
            subs = (
                [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
            )
            if ctype == "message/rfc822" or maintype == "message":
                self._nested(part, subs, where, depth)
                return
            if part.get_content_subtype() == "alternative" and subs:
                self._alternative(subs, where, depth)
                return
            for i, sub in enumerate(subs, 1):
                self.collect(sub, f"{where}.{i}", depth + 1)
            return
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part, self.defects, where)
        is_attachment = disposition == "attachment" or (filename is not None and maintype != "text")
        if maintype == "text" and not is_attachment and ctype in {"text/plain", "text/html", ""}:
            data = _payload_bytes(part, self.defects, where)
            text = decode_text(data, part.get_content_charset(), self.defects, where)
            text = text.replace("\x00", "")
            if ctype == "text/html":
                self.htmls.append(text)
            else:
                self.plain.append(self._uudecode(text, where))
            return
        if ctype == "text/plain" and filename is not None and disposition != "attachment":
            data = _payload_bytes(part, self.defects, where)
            self.plain.append(decode_text(data, part.get_content_charset(), self.defects, where))
            return
        self._attachment(part, filename, disposition, where)

    def _alternative(self, subs: list[Message], where: str, depth: int) -> None:
        plain = [s for s in subs if s.get_content_type() == "text/plain"]
        rich = [s for s in subs if s.get_content_type() != "text/plain"]
        if plain:
            self.collect(plain[0], f"{where}.plain", depth + 1)
        # the richest alternative is last; it may be text/html or multipart/related
        htmls_before = len(self.htmls)
        for sub in reversed(rich):
            self.collect(sub, f"{where}.alt", depth + 1)
            if len(self.htmls) > htmls_before:
                break
        if not plain and len(self.htmls) == htmls_before and subs:
            self.collect(subs[0], f"{where}.1", depth + 1)

    def _nested(self, part: Message, subs: list[Message], where: str, depth: int) -> None:
        if not subs:
            self._attachment(part, None, "attachment", where)
            return
        inner = subs[0]
        if part.get_content_type() in {"message/rfc822", "message/global"}:
            data = _message_bytes(inner)
            subject = _header_text(inner, "Subject", self.defects)
            name = _safe_filename(subject or "forwarded message") + ".eml"
            self.attachments.append(ParsedAttachment(data, name, "message/rfc822"))
            nested = _Body(self.defects)
            nested.collect(inner, f"{where}.msg", depth + 1)
            text = nested.text()
            if text:
                head = f"---------- Forwarded message ----------\nSubject: {subject}\n"
                self.forwarded.append(head + "\n" + text)
            self.attachments.extend(a for a in nested.attachments if a not in self.attachments)
        else:
            # message/delivery-status and friends: keep them, readable, as attachments
            data = _message_bytes(part)
            body = data.partition(b"\n\n")[2] or data
            self.attachments.append(
                ParsedAttachment(body, f"part-{where}.txt", part.get_content_type())
            )

    def _attachment(
        self, part: Message, filename: str | None, disposition: str, where: str
    ) -> None:
        data = _payload_bytes(part, self.defects, where)
        ctype = part.get_content_type()
        cid = part.get("content-id")
        content_id = None
        if cid:
            content_id = _clean_line(str(cid)).strip("<>")[:300] or None
        name = filename or _default_filename(ctype, where)
        inline = disposition == "inline" or (disposition != "attachment" and content_id is not None)
        self.attachments.append(ParsedAttachment(data, name, ctype, content_id, inline))
        if ctype == "application/ms-tnef" or name.lower() == "winmail.dat":
            self._tnef(data, where)

    def _tnef(self, data: bytes, where: str) -> None:
        """Outlook's winmail.dat (TNEF) hides the real files, and sometimes the body: decode
        them (tnefparse) into ordinary attachments; the winmail.dat itself is kept too."""
        try:
            tnef = TNEF(data, do_checksum=False)
            found = [(a.long_filename(), a.data) for a in tnef.attachments]
            body = tnef.body
        except Exception as exc:  # a damaged TNEF is still kept, as the winmail.dat
            self.defects.add("tnef_undecodable", f"{where}: {type(exc).__name__}: {exc}")
            return
        for index, (raw_name, content) in enumerate(found, 1):
            if not isinstance(content, bytes) or not content:
                continue
            if isinstance(raw_name, bytes):
                raw_name = raw_name.decode("cp1252", "replace")
            name = _safe_filename(str(raw_name or "").strip("\x00")) or f"tnef-{where}-{index}.bin"
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            self.attachments.append(ParsedAttachment(content, name, ctype))
        if isinstance(body, bytes):
            body = decode_text(body, "windows-1252", self.defects, f"{where}.tnef")
        if isinstance(body, str) and body.strip("\x00 \r\n"):
            self.tnef_bodies.append(body.replace("\x00", ""))

    def _uudecode(self, text: str, where: str) -> str:
        """Old clients put files inline as uuencoded blocks: take them out as attachments."""
        if "begin " not in text:
            return text
        out = text
        for match in list(_UU_BEGIN.finditer(text)):
            end = text.find("\nend", match.end())
            if end < 0:
                continue
            lines = text[match.end() : end].strip("\r\n").splitlines()
            data = bytearray()
            try:
                for line in lines:
                    if not line.strip() or line.strip() == "`":
                        continue
                    try:
                        data += binascii.a2b_uu(line)
                    except binascii.Error:
                        # some encoders pad badly; the length byte tells the truth
                        size = ((ord(line[0]) - 32) & 63) * 4 // 3
                        data += binascii.a2b_uu(line[: size + 1])
            except (binascii.Error, IndexError, ValueError):
                self.defects.add("uuencode_invalid", where)
                continue
            name = _safe_filename(match.group("name").strip()) or "uuencoded.bin"
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            self.attachments.append(ParsedAttachment(bytes(data), name, ctype))
            block_end = end + len("\nend")
            out = out.replace(text[match.start() : block_end], "")
        return out


def _message_bytes(msg: Message) -> bytes:
    """A nested message written back out; the generator can choke on broken parts."""
    try:
        return msg.as_bytes(policy=policy.compat32)
    except Exception:
        pass
    try:
        return msg.as_string(policy=policy.compat32).encode("utf-8", "replace")
    except Exception:
        return b""


def _safe_filename(name: str) -> str:
    name = _clean_line(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r'[<>:"|?*]', "_", name)
    return name[:200]


def _default_filename(ctype: str, where: str) -> str:
    ext = mimetypes.guess_extension(ctype) or (".txt" if ctype.startswith("text/") else ".bin")
    return f"attachment-{where}{ext}"


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text)
    return re.sub(r"\n{4,}", "\n\n\n", text).strip()

"""Header fields -> text: raw 8-bit bytes, RFC 2047 encoded-words in any (or a wrong) charset,
message ids and the date. Never raises; what is odd is recorded in :class:`Defects`."""

from __future__ import annotations

import codecs
import hashlib
import re
from datetime import UTC, datetime, timedelta
from email.header import decode_header
from email.message import Message
from email.utils import parsedate_to_datetime

import charset_normalizer

from switchboard.ingestion.defects import Defects, clean_line

FUTURE_TOLERANCE = timedelta(days=1)
OLDEST_PLAUSIBLE = datetime(1980, 1, 1, tzinfo=UTC)
_MSGID = re.compile(r"<([^<>\s]+)>")
_BARE_MSGID = re.compile(r"^[^<>\s@]+@[^<>\s@]+$")
CHARSET_ALIASES = {
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


def raw_values(msg: Message, name: str) -> list[str]:
    return [value for key, value in msg.raw_items() if key.lower() == name.lower()]


def repair_8bit(value: str, defects: Defects, name: str) -> str:
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


def unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", value)


def decode_words(value: str, defects: Defects, where: str) -> str:
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


def _decode_word(data: bytes, charset: str, defects: Defects, where: str) -> str:
    name = charset.lower().split("*", 1)[0]  # RFC 2231 adds "*language"
    codec = CHARSET_ALIASES.get(name, name)
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


def header_texts(msg: Message, name: str, defects: Defects) -> list[str]:
    texts = []
    for raw in raw_values(msg, name):
        text = decode_words(unfold(repair_8bit(raw, defects, name)).strip(), defects, name)
        texts.append(clean_line(text))
    return texts


def header_text(msg: Message, name: str, defects: Defects) -> str:
    texts = header_texts(msg, name, defects)
    return texts[0] if texts else ""


def normalize_message_id(value: str) -> str | None:
    """``<id@host>`` (angle brackets kept), or None when there is no id in the text."""
    found = msgids(value)
    return found[0] if found else None


def msgids(value: str) -> list[str]:
    found = [f"<{m}>" for m in _MSGID.findall(value)]
    if not found:
        found = [f"<{t}>" for t in value.split() if _BARE_MSGID.match(t)]
    return [clean_line(i)[:500] for i in found]


def first_msgid(msg: Message, name: str, defects: Defects) -> str | None:
    texts = header_texts(msg, name, defects)
    if not texts:
        return None
    found = normalize_message_id(texts[0])
    if found is None and texts[0]:
        defects.add("message_id_invalid", f"{name}: {texts[0][:80]}")
    return found


def synthesize_message_id(msg: Message, raw: bytes) -> str:
    """Stable for the same mail however it reached us (trace headers are left out)."""
    digest = hashlib.sha256()
    for key, value in msg.raw_items():
        if key.lower() in {"from", "to", "cc", "date", "subject"}:
            digest.update(f"{key.lower()}:{value}\n".encode("utf-8", "surrogateescape"))
    _, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    digest.update(body.replace(b"\r\n", b"\n"))
    return f"<{digest.hexdigest()[:32]}@synthesized.switchboard.invalid>"


def sent_date(msg: Message, received_at: datetime, defects: Defects) -> tuple[datetime, bool]:
    texts = header_texts(msg, "Date", defects)
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

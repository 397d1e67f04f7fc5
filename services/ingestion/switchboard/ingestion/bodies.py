"""The MIME tree -> what an agent reads and opens: the text to show, the sanitised HTML, and
every attachment (nested mails, Outlook's winmail.dat and uuencoded blocks taken apart)."""

from __future__ import annotations

import binascii
import codecs
import mimetypes
import re
import unicodedata
from dataclasses import dataclass
from email import policy
from email.message import Message

from inscriptis import get_text  # type: ignore[import-untyped]
from tnefparse import TNEF  # type: ignore[import-untyped]

from switchboard.contracts.html import sanitize_html
from switchboard.ingestion.defects import Defects, clean_line
from switchboard.ingestion.headers import (
    CHARSET_ALIASES,
    decode_words,
    detect_charset,
    header_text,
    repair_8bit,
)

MAX_PARTS = 1000
_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} (?P<name>[^\r\n]+)\r?$", re.MULTILINE)
_UNKNOWN_CHARSETS = {"unknown-8bit", "x-unknown", "unknown", "8bit", "binary", "default"}


@dataclass(frozen=True)
class ParsedAttachment:
    content: bytes
    filename: str
    content_type: str
    content_id: str | None = None
    inline: bool = False


def decode_text(data: bytes, declared: str | None, defects: Defects, where: str) -> str:
    """Bytes of a text part -> str: declared charset, then detection; never raises."""
    charset = (declared or "").strip().strip('"').lower()
    candidates: list[str] = []
    if charset and charset not in _UNKNOWN_CHARSETS:
        candidates.append(CHARSET_ALIASES.get(charset, charset))
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


def _payload_bytes(part: Message, defects: Defects, where: str) -> bytes:
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


def _filename(part: Message, defects: Defects, where: str) -> str | None:
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
    name = clean_line(decode_words(repair_8bit(name, defects, "filename"), defects, "filename"))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    if "\ufffd" in name:  # bytes invalid in the declared charset (RFC 2231 or 2047)
        defects.add("filename_undecodable", f"{where}: {name[:80]}")
    return unicodedata.normalize("NFC", name)[:255] or None


def html_to_text(html: str) -> str:
    try:
        return str(get_text(html)).strip()
    except Exception:
        return re.sub(r"<[^>]*>", " ", html)


class Body:
    """Walks the MIME tree once: text parts to show, HTML, and every attachment."""

    def __init__(self, defects: Defects) -> None:
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
            subject = header_text(inner, "Subject", self.defects)
            name = _safe_filename(subject or "forwarded message") + ".eml"
            self.attachments.append(ParsedAttachment(data, name, "message/rfc822"))
            nested = Body(self.defects)
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
            content_id = clean_line(str(cid)).strip("<>")[:300] or None
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
    name = clean_line(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r'[<>:"|?*]', "_", name)
    return name[:200]


def _default_filename(ctype: str, where: str) -> str:
    ext = mimetypes.guess_extension(ctype) or (".txt" if ctype.startswith("text/") else ".bin")
    return f"attachment-{where}{ext}"


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text)
    return re.sub(r"\n{4,}", "\n\n\n", text).strip()

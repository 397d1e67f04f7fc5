"""A small TNEF (winmail.dat) writer, for tests: the layout Outlook writes (MS-OXTNEF): the
signature, message attributes, then per file its rendering data, 8.3 title, bytes and MAPI
properties (the long file name). Decoding is tnefparse's job, not this module's."""

from __future__ import annotations

import struct

SIGNATURE = 0x223E9F78
LVL_MESSAGE, LVL_ATTACHMENT = 1, 2
ATT_TNEF_VERSION, ATT_OEM_CODEPAGE, ATT_MESSAGE_CLASS, ATT_BODY = 0x9006, 0x9007, 0x8008, 0x800C
ATT_ATTACH_REND_DATA, ATT_ATTACH_TITLE, ATT_ATTACH_DATA, ATT_ATTACHMENT = (
    0x9002,
    0x8010,
    0x800F,
    0x9005,
)
T_STRING, T_BYTE, T_DWORD, T_TEXT = 0x0001, 0x0006, 0x0008, 0x0007
PT_UNICODE, PR_ATTACH_LONG_FILENAME = 0x001F, 0x3707


def _attribute(level: int, name: int, kind: int, data: bytes) -> bytes:
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BHHI", level, name, kind, len(data)) + data + struct.pack("<H", checksum)


def _unicode_property(prop: int, value: str) -> bytes:
    encoded = value.encode("utf-16-le") + b"\x00\x00"
    padded = encoded + b"\x00" * (-len(encoded) % 4)
    return struct.pack("<HHII", PT_UNICODE, prop, 1, len(encoded)) + padded


def winmail_dat(files: list[tuple[str, str, bytes]], body: str | None = None) -> bytes:
    """``files``: (8.3 title, long file name, bytes)."""
    out = struct.pack("<IH", SIGNATURE, 0x0001)
    out += _attribute(LVL_MESSAGE, ATT_TNEF_VERSION, T_DWORD, struct.pack("<I", 0x00010000))
    out += _attribute(LVL_MESSAGE, ATT_OEM_CODEPAGE, T_BYTE, struct.pack("<II", 1252, 0))
    out += _attribute(LVL_MESSAGE, ATT_MESSAGE_CLASS, T_STRING, b"IPM.Microsoft Mail.Note\x00")
    if body is not None:
        out += _attribute(LVL_MESSAGE, ATT_BODY, T_TEXT, body.encode("cp1252") + b"\x00")
    for title, long_name, data in files:
        rend = struct.pack("<HIIHI", 1, 0xFFFFFFFF, 0, 0, 0)
        out += _attribute(LVL_ATTACHMENT, ATT_ATTACH_REND_DATA, T_BYTE, rend)
        out += _attribute(LVL_ATTACHMENT, ATT_ATTACH_TITLE, T_STRING, title.encode() + b"\x00")
        out += _attribute(LVL_ATTACHMENT, ATT_ATTACH_DATA, T_BYTE, data)
        props = struct.pack("<I", 1) + _unicode_property(PR_ATTACH_LONG_FILENAME, long_name)
        out += _attribute(LVL_ATTACHMENT, ATT_ATTACHMENT, T_BYTE, props)
    return out

"""What was odd but survivable in a mail: ``code: detail`` remarks, and the one-line text
cleaning every remark and header goes through (no line breaks, controls or lone surrogates)."""

from __future__ import annotations

import re

MAX_DEFECTS = 100
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Lone surrogates: what Python keeps for bytes it could not decode. UTF-8 cannot carry them, so
# one left in any text makes the event unserialisable (and the mail deferred for ever).
SURROGATES = re.compile(r"[\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"[\r\n\t\x00\x85\u2028\u2029]+")


class Defects:
    """The remarks of one mail, each once, at most MAX_DEFECTS (a hostile mail can have many)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, code: str, detail: str = "") -> None:
        entry = f"{code}: {detail}" if detail else code
        entry = clean_line(entry)[:300]
        if entry not in self.items and len(self.items) < MAX_DEFECTS:
            self.items.append(entry)


def clean_line(value: str) -> str:
    """One line of text: no CR/LF/NUL/control characters, no lone surrogates (header-safe)."""
    value = SURROGATES.sub("\ufffd", _LINE_BREAKS.sub(" ", value))
    return _CONTROL.sub("", value).strip()

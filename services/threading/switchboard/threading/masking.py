"""Masking: payment card numbers found automatically, spans marked by an agent.

Both replace characters irreversibly with ``*``. Card numbers keep their last four digits (what
PCI DSS allows to be shown), spaces and dashes; an agent's span is starred whole (line breaks
kept, so the text keeps its shape and later spans keep their offsets).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from switchboard.contracts.cases import MaskSpan
from switchboard.runtime.cards import MASK, luhn_valid, mask_card_numbers

__all__ = ["MASK", "luhn_valid", "mask_card_numbers"]

MIN_PROPAGATED = 4
"""A masked fragment shorter than this is masked only where marked, not searched elsewhere."""


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def span_problem(text: str, start: int, end: int) -> str | None:
    """Why a span cannot be masked in ``text`` (None when it can)."""
    if start < 0 or end <= start:
        return "a span must have 0 <= start < end"
    if end > len(text):
        return f"the span ends at {end} but the text has {len(text)} characters"
    return None


def mask_spans(text: str, spans: Iterable[Span]) -> tuple[str, list[str]]:
    """Star the spans; returns the new text and the original fragments (to mask elsewhere)."""
    chars = list(text)
    fragments: list[str] = []
    for span in sorted(spans, key=lambda s: s.start):
        fragments.append(text[span.start : span.end])
        for i in range(span.start, span.end):
            if chars[i] not in "\r\n":
                chars[i] = MASK
    return "".join(chars), fragments


def marked_text(email: dict[str, Any], span: MaskSpan) -> str:
    """The text a span of an email marks (before it is starred)."""
    return str(email.get(span.field) or "")[span.start : span.end]


def propagation_pieces(fragments: Iterable[str]) -> list[str]:
    """The pieces of masked fragments worth finding in other stored copies (quoted replies
    break a fragment at line ends, so each line is searched on its own)."""
    pieces: set[str] = set()
    for fragment in fragments:
        for line in re.split(r"[\r\n]+", fragment):
            line = line.strip()
            if len(line) >= MIN_PROPAGATED and line.strip(MASK):
                pieces.add(line)
    return sorted(pieces, key=len, reverse=True)


def redact(text: str, pieces: Iterable[str]) -> str:
    for piece in pieces:
        if piece in text:
            text = text.replace(piece, "".join(c if c.isspace() else MASK for c in piece))
    return text


def redact_everywhere(value: Any, pieces: list[str]) -> tuple[Any, bool]:
    """Apply :func:`redact` to every string inside a document; returns (new value, changed)."""
    if not pieces:
        return value, False
    if isinstance(value, str):
        new = redact(value, pieces)
        return new, new != value
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            out[key], hit = redact_everywhere(item, pieces)
            changed = changed or hit
        return out, changed
    if isinstance(value, list):
        changed = False
        items = []
        for item in value:
            new_item, hit = redact_everywhere(item, pieces)
            items.append(new_item)
            changed = changed or hit
        return items, changed
    return value, False

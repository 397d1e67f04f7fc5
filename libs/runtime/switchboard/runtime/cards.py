"""Payment card numbers: found (Luhn-valid, 13-19 digits, spaces or dashes allowed) and masked.

One detector for the whole system: the mail edge masks every text form of a mail before it
stores or publishes anything, threading masks what reaches it another way. A masked number
keeps its last four digits (what PCI DSS allows to be shown), its spaces and dashes.
"""

from __future__ import annotations

import re

MASK = "*"
_CARD_CANDIDATE = re.compile(r"(?<![\d])\d(?:[ \-]?\d){12,18}(?![\d])")


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def mask_card_numbers(text: str) -> tuple[str, int]:
    """Mask Luhn-valid 13-19 digit numbers (spaces or dashes allowed); returns (text, count)."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        found = match.group(0)
        digits = re.sub(r"\D", "", found)
        if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
            return found
        count += 1
        keep_from = len(digits) - 4
        out, seen = [], 0
        for char in found:
            if char.isdigit():
                out.append(char if seen >= keep_from else MASK)
                seen += 1
            else:
                out.append(char)
        return "".join(out)

    return _CARD_CANDIDATE.sub(replace, text or ""), count

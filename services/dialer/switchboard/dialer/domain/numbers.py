"""Phone numbers: E.164 normalisation and the time zones a number may ring in."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import timezone as phone_zones

from switchboard.dialer.domain.windows import valid_zone


def normalise_number(raw: str, region: str) -> str:
    """E.164 of ``raw`` (``region`` for numbers without +country); ``ValueError`` says why not."""
    text = raw.strip()
    if not text:
        raise ValueError("empty number")
    try:
        parsed = phonenumbers.parse(text, region.upper() or None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{raw!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{raw!r} is not a valid number (region {region.upper()})")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=65536)
def number_zones(e164: str) -> tuple[str, ...]:
    """The time zones phonenumbers knows for a number; empty when it does not know."""
    try:
        found = phone_zones.time_zones_for_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return ()
    return tuple(sorted(z for z in found if z != "Etc/Unknown" and valid_zone(z)))

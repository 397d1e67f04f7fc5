"""Phone numbers: E.164 normalisation and the time zones a number may ring in."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import timezone as phone_zones

from switchboard.dialer.domain.windows import valid_zone


def normalise_number(raw: str, region: str) -> str:
    """E.164 of ``raw`` (``region`` for numbers without +country); ``ValueError`` says why not."""
    parsed, _ = _valid(raw, region)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_number(raw: str, region: str) -> tuple[str, tuple[str, ...]]:
    """E.164 of ``raw`` and the zones it may ring in (as :func:`number_zones`), from one parse
    and one type lookup: what an import does for every number of every row."""
    parsed, kind = _valid(raw, region)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    zones = _known_zones.get(e164)
    if zones is None:
        if phonenumbers.is_number_type_geographical(kind, parsed.country_code or 0):
            found = phone_zones.time_zones_for_geographical_number(parsed)
        else:
            found = phone_zones.time_zones_for_number(parsed)
        zones = _usable(found)
        if len(_known_zones) < _ZONE_CACHE:
            _known_zones[e164] = zones
    return e164, zones


def _valid(raw: str, region: str) -> tuple[phonenumbers.PhoneNumber, int]:
    """The parsed number and its type; ``ValueError`` when it is not a valid number. (A number
    is valid exactly when its type is known: ``is_valid_number`` decides by the same lookup.)"""
    text = raw.strip()
    if not text:
        raise ValueError("empty number")
    try:
        parsed = phonenumbers.parse(text, region.upper() or None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{raw!r} is not a phone number ({exc._msg})") from None
    kind = phonenumbers.number_type(parsed)
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        raise ValueError(f"{raw!r} is not a valid number (region {region.upper()})")
    return parsed, kind


_ZONE_CACHE = 65536
_known_zones: dict[str, tuple[str, ...]] = {}


@lru_cache(maxsize=65536)
def number_zones(e164: str) -> tuple[str, ...]:
    """The time zones phonenumbers knows for a number; empty when it does not know."""
    try:
        found = phone_zones.time_zones_for_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return ()
    return _usable(found)


def _usable(found: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(z for z in found if z != "Etc/Unknown" and valid_zone(z)))

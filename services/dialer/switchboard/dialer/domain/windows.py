"""Time zones and calling windows: when a number may be called, in every zone it may be in."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from switchboard.contracts.campaigns import CallingHours


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """A time zone by IANA name; ``ValueError`` when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def valid_zone(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


def minutes(clock: str) -> int:
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


def local_minute(at: datetime, zone_name: str) -> int:
    local = at.astimezone(zone(zone_name))
    return local.hour * 60 + local.minute


def _within(minute: int, start: int, end: int) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # a window across midnight


def in_window(at: datetime, zones: tuple[str, ...], hours: CallingHours) -> bool:
    """Whether ``at`` is inside the calling hours in every one of ``zones``."""
    start, end = minutes(hours.start), minutes(hours.end)
    return bool(zones) and all(_within(local_minute(at, z), start, end) for z in zones)


def next_window_open(
    at: datetime, zones: tuple[str, ...], hours: CallingHours, *, horizon_days: int = 8
) -> datetime | None:
    """The first instant at or after ``at`` that is inside the window in all ``zones``.

    The common window of several zones starts where one zone's window starts, so the candidates
    are each zone's local start times over the horizon (a start inside a DST gap lands just
    after it). ``None`` when the zones never share a window.
    """
    if in_window(at, zones, hours):
        return at
    start = minutes(hours.start) % (24 * 60)
    candidates: list[datetime] = []
    for name in zones:
        tz = zone(name)
        today = at.astimezone(tz).date()
        for offset in range(horizon_days + 1):
            day = today + timedelta(days=offset)
            local = datetime.combine(day, time(start // 60, start % 60), tzinfo=tz)
            instant = local.astimezone(UTC)
            if instant > at:
                candidates.append(instant)
    for instant in sorted(candidates):
        if in_window(instant, zones, hours):
            return instant
    return None

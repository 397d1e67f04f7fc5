"""A case's paused service-level clock: pure. A round keeps each change to and away from a
"pending" status (a :class:`StatusMark`); its pauses are rebuilt from them in time order, so
changes folded out of order give the same intervals."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class StatusMark:
    """A change to (``pending``) or away from a pending status at ``at``."""

    at: datetime
    pending: bool


@dataclass(frozen=True)
class Pause:
    """An interval in a "pending" status: the service-level clock stood still."""

    start: datetime
    end: datetime | None = None


def paused_seconds(pauses: Iterable[Pause], start: datetime, end: datetime) -> float:
    """Seconds of ``[start, end)`` the clock stood still (an open pause lasts until ``end``)."""
    total = 0.0
    for pause in pauses:
        low, high = max(pause.start, start), min(pause.end or end, end)
        if high > low:
            total += (high - low).total_seconds()
    return total


def clock_due(opened_at: datetime, target: float, pauses: Iterable[Pause]) -> datetime | None:
    """When the clock, started at ``opened_at`` and stopped by ``pauses``, reaches ``target``;
    None while a pause before that moment is still open (the moment is not known yet)."""
    due = opened_at + timedelta(seconds=target)
    for pause in sorted(pauses, key=lambda p: p.start):
        if pause.start >= due:
            break
        if pause.end is not None and pause.end <= opened_at:
            continue
        if pause.end is None:
            return None
        due += pause.end - max(pause.start, opened_at)
    return due


def pauses_of(marks: Iterable[StatusMark]) -> tuple[Pause, ...]:
    """The pending intervals, from every change in time order: changes folded out of order
    (a retry) give the same intervals."""
    found: list[Pause] = []
    start: datetime | None = None
    for mark in sorted(marks, key=lambda m: (m.at, m.pending)):
        if mark.pending and start is None:
            start = mark.at
        elif not mark.pending and start is not None:
            found.append(Pause(start, mark.at))
            start = None
    if start is not None:
        found.append(Pause(start))
    return tuple(found)


def pauses_until(marks: Iterable[StatusMark], end: datetime) -> tuple[Pause, ...]:
    """The pauses of a round that ended at ``end`` (changes after it belong to the next)."""
    return pauses_of(m for m in marks if m.at <= end)

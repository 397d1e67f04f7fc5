"""Time in each state per agent per interval, from the state history (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any


def time_in_state(
    rows: Iterable[Mapping[str, Any]],
    start: datetime,
    end: datetime,
    interval: timedelta,
    now: datetime,
) -> list[dict[str, Any]]:
    """Seconds per (agent, interval, state) between ``start`` and ``min(end, now)``.

    ``rows`` are history rows (agent_id, sequence, state, at), any order; the last row before
    ``start`` of an agent gives the state the agent was in when the period began.
    """
    stop = min(end, now)
    totals: dict[tuple[str, int, str], float] = {}
    ordered = sorted(rows, key=lambda r: (r["agent_id"], r["sequence"]))
    for agent_id, agent_rows in groupby(ordered, key=lambda r: str(r["agent_id"])):
        changes = list(agent_rows)
        for current, following in zip(changes, [*changes[1:], None], strict=True):
            seg_start = max(current["at"], start)
            seg_end = min(following["at"] if following is not None else stop, stop)
            _spread(totals, agent_id, str(current["state"]), seg_start, seg_end, start, interval)
    return [
        {
            "agent_id": agent_id,
            "interval_start": (start + index * interval).isoformat(),
            "state": state,
            "seconds": round(seconds, 3),
        }
        for (agent_id, index, state), seconds in sorted(totals.items())
        if seconds > 0
    ]


def _spread(
    totals: dict[tuple[str, int, str], float],
    agent_id: str,
    state: str,
    seg_start: datetime,
    seg_end: datetime,
    origin: datetime,
    interval: timedelta,
) -> None:
    moment = seg_start
    while moment < seg_end:
        index = int((moment - origin) / interval)
        bucket_end = origin + (index + 1) * interval
        upto = min(bucket_end, seg_end)
        key = (agent_id, index, state)
        totals[key] = totals.get(key, 0.0) + (upto - moment).total_seconds()
        moment = upto

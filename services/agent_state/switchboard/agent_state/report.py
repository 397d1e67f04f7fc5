"""Time in each state per agent per interval, and the recorded changes as they were published,
from the state history (pure, no I/O)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from switchboard.contracts.agents import AgentStateChanged, StateHistoryPage

HISTORY_NAMESPACE = uuid.UUID("5d0c8f7e-2b1a-4c3d-9e8f-7a6b5c4d3e2f")


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


def history_page(rows: Sequence[Mapping[str, Any]], limit: int) -> StateHistoryPage:
    """The change each history row records (its id derived from agent and sequence, its moment
    the change's); a full page points at the next."""
    changes = [
        AgentStateChanged(
            message_id=uuid.uuid5(HISTORY_NAMESPACE, str(row["_id"])),
            occurred_at=row["at"],
            agent_id=row["agent_id"],
            previous=row["previous"],
            state=row["state"],
            reason=row.get("reason") or "",
            actor=row.get("actor") or "system",
            sequence=row["sequence"],
            changed_at=row["at"],
        )
        for row in rows
    ]
    next_after = str(rows[-1]["_id"]) if rows and len(rows) >= limit else None
    return StateHistoryPage(changes=changes, next_after=next_after)

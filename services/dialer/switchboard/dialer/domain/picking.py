"""Transitions of a record between the campaign and routing: pure functions of the record.

Each returns the record as it must be stored; the hopper's handlers store it with one
version-guarded write and publish what goes with it (the route request, its withdrawal, the
closing event).
"""

from __future__ import annotations

from datetime import datetime

from switchboard.dialer.domain import HistoryEntry, Record


def routed(record: Record, now: datetime) -> Record:
    """A due record picked for routing (its route request sent at ``now``)."""
    return record.model_copy(
        update={"state": "ready", "routed_at": now, "agent_id": None, "offer_id": None}
    )


def route_reasserted(record: Record, now: datetime) -> Record:
    """A record waiting in routing whose route request is sent again at ``now``."""
    return record.model_copy(update={"routed_at": now})


def postponed(record: Record, at: datetime) -> Record:
    """A due record that may not be called yet (outside its window): due again ``at``."""
    return record.model_copy(update={"next_at": at})


def withdrawn(record: Record, at: datetime) -> Record:
    """A record taken back from routing (campaign paused, window closed...): pending, due ``at``."""
    return record.model_copy(
        update={"state": "pending", "next_at": at, "agent_id": None, "offer_id": None}
    )


def closed(record: Record, reason: str, now: datetime) -> Record:
    """A record that may never be called again (``reason``: DNC, attempts used up...)."""
    entry = HistoryEntry(at=now, kind="closed", detail=reason)
    return record.model_copy(
        update={
            "state": "closed",
            "result": reason,
            "agent_id": None,
            "history": [*record.history, entry],
        }
    )


def auto_call_refused(record: Record, reason: str, now: datetime) -> Record:
    """The review time is over but no number may be dialled: the timer stops, the agent keeps
    the record and the reason is in its history."""
    entry = HistoryEntry(at=now, kind="auto_call_refused", agent_id=record.agent_id, detail=reason)
    return record.model_copy(update={"review_due": None, "history": [*record.history, entry]})

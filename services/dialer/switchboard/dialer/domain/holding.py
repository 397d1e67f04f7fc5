"""Transitions of a record an agent holds and of its calls: pure functions of the record.

Each returns the record as it must be stored (or ``None``: nothing changes); the handlers store
it with one version-guarded write and publish what goes with it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from switchboard.contracts.campaigns import CallStatus, Disposition
from switchboard.dialer.domain import TERMINAL_CALL, Attempt, HistoryEntry, Next, Record

_STATUS_ORDER = {"requested": 0, "dialing": 1, "ringing": 2, "answered": 3}


def released(record: Record) -> Record:
    """The record no longer held by, offered to or reserved for an agent."""
    return record.model_copy(
        update={
            "agent_id": None,
            "offer_id": None,
            "held_since": None,
            "review_due": None,
            "personal_agent_id": None,
        }
    )


def disposed(record: Record, disposition: Disposition, note: str) -> Record:
    """The last call of the current holding gets its disposition."""
    attempts = list(record.attempts)
    current = record.current_attempts()
    if not current:
        return record
    index = attempts.index(current[-1])
    attempts[index] = attempts[index].model_copy(
        update={"disposition": disposition.name, "note": note}
    )
    bad = list(record.bad_numbers)
    if disposition.marks_number_bad and attempts[index].number not in bad:
        bad.append(attempts[index].number)
    return record.model_copy(
        update={"attempts": attempts, "needs_disposition": False, "bad_numbers": bad}
    )


def handed_back(
    record: Record, following: Next, entry: HistoryEntry, now: datetime, **update: Any
) -> tuple[Record, dict[str, Any]]:
    """The record leaves its agent for ``following`` (Complete, Skip): the record and the
    core of the answer."""
    record = released(record).model_copy(
        update={
            "state": following.state,
            "next_at": following.at or now,
            "result": following.result,
            "history": [*record.history, entry],
            **update,
        }
    )
    answer = {
        "state": record.state,
        "result": following.result,
        "next_at": following.at.isoformat() if following.at else None,
    }
    return record, answer


def call_progressed(
    record: Record, call_id: str, status: CallStatus, at: datetime
) -> Record | None:
    """The record once telephony reports ``status`` for its call ``call_id``; ``None`` when
    the report changes nothing (an unknown call, a repeat, a report overtaken by a later one).

    Reports of one call may be handled out of order (parallel consumers, retries after a
    conflict): "answered" counts whenever it comes; a terminal status is final.
    """
    attempts = list(record.attempts)
    index = next((i for i, a in enumerate(attempts) if a.call_id == call_id), None)
    if index is None:
        return None
    attempt = attempts[index]
    update: dict[str, Any] = {}
    answered = False
    if status == "answered":
        if attempt.answered:
            return None
        answered = True
        update["answered"] = True
        if attempt.status not in TERMINAL_CALL:
            update["status"] = "answered"
    elif status in TERMINAL_CALL:
        if attempt.status in TERMINAL_CALL:
            return None
        update["status"] = status
        update["ended_at"] = at
    elif attempt.status in TERMINAL_CALL or _STATUS_ORDER.get(status, 0) <= _STATUS_ORDER.get(
        attempt.status, 0
    ):
        return None
    else:
        update["status"] = status
    attempts[index] = attempt.model_copy(update=update)
    return record.model_copy(
        update={
            "attempts": attempts,
            "answered_count": record.answered_count + (1 if answered else 0),
        }
    )


def offered(record: Record, agent_id: str, offer_id: str) -> Record:
    """Routing offered the record (``ready`` or already ``offered``) to ``agent_id``."""
    return record.model_copy(
        update={"state": "offered", "agent_id": agent_id, "offer_id": offer_id}
    )


def offer_lost(record: Record) -> Record:
    """The offer was rejected or timed out: the record waits in routing again."""
    return record.model_copy(
        update={"state": "ready", "agent_id": None, "offer_id": None, "routed_at": None}
    )


def assigned(
    record: Record,
    agent_id: str,
    offer_id: str | None,
    now: datetime,
    review_seconds: int | None,
) -> Record:
    """The agent holds the record from ``now``; the review timer runs if the campaign has one."""
    review = now + timedelta(seconds=review_seconds) if review_seconds else None
    return record.model_copy(
        update={
            "state": "held",
            "agent_id": agent_id,
            "offer_id": offer_id,
            "held_since": now,
            "review_due": review,
            "personal_agent_id": None,
            "needs_disposition": False,
        }
    )


def logged_out(record: Record, agent_id: str, now: datetime) -> Record:
    """Its agent logged out: the record goes back to the campaign, due now (not a skip)."""
    entry = HistoryEntry(at=now, kind="released", agent_id=agent_id, detail="agent logged out")
    return record.model_copy(
        update={
            "state": "pending",
            "next_at": now,
            "agent_id": None,
            "offer_id": None,
            "held_since": None,
            "review_due": None,
            "history": [*record.history, entry],
        }
    )


def dialled(record: Record, attempt: Attempt) -> Record:
    """The agent's (or the review timer's) call ``attempt`` is requested: it needs a
    disposition before anything else, and the review timer stops."""
    return record.model_copy(
        update={
            "attempts": [*record.attempts, attempt],
            "attempt_count": record.attempt_count + 1,
            "call_id": attempt.call_id,
            "needs_disposition": True,
            "review_due": None,
        }
    )


def rescheduled(
    record: Record,
    at: datetime,
    personal_agent_id: str | None,
    disposition: str | None,
    entry: HistoryEntry,
) -> Record:
    """The agent hands the record back due ``at`` (for ``personal_agent_id`` only, if set)."""
    return released(record).model_copy(
        update={
            "state": "pending",
            "next_at": at,
            "personal_agent_id": personal_agent_id,
            "disposition": disposition,
            "needs_disposition": False,
            "history": [*record.history, entry],
        }
    )

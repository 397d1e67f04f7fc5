"""The campaign events a stored record and its journal imply, for reporting's rebuild from the
services' data (``campaign.history_requested``): pure, no I/O.

Each call of the record (its :class:`Attempt`) is the ``dial.requested`` the dialer published
for it, at the moment it stored (``at``), under the call id; a call that was answered adds the
``call.progressed`` (answered) that reporting counts as a contact. The moment of the answer is
not stored, so that event carries the call's start as ``occurred_at`` and no ``at``: campaign
figures are not bucketed by time, so no figure depends on it. The record events are the
journal's entries as published (same message id, moment, change, state, disposition); what
the journal does not keep is not told: a closing's ``reason``, a reschedule's new time.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from switchboard.contracts import Message
from switchboard.contracts import campaigns as c
from switchboard.dialer.domain import Record

Document = dict[str, Any]

HISTORY_NAMESPACE = uuid.UUID("7c1e9d52-3a64-4f0b-8e2d-1b5a9c7f3e81")
RECORD_EVENTS: dict[str, type[c.RecordEvent]] = {
    "completed": c.RecordCompleted,
    "skipped": c.RecordSkipped,
    "rescheduled": c.RecordRescheduled,
    "dispositioned": c.RecordDispositioned,
    "closed": c.RecordClosed,
}


def record_events(document: Document, journal: list[Document]) -> list[Message]:
    """The record's events in time order (at one moment, a call before what it led to)."""
    record = Record.load(document)
    timeline: list[tuple[datetime, int, Message]] = []
    for attempt in record.attempts:
        dial_id = uuid.uuid5(HISTORY_NAMESPACE, f"dial:{attempt.call_id}")
        dial = c.DialRequested(
            message_id=dial_id,
            occurred_at=attempt.at,
            call_id=attempt.call_id,
            record_id=record.id,
            campaign_id=record.campaign_id,
            agent_id=attempt.agent_id,
            number=attempt.number,
            automatic=attempt.automatic,
        )
        timeline.append((attempt.at, len(timeline), dial))
        if attempt.answered:
            answer_id = uuid.uuid5(HISTORY_NAMESPACE, f"answered:{attempt.call_id}")
            answered = c.CallProgressed(
                message_id=answer_id,
                occurred_at=attempt.at,
                call_id=attempt.call_id,
                status="answered",
            )
            timeline.append((attempt.at, len(timeline), answered))
    for entry in journal:
        model = RECORD_EVENTS.get(str(entry.get("change") or ""))
        if model is None:
            continue
        event = model.model_validate(
            {
                "message_id": entry["_id"],
                "occurred_at": entry["at"],
                "record_id": entry["record_id"],
                "campaign_id": entry["campaign_id"],
                "agent_id": entry.get("agent_id"),
                "disposition": entry.get("disposition"),
                "state": entry.get("state") or "",
            }
        )
        timeline.append((event.occurred_at, len(timeline), event))
    return [event for _, _, event in sorted(timeline, key=lambda t: (t[0], t[1]))]

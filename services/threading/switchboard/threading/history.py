"""The case events a stored case and its emails imply, for reporting's rebuild from the
services' data (``case.history_requested``): pure, no I/O.

Each event is the one threading published at that change, with the moment it stored for it
(the history entry's ``at``, the email's ``stored_at``, the pause's ``from`` / ``until``) as
``occurred_at``: the published event was stamped a few milliseconds after that write. What is
not stored is not told: the names of the statuses a pause went between (``pending`` is what the
reports need), the events of a case's masked or deleted emails.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from switchboard.contracts import Message
from switchboard.contracts import cases as c
from switchboard.contracts.mail import Address

Document = dict[str, Any]

HISTORY_NAMESPACE = uuid.UUID("2f6e1c0a-8b4d-4e7f-a9c3-5d1b7e2f4a60")
AGENT_OUTBOUND = ("reply", "forward", "follow_up")
"""Outbound kinds published as attached to the case (a new outbound mail opens its case)."""
MOVES = ("transferred", "service_changed")


def case_events(case: Document, emails: list[Document]) -> list[Message]:
    """The case's events in the order threading published them."""
    number = int(case["_id"])
    history: list[Document] = sorted(case.get("history") or [], key=lambda h: h["at"])
    moves = [h for h in history if h["what"] in MOVES]
    first_service = str(moves[0]["from_service"]) if moves else str(case["service"])

    def service_at(at: datetime) -> str:
        found = first_service
        for move in moves:
            if move["at"] <= at:
                found = str(move["to_service"])
        return found

    def stamp(key: str, at: datetime) -> Callable[..., Any]:
        def make(model: type[Message], **fields: Any) -> Message:
            message_id = uuid.uuid5(HISTORY_NAMESPACE, f"{number}:{key}")
            return model(message_id=message_id, occurred_at=at, case_number=number, **fields)

        return make

    timeline: list[tuple[datetime, int, Message]] = []

    def add(at: datetime, event: Message) -> None:
        timeline.append((at, len(timeline), event))

    created = next((h for h in history if h["what"] == "created"), None)
    opened_at: datetime = created["at"] if created else case["created_at"]
    make = stamp("created", opened_at)
    add(
        opened_at,
        make(
            c.CaseCreated,
            service=first_service,
            subject=case.get("subject", ""),
            contact=Address(**case["contact"]) if case.get("contact") else None,
            email_id=case.get("first_email"),
            origin=case.get("origin") or "inbound",
            status="closed" if case.get("filed_unrouted") else "open",
        ),
    )
    reopened_by = {h.get("email_id"): h["at"] for h in history if h["what"] == "reopened"}
    for entry in history:
        at, what = entry["at"], entry["what"]
        make = stamp(f"{what}:{at.isoformat()}", at)
        if what == "closed":
            add(
                at,
                make(
                    c.CaseClosed,
                    service=service_at(at),
                    disposition=entry.get("disposition") or "",
                    agent_id=entry.get("agent_id"),
                    reason=entry.get("reason") or "",
                ),
            )
        elif what == "reopened":
            add(at, make(c.CaseReopened, service=service_at(at), email_id=entry.get("email_id")))
        elif what == "transferred":
            fields = {k: entry.get(k) for k in ("from_service", "to_service", "to_agent_id")}
            add(at, make(c.CaseTransferred, agent_id=entry.get("agent_id"), **fields))
        elif what == "service_changed":
            fields = {k: entry.get(k) for k in ("from_service", "to_service", "agent_id")}
            add(at, make(c.CaseServiceChanged, **fields))
    for email in emails:
        add_email(email, opened_at, reopened_by, service_at, stamp, add)
    for index, pause in enumerate(case.get("sla_pauses") or []):
        for pending, at in ((True, pause.get("from")), (False, pause.get("until"))):
            if at is None or (not pending and pause.get("ended_by")):
                continue  # open still, or ended by a closing or reopening: no event of its own
            make = stamp(f"status:{index}:{pending}", at)
            add(
                at,
                make(
                    c.CaseStatusChanged,
                    service=service_at(at),
                    from_status="",
                    to_status="",
                    pending=pending,
                    was_pending=not pending,
                    at=at,
                ),
            )
    return [event for _, _, event in sorted(timeline, key=lambda t: (t[0], t[1]))]


def add_email(
    email: Document,
    opened_at: datetime,
    reopened_by: dict[Any, datetime],
    service_at: Callable[[datetime], str],
    stamp: Callable[[str, datetime], Callable[..., Any]],
    add: Callable[[datetime, Message], None],
) -> None:
    """An inbound email attached, or an agent's outbound one (and its request)."""
    key = str(email["_id"])
    # published after the opening (or reopening) it caused, in the same write
    at: datetime = max(
        email.get("stored_at") or opened_at, opened_at, reopened_by.get(key, opened_at)
    )
    make = stamp(f"email:{key}", at)
    if email.get("direction") == "inbound":
        intake = email.get("intake") or {}
        add(
            at,
            make(
                c.CaseEmailAttached,
                email_id=key,
                direction="inbound",
                service=service_at(at),
                action=intake.get("action") or "attached",
                matched_by=intake.get("matched_by") or "",
                classification=email.get("classification") or "normal",
            ),
        )
        return
    kind = str(email.get("kind") or "")
    if email.get("automatic") or not email.get("agent_id"):
        return
    if kind in AGENT_OUTBOUND:
        add(
            at,
            make(
                c.CaseEmailAttached,
                email_id=key,
                direction="outbound",
                service=service_at(at),
                matched_by="agent",
            ),
        )
    if kind in (*AGENT_OUTBOUND, "new_outbound"):
        request = stamp(f"outbound:{key}", at)
        add(
            at,
            request(c.CaseOutboundRequested, email_id=key, kind=kind, agent_id=email["agent_id"]),
        )

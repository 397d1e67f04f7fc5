"""A scripted day of a small contact center (2 March 2026, UTC) as the services publish it,
and the figures a supervisor should read for it, computed by hand (see each comment).

support: first-response target 1 h; billing: 2 h.
* case 1 (support): opened 09:10, alice assigned 09:20, replies 09:40 (30 min, in target),
  ends and closes 09:45 (resolution 35 min).
* case 2 (support): opened 09:30, offered to bob 09:31, RONA 09:32; alice assigned 10:00,
  transfers it to billing 10:15; bob assigned 10:20, replies 11:00 (90 min, in billing's 2 h),
  ends and closes 11:05 (resolution 95 min).
* case 3 (support): opened 10:05, bob assigned 10:10, replies 11:30 (85 min: late, overdue),
  ends and closes 11:35 (resolution 90 min); reopened by the contact at 13:00, left unanswered
  (overdue at 14:00 by the timer).
* case 4 (billing): opened 12:00, never answered (overdue at 14:00 by the timer).
* case 5 (support): opened 15:00, "pending customer" 15:10 to 15:50, dana replies 16:20
  (80 min after the opening, 40 of them pending: 40 min, in target); left open.
* case 6 (support): opened 16:00, moved to billing by hand 16:30 (case.service_changed: a
  transfer out of support and into billing), dana replies 17:00 (60 min, in billing's 2 h);
  left open.
* case 7 (billing): opened 18:00, pending 18:10, closed while pending 18:30 (resolution
  30 min, the pause ends at the closing); reopened by the contact 19:00, pending 19:30 to 20:00,
  dana replies 21:20 (140 min, 30 pending: 110 min, in target); left open.
* campaign camp-1: three calls (two answered), r1 completed with "Sale", r2 skipped then
  rescheduled with "No answer", r3 closed (do not call).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from switchboard.contracts import Message
from switchboard.contracts.agents import AgentStateChanged
from switchboard.contracts.campaigns import (
    CallProgressed,
    DialRequested,
    RecordClosed,
    RecordCompleted,
    RecordDispositioned,
    RecordRescheduled,
    RecordSkipped,
)
from switchboard.contracts.cases import (
    CaseClosed,
    CaseCreated,
    CaseEmailAttached,
    CaseOutboundRequested,
    CaseReopened,
    CaseServiceChanged,
    CaseStatusChanged,
    CaseTransferred,
)
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    InteractionTransferred,
    OfferMade,
    OfferTimedOut,
)

DAY = datetime(2026, 3, 2, tzinfo=UTC)
TARGETS = {"support": 3600.0, "billing": 7200.0}


def at(clock: str) -> datetime:
    hours, minutes = clock.split(":")
    return DAY + timedelta(hours=int(hours), minutes=int(minutes))


def _case_events() -> list[Message]:
    def created(n: int, service: str, clock: str) -> list[Message]:
        return [
            CaseCreated(case_number=n, service=service, occurred_at=at(clock)),
            CaseEmailAttached(
                case_number=n,
                email_id=f"in-{n}",
                direction="inbound",
                service=service,
                action="created",
                occurred_at=at(clock),
            ),
        ]

    def reply(n: int, agent: str, service: str, clock: str) -> list[Message]:
        return [
            CaseOutboundRequested(
                case_number=n, email_id=f"out-{n}", agent_id=agent, occurred_at=at(clock)
            ),
            CaseEmailAttached(
                case_number=n,
                email_id=f"out-{n}",
                direction="outbound",
                service=service,
                occurred_at=at(clock),
            ),
        ]

    def assigned(interaction: str, agent: str, service: str, clock: str) -> Message:
        return InteractionAssigned(
            interaction_id=interaction,
            agent_id=agent,
            channel="email",
            service=service,
            occurred_at=at(clock),
        )

    def ended(interaction: str, agent: str, clock: str) -> Message:
        return InteractionEnded(
            interaction_id=interaction, agent_id=agent, channel="email", occurred_at=at(clock)
        )

    def closed(n: int, service: str, agent: str, clock: str) -> Message:
        return CaseClosed(
            case_number=n,
            service=service,
            disposition="Solved",
            agent_id=agent,
            occurred_at=at(clock),
        )

    def status(n: int, service: str, clock: str, to: str, pending: bool) -> Message:
        return CaseStatusChanged(
            case_number=n,
            service=service,
            from_status="open" if pending else to,
            to_status=to if pending else "open",
            pending=pending,
            was_pending=not pending,
            agent_id="dana",
            at=at(clock),
            occurred_at=at(clock),
        )

    return [
        *created(1, "support", "09:10"),
        assigned("case-1", "alice", "support", "09:20"),
        *reply(1, "alice", "support", "09:40"),
        ended("case-1", "alice", "09:45"),
        closed(1, "support", "alice", "09:45"),
        *created(2, "support", "09:30"),
        OfferMade(
            offer_id="offer-1",
            interaction_id="case-2",
            agent_id="bob",
            channel="email",
            service="support",
            expires_at=at("09:32"),
            occurred_at=at("09:31"),
        ),
        OfferTimedOut(
            offer_id="offer-1",
            interaction_id="case-2",
            agent_id="bob",
            channel="email",
            occurred_at=at("09:32"),
        ),
        assigned("case-2", "alice", "support", "10:00"),
        InteractionTransferred(
            interaction_id="case-2",
            from_agent_id="alice",
            channel="email",
            from_service="support",
            to_service="billing",
            occurred_at=at("10:15"),
        ),
        CaseTransferred(
            case_number=2,
            from_service="support",
            to_service="billing",
            agent_id="alice",
            occurred_at=at("10:15"),
        ),
        assigned("case-2.2", "bob", "billing", "10:20"),
        *reply(2, "bob", "billing", "11:00"),
        ended("case-2.2", "bob", "11:05"),
        closed(2, "billing", "bob", "11:05"),
        *created(3, "support", "10:05"),
        assigned("case-3", "bob", "support", "10:10"),
        *reply(3, "bob", "support", "11:30"),
        ended("case-3", "bob", "11:35"),
        closed(3, "support", "bob", "11:35"),
        CaseReopened(case_number=3, service="support", email_id="in-3b", occurred_at=at("13:00")),
        CaseEmailAttached(
            case_number=3,
            email_id="in-3b",
            direction="inbound",
            service="support",
            action="reopened",
            occurred_at=at("13:00"),
        ),
        *created(4, "billing", "12:00"),
        *created(5, "support", "15:00"),
        status(5, "support", "15:10", "pending customer", True),
        status(5, "support", "15:50", "pending customer", False),
        *reply(5, "dana", "support", "16:20"),
        *created(6, "support", "16:00"),
        CaseServiceChanged(
            case_number=6,
            from_service="support",
            to_service="billing",
            agent_id="dana",
            occurred_at=at("16:30"),
        ),
        *reply(6, "dana", "billing", "17:00"),
        *created(7, "billing", "18:00"),
        status(7, "billing", "18:10", "pending third party", True),
        closed(7, "billing", "dana", "18:30"),
        CaseReopened(case_number=7, service="billing", email_id="in-7b", occurred_at=at("19:00")),
        CaseEmailAttached(
            case_number=7,
            email_id="in-7b",
            direction="inbound",
            service="billing",
            action="reopened",
            occurred_at=at("19:00"),
        ),
        status(7, "billing", "19:30", "pending customer", True),
        status(7, "billing", "20:00", "pending customer", False),
        *reply(7, "dana", "billing", "21:20"),
    ]


def _states(agent: str, changes: list[tuple[str, str, str]]) -> list[Message]:
    events: list[Message] = []
    previous = "logged_out"
    for sequence, (clock, state, reason) in enumerate(changes, start=1):
        events.append(
            AgentStateChanged(
                agent_id=agent,
                previous=previous,
                state=state,
                reason=reason,
                actor=agent,
                sequence=sequence,
                changed_at=at(clock),
                occurred_at=at(clock),
            )
        )
        previous = state
    return events


def _agent_events() -> list[Message]:
    alice = [
        ("09:00", "ready", ""),
        ("09:20", "busy", ""),
        ("09:45", "wrap_up", ""),
        ("09:50", "ready", ""),
        ("10:00", "busy", ""),
        ("10:15", "ready", ""),
        ("12:00", "not_ready", "Lunch"),
        ("13:00", "logged_out", ""),
    ]
    bob = [
        ("09:00", "ready", ""),
        ("09:32", "rona", ""),
        ("09:40", "ready", ""),
        ("10:10", "busy", ""),
        ("12:00", "logged_out", ""),
    ]
    return [*_states("alice", alice), *_states("bob", bob)]


def _campaign_events() -> list[Message]:
    def record(model: type[Message], record_id: str, clock: str, **fields: Any) -> Message:
        return model(record_id=record_id, campaign_id="camp-1", occurred_at=at(clock), **fields)

    calls: list[Message] = []
    for call_id, record_id, clock, status in (
        ("call-1", "r1", "09:00", "answered"),
        ("call-2", "r2", "09:10", "no_answer"),
        ("call-3", "r1", "09:20", "answered"),
    ):
        calls.append(
            DialRequested(
                call_id=call_id,
                record_id=record_id,
                campaign_id="camp-1",
                agent_id="carol",
                number="+15550100",
                occurred_at=at(clock),
            )
        )
        calls.append(CallProgressed(call_id=call_id, status=status, occurred_at=at(clock)))
    return [
        *calls,
        record(RecordDispositioned, "r1", "09:05", disposition="Sale", state="working"),
        record(RecordCompleted, "r1", "09:25", disposition="Sale", state="completed"),
        record(RecordSkipped, "r2", "09:12", state="ready"),
        record(RecordDispositioned, "r2", "09:15", disposition="No answer", state="working"),
        record(RecordRescheduled, "r2", "09:16", state="scheduled"),
        record(RecordClosed, "r3", "09:30", reason="dnc", state="closed"),
    ]


def scripted_day() -> list[Message]:
    """Every event of the day, each with its own id."""
    events = [*_case_events(), *_agent_events(), *_campaign_events()]
    return [e.model_copy(update={"message_id": uuid.uuid4()}) for e in events]


# -- the figures, by hand ------------------------------------------------------------------------

SUPPORT_DAY = {
    "opened": 5,  # cases 1, 2, 3, 5, 6
    "closed": 2,  # cases 1 and 3 (case 2 closed in billing)
    "reopened": 1,  # case 3
    "emails_in": 6,  # in-1, in-2, in-3, in-3b, in-5, in-6
    "emails_out": 3,  # out-1, out-3, out-5 (out-2 and out-6 after their moves, in billing)
    "first_responses": 3,
    "first_response_p50_seconds": 2400.0,  # of 30, 40 (case 5, less 40 min pending), 85 min
    "first_response_p90_seconds": 5100.0,  # case 3: 85 min
    "resolutions": 2,
    "resolution_p50_seconds": 2100.0,  # case 1: 35 min
    "resolution_p90_seconds": 5400.0,  # case 3: 90 min
    "answered_within_target": 2,  # cases 1 and 5
    "service_level": 2 / 3,
    "overdue": 2,  # case 3 answered late; case 3 reopened and unanswered past 14:00
    # 5 opened + 1 reopened - 2 closed - case 2 transferred out - case 6 moved out
    "backlog_at_end": 2,
    "transfers_in": 0,
    "transfers_out": 2,  # case 2 (transfer), case 6 (service changed)
    "rona": 1,  # offer-1 to bob
}
BILLING_DAY = {
    "opened": 2,  # cases 4 and 7
    "closed": 2,  # cases 2 and 7
    "reopened": 1,  # case 7
    "emails_in": 3,  # in-4, in-7, in-7b
    "emails_out": 3,  # out-2, out-6, out-7
    "first_responses": 3,
    "first_response_p50_seconds": 5400.0,  # of 60 (case 6), 90 (case 2), 110 (case 7) min
    "first_response_p90_seconds": 6600.0,  # case 7: 19:00 -> 21:20 less 30 min pending
    "resolutions": 2,
    "resolution_p50_seconds": 1800.0,  # case 7: 18:00 -> 18:30
    "resolution_p90_seconds": 5700.0,  # case 2: 09:30 -> 11:05
    "answered_within_target": 3,
    "service_level": 1.0,
    "overdue": 1,  # case 4, due 14:00
    # +1 case 2 transferred in -1 closed, +1 case 4, +1 case 6 moved in, +1 -1 +1 case 7
    "backlog_at_end": 3,
    "transfers_in": 2,
    "transfers_out": 0,
    "rona": 0,
}
SUPPORT_HOURS = {
    # hour: (opened, closed, emails_in, emails_out, backlog_at_end, transfers_out)
    9: (2, 1, 2, 1, 1, 0),
    10: (1, 0, 1, 0, 1, 1),
    11: (0, 1, 0, 1, 0, 0),
    13: (0, 0, 1, 0, 1, 0),
    15: (1, 0, 1, 0, 2, 0),
    16: (1, 0, 1, 1, 2, 1),  # case 6 opened and moved out; out-5
}
SUPPORT_BACKLOG_AT_END = 2
ALICE = {
    "handled": 2,  # case-1 (25 min), case-2 until the transfer (15 min)
    "replies": 1,
    "average_handle_seconds": 1200.0,
    "ready_seconds": 8100.0,  # 09:00-09:20, 09:50-10:00, 10:15-12:00
    "not_ready_seconds": {"Lunch": 3600.0},
    "busy_seconds": 2400.0,  # 09:20-09:45, 10:00-10:15
    "wrap_up_seconds": 300.0,
    "rona_seconds": 0.0,
    "rona": 0,
    "occupancy": 0.25,  # 2700 / 10800
}
BOB = {
    "handled": 2,  # case-2.2 (45 min), case-3 (85 min)
    "replies": 2,
    "average_handle_seconds": 3900.0,
    "ready_seconds": 3720.0,  # 09:00-09:32, 09:40-10:10
    "not_ready_seconds": {},
    "busy_seconds": 6600.0,  # 10:10-12:00
    "wrap_up_seconds": 0.0,
    "rona_seconds": 480.0,
    "rona": 1,
    "occupancy": 6600.0 / 10320.0,
}
CAMPAIGN = {
    "campaign_id": "camp-1",
    "records": 3,
    "records_by_status": {"closed": 1, "completed": 1, "scheduled": 1},
    "attempts": 3,
    "contacts": 2,
    "skips": 1,
    "dispositions": {"No answer": 1, "Sale": 1},
    "completed": 1,
    "completion": 2 / 3,
}

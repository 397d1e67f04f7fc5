"""What each event adds to the figures: pure functions from facts and an event to a decision.

Every figure is a sum kept in an hourly bucket (service x hour, agent x hour) or a campaign's
bucket. A :class:`Bump` names the bucket, the amounts, and a *natural key* (``opened:<case>``,
``frt:<case>:<round>`` ...): the store applies a key to a bucket once, so an event delivered
twice, or replayed by a rebuild, counts once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import quote, unquote

from switchboard.reporting.pauses import (
    Pause,
    StatusMark,
    clock_due,
    paused_seconds,
    pauses_of,
    pauses_until,
)

BucketKind = Literal["service", "agent", "campaign"]
HOUR = timedelta(hours=1)


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def state_field(state: str, reason: str = "") -> str:
    """A time-in-state name safe as a MongoDB field (reasons may hold dots or dollars)."""
    name = f"not_ready:{reason}" if state == "not_ready" else state
    return quote(name, safe=" :").replace(".", "%2E")


def state_name(field_name: str) -> str:
    return unquote(field_name)


@dataclass(frozen=True)
class Bump:
    """Amounts added once (per ``key``) to one bucket."""

    kind: BucketKind
    subject: str
    hour: datetime | None
    key: str
    counts: Mapping[str, int] = field(default_factory=dict)
    seconds: Mapping[str, float] = field(default_factory=dict)
    samples: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """Each service's first-response target (seconds); ``default_target`` for the others."""

    targets: Mapping[str, float] = field(default_factory=dict)
    default_target: float | None = None

    def target(self, service: str) -> float | None:
        return self.targets.get(service, self.default_target)


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseFacts:
    """What reporting remembers of a case: its service and its current round (opening)."""

    case_number: int
    service: str
    status: Literal["open", "closed"] = "open"
    round: int = 1
    opened_at: datetime | None = None
    responded_at: datetime | None = None
    closed_at: datetime | None = None
    overdue: bool = False
    earlier: tuple[EarlierRound, ...] = ()
    marks: tuple[StatusMark, ...] = ()
    """The round's changes to and away from a pending status (and its closing), any order."""

    @property
    def pauses(self) -> tuple[Pause, ...]:
        """The round's pending intervals (the last one open while the case is pending)."""
        if self.closed_at is not None:
            return pauses_until(self.marks, self.closed_at)
        return pauses_of(self.marks)


@dataclass(frozen=True)
class EarlierRound:
    """A round closed before the case was reopened (an answer to it may still be folded)."""

    round: int
    opened_at: datetime
    closed_at: datetime
    responded_at: datetime | None = None
    pauses: tuple[Pause, ...] = ()


class NotYetKnown(Exception):
    """An event overtook the one it follows (they travel on different queues): try it later."""


@dataclass(frozen=True)
class SlaTimer:
    """Arm (``due`` set) or clear (``due`` None) the first-response timer of a case."""

    key: str
    due: datetime | None
    service: str = ""
    round: int = 1
    opened_at: datetime | None = None
    target_seconds: float = 0.0


@dataclass(frozen=True)
class CaseStep:
    facts: CaseFacts | None
    bumps: tuple[Bump, ...] = ()
    timer: SlaTimer | None = None


def sla_key(case_number: int) -> str:
    return f"sla:{case_number}"


def _service_bump(service: str, at: datetime, key: str, **counts: int) -> Bump:
    return Bump("service", service, hour_of(at), key, counts=counts)


def _arm(facts: CaseFacts, policy: Policy) -> SlaTimer | None:
    target = policy.target(facts.service)
    if target is None or facts.opened_at is None:
        return None
    due = clock_due(facts.opened_at, target, facts.pauses)
    if facts.status != "open" or facts.responded_at is not None or due is None:
        return SlaTimer(sla_key(facts.case_number), None)  # answered, closed or paused
    return SlaTimer(
        sla_key(facts.case_number),
        due,
        facts.service,
        facts.round,
        facts.opened_at,
        target,
    )


def _known(facts: CaseFacts | None, number: int) -> CaseFacts:
    if facts is None:
        raise NotYetKnown(
            f"case {number} is unknown to reporting: its case.created has not been folded "
            "(if the case is older than reporting's journal, this event cannot be counted)"
        )
    return facts


def case_opened(
    facts: CaseFacts | None, number: int, service: str, at: datetime, policy: Policy
) -> CaseStep:
    """``case.created``: one more case opened and open in its service; the clock starts."""
    if facts is not None:
        return CaseStep(None)
    new = CaseFacts(number, service, "open", 1, at)
    bump = _service_bump(service, at, f"opened:{number}", opened=1, backlog=1)
    return CaseStep(new, (bump,), _arm(new, policy))


def case_reopened(facts: CaseFacts | None, number: int, at: datetime, policy: Policy) -> CaseStep:
    """``case.reopened``: a new round; the first-response clock starts again."""
    known = _known(facts, number)
    if known.status == "open":
        if known.opened_at == at:
            return CaseStep(None)  # this reopening, already folded
        raise NotYetKnown(f"case {number} reopened before its closing was folded")
    past = EarlierRound(
        known.round,
        known.opened_at or at,
        known.closed_at or at,
        known.responded_at,
        pauses_until(known.marks, known.closed_at or at),
    )
    new = replace(
        known,
        earlier=(*known.earlier, past),
        status="open",
        round=known.round + 1,
        opened_at=at,
        responded_at=None,
        closed_at=None,
        overdue=False,
        # a change of this round folded before the closing of the last one
        marks=tuple(m for m in known.marks if m.at >= at),
    )
    key = f"reopened:{number}:{new.round}"
    bump = _service_bump(known.service, at, key, reopened=1, backlog=1)
    return CaseStep(new, (bump,), _arm(new, policy))


def _overdue_bump(service: str, number: int, round_: int, due: datetime) -> Bump:
    return _service_bump(service, due, f"overdue:{number}:{round_}", overdue=1)


def first_response(
    facts: CaseFacts | None, number: int, service: str, at: datetime, policy: Policy
) -> CaseStep:
    """An outbound email answering the round: its first response time is known."""
    known = _known(facts, number)
    if known.opened_at is not None and at < known.opened_at:
        return _earlier_response(known, number, service or known.service, at, policy)
    if known.opened_at is None or known.responded_at is not None:
        return CaseStep(None)
    if known.closed_at is not None and at > known.closed_at:
        return CaseStep(None)
    service = service or known.service
    bumps = _response_bumps(service, number, known.round, known.opened_at, at, policy, known.pauses)
    within = len(bumps) == 1
    new = replace(known, responded_at=at, overdue=known.overdue or not within)
    return CaseStep(new, bumps, SlaTimer(sla_key(number), None))


def _response_bumps(
    service: str,
    number: int,
    round_: int,
    opened_at: datetime,
    at: datetime,
    policy: Policy,
    pauses: tuple[Pause, ...],
) -> tuple[Bump, ...]:
    """The first response's time: from the opening to ``at``, less the time spent pending."""
    waited = (at - opened_at).total_seconds() - paused_seconds(pauses, opened_at, at)
    target = policy.target(service)
    within = target is None or waited <= target
    first = Bump(
        "service",
        service,
        hour_of(at),
        f"frt:{number}:{round_}",
        counts={"first_responses": 1, "answered_within_target": int(within)},
        samples={"first_response": waited},
    )
    due = clock_due(opened_at, target, pauses) if target is not None else None
    if target is None or within or due is None:
        return (first,)
    return first, _overdue_bump(service, number, round_, due)


def _earlier_response(
    facts: CaseFacts, number: int, service: str, at: datetime, policy: Policy
) -> CaseStep:
    """An answer folded after the case was closed and reopened: it answers an earlier round."""
    for index, past in enumerate(facts.earlier):
        if past.opened_at <= at <= past.closed_at and past.responded_at is None:
            bumps = _response_bumps(
                service, number, past.round, past.opened_at, at, policy, past.pauses
            )
            earlier = list(facts.earlier)
            earlier[index] = replace(past, responded_at=at)
            return CaseStep(replace(facts, earlier=tuple(earlier)), bumps)
    return CaseStep(None)


def case_closed(
    facts: CaseFacts | None, number: int, service: str, at: datetime, policy: Policy
) -> CaseStep:
    """``case.closed``: closed in its service, out of the backlog, resolution time known."""
    known = _known(facts, number)
    if known.status == "closed" or known.opened_at is None:
        return CaseStep(None)
    service = service or known.service
    ended = _with_mark(known, at, False)  # a pending case's pause ends at its closing
    pauses = pauses_until(ended.marks, at)
    resolution = max((at - known.opened_at).total_seconds(), 0.0)
    bumps = [
        Bump(
            "service",
            service,
            hour_of(at),
            f"closed:{number}:{known.round}",
            counts={"closed": 1, "backlog": -1, "resolutions": 1},
            samples={"resolution": resolution},
        )
    ]
    target = policy.target(service)
    due = clock_due(known.opened_at, target, pauses) if target is not None else None
    if known.responded_at is None and due is not None and at > due:
        bumps.append(_overdue_bump(service, number, known.round, due))
    new = replace(ended, status="closed", closed_at=at)
    return CaseStep(new, tuple(bumps), SlaTimer(sla_key(number), None))


def case_transferred(
    facts: CaseFacts | None,
    number: int,
    from_service: str,
    to_service: str,
    at: datetime,
    event_key: str,
    policy: Policy,
) -> CaseStep:
    """``case.transferred``: counted out of one service and into the other; if the case was
    open at that moment its place in the backlog moves (whatever was folded first)."""
    known = _known(facts, number)
    source = from_service or known.service
    target = to_service or source
    open_then = (known.opened_at is None or known.opened_at <= at) and (
        known.closed_at is None or known.closed_at > at
    )
    moves = int(target != source and open_then)
    out = _service_bump(source, at, f"transfer-out:{event_key}", transfers_out=1, backlog=-moves)
    into = _service_bump(target, at, f"transfer-in:{event_key}", transfers_in=1, backlog=moves)
    new = replace(known, service=target)
    return CaseStep(new, (out, into), _arm(new, policy) if moves else None)


def _with_mark(facts: CaseFacts, at: datetime, pending: bool) -> CaseFacts:
    mark = StatusMark(at, pending)
    return facts if mark in facts.marks else replace(facts, marks=(*facts.marks, mark))


def status_changed(
    facts: CaseFacts | None, number: int, pending: bool, at: datetime, policy: Policy
) -> CaseStep:
    """``case.status_changed``: a change to a "pending" status stops the round's
    first-response clock, the next change away from one starts it again; the SLA timer moves
    with it. A change of an earlier round (or of a closed case) changes nothing."""
    known = _known(facts, number)
    if known.status == "closed" and known.closed_at is not None and at > known.closed_at:
        raise NotYetKnown(f"case {number} changed status after its closing: not yet reopened")
    if known.status != "open" or known.opened_at is None or at < known.opened_at:
        return CaseStep(None)
    new = _with_mark(known, at, pending)
    if new == known:
        return CaseStep(None)
    return CaseStep(new, (), _arm(new, policy))


def sla_passed(
    facts: CaseFacts | None, timer_round: int, due: datetime, policy: Policy
) -> CaseStep:
    """The first-response timer fired: mark the case overdue once, if still unanswered and
    still due then (a pending status since may have stopped or pushed back its clock)."""
    if (
        facts is None
        or facts.status != "open"
        or facts.round != timer_round
        or facts.responded_at is not None
        or facts.overdue
        or facts.opened_at is None
    ):
        return CaseStep(None)
    target = policy.target(facts.service)
    now_due = clock_due(facts.opened_at, target, facts.pauses) if target is not None else None
    if now_due is None or now_due > due:
        return CaseStep(None)
    bump = _overdue_bump(facts.service, facts.case_number, facts.round, due)
    return CaseStep(replace(facts, overdue=True), (bump,))


# ---------------------------------------------------------------------------------------------
# Agents
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentCursor:
    """An agent's latest known state, from which the next change closes an interval."""

    agent_id: str
    state: str
    reason: str
    since: datetime
    sequence: int


def split_by_hour(start: datetime, end: datetime) -> list[tuple[datetime, float]]:
    """``[start, end)`` cut at each whole hour: (hour, seconds in it)."""
    pieces: list[tuple[datetime, float]] = []
    at = start
    while at < end:
        hour = hour_of(at)
        stop = min(hour + HOUR, end)
        pieces.append((hour, (stop - at).total_seconds()))
        at = stop
    return pieces


def time_in_state(earlier: AgentCursor, later: AgentCursor) -> tuple[Bump, ...]:
    """The time ``earlier`` lasted, until the change after it (``later``), in hourly buckets.

    Agent-state numbers an agent's changes one by one, so change ``n`` lasts until change
    ``n + 1``, whichever of the two was folded first.
    """
    if later.sequence != earlier.sequence + 1 or earlier.state == "logged_out":
        return ()
    name = state_field(earlier.state, earlier.reason)
    key = f"state:{earlier.agent_id}:{earlier.sequence}"
    return tuple(
        Bump("agent", earlier.agent_id, hour, key, seconds={name: seconds})
        for hour, seconds in split_by_hour(earlier.since, later.since)
    )


def handled(agent_id: str, interaction_id: str, assigned_at: datetime, ended_at: datetime) -> Bump:
    """One interaction handled: accept to final disposition or transfer."""
    seconds = max((ended_at - assigned_at).total_seconds(), 0.0)
    return Bump(
        "agent",
        agent_id,
        hour_of(ended_at),
        f"handled:{interaction_id}:{assigned_at.isoformat()}",
        counts={"handled": 1},
        seconds={"handle": seconds},
    )


def rona(agent_id: str, service: str | None, offer_id: str, at: datetime) -> tuple[Bump, ...]:
    """An offer not answered in time: the agent's RONA and the service's."""
    key = f"rona:{offer_id}"
    bumps = [Bump("agent", agent_id, hour_of(at), key, counts={"rona": 1})]
    if service:
        bumps.append(_service_bump(service, at, key, rona=1))
    return tuple(bumps)


def reply(agent_id: str, at: datetime, key: str) -> Bump:
    return Bump("agent", agent_id, hour_of(at), f"reply:{key}", counts={"replies": 1})


# ---------------------------------------------------------------------------------------------
# Campaigns
# ---------------------------------------------------------------------------------------------


def campaign_bump(campaign_id: str, key: str, **counts: int) -> Bump:
    return Bump("campaign", campaign_id, None, key, counts=counts)


def disposition_field(name: str) -> str:
    return "disposition:" + quote(name, safe=" ").replace(".", "%2E")

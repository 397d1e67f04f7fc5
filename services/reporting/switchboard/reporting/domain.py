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
    overdue: bool = False


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
    return SlaTimer(
        sla_key(facts.case_number),
        facts.opened_at + timedelta(seconds=target),
        facts.service,
        facts.round,
        facts.opened_at,
        target,
    )


def case_opened(
    facts: CaseFacts | None, number: int, service: str, at: datetime, policy: Policy
) -> CaseStep:
    """``case.created``: one more case opened and open in its service; the clock starts."""
    if facts is not None:
        return CaseStep(None)
    new = CaseFacts(number, service, "open", 1, at)
    bump = _service_bump(service, at, f"opened:{number}", opened=1, backlog=1)
    return CaseStep(new, (bump,), _arm(new, policy))


def case_reopened(facts: CaseFacts | None, at: datetime, policy: Policy) -> CaseStep:
    """``case.reopened``: a new round; the first-response clock starts again."""
    if facts is None or facts.status == "open":
        return CaseStep(None)
    new = replace(
        facts, status="open", round=facts.round + 1, opened_at=at, responded_at=None, overdue=False
    )
    key = f"reopened:{facts.case_number}:{new.round}"
    bump = _service_bump(facts.service, at, key, reopened=1, backlog=1)
    return CaseStep(new, (bump,), _arm(new, policy))


def _overdue_bump(facts: CaseFacts, due: datetime) -> Bump:
    return _service_bump(
        facts.service, due, f"overdue:{facts.case_number}:{facts.round}", overdue=1
    )


def first_response(facts: CaseFacts | None, at: datetime, policy: Policy) -> CaseStep:
    """An outbound email on an open, unanswered round: its first response time is known."""
    if facts is None or facts.status != "open" or facts.opened_at is None:
        return CaseStep(None)
    if facts.responded_at is not None:
        return CaseStep(None)
    waited = max((at - facts.opened_at).total_seconds(), 0.0)
    target = policy.target(facts.service)
    within = target is None or waited <= target
    bumps = [
        Bump(
            "service",
            facts.service,
            hour_of(at),
            f"frt:{facts.case_number}:{facts.round}",
            counts={"first_responses": 1, "answered_within_target": int(within)},
            samples={"first_response": waited},
        )
    ]
    if target is not None and not within:
        bumps.append(_overdue_bump(facts, facts.opened_at + timedelta(seconds=target)))
    new = replace(facts, responded_at=at, overdue=facts.overdue or not within)
    return CaseStep(new, tuple(bumps), SlaTimer(sla_key(facts.case_number), None))


def case_closed(
    facts: CaseFacts | None, number: int, service: str, at: datetime, policy: Policy
) -> CaseStep:
    """``case.closed``: closed in its service, out of the backlog, resolution time known."""
    if facts is None:
        bump = _service_bump(service, at, f"closed:{number}:?", closed=1)
        return CaseStep(None, (bump,))
    if facts.status == "closed":
        return CaseStep(None)
    key = f"closed:{number}:{facts.round}"
    bumps = []
    if facts.opened_at is not None:
        resolution = max((at - facts.opened_at).total_seconds(), 0.0)
        bumps.append(
            Bump(
                "service",
                facts.service,
                hour_of(at),
                key,
                counts={"closed": 1, "backlog": -1, "resolutions": 1},
                samples={"resolution": resolution},
            )
        )
        target = policy.target(facts.service)
        due = facts.opened_at + timedelta(seconds=target) if target is not None else None
        if facts.responded_at is None and due is not None and at > due:
            bumps.append(_overdue_bump(facts, due))
    else:
        bumps.append(_service_bump(facts.service, at, key, closed=1, backlog=-1))
    new = replace(facts, status="closed")
    return CaseStep(new, tuple(bumps), SlaTimer(sla_key(number), None))


def case_transferred(
    facts: CaseFacts | None, to_service: str, at: datetime, event_key: str
) -> CaseStep:
    """``case.transferred``: counted out of one service and into the other, backlog moves."""
    if facts is None:
        return CaseStep(None)
    target = to_service or facts.service
    moves = target != facts.service and facts.status == "open"
    out = _service_bump(
        facts.service, at, f"transfer:{event_key}", transfers_out=1, backlog=-int(moves)
    )
    into = _service_bump(target, at, f"transfer:{event_key}", transfers_in=1, backlog=int(moves))
    return CaseStep(replace(facts, service=target), (out, into))


def sla_passed(facts: CaseFacts | None, timer_round: int, due: datetime) -> CaseStep:
    """The first-response timer fired: mark the case overdue once, if still unanswered."""
    if (
        facts is None
        or facts.status != "open"
        or facts.round != timer_round
        or facts.responded_at is not None
        or facts.overdue
    ):
        return CaseStep(None)
    return CaseStep(replace(facts, overdue=True), (_overdue_bump(facts, due),))


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


def state_changed(
    cursor: AgentCursor | None,
    agent_id: str,
    state: str,
    reason: str,
    at: datetime,
    sequence: int,
) -> tuple[AgentCursor | None, tuple[Bump, ...]]:
    """The interval the previous state lasted, in the agent's hourly buckets."""
    if cursor is not None and sequence <= cursor.sequence:
        return None, ()
    bumps: tuple[Bump, ...] = ()
    if cursor is not None and cursor.state != "logged_out":
        name = state_field(cursor.state, cursor.reason)
        key = f"state:{agent_id}:{cursor.sequence}"
        bumps = tuple(
            Bump("agent", agent_id, hour, key, seconds={name: seconds})
            for hour, seconds in split_by_hour(cursor.since, at)
        )
    return AgentCursor(agent_id, state, reason, at, sequence), bumps


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

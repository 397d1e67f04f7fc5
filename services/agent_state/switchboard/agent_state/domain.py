"""The agent state machine: plain data and functions, no I/O.

Every rule lives here. Each operation takes the agent as it is now and returns a
:class:`Decision`: the agent as it must be stored, and the state change to announce (or none).
An operation that must not happen raises :class:`TransitionRefused` and changes nothing.

States: ``logged_out``, ``not_ready`` (with a reason), ``ready``, ``busy``, ``wrap_up`` (After
Call Work) and ``rona`` (an offer was not answered). Invariants (checked by
:func:`invariant_violations`, exercised by the property test):

* the agent is ``busy`` exactly when they hold live work;
* a pending change (Not Ready or RONA asked while busy) exists only while ``busy`` or ``wrap_up``;
* a wrap-up deadline exists only in ``wrap_up``; a logged-out agent has no timers;
* every announced change increases the agent's sequence by exactly one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

State = Literal["logged_out", "not_ready", "ready", "busy", "wrap_up", "rona"]
Pending = Literal["not_ready", "rona"]
Role = Literal["agent", "supervisor", "system"]

STATES: tuple[State, ...] = ("logged_out", "not_ready", "ready", "busy", "wrap_up", "rona")
LABELS: dict[State, str] = {
    "logged_out": "Logged out",
    "not_ready": "Not Ready",
    "ready": "Ready",
    "busy": "Busy",
    "wrap_up": "After Call Work",
    "rona": "RONA",
}
ENDED_MEMORY = 32
"""How many ended interaction ids an agent remembers, so a late assignment is not revived."""

SYSTEM = "system"


class TransitionRefused(Exception):
    """This change must not happen; nothing was changed."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Actor:
    id: str
    role: Role

    @classmethod
    def system(cls) -> Actor:
        return cls(SYSTEM, "system")


@dataclass(frozen=True)
class Policy:
    """The configured rules (from settings)."""

    not_ready_reasons: tuple[str, ...] = ("Break", "Lunch", "Meeting", "Training")
    wrap_up_max: timedelta | None = timedelta(seconds=120)
    wrap_up_timeout_state: Literal["ready", "not_ready"] = "ready"
    wrap_up_timeout_reason: str = "wrap-up time exceeded"
    heartbeat_timeout: timedelta = timedelta(seconds=30)
    presence_logout_after: timedelta = timedelta(seconds=300)
    connection_lost_reason: str = "connection lost"
    login_reason: str = "logged in"


@dataclass(frozen=True)
class LiveWork:
    interaction_id: str
    channel: str
    since: datetime


@dataclass(frozen=True)
class Agent:
    """One agent's state, as stored (the storage version is kept by the store, not here)."""

    agent_id: str
    state: State = "logged_out"
    reason: str = ""
    since: datetime | None = None
    sequence: int = 0
    pending: Pending | None = None
    pending_reason: str = ""
    wrap_up_owed: bool = False
    live: tuple[LiveWork, ...] = ()
    ended: tuple[str, ...] = ()
    wrap_up_due: datetime | None = None
    last_seen: datetime | None = None
    presence_due: datetime | None = None
    connection_lost: bool = False

    def live_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.live:
            counts[item.channel] = counts.get(item.channel, 0) + 1
        return counts

    def holds(self, interaction_id: str) -> bool:
        return any(item.interaction_id == interaction_id for item in self.live)


@dataclass(frozen=True)
class Change:
    """What is announced as ``agent.state_changed``."""

    agent_id: str
    previous: State
    state: State
    reason: str
    actor: str
    sequence: int
    at: datetime
    pending: Pending | None = None
    live: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    agent: Agent
    change: Change | None = None

    @property
    def changed(self) -> bool:
        return self.change is not None


# --- helpers ----------------------------------------------------------------------------------


def _refuse(code: str, message: str, field: str | None = None) -> TransitionRefused:
    return TransitionRefused(code, message, field=field)


def _announce(before: Agent, after: Agent, reason: str, actor: Actor, now: datetime) -> Decision:
    """Bump the sequence of ``after`` and describe the change from ``before``."""
    sequence = before.sequence + 1
    after = replace(after, sequence=sequence)
    return Decision(
        after,
        Change(
            agent_id=after.agent_id,
            previous=before.state,
            state=after.state,
            reason=reason,
            actor=actor.id,
            sequence=sequence,
            at=now,
            pending=after.pending,
            live=after.live_counts(),
        ),
    )


def _move(
    agent: Agent,
    state: State,
    reason: str,
    actor: Actor,
    now: datetime,
    policy: Policy,
    *,
    keep_pending: bool = False,
) -> Decision:
    """Enter ``state`` (a real state change, or a new reason for the same state)."""
    wrap_up_due = None
    if state == "wrap_up" and policy.wrap_up_max is not None:
        wrap_up_due = now + policy.wrap_up_max
    after = replace(
        agent,
        state=state,
        reason=reason,
        since=now if state != agent.state else agent.since,
        pending=agent.pending if keep_pending else None,
        pending_reason=agent.pending_reason if keep_pending else "",
        wrap_up_owed=False if state != "busy" else agent.wrap_up_owed,
        wrap_up_due=wrap_up_due,
    )
    if state == "logged_out":
        after = replace(
            after,
            live=(),
            ended=_remember(agent.ended, (w.interaction_id for w in agent.live)),
            presence_due=None,
            connection_lost=False,
        )
    return _announce(agent, after, reason, actor, now)


def _mark_pending(
    agent: Agent, pending: Pending | None, reason: str, actor: Actor, now: datetime
) -> Decision:
    """Change what follows the live work, without leaving the current state."""
    after = replace(agent, pending=pending, pending_reason=reason if pending else "")
    return _announce(agent, after, reason, actor, now)


def _remember(ended: tuple[str, ...], ids: Iterable[str]) -> tuple[str, ...]:
    merged = list(ended)
    for interaction_id in ids:
        if interaction_id in merged:
            merged.remove(interaction_id)
        merged.append(interaction_id)
    return tuple(merged[-ENDED_MEMORY:])


def _logged_in(agent: Agent) -> None:
    if agent.state == "logged_out":
        raise _refuse("logged_out", f"agent {agent.agent_id} is logged out: log in first")


def _check_reason(reason: str, policy: Policy) -> None:
    if reason not in policy.not_ready_reasons:
        allowed = ", ".join(policy.not_ready_reasons)
        raise _refuse(
            "unknown_reason", f"Not Ready reason {reason!r} is not one of: {allowed}", "reason"
        )


def _after_work(
    agent: Agent, wrap_up: bool, reason: str, actor: Actor, now: datetime, policy: Policy
) -> Decision:
    """The last live work is gone: wrap-up, a pending change, or Ready."""
    if wrap_up or agent.wrap_up_owed:
        return _move(agent, "wrap_up", reason, actor, now, policy, keep_pending=True)
    return _leave_work(agent, reason, actor, now, policy)


def _leave_work(agent: Agent, reason: str, actor: Actor, now: datetime, policy: Policy) -> Decision:
    """Apply a pending change, else become Ready."""
    if agent.pending == "not_ready":
        return _move(agent, "not_ready", agent.pending_reason, actor, now, policy)
    if agent.pending == "rona":
        return _move(agent, "rona", agent.pending_reason, actor, now, policy)
    return _move(agent, "ready", reason, actor, now, policy)


# --- what people ask --------------------------------------------------------------------------


def log_in(
    agent: Agent,
    actor: Actor,
    now: datetime,
    policy: Policy,
    *,
    initial: Literal["not_ready", "ready"] = "not_ready",
    reason: str = "",
) -> Decision:
    if agent.state != "logged_out":
        raise _refuse(
            "already_logged_in", f"agent {agent.agent_id} is already logged in ({agent.state})"
        )
    if initial == "not_ready" and reason:
        _check_reason(reason, policy)
    text = reason if initial == "not_ready" and reason else policy.login_reason
    decision = _move(agent, initial, text, actor, now, policy)
    after = replace(decision.agent, last_seen=now, presence_due=now + policy.heartbeat_timeout)
    return replace(decision, agent=after)


def log_out(
    agent: Agent, actor: Actor, now: datetime, policy: Policy, *, reason: str = ""
) -> Decision:
    _logged_in(agent)
    if agent.state == "busy" and actor.role == "agent":
        raise _refuse(
            "busy",
            "you still hold live work: finish or transfer it before logging out "
            "(a supervisor can log you out)",
        )
    return _move(agent, "logged_out", reason or "logged out", actor, now, policy)


def set_ready(agent: Agent, actor: Actor, now: datetime, policy: Policy) -> Decision:
    _logged_in(agent)
    if agent.state == "ready":
        raise _refuse("already_ready", f"agent {agent.agent_id} is already Ready")
    if agent.state == "busy":
        if agent.pending is None:
            raise _refuse("busy", "the agent is Busy with live work and becomes Ready when it ends")
        return _mark_pending(agent, None, "pending change cancelled", actor, now)
    return _move(agent, "ready", "ready", actor, now, policy)


def set_not_ready(
    agent: Agent, actor: Actor, now: datetime, policy: Policy, *, reason: str
) -> Decision:
    _check_reason(reason, policy)
    return _not_ready(agent, actor, now, policy, reason)


def _not_ready(agent: Agent, actor: Actor, now: datetime, policy: Policy, reason: str) -> Decision:
    _logged_in(agent)
    if agent.state == "not_ready" and agent.reason == reason:
        raise _refuse(
            "already_not_ready", f"agent {agent.agent_id} is already Not Ready ({reason})"
        )
    if agent.state == "busy":
        if agent.pending == "not_ready" and agent.pending_reason == reason:
            raise _refuse("already_pending", f"Not Ready ({reason}) already follows the live work")
        return _mark_pending(agent, "not_ready", reason, actor, now)
    return _move(agent, "not_ready", reason, actor, now, policy)


def force_state(
    agent: Agent,
    actor: Actor,
    now: datetime,
    policy: Policy,
    *,
    state: Literal["logged_out", "not_ready", "ready"],
    reason: str,
) -> Decision:
    """A supervisor's order: any reason is accepted (it is recorded as given)."""
    if actor.role != "supervisor":
        raise _refuse("forbidden", "only a supervisor can force a state", "actor_role")
    if state == "logged_out":
        if agent.state == "logged_out":
            raise _refuse("already_logged_out", f"agent {agent.agent_id} is already logged out")
        return _move(agent, "logged_out", reason, actor, now, policy)
    if agent.state == "logged_out":
        raise _refuse(
            "logged_out", f"agent {agent.agent_id} is logged out: only the agent can log in"
        )
    if state == "not_ready":
        return _not_ready(agent, actor, now, policy, reason)
    if agent.state == "busy":
        if agent.pending is None:
            raise _refuse("busy", "the agent is Busy with live work: Ready follows when it ends")
        return _mark_pending(agent, None, reason, actor, now)
    if agent.state == "ready":
        raise _refuse("already_ready", f"agent {agent.agent_id} is already Ready")
    return _move(agent, "ready", reason, actor, now, policy)


# --- what routing tells -----------------------------------------------------------------------


def offer_timed_out(agent: Agent, now: datetime, policy: Policy) -> Decision:
    """Ready -> RONA; while Busy, RONA follows the live work (unless Not Ready already does)."""
    actor = Actor.system()
    if agent.state == "ready":
        return _move(agent, "rona", "offer not answered", actor, now, policy)
    if agent.state == "busy" and agent.pending is None:
        return _mark_pending(agent, "rona", "offer not answered", actor, now)
    return Decision(agent)


def interaction_assigned(
    agent: Agent,
    interaction_id: str,
    channel: str,
    now: datetime,
    policy: Policy,
    *,
    new_round: bool = False,
) -> Decision:
    """The agent holds new work: Busy (a Not Ready or RONA they were in follows the work).

    An id the agent already ended is a late copy, unless ``new_round`` says the interaction came
    back to them (the caller asked routing)."""
    if agent.holds(interaction_id):
        return Decision(agent)
    if interaction_id in agent.ended:
        if not new_round:
            return Decision(agent)
        agent = replace(agent, ended=tuple(i for i in agent.ended if i != interaction_id))
    if agent.state == "logged_out":
        return Decision(agent)
    work = LiveWork(interaction_id, channel, now)
    if agent.state == "busy":
        return Decision(replace(agent, live=(*agent.live, work)))
    after = replace(agent, live=(*agent.live, work))
    if agent.state == "not_ready":
        after = replace(after, pending="not_ready", pending_reason=agent.reason)
    elif agent.state == "rona":
        after = replace(after, pending="rona", pending_reason=agent.reason)
    reason = f"{channel} {interaction_id}"
    return _move(after, "busy", reason, Actor.system(), now, policy, keep_pending=True)


def interaction_ended(
    agent: Agent, interaction_id: str, wrap_up: bool, now: datetime, policy: Policy
) -> Decision:
    if not agent.holds(interaction_id):
        if interaction_id in agent.ended:
            return Decision(agent)
        return Decision(replace(agent, ended=_remember(agent.ended, [interaction_id])))
    after = replace(
        agent,
        live=tuple(w for w in agent.live if w.interaction_id != interaction_id),
        ended=_remember(agent.ended, [interaction_id]),
    )
    if after.live:
        return Decision(replace(after, wrap_up_owed=after.wrap_up_owed or wrap_up))
    return _after_work(after, wrap_up, "work ended", Actor.system(), now, policy)


def reconcile(
    agent: Agent, live_in_routing: Iterable[str], asked_at: datetime, now: datetime, policy: Policy
) -> Decision:
    """Drop work routing no longer holds (only work known before routing was asked)."""
    held = set(live_in_routing)
    stale = [w for w in agent.live if w.interaction_id not in held and w.since < asked_at]
    if not stale:
        return Decision(agent)
    after = replace(
        agent,
        live=tuple(w for w in agent.live if w not in stale),
        ended=_remember(agent.ended, (w.interaction_id for w in stale)),
    )
    if after.live or agent.state != "busy":
        return Decision(after)
    return _after_work(after, False, "no live work in routing", Actor.system(), now, policy)


# --- timers -----------------------------------------------------------------------------------


def wrap_up_expired(agent: Agent, now: datetime, policy: Policy) -> Decision:
    if agent.state != "wrap_up" or agent.wrap_up_due is None or now < agent.wrap_up_due:
        return Decision(agent)
    actor = Actor.system()
    if agent.pending is not None:
        return _leave_work(agent, policy.wrap_up_timeout_reason, actor, now, policy)
    return _move(
        agent, policy.wrap_up_timeout_state, policy.wrap_up_timeout_reason, actor, now, policy
    )


def heartbeat(agent: Agent, now: datetime, policy: Policy) -> Decision:
    """The desktop is alive: push the presence deadline (no state change, no event)."""
    _logged_in(agent)
    return Decision(
        replace(
            agent,
            last_seen=now,
            presence_due=now + policy.heartbeat_timeout,
            connection_lost=False,
        )
    )


def presence_check(
    agent: Agent, now: datetime, policy: Policy, *, heard_since: datetime | None = None
) -> Decision:
    """Silent too long: Not Ready ("connection lost"), later Logged out. No ghost Ready agents.

    Silence counts only from ``heard_since``, when agent-state last became able to hear
    heartbeats (its start, or its broker connection coming back): a heartbeat lost with the
    broker is not the desktop's silence.
    """
    if agent.state == "logged_out" or agent.presence_due is None:
        return Decision(agent)
    last_seen = agent.last_seen or agent.since or now
    if heard_since is not None and heard_since > last_seen:
        last_seen = heard_since
    silent = now - last_seen
    actor = Actor.system()
    reason = policy.connection_lost_reason
    if silent >= policy.presence_logout_after:
        return _move(agent, "logged_out", reason, actor, now, policy)
    if silent < policy.heartbeat_timeout:
        due = last_seen + policy.heartbeat_timeout
        return Decision(agent if agent.presence_due == due else replace(agent, presence_due=due))
    due = last_seen + policy.presence_logout_after
    if agent.connection_lost:
        return Decision(agent if agent.presence_due == due else replace(agent, presence_due=due))
    lost = replace(agent, connection_lost=True, presence_due=due)
    if agent.state == "busy":
        if agent.pending == "not_ready":
            return Decision(lost)
        return _mark_pending(lost, "not_ready", reason, actor, now)
    if agent.state in ("not_ready", "rona"):
        return Decision(lost)  # already unavailable; RONA is left only by a person
    return _move(lost, "not_ready", reason, actor, now, policy)


# --- invariants -------------------------------------------------------------------------------


def invariant_violations(agent: Agent) -> list[str]:
    """Everything wrong with this agent's state (empty when it is valid)."""
    wrong: list[str] = []
    if agent.state not in STATES:
        wrong.append(f"unknown state {agent.state}")
    if (agent.state == "busy") != bool(agent.live):
        wrong.append(f"{agent.state} with {len(agent.live)} live interactions")
    if agent.pending is not None and agent.state not in ("busy", "wrap_up"):
        wrong.append(f"pending {agent.pending} in {agent.state}")
    if agent.pending is not None and not agent.pending_reason:
        wrong.append("pending change without a reason")
    if agent.wrap_up_due is not None and agent.state != "wrap_up":
        wrong.append(f"wrap-up deadline in {agent.state}")
    if agent.wrap_up_owed and agent.state != "busy":
        wrong.append(f"wrap-up owed in {agent.state}")
    if agent.state == "logged_out" and (agent.presence_due is not None or agent.connection_lost):
        wrong.append("presence timer while logged out")
    if agent.state != "logged_out" and agent.presence_due is None:
        wrong.append(f"no presence timer in {agent.state}")
    if agent.state == "not_ready" and not agent.reason:
        wrong.append("Not Ready without a reason")
    ids = [w.interaction_id for w in agent.live]
    if len(ids) != len(set(ids)):
        wrong.append("one interaction held twice")
    if agent.sequence < 0:
        wrong.append("negative sequence")
    return wrong

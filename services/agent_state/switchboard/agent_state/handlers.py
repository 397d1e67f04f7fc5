"""Thin handlers: check who acts -> decide with the domain -> compare-and-set -> publish.

Every state change is written (with its event in the agent's outbox) before it is published;
a failed publish leaves the event in the outbox for :meth:`AgentStateHandlers.relay_outbox`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from switchboard.agent_state import domain
from switchboard.agent_state.metrics import (
    AGENTS,
    HANDLING,
    LONGEST_IN_STATE,
    OUTBOX,
    PUBLISH_FAILED,
    RECONCILED,
    REFUSED,
    RONA,
    TIMERS,
    TRANSITIONS,
)
from switchboard.agent_state.report import history_page, time_in_state
from switchboard.agent_state.store import (
    AgentRecord,
    AgentStore,
    Applied,
    Document,
    UnknownAgent,
    agent_from_doc,
    profile_event,
)
from switchboard.contracts import Message
from switchboard.contracts.agents import (
    AgentCommand,
    AgentHeartbeat,
    AgentStateChanged,
    AgentStatesRequested,
    ForceAgentState,
    LogIn,
    LogOut,
    RegisterAgent,
    SetNotReady,
    SetReady,
    StateHistoryRequested,
    StateReportRequested,
)
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    LiveAssignmentsRequested,
    OfferTimedOut,
)
from switchboard.runtime.assignments import routing_holds
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import Refused

log = structlog.get_logger("switchboard.agent_state")

Decide = Callable[[domain.Agent], domain.Decision]

TIMER_LEASE = timedelta(seconds=15)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def describe(
    agent: domain.Agent, profile: Document, profile_version: int | None = None
) -> dict[str, Any]:
    """An agent as answered to queries and commands.

    ``profile_version`` lets a service that projects profiles (routing) tell whether the
    answer is newer than the ``agent.profile_changed`` events it has applied.
    """
    described: dict[str, Any] = {
        "agent_id": agent.agent_id,
        "name": profile.get("name", agent.agent_id),
        "teams": profile.get("teams", []),
        "skills": profile.get("skills", []),
        "capacity": profile.get("capacity", {}),
        "active": profile.get("active", True),
        "state": agent.state,
        "reason": agent.reason,
        "since": _iso(agent.since),
        "sequence": agent.sequence,
        "pending": agent.pending,
        "pending_reason": agent.pending_reason,
        "not_ready_pending": agent.pending is not None,
        "live": agent.live_counts(),
        "wrap_up_due": _iso(agent.wrap_up_due),
        "last_seen": _iso(agent.last_seen),
        "connection_lost": agent.connection_lost,
    }
    if profile_version is not None:
        described["profile_version"] = profile_version
    return described


class AgentStateHandlers:
    def __init__(
        self,
        store: AgentStore,
        bus: Bus,
        policy: domain.Policy,
        *,
        reconcile_timeout: float = 5.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.policy = policy
        self.reconcile_timeout = reconcile_timeout
        self.hearing_since = _now()
        """Since when heartbeats can reach this process (its start, or the broker's return)."""
        self._deaf = False
        self.instance = uuid.uuid4().hex
        self._retry_states: set[str] = set()
        self._retry_profiles: set[str] = set()
        self.outbox = store.outbox(self._publish_state)

    # --- commands from people ----------------------------------------------------------------

    async def on_register(self, command: RegisterAgent) -> dict[str, Any]:
        """Register an agent or replace their profile (supervisors only)."""
        self._supervisor_only(command)
        profile = {
            "name": command.name,
            "teams": sorted(set(command.teams)),
            "skills": [s.model_dump() for s in command.skills],
            "capacity": dict(sorted(command.capacity.items())),
            "active": command.active,
        }
        record = await self.store.save_profile(command.agent_id, profile)
        if record.profile_unpublished:
            await self._publish_profile(record)
        return {"agent_id": command.agent_id, "profile": profile}

    async def on_log_in(self, command: LogIn) -> dict[str, Any]:
        """Start a working session."""
        self._authorize(command)
        actor = self._actor(command)
        return await self._command(
            command,
            lambda a: domain.log_in(
                a,
                actor,
                _now(),
                self.policy,
                initial=command.initial_state,
                reason=command.reason,
            ),
            check_active=True,
        )

    async def on_log_out(self, command: LogOut) -> dict[str, Any]:
        """End a working session (a supervisor may log anyone out, even Busy)."""
        self._authorize(command)
        actor = self._actor(command)
        return await self._command(
            command, lambda a: domain.log_out(a, actor, _now(), self.policy, reason=command.reason)
        )

    async def on_set_ready(self, command: SetReady) -> dict[str, Any]:
        """Make the agent Ready."""
        self._authorize(command)
        actor = self._actor(command)
        return await self._command(
            command, lambda a: domain.set_ready(a, actor, _now(), self.policy)
        )

    async def on_set_not_ready(self, command: SetNotReady) -> dict[str, Any]:
        """Make the agent Not Ready with a configured reason (pending while Busy)."""
        self._authorize(command)
        actor = self._actor(command)
        return await self._command(
            command,
            lambda a: domain.set_not_ready(a, actor, _now(), self.policy, reason=command.reason),
        )

    async def on_force_state(self, command: ForceAgentState) -> dict[str, Any]:
        """A supervisor forces Ready, Not Ready or Logged out."""
        self._supervisor_only(command)
        actor = self._actor(command)
        return await self._command(
            command,
            lambda a: domain.force_state(
                a, actor, _now(), self.policy, state=command.state, reason=command.reason
            ),
        )

    async def on_heartbeat(self, command: AgentHeartbeat) -> dict[str, Any]:
        """The desktop is alive."""
        self._authorize(command)
        return await self._command(
            command, lambda a: domain.heartbeat(a, _now(), self.policy), remember=False
        )

    async def on_states_requested(self, query: AgentStatesRequested) -> dict[str, Any]:
        """Answer who is in which state (an agent sees only themselves)."""
        ids = list(query.agent_ids)
        team = query.team
        if query.actor_role == "agent":
            if any(agent_id != query.actor_id for agent_id in ids):
                raise Refused(
                    "forbidden", "an agent may only see their own state", field="agent_ids"
                )
            ids, team = [query.actor_id], None
        docs = await self.store.find(ids or None, team)
        return {
            "agents": [
                describe(agent_from_doc(d), d.get("profile", {}), int(d.get("profile_version", 0)))
                for d in docs
            ],
            # the desktop offers these in its Not Ready menu
            "not_ready_reasons": list(self.policy.not_ready_reasons),
        }

    async def on_state_report(self, query: StateReportRequested) -> dict[str, Any]:
        """Time in each state per agent per interval."""
        ids = list(query.agent_ids)
        if query.actor_role == "agent":
            if any(agent_id != query.actor_id for agent_id in ids):
                raise Refused(
                    "forbidden", "an agent may only see their own report", field="agent_ids"
                )
            ids = [query.actor_id]
        if query.end <= query.start:
            raise Refused("invalid", "end must be after start", field="end")
        interval = timedelta(seconds=query.interval_seconds)
        if (query.end - query.start) / interval > 10_000:
            raise Refused(
                "too_large", "more than 10,000 intervals: widen them", field="interval_seconds"
            )
        rows = await self.store.history_rows(ids, query.start, query.end)
        return {
            "start": query.start.isoformat(),
            "end": query.end.isoformat(),
            "interval_seconds": query.interval_seconds,
            "rows": time_in_state(rows, query.start, query.end, interval, _now()),
        }

    async def on_state_history(self, query: StateHistoryRequested) -> dict[str, Any]:
        """Recorded changes, a page at a time (what reporting rebuilds agents' figures from)."""
        rows = await self.store.history_page(query.after, query.limit)
        return history_page(rows, query.limit).model_dump(mode="json")

    # --- events from routing -----------------------------------------------------------------

    async def on_offer_timed_out(self, event: OfferTimedOut) -> None:
        """Nobody answered the offer: RONA (or RONA after the live work)."""
        applied = await self._event(
            event.agent_id, event, lambda a: domain.offer_timed_out(a, _now(), self.policy)
        )
        if applied is not None and applied.decision.change is not None:
            RONA.inc()

    async def on_assigned(self, event: InteractionAssigned) -> None:
        """The agent holds new work: Busy.

        An interaction id may come back for a new round (a skipped record offered again). When
        it is one this agent already ended, routing, which owns assignments, tells whether this
        is a late copy of the old round or the new round the agent holds now."""
        document = await self.store.get(event.agent_id)
        held_now = bool(
            document is not None
            and event.interaction_id in (document.get("ended") or [])
            and await routing_holds(
                self.bus, event.agent_id, event.interaction_id, timeout=self.reconcile_timeout
            )
        )
        await self._event(
            event.agent_id,
            event,
            lambda a: domain.interaction_assigned(
                a, event.interaction_id, event.channel, _now(), self.policy, new_round=held_now
            ),
        )

    async def on_ended(self, event: InteractionEnded) -> None:
        """Work ended: wrap-up, a pending change, or Ready when no live work remains."""
        await self._event(
            event.agent_id,
            event,
            lambda a: domain.interaction_ended(
                a, event.interaction_id, event.wrap_up, _now(), self.policy
            ),
        )

    # --- periodic ----------------------------------------------------------------------------

    async def fire_wrap_up_timers(self) -> None:
        await self._fire("wrap_up", domain.wrap_up_expired)

    async def fire_presence_timers(self) -> None:
        """Judge silent desktops, but only while heartbeats can reach us: with the broker gone
        nobody is judged, and when it is back silence counts from that moment."""
        if not await self.bus.broker.ping(timeout=2.0):
            self._deaf = True
            return
        if self._deaf:
            self._deaf = False
            self.hearing_since = _now()
            log.info("heartbeats can reach agent-state again; silence counts from now")
        await self._fire(
            "presence",
            lambda agent, now, policy: domain.presence_check(
                agent, now, policy, heard_since=self.hearing_since
            ),
        )

    async def repair_timers(self) -> None:
        fixed = await self.store.repair_timers()
        if fixed:
            log.warning("timer rows repaired from the agents", count=fixed)

    async def relay_outbox(self) -> None:
        """Publish again what this process failed to publish (cheap, frequent)."""
        for agent_id in sorted(self._retry_states):
            record = await self.store.record(agent_id)
            if record is None or not record.unpublished:
                self._retry_states.discard(agent_id)
                continue
            if not await self._flush(agent_id, record.unsent(), record):
                return
        for agent_id in sorted(self._retry_profiles):
            record = await self.store.record(agent_id)
            if record is None or not record.profile_unpublished:
                self._retry_profiles.discard(agent_id)
                continue
            if not await self._publish_profile(record):
                return

    async def sweep_outbox(self) -> None:
        """Publish what any replica left unpublished (a crash, a broker outage): a full scan."""
        left = await self.outbox.left()
        OUTBOX.set(len(left))
        for record in left:
            if not await self._flush(record.id, record.unsent(), record):
                return
        for record in await self.store.unpublished_profiles():
            if not await self._publish_profile(record):
                return

    async def reconcile(self) -> None:
        """Check Busy agents against routing's live assignments; drop work routing lost.

        One replica at a time (a lease in MongoDB, released when done).
        """
        hold = timedelta(seconds=self.reconcile_timeout * 3 + 30)
        if not await self.store.take_lock("reconcile", self.instance, hold):
            return
        try:
            await self._reconcile()
        finally:
            await self.store.release_lock("reconcile", self.instance)

    async def _reconcile(self) -> None:
        busy = [str(d["_id"]) for d in await self.store.with_live_work()]
        if not busy:
            return
        asked_at = _now()
        try:
            outcome = await self.bus.request(
                LiveAssignmentsRequested(agent_ids=busy), timeout=self.reconcile_timeout
            )
        except Exception as exc:
            RECONCILED.labels("no_answer").inc()
            log.warning("routing did not answer the live-assignment check", error=repr(exc))
            return
        if not outcome.ok:
            RECONCILED.labels("refused").inc()
            log.warning("routing refused the live-assignment check", error=outcome.error)
            return
        assignments = outcome.result.get("assignments", {})
        if not isinstance(assignments, dict):
            RECONCILED.labels("malformed").inc()
            log.warning("routing answered the live-assignment check without assignments")
            return
        RECONCILED.labels("run").inc()
        for agent_id in busy:
            held = [str(i) for i in assignments.get(agent_id, [])]
            try:
                applied = await self.store.apply(agent_id, self._reconciler(held, asked_at))
            except UnknownAgent:
                continue
            if applied.decision.change is not None:
                RECONCILED.labels("dropped").inc()
                log.warning("busy without live work in routing: moved on", agent_id=agent_id)
            self._count(applied)
            await self._flush(agent_id, applied.outbox, applied.record)

    async def refresh_gauges(self) -> None:
        counts, earliest = await self.store.states_summary()
        now = _now()
        for state, count in counts.items():
            AGENTS.labels(state).set(count)
            since = earliest.get(state)
            LONGEST_IN_STATE.labels(state).set((now - since).total_seconds() if since else 0.0)

    # --- plumbing ----------------------------------------------------------------------------

    def _reconciler(self, held: list[str], asked_at: datetime) -> Decide:
        return lambda agent: domain.reconcile(agent, held, asked_at, _now(), self.policy)

    @staticmethod
    def _actor(command: AgentCommand) -> domain.Actor:
        return domain.Actor(command.actor_id, command.actor_role)

    @staticmethod
    def _authorize(command: AgentCommand) -> None:
        if command.actor_role == "agent" and command.actor_id != command.agent_id:
            REFUSED.labels("forbidden").inc()
            raise Refused(
                "forbidden",
                f"{command.actor_id} may not change {command.agent_id}: "
                "an agent may only change their own state",
                field="actor_id",
            )

    @staticmethod
    def _supervisor_only(command: AgentCommand) -> None:
        if command.actor_role != "supervisor":
            REFUSED.labels("forbidden").inc()
            raise Refused("forbidden", f"only a supervisor may {command.NAME}", field="actor_role")

    async def _command(
        self,
        command: AgentCommand,
        decide: Decide,
        *,
        remember: bool = True,
        check_active: bool = False,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        if check_active:
            doc = await self.store.get(command.agent_id)
            if doc is not None and not doc.get("profile", {}).get("active", True):
                REFUSED.labels("inactive").inc()
                raise Refused(
                    "inactive", f"agent {command.agent_id} is deactivated", field="agent_id"
                )
        try:
            applied = await self.store.apply(
                command.agent_id,
                decide,
                parent=command,
                command_id=str(command.message_id) if remember else None,
            )
        except UnknownAgent as exc:
            REFUSED.labels("unknown_agent").inc()
            raise Refused("unknown_agent", str(exc), field="agent_id") from exc
        except domain.TransitionRefused as exc:
            REFUSED.labels(exc.code).inc()
            raise Refused(exc.code, exc.message, field=exc.field) from exc
        self._count(applied)
        await self._flush(command.agent_id, applied.outbox, applied.record)
        if applied.decision.change is not None:
            HANDLING.observe(time.perf_counter() - started)
        return describe(applied.agent, applied.profile)

    async def _event(self, agent_id: str, event: Message, decide: Decide) -> Applied | None:
        try:
            applied = await self.store.apply(agent_id, decide, parent=event)
        except UnknownAgent:
            log.warning("event about an unknown agent ignored", agent_id=agent_id)
            return None
        self._count(applied)
        await self._flush(agent_id, applied.outbox, applied.record)
        return applied

    async def _fire(
        self, kind: str, rule: Callable[[domain.Agent, datetime, domain.Policy], domain.Decision]
    ) -> None:
        for _ in range(500):
            agent_id = await self.store.claim_due(kind, _now(), TIMER_LEASE)
            if agent_id is None:
                return
            try:
                applied = await self.store.apply(agent_id, lambda a: rule(a, _now(), self.policy))
            except UnknownAgent:
                await self.store.sync_timers(domain.Agent(agent_id))
                continue
            await self.store.sync_timers(applied.agent, kinds=(kind,))
            if applied.decision.change is not None:
                TIMERS.labels(kind).inc()
                log.info(
                    "timer fired",
                    timer=kind,
                    agent_id=agent_id,
                    state=applied.decision.change.state,
                )
            self._count(applied)
            await self._flush(agent_id, applied.outbox, applied.record)

    @staticmethod
    def _count(applied: Applied) -> None:
        change = applied.decision.change
        if change is not None:
            TRANSITIONS.labels(change.previous, change.state).inc()

    async def _flush(
        self, agent_id: str, outbox: list[Document], record: AgentRecord | None = None
    ) -> bool:
        """Record history and publish the events (oldest first), then mark them published with
        one write (no read when ``record`` is what this process just stored or read); False
        when the broker refused."""
        try:
            ordered = sorted(outbox, key=lambda e: int(e["sequence"]))
            await self.outbox.flush(agent_id, ordered, written=record)
        except Exception as exc:
            self._retry_states.add(agent_id)
            PUBLISH_FAILED.inc()
            log.warning(
                "state event not published yet (kept in the outbox)",
                agent_id=agent_id,
                error=repr(exc),
            )
            return False
        self._retry_states.discard(agent_id)
        return True

    async def _publish_state(self, body: Document) -> None:
        event = AgentStateChanged.model_validate(body)
        # the history row (natural key) and the event are independent: written side by side
        await asyncio.gather(self.store.record_history(event), self.bus.publish(event))
        log.debug("state event published", agent_id=event.agent_id, sequence=event.sequence)

    async def _publish_profile(self, record: AgentRecord) -> bool:
        try:
            await self.bus.publish(profile_event(record))
        except Exception as exc:
            self._retry_profiles.add(record.id)
            log.warning("profile event not published yet", agent_id=record.id, error=repr(exc))
            return False
        await self.store.profile_published(record.id, record.profile_version)
        self._retry_profiles.discard(record.id)
        return True

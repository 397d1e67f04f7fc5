"""Routing's projection of agent-state: profiles and states, reconciled with agent-state."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime

import structlog
from pydantic import BaseModel, ConfigDict, Field

from switchboard.contracts.agents import (
    AgentProfileChanged,
    AgentStateChanged,
    AgentStatesRequested,
)
from switchboard.contracts.routing import (
    OfferCancelled,
)
from switchboard.routing import domain
from switchboard.routing.handlers.core import (
    RouterCore,
    _event_id,
)
from switchboard.routing.store import utcnow
from switchboard.runtime.storage import NotFound

log = structlog.get_logger("switchboard.routing")


class ReportedAgent(BaseModel):
    """One agent of agent-state's answer to ``agent.states_requested``, as routing reads it."""

    model_config = ConfigDict(extra="ignore")

    agent_id: str
    state: str
    sequence: int = 0
    not_ready_pending: bool = False
    since: datetime | None = None
    profile_version: int = 0
    teams: list[str] = Field(default_factory=list)
    skills: list[domain.SkillLevel] = Field(default_factory=list)
    capacity: dict[str, int] = Field(default_factory=dict)
    active: bool = True


class AgentsProjection(RouterCore):
    """Apply profile and state events; take offers back from an agent leaving."""

    # --- agents ---------------------------------------------------------------------------

    async def profile_changed(self, msg: AgentProfileChanged) -> None:
        profile = domain.Profile(
            teams=list(msg.teams),
            skills=[domain.SkillLevel(name=s.name, level=s.level) for s in msg.skills],
            capacity=dict(msg.capacity),
            active=msg.active,
        )
        change = domain.profile_change(profile, (msg.profile_version, msg.occurred_at))
        agent, _ = await self._change_agent(msg.agent_id, change)
        await self.dispatch_agent(msg.agent_id, agent)

    async def state_changed(self, msg: AgentStateChanged) -> None:
        agent, _ = await self._change_agent(
            msg.agent_id,
            domain.state_change(msg.state, msg.sequence, msg.not_ready_pending, msg.changed_at),
        )
        if agent is not None and agent.profile_key is None:
            self._learn_profile(msg.agent_id)
        if agent is not None and agent.state == "logged_out" and agent.holds:
            await self.take_back_offers(agent, "the agent logged out")
            agent = None  # changed since
        await self.dispatch_agent(msg.agent_id, agent)

    async def take_back_offers(self, agent: domain.AgentRecord, reason: str) -> int:
        """Cancel the agent's live offers and put the work back at the head of its queue.

        An agent who logs out cannot answer: the offer would only ring until its timeout while
        the customer waits, and the agent would be sent to RONA on top.
        """
        taken = 0
        for hold in agent.holds:
            now = utcnow()

            def take_back(
                current: domain.WorkItem, offer_id: str = hold.offer_id, now: datetime = now
            ) -> tuple[domain.WorkItem | None, domain.Offer | None]:
                offer = current.offer
                if current.status != "offered" or offer is None or offer.id != offer_id:
                    return None, None
                back = domain.requeued(current, offer, "cancelled", now, decline_for=None)
                return back, offer

            try:
                done = await self._change_work(hold.interaction_id, take_back)
            except NotFound:
                continue
            offer = done.result
            if not done.written or offer is None:
                continue
            item = done.aggregate
            self._close_offer(item, "cancelled")
            await self.release_hold(agent.id, offer_id=offer.id)
            await self.emit(
                OfferCancelled(
                    message_id=_event_id(offer.id, "cancelled"),
                    offer_id=offer.id,
                    interaction_id=item.id,
                    agent_id=agent.id,
                    reason=reason,
                )
            )
            log.info("offer taken back", interaction_id=item.id, reason=reason)
            taken += 1
            await self.dispatch_work(item.id)
        return taken

    def _learn_profile(self, agent_id: str) -> None:
        """Ask agent-state, in the background, for a profile this replica never received."""
        if agent_id in self._profile_lookups:
            return
        task = asyncio.create_task(self.reconcile_agents([agent_id]), name=f"profile {agent_id}")
        self._profile_lookups[agent_id] = task
        task.add_done_callback(lambda _: self._profile_lookups.pop(agent_id, None))

    async def reconcile_agents(self, agent_ids: Iterable[str] = ()) -> int:
        """Catch up with agent-state on profiles and states this replica has not heard of.

        ``agent.profile_changed`` published before routing's queues existed (a first start, an
        agent seeded while routing was down) never reaches routing; without the profile an agent
        has no team and is offered nothing. agent-state's answer fills the gap. Returns how many
        agents changed.
        """
        wanted = list(agent_ids)
        query = AgentStatesRequested(actor_id="routing", actor_role="supervisor", agent_ids=wanted)
        try:
            outcome = await self.bus.request(query, timeout=self.reconcile_timeout)
        except Exception as exc:
            log.warning("agent-state did not answer the agent reconciliation", error=repr(exc))
            return 0
        if not outcome.ok:
            log.warning("agent-state refused the agent reconciliation", error=outcome.error)
            return 0
        applied = await self.store.agent_progress()
        changed = 0
        for item in outcome.result.get("agents", []):
            reported = ReportedAgent.model_validate(item)
            agent_id = reported.agent_id
            key = (reported.profile_version, domain.SNAPSHOT_TIME)
            have_key, have_sequence = applied.get(agent_id, (None, 0))
            if have_key is not None and key <= have_key and reported.sequence <= have_sequence:
                continue
            profile = domain.Profile(
                teams=reported.teams,
                skills=reported.skills,
                capacity=reported.capacity,
                active=reported.active,
            )
            state = domain.state_change(
                reported.state,
                reported.sequence,
                reported.not_ready_pending,
                reported.since or utcnow(),
            )
            change = domain.both(domain.profile_change(profile, key), state)
            _, did = await self._change_agent(agent_id, change)
            if did:
                changed += 1
                log.info("agent caught up from agent-state", agent_id=agent_id)
                await self.dispatch_agent(agent_id)
        return changed

    async def close(self) -> None:
        for task in list(self._profile_lookups.values()):
            task.cancel()
        await asyncio.gather(*self._profile_lookups.values(), return_exceptions=True)

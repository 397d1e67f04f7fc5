"""The routing side: offers made, lost and accepted, assignments, agents logging out."""

from __future__ import annotations

import structlog

from switchboard.contracts.agents import AgentStateChanged
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    OfferAnswer,
    OfferMade,
    OfferRejected,
    OfferTimedOut,
)
from switchboard.dialer import metrics
from switchboard.dialer.domain import (
    holding,
)
from switchboard.dialer.handlers.base import (
    HandlerBase,
    interaction_id,
)
from switchboard.runtime.assignments import routing_holds

log = structlog.get_logger("switchboard.dialer")


class RoutingSide(HandlerBase):
    async def on_offer_made(self, event: OfferMade) -> None:
        record, spec = await self._for_interaction(event.interaction_id)
        if record is None or spec is None:
            return
        if record.state == "offered" and record.offer_id == event.offer_id:
            pass  # a replay: answer again below, the answer's id is the same
        elif record.state in ("ready", "offered"):
            record = await self.store.save(holding.offered(record, event.agent_id, event.offer_id))
        else:
            log.info("offer for a record not in routing", record_id=record.id, state=record.state)
            return
        if spec.auto_accept and not event.auto_accept:
            await self.bus.publish(
                OfferAnswer.caused_by(
                    event,
                    offer_id=event.offer_id,
                    agent_id=event.agent_id,
                    accept=True,
                    reason="auto-accepted by the campaign",
                )
            )

    async def on_offer_lost(self, event: OfferRejected | OfferTimedOut) -> None:
        record, _ = await self._for_interaction(event.interaction_id)
        if record is None or record.state != "offered" or record.offer_id != event.offer_id:
            return
        await self.store.save(holding.offer_lost(record))

    async def on_assigned(self, event: InteractionAssigned) -> None:
        record, spec = await self._for_interaction(event.interaction_id)
        if record is None or spec is None:
            return
        if record.state == "held" and record.agent_id == event.agent_id:
            return
        if record.state not in ("ready", "offered"):
            if await routing_holds(self.bus, event.agent_id, event.interaction_id) is False:
                log.info("late copy of an assignment already over", record_id=record.id)
                return
            log.warning(
                "assignment of a record no longer in routing: releasing the agent",
                record_id=record.id,
                state=record.state,
                agent_id=event.agent_id,
            )
            await self.bus.publish(
                InteractionEnded.caused_by(
                    event,
                    interaction_id=event.interaction_id,
                    agent_id=event.agent_id,
                    channel="preview",
                    outcome="withdrawn",
                )
            )
            return
        held = holding.assigned(
            record, event.agent_id, event.offer_id, self.now(), spec.review_seconds
        )
        await self.store.arm_review(held)
        await self.store.save(held)
        await self.store.release_backlog_slot(record.campaign_id)  # no longer waiting in routing
        metrics.ACTIONS.labels(event.how).inc()

    async def on_agent_state(self, event: AgentStateChanged) -> None:
        """A logged-out agent's record goes back to the campaign (not counted as a skip)."""
        if event.state != "logged_out":
            return
        for record in await self.store.held_by(event.agent_id):
            if record.state != "held":
                continue
            await self.store.save(holding.logged_out(record, event.agent_id, self.now()))
            await self.bus.publish(
                InteractionEnded.caused_by(
                    event,
                    key=record.id,
                    interaction_id=interaction_id(record.id),
                    agent_id=event.agent_id,
                    channel="preview",
                    outcome="released",
                )
            )

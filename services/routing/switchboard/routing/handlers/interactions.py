"""Route requests, withdrawals and ends: an interaction enters, leaves or ends its round."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from switchboard.contracts.routing import (
    InteractionEnded,
    InteractionQueued,
    OfferCancelled,
    RouteRequested,
    RouteWithdrawn,
)
from switchboard.routing import domain, metrics
from switchboard.routing.handlers.core import RouterCore
from switchboard.routing.store import utcnow
from switchboard.runtime.storage import NotFound

log = structlog.get_logger("switchboard.routing")


class Interactions(RouterCore):
    """Route requested, withdrawn, ended."""

    # --- route requests -------------------------------------------------------------------

    async def request(self, msg: RouteRequested) -> dict[str, Any]:
        now = utcnow()
        # both at once: a new interaction (the usual case) is in neither
        current, archived = await asyncio.gather(
            self.store.get_work(msg.interaction_id), self.store.get_archived(msg.interaction_id)
        )
        if current is not None:
            archived = None
        request_id = str(msg.message_id)
        if current is not None and current.live:
            if current.request_id != request_id:
                return {"status": current.status, "already": True}
            item = current  # our own earlier attempt wrote it: finish the job
        else:
            previous = current or archived
            if previous is not None and previous.request_id == request_id:
                # This very request was handled and its round is over: a redelivery (its first
                # handling failed after the work was written) must not open another round.
                return {"status": previous.status, "already": True}
            if (
                current is not None
                and current.withdrawn_at is not None
                and msg.occurred_at <= current.withdrawn_at
            ):
                return {"status": "withdrawn", "stale": True}
            service = await self.catalog.get(msg.service)
            if service is None:
                service = await self.catalog.get(msg.service, fresh=True)
            if service is None:
                log.warning(
                    "route request for an unknown service: it waits until configured",
                    service=msg.service,
                )
            item = domain.new_round(msg, previous, service, now)
            if current is None:
                written = await self._insert_work(item)
            else:
                stored = await self._replace_work(current, item)
                written, item = stored is not None, stored or item
            if not written:
                metrics.CAS_CONFLICTS.labels("request").inc()
                raise RuntimeError(f"{msg.interaction_id} changed while queueing: retry")
        await self.emit(self._queued(msg, item))
        await self.dispatch_work(item.id, item)
        return {"status": "queued", "round": item.round}

    @staticmethod
    def _queued(msg: RouteRequested, item: domain.WorkItem) -> InteractionQueued:
        return InteractionQueued.caused_by(
            msg,
            key=str(item.round),
            interaction_id=item.id,
            channel=item.channel,
            service=item.service,
            personal_agent_id=item.personal_agent_id,
        )

    async def withdraw(self, msg: RouteWithdrawn) -> dict[str, Any]:
        def decide(
            current: domain.WorkItem,
        ) -> tuple[domain.WorkItem | None, domain.WorkItem]:
            return domain.withdrawn(current, msg.occurred_at), current

        for _ in range(20):
            try:
                known = self.hints.last_written_work(msg.interaction_id)
                done = await self._change_work(msg.interaction_id, decide, known=known)
            except NotFound:
                archived = await self.store.get_archived(msg.interaction_id)
                tombstone = domain.tombstone(msg.interaction_id, msg.occurred_at, archived)
                if await self._insert_work(tombstone):
                    return {"status": "withdrawn"}
                continue
            if not done.written:
                return {"status": done.aggregate.status}
            before = done.result
            offer = before.offer
            if offer is not None:
                self._close_offer(before, "cancelled")
                await self.release_hold(offer.agent_id, offer_id=offer.id)
                await self.emit(
                    OfferCancelled.caused_by(
                        msg,
                        offer_id=offer.id,
                        interaction_id=before.id,
                        agent_id=offer.agent_id,
                        reason=msg.reason or "withdrawn",
                    )
                )
                await self.dispatch_agent(offer.agent_id)
            return {"status": "withdrawn"}
        raise RuntimeError(f"{msg.interaction_id} kept changing while withdrawing: retry")

    async def ended(self, msg: InteractionEnded) -> None:
        now = utcnow()

        def decide(
            current: domain.WorkItem,
        ) -> tuple[domain.WorkItem | None, domain.WorkItem]:
            return domain.ended(current, now), current

        try:
            known = self.hints.last_written_work(msg.interaction_id)
            done = await self._change_work(msg.interaction_id, decide, known=known)
        except NotFound:
            done = None
        if done is not None and done.written:
            before = done.result
            if before.status == "assigned" and before.assigned_at is not None:
                handled = (now - before.assigned_at).total_seconds()
                metrics.HANDLE_SECONDS.labels(before.service).observe(handled)
            await self.store.archive_work(done.aggregate)
            offer = before.offer if before.status == "offered" else None
            if offer is not None:
                self._close_offer(before, "cancelled")
                await self.release_hold(offer.agent_id, offer_id=offer.id)
                if offer.agent_id != msg.agent_id:
                    await self.emit(
                        OfferCancelled.caused_by(
                            msg,
                            offer_id=offer.id,
                            interaction_id=before.id,
                            agent_id=offer.agent_id,
                            reason="ended",
                        )
                    )
                    await self.dispatch_agent(offer.agent_id)
            if before.agent_id and before.agent_id != msg.agent_id:
                await self.release_hold(before.agent_id, interaction_id=before.id)
                await self.dispatch_agent(before.agent_id)
        # Always give the ender's capacity back (also when a crash left it held), and offer
        # the agent the next work from the agent as written.
        agent, _ = await self._change_agent(
            msg.agent_id,
            domain.release(utcnow(), interaction_id=msg.interaction_id),
            create=False,
        )
        await self.dispatch_agent(msg.agent_id, agent)

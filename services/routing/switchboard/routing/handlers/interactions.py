"""Route requests, withdrawals and ends: an interaction enters, leaves or ends its round."""

from __future__ import annotations

import asyncio
import copy
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
from switchboard.routing.handlers.core import (
    RouterCore,
)
from switchboard.routing.store import (
    LIVE,
    Document,
    utcnow,
)

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
        if current is not None and current["status"] in LIVE:
            if current.get("request_id") != request_id:
                return {"status": current["status"], "already": True}
            doc = current  # our own earlier attempt wrote it: finish the job
        else:
            previous = current or archived
            if previous is not None and previous.get("request_id") == request_id:
                # This very request was handled and its round is over: a redelivery (its first
                # handling failed after the work was written) must not open another round.
                return {"status": previous["status"], "already": True}
            if (
                current is not None
                and current.get("withdrawn_at") is not None
                and msg.occurred_at <= current["withdrawn_at"]
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
            doc = domain.new_round(msg, current or archived, service, now)
            written = (
                await self._insert_work(doc)
                if current is None
                else await self._replace_work(current["version"], doc)
            )
            if not written:
                metrics.CAS_CONFLICTS.labels("request").inc()
                raise RuntimeError(f"{msg.interaction_id} changed while queueing: retry")
        await self.emit(self._queued(msg, doc))
        await self.dispatch_work(doc["_id"], doc)
        return {"status": "queued", "round": doc["round"]}

    @staticmethod
    def _queued(msg: RouteRequested, doc: Document) -> InteractionQueued:
        return InteractionQueued.caused_by(
            msg,
            key=str(doc["round"]),
            interaction_id=doc["_id"],
            channel=doc["channel"],
            service=doc["service"],
            personal_agent_id=doc.get("personal_agent_id"),
        )

    async def withdraw(self, msg: RouteWithdrawn) -> dict[str, Any]:
        for _ in range(20):
            now = utcnow()
            doc = await self.store.get_work(msg.interaction_id)
            if doc is None:
                archived = await self.store.get_archived(msg.interaction_id)
                tombstone: Document = {
                    "_id": msg.interaction_id,
                    "status": "withdrawn",
                    "channel": "email",
                    "service": "",
                    "round": 0,
                    "withdrawn_at": msg.occurred_at,
                    "due": None,
                    "history": archived.get("history", []) if archived else [],
                    "version": int(archived["version"]) + 1 if archived else 1,
                }
                if archived is not None:
                    tombstone["round"] = archived.get("round", 0)
                if await self._insert_work(tombstone):
                    return {"status": "withdrawn"}
                continue
            if doc["status"] not in ("waiting", "offered"):
                return {"status": doc["status"]}
            updated = copy.deepcopy(doc)
            offer = domain.live_offer(doc)
            updated.update(
                status="withdrawn",
                withdrawn_at=msg.occurred_at,
                offer=None,
                offer_id=None,
                due=None,
                version=doc["version"] + 1,
            )
            if offer is not None:
                updated["past_offers"] = domain.past_offers(doc, offer, "cancelled")
            if not await self._replace_work(doc["version"], updated):
                metrics.CAS_CONFLICTS.labels("withdraw").inc()
                continue
            if offer is not None:
                await self._close_offer(offer, doc, "cancelled", now)
                await self.release_hold(offer.agent_id, offer_id=offer.id)
                await self.emit(
                    OfferCancelled.caused_by(
                        msg,
                        offer_id=offer.id,
                        interaction_id=doc["_id"],
                        agent_id=offer.agent_id,
                        reason=msg.reason or "withdrawn",
                    )
                )
                await self.dispatch_agent(offer.agent_id)
            return {"status": "withdrawn"}
        raise RuntimeError(f"{msg.interaction_id} kept changing while withdrawing: retry")

    async def ended(self, msg: InteractionEnded) -> None:
        for _ in range(20):
            now = utcnow()
            doc = await self.store.get_work(msg.interaction_id)
            if doc is None or doc["status"] not in LIVE:
                break
            updated = copy.deepcopy(doc)
            offer = domain.live_offer(doc) if doc["status"] == "offered" else None
            updated.update(
                status="ended",
                ended_at=now,
                offer=None,
                offer_id=None if offer else doc.get("offer_id"),
                due=None,
                version=doc["version"] + 1,
            )
            if offer is not None:
                updated["past_offers"] = domain.past_offers(doc, offer, "cancelled")
            if not await self._replace_work(doc["version"], updated):
                metrics.CAS_CONFLICTS.labels("end").inc()
                continue
            if doc["status"] == "assigned" and doc.get("assigned_at") is not None:
                handled = (now - doc["assigned_at"]).total_seconds()
                metrics.HANDLE_SECONDS.labels(doc["service"]).observe(handled)
            await self.store.archive_work(updated)
            if offer is not None:
                await self._close_offer(offer, doc, "cancelled", now)
                await self.release_hold(offer.agent_id, offer_id=offer.id)
                if offer.agent_id != msg.agent_id:
                    await self.emit(
                        OfferCancelled.caused_by(
                            msg,
                            offer_id=offer.id,
                            interaction_id=doc["_id"],
                            agent_id=offer.agent_id,
                            reason="ended",
                        )
                    )
                    await self.dispatch_agent(offer.agent_id)
            if doc.get("agent_id") and doc["agent_id"] != msg.agent_id:
                await self.release_hold(doc["agent_id"], interaction_id=doc["_id"])
                await self.dispatch_agent(doc["agent_id"])
            break
        # Always give the ender's capacity back (also when a crash left it held), and offer
        # the agent the next work from the agent as written.
        agent, _ = await self.store.update_agent(
            msg.agent_id,
            domain.release(utcnow(), interaction_id=msg.interaction_id),
            create=False,
        )
        await self.dispatch_agent(msg.agent_id, agent)

"""Offers: made (capacity first, then the interaction), answered, closed."""

from __future__ import annotations

import contextlib
import copy
import uuid
from datetime import timedelta
from typing import Any

import structlog

from switchboard.contracts.routing import (
    InteractionAssigned,
    OfferAnswer,
    OfferMade,
    OfferRejected,
)
from switchboard.routing import domain, metrics
from switchboard.routing.handlers.core import (
    RouterCore,
    _aware,
    _event_id,
)
from switchboard.routing.store import (
    Document,
    utcnow,
)
from switchboard.runtime.errors import Refused

log = structlog.get_logger("switchboard.routing")


class Offers(RouterCore):
    """Make an offer, free a hold, take an answer."""

    async def offer(
        self,
        doc: Document,
        agent_id: str,
        *,
        pulled: bool = False,
        agent_doc: Document | None = None,
    ) -> bool:
        """Reserve the agent, then the interaction; give the agent back if the second fails.

        ``agent_doc``: the agent as the plan read it, so the reservation need not read it again.
        """
        now = utcnow()
        service = await self.catalog.get(doc["service"])
        channel = doc["channel"]
        number = int(doc.get("offers_in_round", 0)) + 1
        offer_id = domain.offer_id(
            doc["_id"], int(doc["round"]), number, kind="pull/" if pulled else ""
        )
        token = uuid.uuid4().hex  # this reservation's own mark: a loser releases only its own

        reserve = domain.reservation(
            offer_id,
            doc["_id"],
            channel,
            token,
            now,
            default_capacity=self.store.default_capacity,
            pulled=pulled,
        )
        _, reserved = await self.store.update_agent(
            agent_id, reserve, create=False, known=agent_doc
        )
        if not reserved:
            metrics.CAS_CONFLICTS.labels("agent").inc()
            return False
        auto = bool(service and service.auto_accept) or pulled
        timeout = service.offer_timeout_seconds if service else 30.0
        expires_at = now + timedelta(seconds=timeout)
        offer = domain.Offer(
            id=offer_id, agent_id=agent_id, made_at=now, expires_at=expires_at, auto_accept=auto
        )
        updated = copy.deepcopy(doc)
        updated.update(
            status="assigned" if auto else "offered",
            assigned_at=now if auto else None,
            offer=None if auto else offer.stored(),
            offer_id=offer_id,
            agent_id=agent_id if auto else None,
            offers_in_round=number,
            offer_ids=[*doc.get("offer_ids", [])[-49:], offer_id],
            version=doc["version"] + 1,
        )
        if auto:
            updated["past_offers"] = domain.past_offers(
                doc, offer, "pulled" if pulled else "auto_accepted"
            )
        updated["due"] = domain.work_due(updated, now)
        try:
            written = await self._replace_work(doc["version"], updated)
        except Exception:
            # the database failed us mid-way: give the capacity back now (best effort; the
            # stale-hold sweep is the backstop) rather than leave the agent looking full
            with contextlib.suppress(Exception):
                await self.release_hold(agent_id, token=token)
            raise
        if not written:
            metrics.CAS_CONFLICTS.labels("work").inc()
            await self.release_hold(agent_id, token=token)
            return False
        service_name = doc["service"]
        if not pulled:
            metrics.OFFERS.labels(service_name).inc()
            metrics.REQUEST_TO_OFFER.labels(service_name).observe(
                max((now - doc["requested_at"]).total_seconds(), 0.0)
            )
            await self.emit(
                OfferMade(
                    message_id=_event_id(offer_id, "made"),
                    offer_id=offer_id,
                    interaction_id=doc["_id"],
                    agent_id=agent_id,
                    channel=channel,
                    service=service_name,
                    expires_at=expires_at,
                    auto_accept=auto,
                    # the desktop's pop-up shows how long the customer has waited
                    summary={
                        **(doc.get("summary") or {}),
                        "waiting_since": _aware(doc["requested_at"]).isoformat(),
                    },
                )
            )
        if auto:
            how = "pulled" if pulled else "auto_accepted"
            metrics.ASSIGNMENTS.labels(service_name, how).inc()
            if not pulled:
                metrics.OFFER_OUTCOMES.labels(service_name, "auto_accepted").inc()
            await self.emit(
                InteractionAssigned(
                    message_id=_event_id(offer_id, "assigned"),
                    interaction_id=doc["_id"],
                    agent_id=agent_id,
                    channel=channel,
                    service=service_name,
                    offer_id=offer_id,
                    how=how,
                )
            )
        log.info(
            "offer made" if not auto else "interaction assigned",
            interaction_id=doc["_id"],
            agent_id=agent_id,
            offer_id=offer_id,
        )
        return True

    async def release_hold(
        self,
        agent_id: str,
        *,
        offer_id: str | None = None,
        interaction_id: str | None = None,
        token: str | None = None,
    ) -> bool:
        now = utcnow()

        drop = domain.release(now, offer_id=offer_id, interaction_id=interaction_id, token=token)
        _, changed = await self.store.update_agent(agent_id, drop, create=False)
        return changed

    async def answer(self, msg: OfferAnswer) -> dict[str, Any]:
        for _ in range(20):
            now = utcnow()
            doc = await self.store.work_by_offer(msg.offer_id)
            if doc is None:
                raise Refused("unknown_offer", f"no offer {msg.offer_id}", field="offer_id")
            offer = domain.live_offer(doc)
            if offer is None or offer.id != msg.offer_id:
                past = domain.past_offer(doc, msg.offer_id)
                accepted = doc["status"] == "assigned" and doc.get("offer_id") == msg.offer_id
                owner = past.agent_id if past else (doc.get("agent_id") if accepted else None)
                if owner is not None and owner != msg.agent_id:
                    raise Refused(
                        "not_yours", "this offer was made to another agent", field="agent_id"
                    )
                if accepted and msg.accept:
                    return {"status": "assigned", "interaction_id": doc["_id"]}
                outcome = past.outcome if past else "closed"
                raise Refused(
                    "offer_closed", f"the offer is no longer live ({outcome})", field="offer_id"
                )
            if offer.agent_id != msg.agent_id:
                raise Refused("not_yours", "this offer was made to another agent", field="agent_id")
            updated = copy.deepcopy(doc)
            if msg.accept:
                updated.update(
                    status="assigned",
                    assigned_at=now,
                    offer=None,
                    agent_id=msg.agent_id,
                    due=None,
                    past_offers=domain.past_offers(doc, offer, "accepted"),
                    version=doc["version"] + 1,
                )
            else:
                updated = domain.requeued(
                    doc, offer, "rejected", now, decline_for=self.decline_cooldown
                )
            if not await self._replace_work(doc["version"], updated):
                metrics.CAS_CONFLICTS.labels("answer").inc()
                continue
            service_name = doc["service"]
            if msg.accept:
                await self._close_offer(offer, doc, "accepted", now)
                metrics.ASSIGNMENTS.labels(service_name, "accepted").inc()
                await self.emit(
                    InteractionAssigned.caused_by(
                        msg,
                        interaction_id=doc["_id"],
                        agent_id=msg.agent_id,
                        channel=doc["channel"],
                        service=service_name,
                        offer_id=msg.offer_id,
                        how="accepted",
                    )
                )
                return {"status": "assigned", "interaction_id": doc["_id"]}
            await self._close_offer(offer, doc, "rejected", now)
            await self.release_hold(msg.agent_id, offer_id=msg.offer_id)
            await self.emit(
                OfferRejected.caused_by(
                    msg,
                    offer_id=msg.offer_id,
                    interaction_id=doc["_id"],
                    agent_id=msg.agent_id,
                    reason=msg.reason,
                )
            )
            await self.dispatch_work(doc["_id"])
            await self.dispatch_agent(msg.agent_id)
            return {"status": "rejected", "interaction_id": doc["_id"]}
        raise RuntimeError(f"offer {msg.offer_id} kept changing: retry")

"""Due timers: offer expiry (RONA), end of the preferred wait, personal overflow; stale holds."""

from __future__ import annotations

import copy
from datetime import datetime

import structlog

from switchboard.contracts.routing import (
    InteractionQueued,
    OfferTimedOut,
)
from switchboard.routing import domain, metrics
from switchboard.routing.handlers.core import (
    RouterCore,
    _event_id,
)
from switchboard.routing.store import (
    Document,
    utcnow,
)

log = structlog.get_logger("switchboard.routing")


class Timers(RouterCore):
    """Fire due timers; give back holds of half-made offers."""

    # --- timers ---------------------------------------------------------------------------

    async def fire_timers(self) -> int:
        """Offer expiry, end of preferred-agent wait, personal-queue overflow: claimed by CAS."""
        fired = 0
        now = utcnow()
        for doc in await self.store.due_work(now):
            try:
                if await self._fire(doc, now):
                    fired += 1
            except Exception:
                log.exception("timer failed", interaction_id=doc["_id"])
        return fired

    async def _fire(self, doc: Document, now: datetime) -> bool:
        updated = copy.deepcopy(doc)
        updated["version"] = doc["version"] + 1
        offer = domain.live_offer(doc)
        if doc["status"] == "offered" and offer is not None and offer.expires_at <= now:
            updated = domain.requeued(
                doc, offer, "timed_out", now, decline_for=self.decline_cooldown
            )
            if not await self._replace_work(doc["version"], updated):
                return False  # another replica claimed it (or the agent answered)
            await self._close_offer(offer, doc, "timed_out", now)
            metrics.RONA.inc()
            await self._rona(offer.agent_id, offer.id, now)
            await self.emit(
                OfferTimedOut(
                    message_id=_event_id(offer.id, "timed_out"),
                    offer_id=offer.id,
                    interaction_id=doc["_id"],
                    agent_id=offer.agent_id,
                    channel=doc["channel"],
                )
            )
            log.info("offer timed out", interaction_id=doc["_id"], agent_id=offer.agent_id)
            await self.dispatch_work(doc["_id"])
            return True
        if doc["status"] == "waiting":
            overflowed = doc.get("personal_until") is not None and doc["personal_until"] <= now
            if overflowed:
                service = await self.catalog.get(doc["service"])
                target = (service.overflow_service if service else None) or doc["service"]
                updated.update(
                    personal_agent_id=None,
                    personal_until=None,
                    service=target,
                    history=[
                        *doc.get("history", []),
                        {"at": now, "what": "overflowed", "from": doc.get("personal_agent_id")},
                    ],
                )
            updated["due"] = domain.work_due(updated, now)
            if not await self._replace_work(doc["version"], updated):
                return False
            if overflowed:
                await self.emit(
                    InteractionQueued(
                        message_id=_event_id(doc["_id"], str(doc["version"]), "overflow"),
                        interaction_id=doc["_id"],
                        channel=doc["channel"],
                        service=updated["service"],
                    )
                )
            await self.dispatch_work(doc["_id"])
            return True
        updated["due"] = None
        return await self._replace_work(doc["version"], updated)

    async def _rona(self, agent_id: str, offer_id: str, now: datetime) -> None:
        """Give back the hold and keep the agent from new offers until agent-state's RONA."""
        change = domain.missed_offer(offer_id, now + self.rona_hold_off)
        await self.store.update_agent(agent_id, change, create=False)

    async def release_stale_holds(self) -> int:
        """Holds whose offer never came to be (a crash between the two writes)."""
        released = 0
        now = utcnow()
        for agent in await self.store.agents_with_holds():
            for hold in agent["holds"]:
                if hold["at"] > now - self.stale_hold:
                    continue
                work = await self.store.get_work(hold["i"])
                live = (
                    work is not None
                    and work["status"] in ("offered", "assigned")
                    and work.get("offer_id") == hold["o"]
                )
                if live:
                    continue
                if work is not None and work["status"] == "waiting":
                    # Its offer may still be on the way (a slow database, not a crash): move the
                    # interaction on from the version that offer read, so it can no longer be
                    # written; otherwise it could land after the hold is gone, uncounted.
                    bumped = {**work, "version": int(work["version"]) + 1}
                    if not await self._replace_work(work["version"], bumped):
                        continue  # being written right now: look again next time
                if await self.release_hold(agent["_id"], offer_id=hold["o"]):
                    metrics.STALE_HOLDS.inc()
                    log.warning("stale capacity hold released", agent_id=agent["_id"], hold=hold)
                    released += 1
        return released

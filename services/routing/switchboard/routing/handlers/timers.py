"""Due timers: offer expiry (RONA), end of the preferred wait, personal overflow; stale holds.

The interactions' timers are the kernel's :class:`TimerQueue`: each replica claims a due one
for a lease, so one replica fires it; the item read then decides what is due (a timer left
behind by an older write is moved to the item's ``due``, or cleared).
"""

from __future__ import annotations

from datetime import datetime, timedelta

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
from switchboard.routing.store import utcnow
from switchboard.runtime.storage import NotFound

log = structlog.get_logger("switchboard.routing")

TIMER_LEASE = timedelta(seconds=10)
"""How long a claimed timer is this replica's: one that died holding it delays it by this."""
TIMERS_PER_POLL = 200


class Timers(RouterCore):
    """Fire due timers; give back holds of half-made offers."""

    # --- timers ---------------------------------------------------------------------------

    async def fire_timers(self) -> int:
        """Offer expiry, end of preferred-agent wait, personal-queue overflow, each claimed by
        one replica."""
        fired = 0
        now = utcnow()
        for _ in range(TIMERS_PER_POLL):
            timer = await self.store.claim_due_timer(now, TIMER_LEASE)
            if timer is None:
                break
            try:
                if await self._fire(timer.key, now):
                    fired += 1
            except Exception:
                log.exception("timer failed", interaction_id=timer.key)
        return fired

    async def _fire(self, interaction_id: str, now: datetime) -> bool:
        item = await self.store.get_work(interaction_id)
        if item is None or item.due is None:
            await self.store.clear_timer(interaction_id)  # the item moved on (or out)
            return False
        if item.due > now:
            await self.store.set_timer(item)  # left by an older write: the item's own time
            return False
        service = await self.catalog.get(item.service)
        overflow_to = service.overflow_service if service else None

        def fire(
            current: domain.WorkItem,
        ) -> tuple[domain.WorkItem | None, tuple[str, domain.Offer | None]]:
            offer = current.offer
            if current.due is None or current.due > now:
                return None, ("not_due", None)
            if current.status == "offered" and offer is not None and offer.expires_at <= now:
                back = domain.requeued(
                    current, offer, "timed_out", now, decline_for=self.decline_cooldown
                )
                return back, ("timed_out", offer)
            moved = domain.timer_fired(current, now, overflow_to)
            if moved is not None:
                return moved[0], (moved[1], None)
            return current.model_copy(update={"due": None}), ("cleared", None)

        try:
            done = await self._change_work(interaction_id, fire, known=item, timer_fired=True)
        except NotFound:
            return False
        if not done.written:
            return False
        after, (what, offer) = done.aggregate, done.result
        if offer is not None:
            await self._timed_out(after, offer, now)
            return True
        if what == "overflowed":
            await self.emit(
                InteractionQueued(
                    message_id=_event_id(after.id, str(after.version - 1), "overflow"),
                    interaction_id=after.id,
                    channel=after.channel,
                    service=after.service,
                )
            )
        if what in ("overflowed", "moved"):
            await self.dispatch_work(after.id)
        return True

    async def _timed_out(self, item: domain.WorkItem, offer: domain.Offer, now: datetime) -> None:
        """An offer not answered in time: the agent is held off (RONA), the work goes on."""
        self._close_offer(item, "timed_out")
        metrics.RONA.inc()
        change = domain.missed_offer(offer.id, now + self.rona_hold_off)
        await self._change_agent(offer.agent_id, change, create=False)
        await self.emit(
            OfferTimedOut(
                message_id=_event_id(offer.id, "timed_out"),
                offer_id=offer.id,
                interaction_id=item.id,
                agent_id=offer.agent_id,
                channel=item.channel,
            )
        )
        log.info("offer timed out", interaction_id=item.id, agent_id=offer.agent_id)
        await self.dispatch_work(item.id)

    async def release_stale_holds(self) -> int:
        """Holds whose offer never came to be (a crash between the two writes)."""
        released = 0
        now = utcnow()
        for agent in await self.store.agents_with_holds():
            for hold in agent.holds:
                if hold.at > now - self.stale_hold:
                    continue
                item = await self.store.get_work(hold.interaction_id)
                live = (
                    item is not None
                    and item.status in ("offered", "assigned")
                    and item.offer_id == hold.offer_id
                )
                if live:
                    continue
                # Its offer may still be on the way (a slow database, not a crash): move a waiting
                # interaction on from the version that offer read, so it can no longer be
                # written; otherwise it could land after the hold is gone, uncounted.
                waiting = item is not None and item.status == "waiting"
                if waiting and item is not None and await self._replace_work(item, item) is None:
                    continue  # being written right now: look again next time
                if await self.release_hold(agent.id, offer_id=hold.offer_id):
                    metrics.STALE_HOLDS.inc()
                    log.warning(
                        "stale capacity hold released",
                        agent_id=agent.id,
                        hold=hold.model_dump(by_alias=True),
                    )
                    released += 1
        return released

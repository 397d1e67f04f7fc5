"""The hopper and the timers: due records picked and routed (within each campaign's preview
backlog), records in routing re-checked, review timers fired, outboxes a crash left swept."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import datetime

import structlog

from switchboard.contracts.campaigns import (
    CampaignSpec,
    RecordClosed,
)
from switchboard.contracts.routing import (
    RouteRequested,
    RouteWithdrawn,
)
from switchboard.dialer import domain, metrics
from switchboard.dialer.domain import (
    LIVE_STATES,
    Problem,
    Record,
    picking,
)
from switchboard.dialer.handlers.base import (
    interaction_id,
)
from switchboard.dialer.handlers.record_commands import RecordCommands
from switchboard.dialer.store import Conflict

log = structlog.get_logger("switchboard.dialer")
HAND_SECONDS = 1.0  # how long hopper entries read by a pick are kept for the next picks


async def _nothing() -> set[str]:
    return set()


class Hopper(RecordCommands):
    async def dispatch(self) -> None:
        """Due pending records become previews (up to each campaign's backlog); records in
        routing that may no longer be called are withdrawn, the others re-asserted now and
        then (routing ignores a request for work it already has)."""
        now = self.now()
        for campaign_id, spec in await self.store.all_campaigns():
            in_routing = await self._refresh(campaign_id, spec, now)
            if spec.active:
                await self.pick(campaign_id, spec, spec.preview_backlog - in_routing, now)

    async def pick(self, campaign_id: str, spec: CampaignSpec, room: int, now: datetime) -> int:
        """Route up to ``room`` records taken from the campaign's hopper; how many were routed.

        Entries are read from the hopper a batch at a time (kept in hand for the next picks),
        each with the record as the refill read it. Each record takes a place in the
        campaign's backlog (one conditional ``$inc``: ``preview_backlog`` holds across
        replicas) while its numbers are checked against the DNC lists; it is re-checked
        (still pending and due, window, attempts) and claimed with the one write of
        :meth:`DialerStore.save` guarded by the version the entry holds, so of two replicas
        on one entry exactly one routes it, and a stale entry is found by its claim. Nothing
        here reads or scans ``records`` on the way of a routed record. A record that may not
        be routed any more is only dropped from the hopper; the refill deals with it."""
        if room <= 0:
            return 0
        read_at, hand = self.hands.get(campaign_id, (0.0, []))
        routed = 0
        for _ in range(room + 20):
            if not hand or time.monotonic() - read_at > HAND_SECONDS:
                # one read of entries for this pick and the next ones (for a second at most:
                # entries another replica routed meanwhile would only fail their claims)
                hand = await self.store.hopper_picks(campaign_id, room + 20)
                read_at = time.monotonic()
                self.hands[campaign_id] = (read_at, hand)
                random.shuffle(hand)  # replicas start on different entries
                if not hand:
                    break
            record_id, record = hand.pop()
            started = time.perf_counter()
            if record is None:  # an entry of an earlier version: the record is read
                record = await self.store.record(record_id)
            taken, dnc = await asyncio.gather(
                self.store.take_backlog_slot(campaign_id, spec.preview_backlog),
                self._dnc(record, spec) if record is not None else _nothing(),
            )
            if not taken:  # the campaign's backlog is full (counting every replica's records)
                hand.append((record_id, record))
                break
            saved = await self._claim(record_id, record, spec, dnc, now)
            metrics.PICK_SECONDS.observe(time.perf_counter() - started)
            if saved is None:
                await self.store.release_backlog_slot(campaign_id)
                continue
            routed += 1
            if routed >= room:
                break
        return routed

    async def _claim(
        self,
        record_id: str,
        record: Record | None,
        spec: CampaignSpec,
        dnc: set[str],
        now: datetime,
    ) -> Record | None:
        """Route ``record`` (as its hopper entry holds it) if it may be called now: one write
        guarded by the version the entry holds, then its live copy, the entry's removal and
        the route request together (each independent of the others once the claim is
        written). A claim that misses (the record changed since the refill) drops the entry;
        a record met claimed but without its live copy (a crash between the two writes of a
        save) gets it back."""
        saved = None
        try:
            if (
                record is not None
                and domain.due_pending(record, now)
                and domain.decide_routing(record, spec, dnc, now).action == "route"
            ):
                saved = await self.store.try_save(picking.routed(record, now), live=False)
            if saved is None and record is not None:
                current = await self.store.record(record_id)
                if current is not None and current.state in LIVE_STATES:
                    await self.store.derive_live(current)
        finally:
            if saved is None:
                await self.store.drop_from_hopper(record_id)
        if saved is None:
            return None
        await asyncio.gather(
            self.store.derive_live(saved),
            self.store.drop_from_hopper(record_id),
            self._route(saved, spec),
        )
        return saved

    async def refill_hoppers(self) -> None:
        """Top up the hopper of every active campaign (a background task: the scan of
        ``records`` it needs never delays a pick)."""
        now = self.now()
        for campaign_id, spec in await self.store.all_campaigns():
            if spec.active:
                await self.refill(campaign_id, spec, now)

    async def refill(self, campaign_id: str, spec: CampaignSpec, now: datetime) -> int:
        """Below half full, add up to ``hopper_size`` records that are ready now; due records
        that are not (outside their window, every number DNC, attempts used up) are postponed
        or closed here. Returns how many entries were added."""
        if await self.store.hopper_count(campaign_id) >= max(self.hopper_size // 2, 1):
            return 0
        started = time.perf_counter()
        candidates = await self.store.hopper_candidates(campaign_id, now, self.hopper_size)
        numbers = {p.number for r in candidates for p in r.phones}
        dnc = await self.store.dnc_hits(campaign_id, spec, numbers) if numbers else set()
        ready = []
        for record in candidates:
            decision = domain.decide_routing(record, spec, dnc, now)
            if decision.action == "route":
                ready.append(record)
            elif decision.action == "wait":
                await self.store.try_save(picking.postponed(record, decision.at or now))
            else:
                await self._close(record, decision.reason, now)
        added = await self.store.add_to_hopper(campaign_id, ready, now)
        metrics.REFILL_SECONDS.observe(time.perf_counter() - started)
        return added

    async def _route(self, record: Record, spec: CampaignSpec) -> None:
        request = RouteRequested(
            interaction_id=interaction_id(record.id),
            channel="preview",
            service=spec.service,
            reason="preview",
            personal_agent_id=record.personal_agent_id,
            summary={
                "campaign": spec.name,
                "customer": record.name,
                "campaign_id": record.campaign_id,
                "record_id": record.id,
                "auto_accept": spec.auto_accept,
            },
            requested_at=self.now(),
        )
        try:
            await self.bus.publish(request)
        except Exception as exc:  # routing not up yet: re-asserted by the next refresh
            log.warning("route request not delivered", record_id=record.id, error=str(exc))
            return
        metrics.ROUTED.labels(record.campaign_id).inc()

    async def _close(self, record: Record, reason: str, now: datetime) -> Record | None:
        saved = await self.store.try_save(picking.closed(record, reason, now))
        if saved is not None:
            metrics.CLOSED.labels(reason).inc()
            await self.bus.publish(
                RecordClosed(
                    record_id=record.id,
                    campaign_id=record.campaign_id,
                    reason=reason,
                    state="closed",
                    message_id=uuid.uuid5(uuid.UUID(record.id), f"closed:{saved.version}"),
                )
            )
        return saved

    async def _refresh(self, campaign_id: str, spec: CampaignSpec, now: datetime) -> int:
        kept = 0
        records = await self.store.in_routing(campaign_id)
        await self._reap_backlog(campaign_id, len(records), now)
        for record in records:
            dnc = await self._dnc(record, spec)
            decision = domain.decide_routing(record, spec, dnc, now)
            if not spec.active or decision.action != "route":
                reason = "campaign inactive" if not spec.active else decision.reason
                await self._withdraw(record, decision, reason, now)
                continue
            kept += 1
            if record.state == "ready" and (
                record.routed_at is None or record.routed_at <= now - self.route_refresh
            ):
                saved = await self.store.try_save(picking.route_reasserted(record, now))
                if saved is not None:
                    await self._route(saved, spec)
        return kept

    async def _reap_backlog(self, campaign_id: str, in_routing: int, now: datetime) -> None:
        """Give back places a crash kept taken (a pick that died between taking its place and
        routing, a release lost after its write): places taken beyond the records in routing,
        seen at two refreshes at least ``backlog_grace`` apart, are given back (the fewer of
        the two, so a pick in progress at one of them keeps its place)."""
        excess = await self.store.backlog_used(campaign_id) - in_routing
        seen = self.backlog_excess.get(campaign_id)
        if excess <= 0:
            self.backlog_excess.pop(campaign_id, None)
        elif seen is None:
            self.backlog_excess[campaign_id] = (excess, now)
        elif seen[1] <= now - self.backlog_grace:
            freed = min(excess, seen[0])
            await self.store.release_backlog_slot(campaign_id, freed)
            log.warning(
                "backlog places left by a crash given back", campaign_id=campaign_id, places=freed
            )
            self.backlog_excess.pop(campaign_id, None)

    async def _withdraw(
        self, record: Record, decision: domain.Routing, reason: str, now: datetime
    ) -> None:
        if decision.action == "close":
            saved = await self._close(record, decision.reason, now)
        else:
            saved = await self.store.try_save(picking.withdrawn(record, decision.at or now))
        if saved is None:
            return
        await self.store.release_backlog_slot(record.campaign_id)
        metrics.WITHDRAWN.labels(reason).inc()
        await self.bus.publish(
            RouteWithdrawn(
                interaction_id=interaction_id(record.id),
                reason=reason,
                message_id=uuid.uuid5(uuid.UUID(record.id), f"withdrawn:{saved.version}"),
            )
        )

    async def fire_reviews(self) -> None:
        """Review time over: dial the recommended number for the agent (the timer claimed by
        one replica, the call by the record's version-guarded write), then clear the timer."""
        while (record := await self.store.claim_review(self.now(), self.review_lease)) is not None:
            spec = await self.store.campaign(record.campaign_id)
            call_id = uuid.uuid5(uuid.UUID(record.id), f"auto:{record.held_since}").hex
            try:
                if spec is not None:
                    await self._dial(record, spec, None, call_id, None)
            except Problem as problem:
                refused = picking.auto_call_refused(record, problem.message, self.now())
                await self.store.try_save(refused)
                log.info(
                    "review time over but no call possible",
                    record_id=record.id,
                    reason=problem.message,
                )
            except Conflict:  # the agent acted meanwhile: the timer fires again after its lease
                continue
            await self.store.review_timers.clear(record.id)

    async def sweep_outbox(self) -> None:
        """Messages a crash left between a record's write and their publish (a dial request,
        an agent command's events) go out with their own ids, so nobody acts on them twice."""
        for record in await self.outbox.left():
            await self._flush(record)

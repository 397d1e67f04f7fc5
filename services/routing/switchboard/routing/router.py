"""The routing engine: offers as reservations, timers, queues, transfers.

Handlers (handlers.py) call into this; the rules themselves are in domain.py and every MongoDB
access goes through store.py. Every state change is a compare-and-set, so any number of routing
replicas may run this code side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aio_pika.exceptions import PublishError

from switchboard.contracts import Message
from switchboard.contracts.agents import (
    AgentProfileChanged,
    AgentStateChanged,
    AgentStatesRequested,
)
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    InteractionQueued,
    InteractionTransferred,
    OfferAnswer,
    OfferCancelled,
    OfferMade,
    OfferRejected,
    OfferTimedOut,
    RouteRequested,
    RouteWithdrawn,
    ServiceDefinition,
    TransferRequested,
    WaitingChanged,
)
from switchboard.routing import domain, metrics
from switchboard.routing.offers_in_hand import OffersInHand
from switchboard.routing.queue_index import Place, QueueIndex
from switchboard.routing.store import (
    LIVE,
    Document,
    RoutingStore,
    agent_from,
    place_of,
    utcnow,
    work_from,
)
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import Refused

log = structlog.get_logger("switchboard.routing")

RETAKES = 5  # how often a dispatch that lost a race tries the next candidate
BY_ID_LIMIT = 32  # more candidates than this: one query beats as many reads by _id

_EVENT_NAMESPACE = uuid.UUID("0d5f2f7e-6a0e-4b8e-9a53-0c3f1d9b7a21")


def _aware(when: datetime) -> datetime:
    """MongoDB hands datetimes back without a zone; they are UTC."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _event_id(*parts: str) -> uuid.UUID:
    """A deterministic message id: a timer that fires twice publishes the same event twice."""
    return uuid.uuid5(_EVENT_NAMESPACE, "/".join(parts))


_SNAPSHOT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""The time part of a profile key taken from agent-state's answer: any event of the same
version (same content) may still replace it."""


def _profile_change(profile: Document, key: list[Any]) -> Callable[[Document], bool]:
    """Apply a profile unless one at least as new (``[version, occurred_at]``) is there."""

    def change(agent: Document) -> bool:
        if agent.get("profile_key") is not None and key <= agent["profile_key"]:
            return False
        agent.update(profile, profile_key=key)
        return True

    return change


def _state_change(
    state: str, sequence: int, not_ready_pending: bool, changed_at: datetime
) -> Callable[[Document], bool]:
    """Apply a state unless a newer one (by agent-state's sequence) is there."""

    def change(agent: Document) -> bool:
        if sequence <= int(agent.get("state_seq", 0)):
            return False
        was = agent.get("state")
        agent.update(
            state=state,
            state_seq=sequence,
            not_ready_pending=not_ready_pending,
            hold_off_until=None,
        )
        if state == "ready" and was != "ready":
            agent["idle_since"] = changed_at
        return True

    return change


class Backstop:
    """A periodic full scan that keeps to a share of the database's time.

    The sweep and the queue gauges read the whole backlog. On a database that scans for such
    queries (FerretDB) a 10,000-deep queue makes one run take seconds; run every second, they
    would crowd out the work the events do. After a run that took ``t`` seconds the next one
    waits at least ``t * (1 / share - 1)``.
    """

    def __init__(self, share: float = 0.2) -> None:
        self._rest = 1 / share - 1
        self._next = 0.0

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self._next = time.monotonic() + (time.monotonic() - started) * self._rest

    def due(self) -> bool:
        return time.monotonic() >= self._next


class Catalog:
    """The configured services, cached for a moment (every replica reloads them often)."""

    def __init__(self, store: RoutingStore, *, max_age_seconds: float = 2.0) -> None:
        self._store = store
        self._max_age = max_age_seconds
        self._services: dict[str, ServiceDefinition] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def all(self, *, fresh: bool = False) -> dict[str, ServiceDefinition]:
        """The services; ``fresh`` for commands, where a stale answer would be a wrong one."""
        loop = asyncio.get_running_loop()
        if fresh:
            self.invalidate()
        if loop.time() - self._loaded_at > self._max_age:
            async with self._lock:
                if loop.time() - self._loaded_at > self._max_age:
                    found = await self._store.list_services()
                    self._services = {s.name: s for s in found}
                    self._loaded_at = loop.time()
        return self._services

    async def get(self, name: str, *, fresh: bool = False) -> ServiceDefinition | None:
        return (await self.all(fresh=fresh)).get(name)

    def invalidate(self) -> None:
        self._loaded_at = 0.0


class Router:
    def __init__(
        self,
        store: RoutingStore,
        bus: Bus,
        *,
        decline_cooldown_seconds: float = 60.0,
        rona_hold_off_seconds: float = 30.0,
        sweep_batch: int = 2000,
        sweep_grace_seconds: float = 2.0,
        stale_hold_seconds: float = 30.0,
        reconcile_timeout_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.reconcile_timeout = reconcile_timeout_seconds
        self._profile_lookups: dict[str, asyncio.Task[int]] = {}
        self._sweeps = Backstop()
        self._gauges = Backstop()
        self._index_reads = Backstop(share=0.1)
        self.queue = QueueIndex()
        self.in_hand = OffersInHand()
        self._free_reads: dict[
            tuple[str, str | None], asyncio.Future[tuple[float, list[Document]]]
        ] = {}
        store.on_work_written = self._work_written
        self.bus = bus
        self.catalog = Catalog(store)
        self.decline_cooldown = timedelta(seconds=decline_cooldown_seconds)
        self.rona_hold_off = timedelta(seconds=rona_hold_off_seconds)
        self.sweep_batch = sweep_batch
        self.sweep_grace = timedelta(seconds=sweep_grace_seconds)
        self.stale_hold = timedelta(seconds=stale_hold_seconds)

    # --- publishing -----------------------------------------------------------------------

    async def emit(self, message: Message) -> None:
        """Publish an event; one nobody is bound to yet is counted, not an error."""
        try:
            await self.bus.publish(message)
        except PublishError:
            metrics.UNROUTED.labels(message.NAME).inc()
            log.warning("event published but nobody listens to it", name=message.NAME)

    # --- the queue index (queue_index.py) -------------------------------------------------

    async def _work_written(self, doc: Document) -> None:
        """Note our own write at once, and tell the other replicas (best effort: their next
        full read repairs a lost notice)."""
        place = place_of(doc)
        self.queue.note(place)
        try:
            await self.bus.publish(
                WaitingChanged(
                    interaction_id=place.interaction_id,
                    version=place.version,
                    waiting=place.waiting,
                    service=place.service,
                    priority=place.priority,
                    queued_at=place.queued_at,
                    personal_agent_id=place.personal_agent_id,
                )
            )
        except Exception:
            log.warning("queue change not told to the other replicas", exc_info=True)

    def heard(self, msg: WaitingChanged) -> None:
        """Another replica (or this one) wrote an interaction: move it in the index."""
        self.queue.note(
            Place(
                interaction_id=msg.interaction_id,
                version=msg.version,
                waiting=msg.waiting,
                service=msg.service,
                priority=msg.priority,
                queued_at=msg.queued_at,
                personal_agent_id=msg.personal_agent_id,
            )
        )

    async def refresh_queue_index(self) -> None:
        """Read every waiting interaction's place and rebuild the index (the backstop for lost
        notices); keeps to a share of the database's time like the sweep."""
        if not self._index_reads.due():
            return
        async with self._index_reads.run():
            since = self.queue.mark()
            self.queue.rebuild(await self.store.waiting_places(), since)

    async def waiting(
        self,
        *,
        services: Iterable[str] = (),
        personal_agent_ids: Iterable[str] = (),
        limit: int,
    ) -> list[Document]:
        """Waiting work in queue order: these services' team work, these agents' personal work.

        Candidates come from the index and are each read by ``_id``, so what is returned is
        current; entries found stale are corrected on the way. Until the first full read, and for
        more candidates than are cheaper read one by one, the database is queried instead.
        """
        names = sorted(set(services))
        agents = sorted(set(personal_agent_ids))
        if not self.queue.built or limit > BY_ID_LIMIT:
            return await self.store.waiting_for(agents, names, limit=limit)
        found: list[Document] = []
        seen: set[str] = set()
        while len(found) < limit:
            ids = self.queue.head(
                services=names, personal_agent_ids=agents, limit=len(seen) + limit - len(found)
            )
            fresh = [i for i in ids if i not in seen]
            if not fresh:
                break
            seen.update(fresh)
            fresh = [i for i in fresh if not self.in_hand.offering(i)]
            for interaction_id, doc in (await self.store.works_by_id(fresh)).items():
                if doc is not None and doc["status"] == "waiting":
                    found.append(doc)
                elif doc is None:
                    self.queue.drop(interaction_id)
                else:
                    self.queue.note(place_of(doc))
        return found[:limit]

    def _plan(
        self,
        works: Iterable[domain.Work],
        agents: Iterable[domain.Agent],
        services: dict[str, ServiceDefinition],
        now: datetime,
        logged_in: dict[str, bool],
        read_at: float,
    ) -> list[tuple[domain.Work, domain.Agent]]:
        """Match work no other dispatch of this replica is offering, with the room its offers
        leave (``read_at``: when the agents were read); the caller makes the plan's offers with
        :meth:`_carry_out` (no await between the two: no other dispatch plans the same)."""
        return domain.plan_offers(
            self.in_hand.free(works),
            self.in_hand.with_room_taken(agents, read_at),
            services,
            now,
            logged_in,
        )

    async def _free_agents(self, channel: str, team: str | None) -> tuple[float, list[Document]]:
        """The free agents of a channel and team. Requests handled together share one read
        (on FerretDB each read decodes every agent); the offers made since it began are
        counted by :meth:`_plan`."""
        key = (channel, team)
        shared = self._free_reads.get(key)
        if shared is None:

            async def read() -> tuple[float, list[Document]]:
                read_at = self.in_hand.now()
                return read_at, await self.store.free_agents(channel, team)

            def forget(done: asyncio.Future[tuple[float, list[Document]]]) -> None:
                if self._free_reads.get(key) is done:
                    del self._free_reads[key]
                if not done.cancelled():
                    done.exception()  # its waiters got it; none left must not warn

            shared = self._free_reads[key] = asyncio.ensure_future(read())
            shared.add_done_callback(forget)
        return await asyncio.shield(shared)

    # --- route requests -------------------------------------------------------------------

    async def request(self, msg: RouteRequested) -> dict[str, Any]:
        now = utcnow()
        current = await self.store.get_work(msg.interaction_id)
        archived = (
            None if current is not None else await self.store.get_archived(msg.interaction_id)
        )
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
            doc = self._new_round(msg, current or archived, service, now)
            written = (
                await self.store.insert_work(doc)
                if current is None
                else await self.store.replace_work(current["version"], doc)
            )
            if not written:
                metrics.CAS_CONFLICTS.labels("request").inc()
                raise RuntimeError(f"{msg.interaction_id} changed while queueing: retry")
        await self.emit(
            InteractionQueued.caused_by(
                msg,
                key=str(doc["round"]),
                interaction_id=doc["_id"],
                channel=doc["channel"],
                service=doc["service"],
                personal_agent_id=doc.get("personal_agent_id"),
            )
        )
        await self.dispatch_work(doc["_id"], doc)
        return {"status": "queued", "round": doc["round"]}

    def _new_round(
        self,
        msg: RouteRequested,
        previous: Document | None,
        service: ServiceDefinition | None,
        now: datetime,
    ) -> Document:
        queued_at = msg.requested_at or msg.occurred_at
        preferred_wait = service.preferred_agent_wait_seconds if service else 0.0
        overflow = service.personal_overflow_seconds if service else None
        preferred_until = (
            now + timedelta(seconds=preferred_wait)
            if msg.preferred_agent_id and preferred_wait > 0
            else None
        )
        personal_until = (
            now + timedelta(seconds=overflow) if msg.personal_agent_id and overflow else None
        )
        priority = (
            msg.priority if msg.priority is not None else (service.priority if service else 0)
        )
        doc: Document = {
            "_id": msg.interaction_id,
            "status": "waiting",
            "channel": msg.channel,
            "service": msg.service,
            "priority": priority,
            "reason": msg.reason,
            "queued_at": queued_at,
            "requested_at": queued_at,
            "round": int(previous["round"]) + 1 if previous else 1,
            "offers_in_round": 0,
            "request_id": str(msg.message_id),
            "preferred_agent_id": msg.preferred_agent_id,
            "preferred_until": preferred_until,
            "personal_agent_id": msg.personal_agent_id,
            "personal_until": personal_until,
            "declined": [],
            "summary": msg.summary,
            "offer_id": None,
            "offer": None,
            "agent_id": None,
            "withdrawn_at": previous.get("withdrawn_at") if previous else None,
            "ended_at": None,
            "history": list(previous.get("history", [])) if previous else [],
            "version": int(previous["version"]) + 1 if previous else 1,
        }
        doc["due"] = self._due(doc, now)
        return doc

    @staticmethod
    def _due(doc: Document, now: datetime) -> datetime | None:
        return domain.next_due(
            doc["status"],
            offer_expires_at=(doc.get("offer") or {}).get("expires_at"),
            preferred_until=doc.get("preferred_until"),
            personal_until=doc.get("personal_until"),
            now=now,
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
                if await self.store.insert_work(tombstone):
                    return {"status": "withdrawn"}
                continue
            if doc["status"] not in ("waiting", "offered"):
                return {"status": doc["status"]}
            updated = copy.deepcopy(doc)
            offer = doc.get("offer")
            updated.update(
                status="withdrawn",
                withdrawn_at=msg.occurred_at,
                offer=None,
                offer_id=None,
                due=None,
                version=doc["version"] + 1,
            )
            if offer is not None:
                updated["past_offers"] = self._past(doc, offer, "cancelled")
            if not await self.store.replace_work(doc["version"], updated):
                metrics.CAS_CONFLICTS.labels("withdraw").inc()
                continue
            if offer is not None:
                await self._close_offer(offer, doc, "cancelled", now)
                await self.release_hold(offer["agent_id"], offer_id=offer["id"])
                await self.emit(
                    OfferCancelled.caused_by(
                        msg,
                        offer_id=offer["id"],
                        interaction_id=doc["_id"],
                        agent_id=offer["agent_id"],
                        reason=msg.reason or "withdrawn",
                    )
                )
                await self.dispatch_agent(offer["agent_id"])
            return {"status": "withdrawn"}
        raise RuntimeError(f"{msg.interaction_id} kept changing while withdrawing: retry")

    async def ended(self, msg: InteractionEnded) -> None:
        for _ in range(20):
            now = utcnow()
            doc = await self.store.get_work(msg.interaction_id)
            if doc is None or doc["status"] not in LIVE:
                break
            updated = copy.deepcopy(doc)
            offer = doc.get("offer") if doc["status"] == "offered" else None
            updated.update(
                status="ended",
                ended_at=now,
                offer=None,
                offer_id=None if offer else doc.get("offer_id"),
                due=None,
                version=doc["version"] + 1,
            )
            if offer is not None:
                updated["past_offers"] = self._past(doc, offer, "cancelled")
            if not await self.store.replace_work(doc["version"], updated):
                metrics.CAS_CONFLICTS.labels("end").inc()
                continue
            if doc["status"] == "assigned" and doc.get("assigned_at") is not None:
                handled = (now - doc["assigned_at"]).total_seconds()
                metrics.HANDLE_SECONDS.labels(doc["service"]).observe(handled)
            await self.store.archive_work(updated)
            if offer is not None:
                await self._close_offer(offer, doc, "cancelled", now)
                await self.release_hold(offer["agent_id"], offer_id=offer["id"])
                if offer["agent_id"] != msg.agent_id:
                    await self.emit(
                        OfferCancelled.caused_by(
                            msg,
                            offer_id=offer["id"],
                            interaction_id=doc["_id"],
                            agent_id=offer["agent_id"],
                            reason="ended",
                        )
                    )
                    await self.dispatch_agent(offer["agent_id"])
            if doc.get("agent_id") and doc["agent_id"] != msg.agent_id:
                await self.release_hold(doc["agent_id"], interaction_id=doc["_id"])
                await self.dispatch_agent(doc["agent_id"])
            break
        # Always give the ender's capacity back (also when a crash left it held).
        await self.release_hold(msg.agent_id, interaction_id=msg.interaction_id)
        await self.dispatch_agent(msg.agent_id)

    # --- offers ---------------------------------------------------------------------------

    async def dispatch_work(self, interaction_id: str, known: Document | None = None) -> int:
        """Offer one waiting interaction to the best free agent, if there is one now."""
        doc = known if known is not None else await self.store.get_work(interaction_id)
        if doc is None or doc["status"] != "waiting":
            return 0
        now = utcnow()
        services = await self.catalog.all()
        service = services.get(doc["service"])
        work = work_from(doc)
        logged_in = await self._logged_in([work])
        target = domain.meant_for(work, now, logged_in)
        if target is None and (service is None or service.channel != work.channel):
            return 0
        lost: set[str] = set()
        for _ in range(RETAKES):
            if target is not None:
                read_at = self.in_hand.now()
                agent_docs = list((await self.store.agents_by_id([target])).values())
            else:
                assert service is not None
                read_at, agent_docs = await self._free_agents(work.channel, service.team)
            agents = [
                agent_from(d, self.store.default_capacity, now)
                for d in agent_docs
                if d["_id"] not in lost
            ]
            plan = self._plan([work], agents, services, now, logged_in, read_at)
            if not plan:
                return 0
            if made := await self._carry_out(plan, {doc["_id"]: doc}):
                return len(made)
            # Lost a race: another replica's offer took that agent, or this interaction. The
            # next agent, if it still waits: as the agents are now (someone may have become
            # free meanwhile, and been left to this dispatch by their own).
            lost.add(plan[0][1].agent_id)
            current = await self.store.get_work(doc["_id"])
            if current is None or current["status"] != "waiting":
                return 0
            doc, work = current, work_from(current)
        return 0

    async def dispatch_agent(self, agent_id: str) -> int:
        """Offer waiting work to an agent who may have become free (Ready, capacity freed)."""
        return (await self._dispatch_agents([agent_id]))[agent_id]

    async def _dispatch_agents(self, agent_ids: list[str]) -> Counter[str]:
        """Match these agents with the head of their queues in one plan (each gets different
        work); after a lost race, again with the agents as they are now."""
        made: Counter[str] = Counter()
        now = utcnow()
        services = await self.catalog.all()
        read_at = self.in_hand.now()
        found = await self.store.agents_by_id(agent_ids)
        limit = 0
        for _ in range(RETAKES):
            agents = [
                a
                for a in (agent_from(d, self.store.default_capacity, now) for d in found.values())
                if any(a.can_take(ch) for ch in domain.CHANNELS)
            ]
            names = {
                s.name
                for s in services.values()
                for a in agents
                if a.can_take(s.channel) and domain.serves(a, s)
            }
            room = sum(a.room(ch) for a in agents for ch in domain.CHANNELS if a.can_take(ch))
            if not agents:
                break
            limit = max(limit, room + 10)  # the head is almost always enough
            docs = await self.waiting(
                services=names, personal_agent_ids=[a.agent_id for a in agents], limit=limit
            )
            works = [work_from(d) for d in docs]
            logged_in = await self._logged_in(works)
            plan = self._plan(works, agents, services, now, logged_in, read_at)
            if not plan:
                if any(self.in_hand.offering(w.interaction_id) for w in works):
                    continue  # taken meanwhile by this replica's other dispatches: the next ones
                if len(docs) < limit or limit > 100:
                    break
                limit += 100  # declined or kept for someone else: look deeper
                continue
            done = await self._carry_out(plan, {d["_id"]: d for d in docs})
            made.update(agent.agent_id for _, agent in done)
            if len(done) == len(plan):
                break
            # Lost a race for some work (another replica's offer): again, with the agents as
            # they are now.
            read_at = self.in_hand.now()
            found = await self.store.agents_by_id(agent_ids)
        return made

    async def sweep(self) -> int:
        """Match everything waiting with every free agent (the backstop behind the events)."""
        if not self._sweeps.due():
            return 0
        async with self._sweeps.run():
            return await self._sweep()

    async def _sweep(self) -> int:
        read_at = self.in_hand.now()
        free = await self.store.free_agents()
        if not free:
            return 0
        now = utcnow()
        agents = [agent_from(d, self.store.default_capacity, now) for d in free]
        services = await self.catalog.all()
        # Only work someone free could take: a deep queue nobody serves now must not hide it.
        names = {
            s.name
            for s in services.values()
            for a in agents
            if a.can_take(s.channel) and domain.serves(a, s)
        }
        docs = await self.store.waiting_for(
            [a.agent_id for a in agents], names, limit=self.sweep_batch
        )
        # Work requested a moment ago is being dispatched by its own request: racing it for
        # the same agents would only make both slower.
        grace_from = now - self.sweep_grace
        docs = [d for d in docs if (d.get("requested_at") or d["queued_at"]) <= grace_from]
        if not docs:
            return 0
        works = [work_from(d) for d in docs]
        logged_in = await self._logged_in(works)
        plan = self._plan(works, agents, services, now, logged_in, read_at)
        return len(await self._carry_out(plan, {d["_id"]: d for d in docs}))

    async def _logged_in(self, works: Iterable[domain.Work]) -> dict[str, bool]:
        wanted = [w.preferred_agent_id for w in works if w.preferred_agent_id]
        found = await self.store.agents_by_id(wanted)
        now = utcnow()
        return {
            agent_id: agent_from(doc, self.store.default_capacity, now).logged_in
            for agent_id, doc in found.items()
        }

    async def _carry_out(
        self, plan: list[tuple[domain.Work, domain.Agent]], docs: dict[str, Document]
    ) -> list[tuple[domain.Work, domain.Agent]]:
        """Make the plan's offers; the pairs whose offer was made (the others lost a race)."""
        made = []
        with self.in_hand.holding(plan) as settle:
            for work, agent in plan:
                offered = await self.offer(docs[work.interaction_id], agent.agent_id)
                settle(work, offered)
                if offered:
                    made.append((work, agent))
        return made

    async def offer(self, doc: Document, agent_id: str, *, pulled: bool = False) -> bool:
        """Reserve the agent, then the interaction; give the agent back if the second fails."""
        now = utcnow()
        service = await self.catalog.get(doc["service"])
        channel = doc["channel"]
        number = int(doc.get("offers_in_round", 0)) + 1
        offer_id = domain.offer_id(
            doc["_id"], int(doc["round"]), number, kind="pull/" if pulled else ""
        )
        token = uuid.uuid4().hex  # this reservation's own mark: a loser releases only its own

        def reserve(agent: Document) -> bool:
            view = agent_from(agent, self.store.default_capacity, now)
            if pulled:
                if not view.logged_in or view.room(channel) <= 0:
                    return False
            elif not view.can_take(channel):
                return False
            if any(h["i"] == doc["_id"] for h in agent["holds"]):
                return False
            agent["holds"] = [
                *agent["holds"],
                {"o": offer_id, "i": doc["_id"], "c": channel, "at": now, "t": token},
            ]
            agent["idle_since"] = now
            return True

        _, reserved = await self.store.update_agent(agent_id, reserve, create=False)
        if not reserved:
            metrics.CAS_CONFLICTS.labels("agent").inc()
            return False
        auto = bool(service and service.auto_accept) or pulled
        timeout = service.offer_timeout_seconds if service else 30.0
        expires_at = now + timedelta(seconds=timeout)
        offer = {
            "id": offer_id,
            "agent_id": agent_id,
            "made_at": now,
            "expires_at": expires_at,
            "auto_accept": auto,
        }
        updated = copy.deepcopy(doc)
        updated.update(
            status="assigned" if auto else "offered",
            assigned_at=now if auto else None,
            offer=None if auto else offer,
            offer_id=offer_id,
            agent_id=agent_id if auto else None,
            offers_in_round=number,
            offer_ids=[*doc.get("offer_ids", [])[-49:], offer_id],
            version=doc["version"] + 1,
        )
        if auto:
            updated["past_offers"] = self._past(doc, offer, "pulled" if pulled else "auto_accepted")
        updated["due"] = self._due(updated, now)
        try:
            written = await self.store.replace_work(doc["version"], updated)
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

        def drop(agent: Document) -> bool:
            kept = [
                h
                for h in agent["holds"]
                if not (
                    (offer_id is not None and h["o"] == offer_id)
                    or (interaction_id is not None and h["i"] == interaction_id)
                    or (token is not None and h.get("t") == token)
                )
            ]
            if len(kept) == len(agent["holds"]):
                return False
            agent["holds"] = kept
            agent["idle_since"] = now
            return True

        _, changed = await self.store.update_agent(agent_id, drop, create=False)
        return changed

    async def answer(self, msg: OfferAnswer) -> dict[str, Any]:
        for _ in range(20):
            now = utcnow()
            doc = await self.store.work_by_offer(msg.offer_id)
            if doc is None:
                raise Refused("unknown_offer", f"no offer {msg.offer_id}", field="offer_id")
            offer = doc.get("offer")
            if offer is None or offer["id"] != msg.offer_id:
                past = next(
                    (p for p in doc.get("past_offers", []) if p["id"] == msg.offer_id), None
                )
                accepted = doc["status"] == "assigned" and doc.get("offer_id") == msg.offer_id
                owner = past["agent_id"] if past else (doc.get("agent_id") if accepted else None)
                if owner is not None and owner != msg.agent_id:
                    raise Refused(
                        "not_yours", "this offer was made to another agent", field="agent_id"
                    )
                if accepted and msg.accept:
                    return {"status": "assigned", "interaction_id": doc["_id"]}
                outcome = past["outcome"] if past else "closed"
                raise Refused(
                    "offer_closed", f"the offer is no longer live ({outcome})", field="offer_id"
                )
            if offer["agent_id"] != msg.agent_id:
                raise Refused("not_yours", "this offer was made to another agent", field="agent_id")
            updated = copy.deepcopy(doc)
            if msg.accept:
                updated.update(
                    status="assigned",
                    assigned_at=now,
                    offer=None,
                    agent_id=msg.agent_id,
                    due=None,
                    past_offers=self._past(doc, offer, "accepted"),
                    version=doc["version"] + 1,
                )
            else:
                updated = self._requeued(doc, offer, "rejected", now, decline=True)
            if not await self.store.replace_work(doc["version"], updated):
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

    async def _close_offer(
        self, offer: Document, doc: Document, outcome: str, now: datetime
    ) -> None:
        metrics.OFFER_OUTCOMES.labels(doc["service"], outcome).inc()

    def _requeued(
        self, doc: Document, offer: Document, outcome: str, now: datetime, *, decline: bool
    ) -> Document:
        """The interaction back in its queue after an offer that was not accepted, with its
        age kept (so at the head); ``decline`` keeps it from that agent for the cooldown."""
        updated = copy.deepcopy(doc)
        updated.update(
            status="waiting",
            offer=None,
            offer_id=None,
            agent_id=None,
            past_offers=self._past(doc, offer, outcome),
            version=doc["version"] + 1,
        )
        if decline:
            agent_id = offer["agent_id"]
            updated["declined"] = [
                *[d for d in doc.get("declined", []) if d["a"] != agent_id],
                {"a": agent_id, "until": now + self.decline_cooldown},
            ]
        updated["due"] = self._due(updated, now)
        return updated

    @staticmethod
    def _past(doc: Document, offer: Document, outcome: str) -> list[Document]:
        """The interaction's last offers and how they ended (kept inside its document)."""
        entry = {"id": offer["id"], "agent_id": offer["agent_id"], "outcome": outcome}
        return [*doc.get("past_offers", [])[-19:], entry]

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
        offer = doc.get("offer")
        if doc["status"] == "offered" and offer is not None and offer["expires_at"] <= now:
            updated = self._requeued(doc, offer, "timed_out", now, decline=True)
            if not await self.store.replace_work(doc["version"], updated):
                return False  # another replica claimed it (or the agent answered)
            await self._close_offer(offer, doc, "timed_out", now)
            metrics.RONA.inc()
            await self._rona(offer["agent_id"], offer["id"], now)
            await self.emit(
                OfferTimedOut(
                    message_id=_event_id(offer["id"], "timed_out"),
                    offer_id=offer["id"],
                    interaction_id=doc["_id"],
                    agent_id=offer["agent_id"],
                    channel=doc["channel"],
                )
            )
            log.info("offer timed out", interaction_id=doc["_id"], agent_id=offer["agent_id"])
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
            updated["due"] = self._due(updated, now)
            if not await self.store.replace_work(doc["version"], updated):
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
        return await self.store.replace_work(doc["version"], updated)

    async def _rona(self, agent_id: str, offer_id: str, now: datetime) -> None:
        """Give back the hold and keep the agent from new offers until agent-state's RONA.

        Both in one write, so no other replica sees the agent free in between.
        """

        def change(agent: Document) -> bool:
            agent["holds"] = [h for h in agent["holds"] if h["o"] != offer_id]
            agent["hold_off_until"] = now + self.rona_hold_off
            return True

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
                    if not await self.store.replace_work(work["version"], bumped):
                        continue  # being written right now: look again next time
                if await self.release_hold(agent["_id"], offer_id=hold["o"]):
                    metrics.STALE_HOLDS.inc()
                    log.warning("stale capacity hold released", agent_id=agent["_id"], hold=hold)
                    released += 1
        return released

    # --- agents ---------------------------------------------------------------------------

    async def profile_changed(self, msg: AgentProfileChanged) -> None:
        profile = {
            "teams": list(msg.teams),
            "skills": [{"name": s.name, "level": s.level} for s in msg.skills],
            "capacity": dict(msg.capacity),
            "active": msg.active,
        }
        await self.store.update_agent(
            msg.agent_id, _profile_change(profile, [msg.profile_version, msg.occurred_at])
        )
        await self.dispatch_agent(msg.agent_id)

    async def state_changed(self, msg: AgentStateChanged) -> None:
        doc, _ = await self.store.update_agent(
            msg.agent_id,
            _state_change(msg.state, msg.sequence, msg.not_ready_pending, msg.changed_at),
        )
        if doc is not None and doc.get("profile_key") is None:
            self._learn_profile(msg.agent_id)
        if doc is not None and doc.get("state") == "logged_out" and doc.get("holds"):
            await self.take_back_offers(doc, "the agent logged out")
        await self.dispatch_agent(msg.agent_id)

    async def take_back_offers(self, agent: Document, reason: str) -> int:
        """Cancel the agent's live offers and put the work back at the head of its queue.

        An agent who logs out cannot answer: the offer would only ring until its timeout while
        the customer waits, and the agent would be sent to RONA on top.
        """
        taken = 0
        for hold in agent.get("holds", []):
            for _ in range(20):
                now = utcnow()
                doc = await self.store.get_work(hold["i"])
                offer = (doc or {}).get("offer")
                if doc is None or doc["status"] != "offered" or offer is None:
                    break
                if offer["id"] != hold["o"]:
                    break
                updated = self._requeued(doc, offer, "cancelled", now, decline=False)
                if not await self.store.replace_work(doc["version"], updated):
                    metrics.CAS_CONFLICTS.labels("take_back").inc()
                    continue
                await self._close_offer(offer, doc, "cancelled", now)
                await self.release_hold(agent["_id"], offer_id=offer["id"])
                await self.emit(
                    OfferCancelled(
                        message_id=_event_id(offer["id"], "cancelled"),
                        offer_id=offer["id"],
                        interaction_id=doc["_id"],
                        agent_id=agent["_id"],
                        reason=reason,
                    )
                )
                log.info("offer taken back", interaction_id=doc["_id"], reason=reason)
                taken += 1
                await self.dispatch_work(doc["_id"])
                break
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
            agent_id = str(item["agent_id"])
            key = [int(item.get("profile_version", 0)), _SNAPSHOT_TIME]
            sequence = int(item.get("sequence", 0))
            have_key, have_sequence = applied.get(agent_id, (None, 0))
            if have_key is not None and key <= have_key and sequence <= have_sequence:
                continue
            profile = {
                "teams": list(item.get("teams", [])),
                "skills": [
                    {"name": s["name"], "level": int(s.get("level", 1))}
                    for s in item.get("skills", [])
                ],
                "capacity": dict(item.get("capacity", {})),
                "active": bool(item.get("active", True)),
            }
            since = item.get("since")
            state = _state_change(
                item["state"],
                sequence,
                bool(item.get("not_ready_pending", False)),
                datetime.fromisoformat(since) if since else utcnow(),
            )
            with_profile = _profile_change(profile, key)

            def change(agent: Document, state: Any = state, profile: Any = with_profile) -> bool:
                return bool(profile(agent) | state(agent))

            _, did = await self.store.update_agent(agent_id, change)
            if did:
                changed += 1
                log.info("agent caught up from agent-state", agent_id=agent_id)
                await self.dispatch_agent(agent_id)
        return changed

    async def close(self) -> None:
        for task in list(self._profile_lookups.values()):
            task.cancel()
        await asyncio.gather(*self._profile_lookups.values(), return_exceptions=True)

    # --- queues ---------------------------------------------------------------------------

    async def _acting_agent(self, agent_id: str) -> domain.Agent:
        doc = await self.store.get_agent(agent_id)
        if doc is None:
            raise Refused("unknown_agent", f"routing knows no agent {agent_id}", field="agent_id")
        agent = agent_from(doc, self.store.default_capacity, utcnow())
        if not agent.logged_in:
            raise Refused("not_logged_in", f"agent {agent_id} is not logged in", field="agent_id")
        return agent

    async def team_services(self, agent: domain.Agent, only: str | None) -> list[str]:
        """The services whose team queue the agent may see and pull from: their team's, and
        only those whose required skills they have (the same rule as offers)."""
        services = await self.catalog.all(fresh=True)
        if only is not None:
            service = services.get(only)
            if service is None or not domain.in_team(agent, service):
                raise Refused(
                    "not_your_service", f"{only} is not a service of your team", field="service"
                )
            if not domain.has_skills(agent, service):
                missing = ", ".join(
                    f"{name} {level}"
                    for name, level in sorted(service.required_skills.items())
                    if agent.skills.get(name, 0) < level
                )
                raise Refused(
                    "missing_skills", f"{only} needs skills you lack: {missing}", field="service"
                )
            return [only]
        return [s.name for s in services.values() if domain.serves(agent, s)]

    @staticmethod
    def _item(doc: Document, now: datetime) -> dict[str, Any]:
        return {
            "interaction_id": doc["_id"],
            "service": doc["service"],
            "channel": doc["channel"],
            "priority": doc.get("priority", 0),
            "queued_at": doc["queued_at"].isoformat(),
            "waited_seconds": round((now - doc["queued_at"]).total_seconds(), 3),
            "reason": doc.get("reason", "new"),
            "summary": doc.get("summary") or {},
        }

    async def team_queue(self, agent_id: str, service: str | None, limit: int) -> dict[str, Any]:
        agent = await self._acting_agent(agent_id)
        names = await self.team_services(agent, service)
        docs = await self.waiting(services=names, limit=limit) if names else []
        now = utcnow()
        return {"items": [self._item(d, now) for d in docs]}

    async def personal_queue(self, agent_id: str, limit: int) -> dict[str, Any]:
        await self._acting_agent(agent_id)
        docs = await self.waiting(personal_agent_ids=[agent_id], limit=limit)
        now = utcnow()
        return {"items": [self._item(d, now) for d in docs]}

    async def pull(
        self,
        agent_id: str,
        interaction_id: str | None,
        *,
        personal: bool,
        service: str | None = None,
    ) -> dict[str, Any]:
        """An atomic claim: the CAS on the interaction lets exactly one puller win."""
        agent = await self._acting_agent(agent_id)
        names = [] if personal else await self.team_services(agent, service)
        for _ in range(10):
            if interaction_id is not None:
                doc = await self.store.get_work(interaction_id)
                mine = doc is not None and (
                    doc.get("personal_agent_id") == agent_id
                    if personal
                    else doc.get("personal_agent_id") is None and doc["service"] in names
                )
                if doc is None or not mine or doc["status"] != "waiting":
                    raise Refused(
                        "not_available",
                        f"{interaction_id} is not waiting in your "
                        + ("personal queue" if personal else "team queue"),
                        field="interaction_id",
                    )
                candidates = [doc]
            elif personal:
                candidates = await self.waiting(personal_agent_ids=[agent_id], limit=20)
            else:
                candidates = await self.waiting(services=names, limit=20) if names else []
            if not candidates:
                raise Refused("queue_empty", "nothing is waiting in that queue")
            fresh = await self._acting_agent(agent_id)
            for doc in candidates:
                if fresh.room(doc["channel"]) <= 0:
                    raise Refused(
                        "at_capacity",
                        f"no free {doc['channel']} capacity: finish some work first",
                        field="agent_id",
                    )
                if await self.offer(doc, agent_id, pulled=True):
                    return {
                        "interaction_id": doc["_id"],
                        "service": doc["service"],
                        "channel": doc["channel"],
                        "summary": doc.get("summary") or {},
                    }
        raise Refused(
            "not_available", "someone else took it first: try again", field="interaction_id"
        )

    async def transfer(self, msg: TransferRequested) -> dict[str, Any]:
        if not msg.to_service and not msg.to_agent_id:
            raise Refused("missing_target", "name a service or an agent", field="to_service")
        if msg.to_agent_id == msg.agent_id:
            raise Refused("same_agent", "you cannot transfer to yourself", field="to_agent_id")
        if msg.to_agent_id is not None and await self.store.get_agent(msg.to_agent_id) is None:
            raise Refused("unknown_agent", f"no agent {msg.to_agent_id}", field="to_agent_id")
        for _ in range(20):
            now = utcnow()
            doc = await self.store.get_work(msg.interaction_id)
            if doc is None:
                raise Refused(
                    "unknown_interaction",
                    f"no interaction {msg.interaction_id}",
                    field="interaction_id",
                )
            if doc["status"] != "assigned" or doc.get("agent_id") != msg.agent_id:
                raise Refused(
                    "not_yours",
                    "only the agent holding an interaction can transfer it (accept it first)",
                    field="agent_id",
                )
            target_name = msg.to_service or doc["service"]
            target = await self.catalog.get(target_name, fresh=True)
            if target is None:
                raise Refused("unknown_service", f"no service {target_name}", field="to_service")
            if target.channel != doc["channel"]:
                raise Refused(
                    "channel_mismatch",
                    f"{target_name} takes {target.channel}, this is {doc['channel']}",
                    field="to_service",
                )
            overflow = target.personal_overflow_seconds
            updated = copy.deepcopy(doc)
            updated.update(
                status="waiting",
                service=target_name,
                reason="transfer",
                priority=target.priority,
                round=int(doc["round"]) + 1,
                offers_in_round=0,
                requested_at=now,
                request_id=str(msg.message_id),
                preferred_agent_id=None,
                preferred_until=None,
                personal_agent_id=msg.to_agent_id,
                personal_until=(
                    now + timedelta(seconds=overflow) if msg.to_agent_id and overflow else None
                ),
                declined=[],
                offer=None,
                offer_id=None,
                agent_id=None,
                history=[
                    *doc.get("history", []),
                    {
                        "at": now,
                        "what": "transferred",
                        "from_agent": msg.agent_id,
                        "from_service": doc["service"],
                        "to_service": target_name,
                        "to_agent": msg.to_agent_id,
                        "reason": msg.reason,
                    },
                ],
                version=doc["version"] + 1,
            )
            updated["due"] = self._due(updated, now)
            if not await self.store.replace_work(doc["version"], updated):
                metrics.CAS_CONFLICTS.labels("transfer").inc()
                continue
            await self.release_hold(msg.agent_id, interaction_id=doc["_id"])
            await self.emit(
                InteractionTransferred.caused_by(
                    msg,
                    interaction_id=doc["_id"],
                    from_agent_id=msg.agent_id,
                    channel=doc["channel"],
                    from_service=doc["service"],
                    to_service=target_name,
                    to_agent_id=msg.to_agent_id,
                    reason=msg.reason,
                )
            )
            await self.emit(
                InteractionQueued.caused_by(
                    msg,
                    interaction_id=doc["_id"],
                    channel=doc["channel"],
                    service=target_name,
                    personal_agent_id=msg.to_agent_id,
                )
            )
            await self.dispatch_work(doc["_id"])
            await self.dispatch_agent(msg.agent_id)
            return {
                "interaction_id": doc["_id"],
                "service": target_name,
                "to_agent_id": msg.to_agent_id,
            }
        raise RuntimeError(f"{msg.interaction_id} kept changing while transferring: retry")

    # --- views ----------------------------------------------------------------------------

    async def queue_view(self, only: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
        now = utcnow()
        wanted = set(only)
        services = await self.catalog.all(fresh=True)
        view: dict[str, dict[str, Any]] = {
            name: {
                "depth": 0,
                "oldest_wait_seconds": 0.0,
                "offered": 0,
                "assigned": 0,
                "personal": 0,
            }
            for name in services
            if not wanted or name in wanted
        }
        for doc in await self.store.live_work_summary():
            name = doc["service"]
            if wanted and name not in wanted:
                continue
            row = view.setdefault(
                name,
                {
                    "depth": 0,
                    "oldest_wait_seconds": 0.0,
                    "offered": 0,
                    "assigned": 0,
                    "personal": 0,
                },
            )
            if doc["status"] == "waiting":
                if doc.get("personal_agent_id"):
                    row["personal"] += 1
                else:
                    row["depth"] += 1
                waited = round((now - doc["queued_at"]).total_seconds(), 3)
                row["oldest_wait_seconds"] = max(row["oldest_wait_seconds"], waited)
            else:
                row[doc["status"]] += 1
        return view

    async def agent_services(self, agent_id: str) -> list[str]:
        """The services whose team the agent is in (logged in or not); none if unknown."""
        doc = await self.store.get_agent(agent_id)
        if doc is None:
            return []
        agent = agent_from(doc, self.store.default_capacity, utcnow())
        services = await self.catalog.all()
        return sorted(s.name for s in services.values() if domain.in_team(agent, s))

    async def update_gauges(self) -> None:
        if not self._gauges.due():
            return
        async with self._gauges.run():
            view = await self.queue_view()
        metrics.report_queues(view)

    async def live_assignments(self, agent_ids: list[str]) -> dict[str, Any]:
        found: dict[str, list[str]] = {a: [] for a in agent_ids}
        for doc in await self.store.assigned(agent_ids or None):
            found.setdefault(doc["agent_id"], []).append(doc["_id"])
        return {"assignments": found}

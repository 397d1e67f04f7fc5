"""The routing engine's shared part: state, publishing, reading the queues, planning.

Each concern (``handlers/<concern>.py``) is a class over :class:`RouterCore`; ``router.Router``
puts them together. Every state change is a conditional write, so any number of routing
replicas may run this code side by side.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from aio_pika.exceptions import PublishError

from switchboard.contracts import Message
from switchboard.contracts.routing import (
    ServiceDefinition,
    WaitingChanged,
)
from switchboard.routing import domain, metrics
from switchboard.routing.hints import ReplicaHints
from switchboard.routing.queue_index import Place
from switchboard.routing.store import (
    Document,
    RoutingStore,
    place_of,
)
from switchboard.runtime.bus import Bus

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


class RouterCore:
    """What every concern shares: the store, the bus, the services, the replica's hints."""

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
        self.hints = ReplicaHints()
        self._free_reads: dict[
            tuple[str, str | None], asyncio.Future[tuple[float, list[Document]]]
        ] = {}
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

    # --- the queue index (hints.py) --------------------------------------------------------

    async def _insert_work(self, doc: Document) -> bool:
        """Store a new interaction; False when it exists already."""
        if not await self.store.insert_work(doc):
            return False
        await self._written(doc)
        return True

    async def _replace_work(self, expected_version: int, doc: Document) -> bool:
        """Write an interaction if it is still at ``expected_version`` (one conditional write)."""
        if not await self.store.replace_work(expected_version, doc):
            return False
        await self._written(doc)
        return True

    async def _written(self, doc: Document) -> None:
        """Note our own write at once, and tell the other replicas (best effort: their next
        full read repairs a lost notice)."""
        place = place_of(doc)
        self.hints.learn(place)
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
        self.hints.learn(
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
        await self.hints.rebuild(self.store.waiting_places)

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
        if not self.hints.built or limit > BY_ID_LIMIT:
            return await self.store.waiting_for(agents, names, limit=limit)
        found: list[Document] = []
        seen: set[str] = set()
        while len(found) < limit:
            ids = self.hints.head(
                services=names, personal_agent_ids=agents, limit=len(seen) + limit - len(found)
            )
            fresh = [i for i in ids if i not in seen]
            if not fresh:
                break
            seen.update(fresh)
            fresh = [i for i in fresh if not self.hints.offering(i)]
            for interaction_id, doc in (await self.store.works_by_id(fresh)).items():
                if doc is not None and doc["status"] == "waiting":
                    found.append(doc)
                elif doc is None:
                    self.hints.learn(interaction_id)
                else:
                    self.hints.learn(place_of(doc))
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
            self.hints.not_in_hand(works),
            self.hints.with_room_taken(agents, read_at),
            services,
            now,
            logged_in,
        )

    async def _free_agents(self, channel: str, team: str | None) -> tuple[float, list[Document]]:
        """The free agents of a channel and team. Requests handled together share one read
        (without pushdown each read decodes every agent); the offers made since it began are
        counted by :meth:`_plan`."""
        key = (channel, team)
        shared = self._free_reads.get(key)
        if shared is None:

            async def read() -> tuple[float, list[Document]]:
                read_at = self.hints.read_mark()
                return read_at, await self.store.free_agents(channel, team)

            def forget(done: asyncio.Future[tuple[float, list[Document]]]) -> None:
                if self._free_reads.get(key) is done:
                    del self._free_reads[key]
                if not done.cancelled():
                    done.exception()  # its waiters got it; none left must not warn

            shared = self._free_reads[key] = asyncio.ensure_future(read())
            shared.add_done_callback(forget)
        return await asyncio.shield(shared)

    # --- shared by several concerns -------------------------------------------------------

    async def _close_offer(
        self, offer: domain.Offer, doc: Document, outcome: str, now: datetime
    ) -> None:
        metrics.OFFER_OUTCOMES.labels(doc["service"], outcome).inc()

    if TYPE_CHECKING:  # defined by the concerns Router puts together (handlers/*.py)

        async def dispatch_work(self, interaction_id: str, known: Document | None = None) -> int:
            """Offer one waiting interaction to the best free agent (dispatch.py)."""

        async def dispatch_agent(self, agent_id: str, known: Document | None = None) -> int:
            """Offer an agent the head of their queues (dispatch.py)."""

        async def offer(
            self,
            doc: Document,
            agent_id: str,
            *,
            pulled: bool = False,
            agent_doc: Document | None = None,
        ) -> bool:
            """Reserve the agent's capacity, then the interaction (offers.py)."""

        async def release_hold(
            self,
            agent_id: str,
            *,
            offer_id: str | None = None,
            interaction_id: str | None = None,
            token: str | None = None,
        ) -> bool:
            """Give back capacity held by an offer or assignment (offers.py)."""

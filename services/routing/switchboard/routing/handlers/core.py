"""The routing engine's shared part: state, publishing, reading the queues, planning.

Each concern (``handlers/<concern>.py``) is a class over :class:`RouterCore`; ``router.Router``
puts them together. Every state change is a conditional write, so any number of routing
replicas may run this code side by side.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

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
    RoutingStore,
    StoredWork,
    place_of,
)
from switchboard.runtime.bus import Bus
from switchboard.runtime.storage import Updated

log = structlog.get_logger("switchboard.routing")


RETAKES = 5  # how often a dispatch that lost a race tries the next candidate
BY_ID_LIMIT = 32  # more candidates than this: one query beats as many reads by _id

R = TypeVar("R")

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
            tuple[str, str | None], asyncio.Future[tuple[float, list[domain.AgentRecord]]]
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

    async def _insert_work(self, item: domain.WorkItem) -> bool:
        """Store a new interaction; False when it exists already."""
        if not await self.store.insert_work(item):
            return False
        await self._written(item)
        return True

    async def _change_work(
        self,
        interaction_id: str,
        change: Callable[[domain.WorkItem], tuple[domain.WorkItem | None, R]],
        *,
        known: domain.WorkItem | None = None,
        timer_fired: bool = False,
    ) -> Updated[StoredWork, R]:
        """Change an interaction with one guarded write (see :meth:`RoutingStore.change_work`)
        and note it in the queue index."""
        done = await self.store.change_work(
            interaction_id, change, known=known, timer_fired=timer_fired
        )
        if done.written:
            await self._written(done.aggregate)
        return done

    async def _change_agent(
        self,
        agent_id: str,
        change: domain.AgentChange,
        *,
        create: bool = True,
        known: domain.AgentRecord | None = None,
    ) -> tuple[domain.AgentRecord | None, bool]:
        """Change an agent's record (see :meth:`RoutingStore.change_agent`), starting from
        ``known`` or the copy this replica wrote last instead of a read."""
        agent, changed = await self.store.change_agent(
            agent_id,
            change,
            create=create,
            known=known or self.hints.last_written_agent(agent_id),
        )
        if changed and agent is not None:
            self.hints.wrote(agent)
        return agent, changed

    async def _replace_work(
        self, before: domain.WorkItem, after: domain.WorkItem
    ) -> StoredWork | None:
        """Write ``after`` if the interaction is still as ``before`` was read (one guarded
        write) and note it in the queue index; None when another writer came first."""
        stored = await self.store.replace_work(before, after)
        if stored is not None:
            await self._written(stored)
        return stored

    async def _written(self, item: domain.WorkItem) -> None:
        """Note our own write at once, and tell the other replicas (best effort: their next
        full read repairs a lost notice)."""
        place = place_of(item)
        self.hints.learn(place)
        self.hints.wrote(item)
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
    ) -> list[domain.WorkItem]:
        """Waiting work in queue order: these services' team work, these agents' personal work.

        Candidates come from the index and are each read by ``_id`` (unless this replica wrote
        the version the index last heard of), so what is returned is current as far as this
        replica knows; entries found stale are corrected on the way. Until the first full read,
        and for more candidates than are cheaper read one by one, the database is queried
        instead.
        """
        names = sorted(set(services))
        agents = sorted(set(personal_agent_ids))
        if not self.hints.built or limit > BY_ID_LIMIT:
            return await self.store.waiting_for(agents, names, limit=limit)
        found: list[domain.WorkItem] = []
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
            copies = {i: self.hints.current_copy(i) for i in fresh}
            read = [i for i, copy in copies.items() if copy is None]
            copies.update(await self.store.works_by_id(read) if read else {})
            for interaction_id, item in copies.items():
                if item is not None and item.status == "waiting":
                    found.append(item)
                elif item is None:
                    self.hints.learn(interaction_id)
                else:
                    self.hints.learn(place_of(item))
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

    async def _free_agents(
        self, channel: str, team: str | None
    ) -> tuple[float, list[domain.AgentRecord]]:
        """The free agents of a channel and team. Requests handled together share one read
        (without pushdown each read decodes every agent); the offers made since it began are
        counted by :meth:`_plan`."""
        key = (channel, team)
        shared = self._free_reads.get(key)
        if shared is None:

            async def read() -> tuple[float, list[domain.AgentRecord]]:
                read_at = self.hints.read_mark()
                return read_at, await self.store.free_agents(channel, team)

            def forget(done: asyncio.Future[tuple[float, list[domain.AgentRecord]]]) -> None:
                if self._free_reads.get(key) is done:
                    del self._free_reads[key]
                if not done.cancelled():
                    done.exception()  # its waiters got it; none left must not warn

            shared = self._free_reads[key] = asyncio.ensure_future(read())
            shared.add_done_callback(forget)
        return await asyncio.shield(shared)

    # --- shared by several concerns -------------------------------------------------------

    @staticmethod
    def _close_offer(item: domain.WorkItem, outcome: str) -> None:
        metrics.OFFER_OUTCOMES.labels(item.service, outcome).inc()

    if TYPE_CHECKING:  # defined by the concerns Router puts together (handlers/*.py)

        async def dispatch_work(
            self, interaction_id: str, known: domain.WorkItem | None = None
        ) -> int:
            """Offer one waiting interaction to the best free agent (dispatch.py)."""

        async def dispatch_agent(
            self, agent_id: str, known: domain.AgentRecord | None = None
        ) -> int:
            """Offer an agent the head of their queues (dispatch.py)."""

        async def offer(
            self,
            item: domain.WorkItem,
            agent_id: str,
            *,
            pulled: bool = False,
            agent: domain.AgentRecord | None = None,
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

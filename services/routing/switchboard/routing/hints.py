"""What one routing replica alone knows, to route faster: hints, never the truth.

Four things live in the replica's memory and nowhere else: the order of every queue
(:class:`QueueIndex`), the offers its dispatches are making right now (:class:`OffersInHand`),
when each full scan may run again (:class:`Backstop`) and the interactions and agents it wrote
last (:class:`Recent`). All four only save work: every candidate is read by ``_id`` before an
offer and every write is guarded by the version, so a stale hint costs a read or a write that
matches nothing, never a wrong offer.

:class:`ReplicaHints` is the one way in to all four; the parts are private to it. The queue
index is fed only by :meth:`ReplicaHints.learn`: this replica's own writes, the other replicas'
notices (``routing.waiting.changed``) and what a dispatch finds when it reads a candidate all
come through it; :meth:`ReplicaHints.rebuild` replaces it from a full read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator

from switchboard.routing import domain
from switchboard.routing.offers_in_hand import OffersInHand, Settle
from switchboard.routing.queue_index import Place, QueueIndex
from switchboard.routing.recent import Recent


class Backstop:
    """A periodic full scan that keeps to a share of the database's time.

    The sweep and the queue gauges read the whole backlog. On a database that scans for such
    queries (the local server) a 10,000-deep queue makes one run take seconds; run every second,
    they would crowd out the work the events do. After a run that took ``t`` seconds the next one
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


class ReplicaHints:
    """The queue index, the offers in hand and the backstops of one replica."""

    def __init__(self) -> None:
        self._queue = QueueIndex()
        self._in_hand = OffersInHand()
        self._sweeps = Backstop()
        self._gauges = Backstop()
        self._index_reads = Backstop(share=0.1)
        self._work: Recent[domain.WorkItem] = Recent()
        self._agents: Recent[domain.AgentRecord] = Recent()

    # --- the queue index --------------------------------------------------------------------

    def learn(self, place: Place | str) -> None:
        """An interaction as written (its place), or the id of one found no longer live."""
        if isinstance(place, str):
            self._queue.drop(place)
        else:
            self._queue.note(place)

    async def rebuild(self, read: Callable[[], Awaitable[Iterable[Place]]]) -> None:
        """Replace the index with a full read of the waiting work (the backstop for lost
        notices), keeping to a tenth of the database's time."""
        if not self._index_reads.due():
            return
        async with self._index_reads.run():
            since = self._queue.mark()
            self._queue.rebuild(await read(), since)

    @property
    def built(self) -> bool:
        """Whether a full read has been applied (before it, the index knows too little)."""
        return self._queue.built

    def head(
        self, *, services: Iterable[str] = (), personal_agent_ids: Iterable[str] = (), limit: int
    ) -> list[str]:
        """Interaction ids in queue order (see :meth:`QueueIndex.head`)."""
        return self._queue.head(
            services=services, personal_agent_ids=personal_agent_ids, limit=limit
        )

    # --- the offers in hand (see :class:`OffersInHand`) -------------------------------------

    def read_mark(self) -> float:
        """The moment a view of the agents is read (for :meth:`with_room_taken`)."""
        return self._in_hand.now()

    def offering(self, interaction_id: str) -> bool:
        """Is a dispatch of this replica offering this interaction now?"""
        return self._in_hand.offering(interaction_id)

    def not_in_hand(self, works: Iterable[domain.Work]) -> list[domain.Work]:
        """The work no dispatch of this replica is offering now."""
        return self._in_hand.free(works)

    def with_room_taken(self, agents: Iterable[domain.Agent], read_at: float) -> list[domain.Agent]:
        """The agents less the room of this replica's offers in the making or made since."""
        return self._in_hand.with_room_taken(agents, read_at)

    @contextlib.contextmanager
    def holding(self, plan: list[tuple[domain.Work, domain.Agent]]) -> Iterator[Settle]:
        """Take a plan's work and room while its offers are made (see :class:`OffersInHand`)."""
        with self._in_hand.holding(plan) as settle:
            yield settle

    # --- the aggregates written last (see :class:`Recent`) ---------------------------------

    def wrote(self, aggregate: domain.WorkItem | domain.AgentRecord) -> None:
        """An interaction or agent as this replica just wrote it."""
        if isinstance(aggregate, domain.WorkItem):
            self._work.remember(aggregate)
        else:
            self._agents.remember(aggregate)

    def last_written_work(self, interaction_id: str) -> domain.WorkItem | None:
        return self._work.recall(interaction_id)

    def current_copy(self, interaction_id: str) -> domain.WorkItem | None:
        """This replica's copy of the interaction if no newer version has been heard of since
        (a candidate that need not be read again)."""
        copy = self._work.recall(interaction_id)
        if copy is None or self._queue.version(interaction_id) != copy.version:
            return None
        return copy

    def last_written_agent(self, agent_id: str) -> domain.AgentRecord | None:
        return self._agents.recall(agent_id)

    # --- the backstops ----------------------------------------------------------------------

    def sweep_due(self) -> bool:
        return self._sweeps.due()

    def sweeping(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Time a sweep, so the next waits for its share of the database's time."""
        return self._sweeps.run()

    def gauges_due(self) -> bool:
        return self._gauges.due()

    def refreshing_gauges(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Time a refresh of the queue gauges, so the next waits for its share."""
        return self._gauges.run()

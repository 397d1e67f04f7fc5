"""The offers one replica is making right now, so its concurrent dispatches do not race each other.

A replica handles many messages at once. Agents freed together would all plan the head of the
same queue, and requests handled together would all plan the same longest-idle agent; all but
one would lose the reservation and try again. Instead, a plan leaves out work another dispatch
of this replica is offering, and counts the room its offers take, including offers made since
the plan's view of the agents was read. The database's compare-and-set stays the only guard
between replicas; this only spares a replica from racing itself. No I/O.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator

from switchboard.routing import domain

RECENT_SECONDS = 10.0  # no read of the agents takes longer than this


class OffersInHand:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._offering: set[str] = set()
        self._reserving: Counter[tuple[str, str]] = Counter()
        self._made: deque[tuple[float, str, str]] = deque()

    def now(self) -> float:
        """Mark the moment a view of the agents is read (for :meth:`with_room_taken`)."""
        return self._clock()

    def offering(self, interaction_id: str) -> bool:
        """Is a dispatch of this replica offering this interaction now?"""
        return interaction_id in self._offering

    def free(self, works: Iterable[domain.Work]) -> list[domain.Work]:
        """The work no dispatch of this replica is offering now."""
        return [w for w in works if w.interaction_id not in self._offering]

    def with_room_taken(self, agents: Iterable[domain.Agent], read_at: float) -> list[domain.Agent]:
        """The agents as read from ``read_at`` on, less the room of this replica's offers in
        the making and of those made since the read began (it may not show them; an offer made
        before it does)."""
        taken = Counter(self._reserving)
        for made_at, agent_id, channel in reversed(self._made):
            if made_at < read_at:
                break
            taken[(agent_id, channel)] += 1
        if not taken:
            return list(agents)
        found = []
        for agent in agents:
            extra = {ch: taken[(agent.agent_id, ch)] for ch in ("email", "preview")}
            if any(extra.values()):
                load = {ch: int(agent.load.get(ch, 0)) + n for ch, n in extra.items()}
                agent = dataclasses.replace(agent, load=load)
            found.append(agent)
        return found

    @contextlib.contextmanager
    def holding(self, plan: list[tuple[domain.Work, domain.Agent]]) -> Iterator[Hand]:
        """While a plan's offers are being made, its work and room are taken; each is given
        back as soon as its offer is made or lost (:meth:`Hand.done`)."""
        hand = Hand(self, plan)
        try:
            yield hand
        finally:
            hand.let_go()

    def _made_offer(self, agent_id: str, channel: str) -> None:
        now = self._clock()
        self._made.append((now, agent_id, channel))
        while self._made[0][0] < now - RECENT_SECONDS:
            self._made.popleft()


class Hand:
    """One plan in hand: see :meth:`OffersInHand.holding`."""

    def __init__(self, offers: OffersInHand, plan: list[tuple[domain.Work, domain.Agent]]) -> None:
        self._offers = offers
        self._ids = {work.interaction_id for work, _ in plan}
        self._rooms = Counter((agent.agent_id, work.channel) for work, agent in plan)
        offers._offering |= self._ids
        offers._reserving.update(self._rooms)

    def done(self, work: domain.Work, agent_id: str, *, made: bool) -> None:
        """This pair's offer was made (its hold is in the database) or lost: its work and room
        are no longer in hand, at once (a long plan, the sweep's, holds nothing it is done
        with)."""
        key = (agent_id, work.channel)
        self._offers._offering.discard(work.interaction_id)
        self._ids.discard(work.interaction_id)
        if self._rooms[key] > 0:
            self._rooms[key] -= 1
            self._offers._reserving[key] -= 1
            if self._offers._reserving[key] <= 0:
                del self._offers._reserving[key]
        if made:
            self._offers._made_offer(agent_id, work.channel)

    def let_go(self) -> None:
        self._offers._offering -= self._ids
        self._offers._reserving.subtract(self._rooms)
        self._offers._reserving = +self._offers._reserving
        self._ids.clear()
        self._rooms.clear()

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
from typing import Protocol

from switchboard.routing import domain

RECENT_SECONDS = 10.0  # no read of the agents takes longer than this


class Settle(Protocol):
    def __call__(self, work: domain.Work, made: bool) -> None: ...


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
            extra = {ch: taken[(agent.agent_id, ch)] for ch in domain.CHANNELS}
            if any(extra.values()):
                load = {ch: int(agent.load.get(ch, 0)) + n for ch, n in extra.items()}
                agent = dataclasses.replace(agent, load=load)
            found.append(agent)
        return found

    @contextlib.contextmanager
    def holding(self, plan: list[tuple[domain.Work, domain.Agent]]) -> Iterator[Settle]:
        """While a plan's offers are being made, its work and room are taken. Yields
        ``settle(work, made)``: that offer was made (its hold is in the database) or lost, and
        its work and room are given back at once (a long plan, the sweep's, holds nothing it is
        done with); whatever is left is given back at the end."""
        pending = {work.interaction_id: (agent.agent_id, work.channel) for work, agent in plan}
        for interaction_id, room in pending.items():
            self._offering.add(interaction_id)
            self._reserving[room] += 1

        def settle(work: domain.Work, made: bool) -> None:
            room = pending.pop(work.interaction_id)
            self._give_back(work.interaction_id, room)
            if made:
                now = self._clock()
                self._made.append((now, *room))
                while self._made[0][0] < now - RECENT_SECONDS:
                    self._made.popleft()

        try:
            yield settle
        finally:
            for interaction_id, room in pending.items():
                self._give_back(interaction_id, room)

    def _give_back(self, interaction_id: str, room: tuple[str, str]) -> None:
        self._offering.discard(interaction_id)
        self._reserving[room] -= 1
        if self._reserving[room] <= 0:
            del self._reserving[room]

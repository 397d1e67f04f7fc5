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

RECENT_SECONDS = 30.0  # no read of the agents takes longer than this


class OffersInHand:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._offering: set[str] = set()
        self._reserving: Counter[tuple[str, str]] = Counter()
        self._made: deque[tuple[float, str, str]] = deque()

    def now(self) -> float:
        """Mark the moment a view of the agents is read (for :meth:`room_taken`)."""
        return self._clock()

    def offering(self, interaction_id: str) -> bool:
        """Is a dispatch of this replica offering this interaction now?"""
        return interaction_id in self._offering

    def free(self, works: Iterable[domain.Work]) -> list[domain.Work]:
        """The work no dispatch of this replica is offering now."""
        return [w for w in works if w.interaction_id not in self._offering]

    def with_room_taken(self, agents: Iterable[domain.Agent], read_at: float) -> list[domain.Agent]:
        """The agents as read at ``read_at``, less the room of this replica's offers in the
        making and of those it made since (the read may not show them)."""
        taken = Counter(self._reserving)
        taken.update((agent, channel) for at, agent, channel in self._made if at >= read_at)
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
    def holding(self, plan: list[tuple[domain.Work, domain.Agent]]) -> Iterator[None]:
        """While a plan's offers are being made: its work and room are taken."""
        ids = {work.interaction_id for work, _ in plan}
        rooms = Counter((agent.agent_id, work.channel) for work, agent in plan)
        self._offering |= ids
        self._reserving.update(rooms)
        try:
            yield
        finally:
            self._offering -= ids
            self._reserving.subtract(rooms)
            self._reserving = +self._reserving

    def made(self, agent_id: str, channel: str) -> None:
        """An offer of a plan in hand was made (call before the plan is let go)."""
        now = self._clock()
        self._made.append((now, agent_id, channel))
        while self._made and self._made[0][0] < now - RECENT_SECONDS:
            self._made.popleft()

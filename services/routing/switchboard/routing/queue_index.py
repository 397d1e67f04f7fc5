"""Which interactions wait, in queue order: an in-memory index every routing replica keeps.

Finding the head of a queue for an agent who just became Ready is the hot read of routing. On a
server that evaluates such a query by reading the whole collection (the local one), it costs
seconds with 10,000 waiting; here it costs microseconds. The index is only a *hint*: the router
reads each candidate by ``_id`` before offering it, and every offer is still a compare-and-set in
MongoDB, so a stale entry costs a wasted read, never a wrong offer.

It is fed three ways: this replica's own writes, the writes of the other replicas (the event
``routing.waiting.changed`` on each replica's own queue), and a periodic full read of the waiting
work (:meth:`QueueIndex.rebuild`), which repairs whatever a lost notice left behind. Every
interaction's ``version`` grows with each write, so an older notice never undoes a newer one.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

Lane = tuple[str, str]  # ("team", service) or ("personal", agent_id)
Key = tuple[int, float, str]  # (-priority, queued_at, interaction_id): queue order


@dataclass(frozen=True)
class Place:
    """One interaction's place as of one version of its document."""

    interaction_id: str
    version: int
    waiting: bool
    service: str = ""
    priority: int = 0
    queued_at: datetime | None = None
    personal_agent_id: str | None = None

    @property
    def lane(self) -> Lane:
        if self.personal_agent_id:
            return ("personal", self.personal_agent_id)
        return ("team", self.service)

    @property
    def key(self) -> Key:
        at = self.queued_at.timestamp() if self.queued_at is not None else 0.0
        return (-self.priority, at, self.interaction_id)


class QueueIndex:
    def __init__(self) -> None:
        self._versions: dict[str, tuple[int, int]] = {}  # id -> (version, tick noted)
        self._where: dict[str, tuple[Lane, Key]] = {}  # waiting ids only
        self._lanes: dict[Lane, list[Key]] = {}
        self._tick = 0
        self.built = False

    def __len__(self) -> int:
        return len(self._where)

    def note(self, place: Place) -> bool:
        """Apply one version of one interaction; an older one than known is ignored."""
        known = self._versions.get(place.interaction_id)
        if known is not None and place.version < known[0]:
            return False
        self._put(
            place.interaction_id, place.version, (place.lane, place.key) if place.waiting else None
        )
        return True

    def version(self, interaction_id: str) -> int | None:
        """The newest version of the interaction this index has heard of."""
        known = self._versions.get(interaction_id)
        return None if known is None else known[0]

    def mark(self) -> int:
        """Call before reading the waiting work for :meth:`rebuild`."""
        return self._tick

    def rebuild(self, waiting: Iterable[Place], since: int) -> None:
        """Replace the index with a full read of the waiting work that started at ``since``.

        What was noted after ``since`` is as new as the read or newer, unless the read holds a
        higher version, so it is kept; an interaction neither in the read nor noted since then
        no longer waits (and is forgotten).
        """
        recent = {i: v for i, (v, tick) in self._versions.items() if tick > since}
        placed = self._where
        read = {p.interaction_id: p for p in waiting}
        self._versions, self._where, self._lanes = {}, {}, {}
        for interaction_id, place in read.items():
            if interaction_id not in recent or place.version > recent[interaction_id]:
                self.note(place)
        for interaction_id, version in recent.items():
            if interaction_id not in self._versions:
                self._put(interaction_id, version, placed.get(interaction_id))
        self.built = True

    def _put(self, interaction_id: str, version: int, where: tuple[Lane, Key] | None) -> None:
        self._tick += 1
        self._versions[interaction_id] = (version, self._tick)
        self._unplace(interaction_id)
        if where is not None:
            lane, key = where
            bisect.insort(self._lanes.setdefault(lane, []), key)
            self._where[interaction_id] = where

    def head(
        self, *, services: Iterable[str] = (), personal_agent_ids: Iterable[str] = (), limit: int
    ) -> list[str]:
        """Interaction ids in queue order: these services' team work and these agents' personal
        work."""
        lanes = [self._lanes.get(("team", s), []) for s in sorted(set(services))]
        lanes += [self._lanes.get(("personal", a), []) for a in sorted(set(personal_agent_ids))]
        merged: Iterator[Key] = heapq.merge(*lanes)
        return [key[2] for key in itertools.islice(merged, limit)]

    def drop(self, interaction_id: str) -> None:
        """Take out an interaction found gone; a notice of a newer version puts it back."""
        self._unplace(interaction_id)

    def _unplace(self, interaction_id: str) -> None:
        where = self._where.pop(interaction_id, None)
        if where is None:
            return
        lane, key = where
        keys = self._lanes[lane]
        at = bisect.bisect_left(keys, key)
        if at < len(keys) and keys[at] == key:
            del keys[at]
        if not keys:
            del self._lanes[lane]

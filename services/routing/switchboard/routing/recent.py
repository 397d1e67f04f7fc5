"""The aggregates this replica wrote last, so the next change of one starts without a read.

A message about an interaction or agent this replica just wrote (the agent's answer to an offer
made here, the end of an interaction accepted here) is decided on the copy kept here and
written with the usual version guard: if another replica wrote in between, the guard matches
nothing and the change is decided again on a fresh read. A copy is only ever a guess at the
stored version; a decision to write nothing is never taken on it. No I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Protocol, TypeVar


class Keyed(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def version(self) -> int: ...


T = TypeVar("T", bound=Keyed)


class Recent(Generic[T]):
    """The last written copy of up to ``size`` aggregates, the least recently used dropped."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._copies: OrderedDict[str, T] = OrderedDict()

    def remember(self, aggregate: T) -> None:
        """Keep ``aggregate`` as written (an older version than the one kept is ignored)."""
        kept = self._copies.get(aggregate.id)
        if kept is not None and kept.version > aggregate.version:
            return
        self._copies[aggregate.id] = aggregate
        self._copies.move_to_end(aggregate.id)
        while len(self._copies) > self._size:
            self._copies.popitem(last=False)

    def recall(self, key: str) -> T | None:
        return self._copies.get(key)

    def forget(self, key: str) -> None:
        self._copies.pop(key, None)

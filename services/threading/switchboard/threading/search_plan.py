"""Which cases a search finds, in order, from the postings alone (``postings``).

A search is groups of terms: a case matches when it has at least one term of every group (a
word is a group of one; contact history is one group of addresses). The terms' heads say which
(service, bucket) parts exist; only buckets where every group has a part are read, newest first,
and in each the numbers are intersected per service (a case has one service). Results by last
activity read each bucket's activity document too; older buckets are read only while their
highest last activity could still put a case on the page, so the order is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from switchboard.threading import postings as p
from switchboard.threading.posting_store import Postings

BUCKETS_AT_ONCE = 4


@dataclass(frozen=True)
class Reach:
    """What the person may find: every service (``services`` None), or these services plus the
    cases they held or worked (``own``)."""

    services: frozenset[str] | None = None
    own: frozenset[int] = frozenset()

    def allows(self, service: str, number: int) -> bool:
        return self.services is None or service in self.services or number in self.own


@dataclass(frozen=True)
class Plan:
    groups: Sequence[Sequence[str]]
    reach: Reach = field(default_factory=Reach)
    only_service: str | None = None
    since: int | None = None
    """Last activity at or after (seconds since the epoch)."""
    until: int | None = None
    by_activity: bool = True
    """Newest activity first; else highest case number (newest case) first."""


async def find(postings: Postings, plan: Plan, need: int) -> list[int]:
    """The first ``need`` cases the plan matches, in order."""
    heads = await postings.parts_of({t for group in plan.groups for t in group})
    own_buckets = {p.bucket_of(n) for n in plan.reach.own}
    per_group: list[dict[int, set[tuple[str, str]]]] = []
    for group in plan.groups:
        where: dict[int, set[tuple[str, str]]] = {}
        for term in group:
            for service, bucket in heads.get(term, []):
                if plan.only_service is not None and service != plan.only_service:
                    continue
                reach = plan.reach.services
                if reach is not None and service not in reach and bucket not in own_buckets:
                    continue
                where.setdefault(bucket, set()).add((term, service))
        per_group.append(where)
    if not per_group:
        return []
    buckets = set(per_group[0]).intersection(*per_group[1:])
    bounds = await postings.bounds() if plan.by_activity else {}
    pending = sorted((b for b in buckets if _may_hold(plan, bounds.get(b))), reverse=True)
    found: list[tuple[int, int]] = []  # (order key, case number)
    while pending:
        batch, pending = pending[:BUCKETS_AT_ONCE], pending[BUCKETS_AT_ONCE:]
        found += await _matches(postings, plan, per_group, batch)
        if len(found) >= need:
            found.sort(reverse=True)
            del found[need:]
            if not plan.by_activity:
                break
            cutoff = found[-1][0]
            pending = [b for b in pending if b not in bounds or bounds[b][1] > cutoff]
    found.sort(reverse=True)
    return [n for _, n in found[:need]]


def _may_hold(plan: Plan, bounds: tuple[int, int] | None) -> bool:
    """Whether a bucket may hold a case active within the period."""
    if bounds is None:
        return True
    low, high = bounds
    if plan.since is not None and high < plan.since:
        return False
    return not (plan.until is not None and low >= plan.until)


async def _matches(
    postings: Postings,
    plan: Plan,
    per_group: list[dict[int, set[tuple[str, str]]]],
    buckets: Collection[int],
) -> list[tuple[int, int]]:
    keys = {
        p.part_key(term, service, b) for b in buckets for g in per_group for term, service in g[b]
    }
    numbers, activity = await asyncio.gather(
        postings.numbers(keys),
        postings.activities(buckets) if plan.by_activity else _no_activity(),
    )
    found: list[tuple[int, int]] = []
    for b in buckets:
        services = {s for _, s in per_group[0][b]}
        for service in services:
            sets = [
                {
                    n
                    for term, s in g[b]
                    if s == service
                    for n in numbers[p.part_key(term, service, b)]
                }
                for g in per_group
            ]
            for number in set.intersection(*sets):
                if not plan.reach.allows(service, number):
                    continue
                if not plan.by_activity:
                    found.append((number, number))
                    continue
                at = p.activity_at(activity.get(b), number)
                if at and _within(plan, at):
                    found.append((at, number))
    return found


def _within(plan: Plan, at: int) -> bool:
    return (plan.since is None or at >= plan.since) and (plan.until is None or at < plan.until)


async def _no_activity() -> dict[int, bytes]:
    return {}

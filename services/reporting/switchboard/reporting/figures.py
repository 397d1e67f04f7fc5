"""Figures of a period from the hourly buckets: pure sums, percentiles and ratios.

Percentiles are nearest-rank over every sample of the period (exact, no estimate): the p-th
percentile of n sorted values is the value at rank ceil(p/100 * n).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from switchboard.contracts.reports import (
    AgentFigures,
    CampaignFigures,
    Granularity,
    ServicePeriod,
)
from switchboard.reporting.domain import AgentCursor, state_field, state_name


@dataclass(frozen=True)
class Bucket:
    """One bucket as stored: its subject, hour (none for a campaign) and amounts."""

    subject: str
    hour: datetime | None
    counts: Mapping[str, int] = field(default_factory=dict)
    seconds: Mapping[str, float] = field(default_factory=dict)
    samples: Mapping[str, Sequence[float]] = field(default_factory=dict)


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def periods(start: datetime, end: datetime, granularity: Granularity) -> list[datetime]:
    step = timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
    found = []
    at = start
    while at < end:
        found.append(at)
        at += step
    return found


def service_rows(
    services: Sequence[str],
    start: datetime,
    end: datetime,
    granularity: Granularity,
    buckets: Iterable[Bucket],
) -> list[ServicePeriod]:
    """One row per service and period; ``buckets`` holds every bucket before ``end`` (for the
    backlog, which is the running sum of openings, reopenings, closings and transfers)."""
    starts = periods(start, end, granularity)
    step = timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
    counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    samples: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    backlog_before: dict[str, int] = defaultdict(int)
    for bucket in buckets:
        if bucket.hour is None or bucket.hour >= end:
            continue
        if bucket.hour < start:
            backlog_before[bucket.subject] += bucket.counts.get("backlog", 0)
            continue
        index = int((bucket.hour - start) / step)
        row = counts[(bucket.subject, index)]
        for name, amount in bucket.counts.items():
            row[name] += amount
        for name, values in bucket.samples.items():
            samples[(bucket.subject, index)][name].extend(values)
    rows = []
    for service in services:
        backlog = backlog_before[service]
        for index, at in enumerate(starts):
            c = counts[(service, index)]
            s = samples[(service, index)]
            backlog += c["backlog"]
            first = c["first_responses"]
            rows.append(
                ServicePeriod(
                    service=service,
                    start=at,
                    end=min(at + step, end),
                    opened=c["opened"],
                    closed=c["closed"],
                    reopened=c["reopened"],
                    emails_in=c["emails_in"],
                    emails_out=c["emails_out"],
                    first_responses=first,
                    first_response_p50_seconds=percentile(s["first_response"], 50),
                    first_response_p90_seconds=percentile(s["first_response"], 90),
                    resolutions=c["resolutions"],
                    resolution_p50_seconds=percentile(s["resolution"], 50),
                    resolution_p90_seconds=percentile(s["resolution"], 90),
                    answered_within_target=c["answered_within_target"],
                    service_level=c["answered_within_target"] / first if first else None,
                    overdue=c["overdue"],
                    backlog_at_end=backlog,
                    transfers_in=c["transfers_in"],
                    transfers_out=c["transfers_out"],
                    rona=c["rona"],
                )
            )
    return rows


WORKING = ("ready", "busy", "wrap_up")


def agent_rows(
    agent_ids: Sequence[str],
    start: datetime,
    end: datetime,
    buckets: Iterable[Bucket],
    cursors: Mapping[str, AgentCursor],
    now: datetime,
) -> list[AgentFigures]:
    """Sums over the period's buckets, plus the part of each agent's current state in it."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for bucket in buckets:
        for name, amount in bucket.counts.items():
            counts[bucket.subject][name] += amount
        for name, value in bucket.seconds.items():
            seconds[bucket.subject][name] += value
    for agent_id, cursor in cursors.items():
        if cursor.state == "logged_out":
            continue
        lasted = (min(end, now) - max(start, cursor.since)).total_seconds()
        if lasted > 0:
            seconds[agent_id][state_field(cursor.state, cursor.reason)] += lasted
    rows = []
    for agent_id in agent_ids:
        c, s = counts[agent_id], seconds[agent_id]
        not_ready = {
            state_name(name).removeprefix("not_ready:"): value
            for name, value in sorted(s.items())
            if state_name(name).startswith("not_ready:")
        }
        working = sum(s[state] for state in WORKING)
        rows.append(
            AgentFigures(
                agent_id=agent_id,
                handled=c["handled"],
                replies=c["replies"],
                average_handle_seconds=s["handle"] / c["handled"] if c["handled"] else None,
                ready_seconds=s["ready"],
                not_ready_seconds=not_ready,
                busy_seconds=s["busy"],
                wrap_up_seconds=s["wrap_up"],
                rona_seconds=s["rona"],
                rona=c["rona"],
                occupancy=(s["busy"] + s["wrap_up"]) / working if working else None,
            )
        )
    return rows


def campaign_row(
    campaign_id: str, bucket: Bucket | None, records_by_status: Mapping[str, int]
) -> CampaignFigures:
    counts = bucket.counts if bucket is not None else {}
    records = sum(records_by_status.values())
    finished = counts.get("completed", 0) + counts.get("closed", 0)
    return CampaignFigures(
        campaign_id=campaign_id,
        records=records,
        records_by_status=dict(sorted(records_by_status.items())),
        attempts=counts.get("attempts", 0),
        contacts=counts.get("contacts", 0),
        skips=counts.get("skips", 0),
        dispositions={
            state_name(name.removeprefix("disposition:")): amount
            for name, amount in sorted(counts.items())
            if name.startswith("disposition:")
        },
        completed=counts.get("completed", 0),
        completion=finished / records if records else None,
    )

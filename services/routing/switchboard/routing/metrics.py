"""Routing's Prometheus metrics (the shared ones live in switchboard.runtime.metrics)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

QUEUE_DEPTH = Gauge(
    "switchboard_routing_queue_depth",
    "Interactions waiting, by routing queue (the service)",
    ["queue"],
)
OLDEST_WAIT = Gauge(
    "switchboard_routing_queue_oldest_wait_seconds",
    "Age of the oldest waiting interaction, by routing queue (the service)",
    ["queue"],
)
OFFERS = Counter(
    "switchboard_routing_offers_total", "Offers made (rate() gives offers/s)", ["queue"]
)
OFFER_OUTCOMES = Counter(
    "switchboard_routing_offer_outcomes_total",
    "How offers ended: accepted, auto_accepted, rejected, timed_out, cancelled",
    ["queue", "outcome"],
)
ASSIGNMENTS = Counter(
    "switchboard_routing_assignments_total",
    "Interactions assigned, by how (accepted, auto_accepted, pulled)",
    ["queue", "how"],
)
REQUEST_TO_OFFER = Histogram(
    "switchboard_routing_request_to_offer_seconds",
    "Time from the route request (or requeue) to the offer",
    ["queue"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
HANDLE_SECONDS = Histogram(
    "switchboard_routing_handle_seconds",
    "Handle time: from an interaction's assignment to its end (wrap-up not included)",
    ["queue"],
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400),
)
RONA = Counter("switchboard_routing_rona_total", "Offers not answered in time (agent to RONA)")
CAS_CONFLICTS = Counter(
    "switchboard_routing_cas_conflicts_total",
    "Compare-and-set writes lost to another writer (another replica got there first)",
    ["what"],
)
UNROUTED = Counter(
    "switchboard_routing_events_unrouted_total",
    "Events published while no queue was bound to them (nobody listens yet)",
    ["name"],
)
STALE_HOLDS = Counter(
    "switchboard_routing_stale_holds_released_total",
    "Capacity holds released because their offer never came to be (crash in between)",
)


_reported: set[str] = set()


def report_queues(view: dict[str, dict[str, Any]]) -> None:
    """Set the queue gauges from a queue view; a queue no longer configured loses its series."""
    for name, row in view.items():
        QUEUE_DEPTH.labels(name).set(row["depth"] + row["personal"])
        OLDEST_WAIT.labels(name).set(row["oldest_wait_seconds"])
    for name in _reported - view.keys():
        QUEUE_DEPTH.remove(name)
        OLDEST_WAIT.remove(name)
    _reported.clear()
    _reported.update(view)

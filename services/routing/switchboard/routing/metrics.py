"""Routing's Prometheus metrics (the shared ones live in switchboard.runtime.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

QUEUE_DEPTH = Gauge(
    "switchboard_routing_queue_depth", "Interactions waiting, by service", ["service"]
)
OLDEST_WAIT = Gauge(
    "switchboard_routing_queue_oldest_wait_seconds",
    "Age of the oldest waiting interaction, by service",
    ["service"],
)
OFFERS = Counter(
    "switchboard_routing_offers_total", "Offers made (rate() gives offers/s)", ["service"]
)
OFFER_OUTCOMES = Counter(
    "switchboard_routing_offer_outcomes_total",
    "How offers ended: accepted, auto_accepted, rejected, timed_out, cancelled",
    ["service", "outcome"],
)
ASSIGNMENTS = Counter(
    "switchboard_routing_assignments_total",
    "Interactions assigned, by how (accepted, auto_accepted, pulled)",
    ["service", "how"],
)
REQUEST_TO_OFFER = Histogram(
    "switchboard_routing_request_to_offer_seconds",
    "Time from the route request (or requeue) to the offer",
    ["service"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
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

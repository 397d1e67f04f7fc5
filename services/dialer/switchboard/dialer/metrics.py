"""The dialer's own Prometheus metrics (served on the runtime's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ROUTED = Counter(
    "switchboard_dialer_records_routed_total", "Records sent to routing as previews", ["campaign"]
)
WITHDRAWN = Counter(
    "switchboard_dialer_records_withdrawn_total",
    "Records taken back from routing, by reason",
    ["reason"],
)
CLOSED = Counter(
    "switchboard_dialer_records_closed_total",
    "Records that left their campaign, by result",
    ["result"],
)
ACTIONS = Counter(
    "switchboard_dialer_agent_actions_total",
    "Agent actions on records (complete, skip, call ...)",
    ["action"],
)
REFUSED = Counter(
    "switchboard_dialer_commands_refused_total", "Commands refused, by code", ["code"]
)
CALLS = Counter(
    "switchboard_dialer_call_progress_total", "Call progress reports, by status", ["status"]
)
IMPORTED = Counter(
    "switchboard_dialer_import_rows_total", "Imported rows: inserted, updated or bad", ["result"]
)
PICK_SECONDS = Histogram(
    "switchboard_dialer_pick_seconds",
    "Time to claim one hopper entry: read, re-check, claim and route the record",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REFILL_SECONDS = Histogram(
    "switchboard_dialer_hopper_refill_seconds",
    "Time to top up a campaign's hopper (scan of due records, checks, inserts)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

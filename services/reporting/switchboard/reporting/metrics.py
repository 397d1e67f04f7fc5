"""The reporting service's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

FOLDED = Counter(
    "switchboard_reporting_events_folded_total", "Events folded into the reports", ["event"]
)
OVERDUE = Counter(
    "switchboard_reporting_first_response_overdue_total",
    "Cases marked past their service's first-response target",
)

"""The gateway's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FORWARDED = Counter(
    "switchboard_gateway_commands_total",
    "Commands forwarded to their owning service, by command and result",
    ["command", "result"],
)
LOGINS = Counter("switchboard_gateway_logins_total", "Login attempts by result", ["result"])
LIVE_SOCKETS = Gauge("switchboard_gateway_live_sockets", "Open live-stream sockets")
PUSHED = Counter(
    "switchboard_gateway_pushed_total", "Events pushed to live sockets, by event", ["event"]
)
PUSH_DELAY = Histogram(
    "switchboard_gateway_push_delay_seconds",
    "From an event's occurred_at to its live frame, by stage: heard from the push queue, "
    "journaled by this replica, sent on an agent's socket",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
PUSH_BACKLOG = Gauge(
    "switchboard_gateway_push_backlog",
    "Events this replica took from its push queue and has not journaled yet",
)
HTTP_REQUESTS = Counter(
    "switchboard_gateway_http_requests_total",
    "HTTP requests by method, route template (never the raw path) and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "switchboard_gateway_http_request_seconds",
    "HTTP request latency by method and route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

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
REQUEST_SECONDS = Histogram(
    "switchboard_gateway_request_seconds",
    "HTTP request time by route and status",
    ["route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

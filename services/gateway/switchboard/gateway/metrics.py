"""The gateway's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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

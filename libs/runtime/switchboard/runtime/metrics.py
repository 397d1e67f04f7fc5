"""Prometheus metrics shared by every service; domain metrics live beside their service."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, make_asgi_app
from prometheus_client.registry import CollectorRegistry

from switchboard.runtime.types import ASGIApp

RETRIED = Counter(
    "switchboard_messages_retried_total",
    "Messages whose handling failed and were scheduled for another try",
    ["queue"],
)
BUSY_RETRIED = Counter(
    "switchboard_messages_busy_retried_total",
    "Copies put back for later because another copy of the message was in hand",
    ["queue"],
)
DEAD_LETTERED = Counter(
    "switchboard_messages_dead_lettered_total",
    "Messages moved to a dead-letter queue, by reason",
    ["queue", "reason"],
)
DUPLICATES = Counter(
    "switchboard_messages_duplicate_total",
    "Redelivered messages recognised as already handled",
    ["queue"],
)


def metrics_app(registry: CollectorRegistry = REGISTRY) -> ASGIApp:
    return make_asgi_app(registry)

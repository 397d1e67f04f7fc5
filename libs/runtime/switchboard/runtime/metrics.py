"""Prometheus metrics shared by every service; domain metrics live beside their service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faststream.prometheus import ConsumeAttrs, PrometheusMiddleware
from faststream.rabbit.prometheus.provider import RabbitMetricsSettingsProvider
from prometheus_client import REGISTRY, Counter, Gauge, make_asgi_app
from prometheus_client.registry import CollectorRegistry

from switchboard.runtime.types import ASGIApp

if TYPE_CHECKING:
    from aio_pika import IncomingMessage
    from faststream.message import StreamMessage
    from faststream.rabbit.response import RabbitPublishCommand

BUS_PREFIX = "switchboard_bus"
"""FastStream's message metrics, under the project's one prefix (``switchboard_bus_...``)."""

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
    "switchboard_messages_duplicates_total",
    "Redelivered messages recognised as already handled",
    ["queue"],
)
DEPENDENCY_UP = Gauge(
    "switchboard_dependency_up",
    "1 while this process reaches the dependency (rabbitmq, mongodb), 0 when it does not",
    ["dependency"],
)


def stable_destination(name: str) -> str:
    """A reply queue's name changes on every start: its label is ``<service>.replies``."""
    head, sep, _ = name.partition(".replies.")
    return f"{head}.replies" if sep else name


class _StableNames(RabbitMetricsSettingsProvider):
    def get_consume_attrs_from_message(self, msg: StreamMessage[IncomingMessage]) -> ConsumeAttrs:
        attrs = super().get_consume_attrs_from_message(msg)
        return {**attrs, "destination_name": stable_destination(attrs["destination_name"])}

    def get_publish_destination_name_from_cmd(self, cmd: RabbitPublishCommand) -> str:
        return stable_destination(super().get_publish_destination_name_from_cmd(cmd))


def bus_middleware(app_name: str) -> PrometheusMiddleware[IncomingMessage, RabbitPublishCommand]:
    """FastStream's consume/publish metrics with stable label values and the project prefix."""
    return PrometheusMiddleware(
        settings_provider_factory=lambda _: _StableNames(),
        registry=REGISTRY,
        app_name=app_name,
        metrics_prefix=BUS_PREFIX,
    )


def metrics_app(registry: CollectorRegistry = REGISTRY) -> ASGIApp:
    return make_asgi_app(registry)

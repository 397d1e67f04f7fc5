"""SB_QUEUE_TYPE=quorum: consumer, retry and dead queues are quorum queues, and the retry and
dead-letter topology works on them as on classic queues (real RabbitMQ)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from switchboard.app.localstack import Backends, management_call
from switchboard.contracts import topology as names
from switchboard.runtime.service import Runtime

from .test_bus import SCANS, ParcelScanned, Recorder, _count_is, _eventually, _queue_messages


@pytest.fixture
async def quorum(make_settings: Callable[..., Any]) -> AsyncIterator[Runtime]:
    yield Runtime("kit", make_settings(max_attempts=3, queue_type="quorum"))


def _queue_type(real_servers: Backends, amqp_url: str, queue: str) -> str:
    assert real_servers.management_url is not None
    vhost = urllib.parse.urlsplit(amqp_url).path.lstrip("/") or "%2F"
    info: Any = management_call(real_servers.management_url, "GET", f"/api/queues/{vhost}/{queue}")
    return str(info["type"])


async def test_quorum_queues_are_declared_and_retries_reach_the_handler_again(
    quorum: Runtime, amqp_url: str, real_servers: Backends
) -> None:
    handler = Recorder(quorum, failures=2)
    quorum.bus.consume(SCANS, ParcelScanned, handler)
    async with quorum.app:
        for queue in (SCANS.name, SCANS.retry, SCANS.dead):
            assert _queue_type(real_servers, amqp_url, queue) == "quorum", queue
        await quorum.bus.publish(ParcelScanned(parcel="Q1"))
        await _eventually(lambda: _count_is(quorum, "Q1", 1))
    assert handler.calls == 3
    assert await _queue_messages(amqp_url, SCANS.dead) == []


async def test_a_message_that_keeps_failing_lands_in_the_quorum_dead_queue_with_its_reason(
    quorum: Runtime, amqp_url: str
) -> None:
    quorum.bus.consume(SCANS, ParcelScanned, Recorder(quorum, failures=99))
    async with quorum.app:
        await quorum.bus.publish(ParcelScanned(parcel="Q2"))

        async def dead() -> list[Any]:
            return await _queue_messages(amqp_url, SCANS.dead)

        [message] = await _eventually(dead)
    assert message.headers[names.HEADER_ATTEMPTS] == 3
    assert "scanner offline (call 3)" in str(message.headers[names.HEADER_ERROR])
    assert json.loads(message.body)["parcel"] == "Q2"

"""The message kit, exercised against a real RabbitMQ and a real MongoDB-protocol server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import httpx
import pytest
from testkit import eventually as _eventually

from switchboard.app.localstack import (
    Backends,
    start_local_rabbitmq_app,
    stop_local_rabbitmq_app,
)
from switchboard.contracts import Command, ConsumerQueue, Event
from switchboard.contracts import topology as names
from switchboard.runtime.errors import Refused
from switchboard.runtime.service import Runtime


class ParcelScanned(Event):
    NAME = "test.parcel.scanned"
    parcel: str
    hold_seconds: float = 0.0


class ReserveSlot(Command):
    NAME = "test.slot.reserve"
    slot: int


SCANS = ConsumerQueue("test.scans", (ParcelScanned.NAME,))
SLOTS = ConsumerQueue("test.slots", (ReserveSlot.NAME,))


class Recorder:
    """A handler that stores what it saw in MongoDB, and can be told to fail."""

    def __init__(self, runtime: Runtime, failures: int = 0) -> None:
        self.runtime = runtime
        self.failures = failures
        self.calls = 0
        self.started = asyncio.Event()

    async def __call__(self, event: ParcelScanned) -> None:
        self.calls += 1
        self.started.set()
        if self.calls <= self.failures:
            raise RuntimeError(f"scanner offline (call {self.calls})")
        await asyncio.sleep(event.hold_seconds)
        await self.runtime.db["scans"].update_one(
            {"_id": event.parcel}, {"$inc": {"count": 1}}, upsert=True
        )


async def _queue_messages(amqp_url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(amqp_url)
    taken = []
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        while (message := await declared.get(fail=False, no_ack=True)) is not None:
            taken.append(message)
    return taken


@pytest.fixture
async def runtime(make_settings: Callable[..., Any]) -> AsyncIterator[Runtime]:
    yield Runtime("kit", make_settings(max_attempts=3))


async def _count(runtime: Runtime, parcel: str) -> int:
    found = await runtime.db["scans"].find_one({"_id": parcel})
    return int(found["count"]) if found else 0


async def test_a_published_event_is_confirmed_and_handled_once(runtime: Runtime) -> None:
    runtime.bus.consume(SCANS, ParcelScanned, Recorder(runtime))
    async with runtime.app:
        await runtime.bus.publish(ParcelScanned(parcel="P1"))
        await _eventually(lambda: _count_is(runtime, "P1", 1))


async def _count_is(runtime: Runtime, parcel: str, expected: int) -> bool:
    return await _count(runtime, parcel) == expected


async def test_an_unroutable_command_raises_but_an_unheard_event_does_not(
    runtime: Runtime,
) -> None:
    runtime.bus.consume(SCANS, ParcelScanned, Recorder(runtime))

    class NobodyOwnsThis(Command):
        NAME = "test.nobody.owns"

    class NobodyListens(Event):
        NAME = "test.nobody.listens"

    async with runtime.app:
        with pytest.raises(Exception, match=r"NO_ROUTE|[Rr]eturn|unroutable"):
            await runtime.bus.publish(NobodyOwnsThis())
        await runtime.bus.publish(NobodyListens())


async def test_an_answer_nobody_waits_for_is_dropped_not_retried(
    runtime: Runtime, amqp_url: str
) -> None:
    calls: list[int] = []

    async def reserve(command: ReserveSlot) -> dict[str, Any]:
        calls.append(command.slot)
        return {"slot": command.slot}

    runtime.bus.consume(SLOTS, ReserveSlot, reserve)
    async with runtime.app:
        await runtime.broker.publish(
            ReserveSlot(slot=5).model_dump_json().encode(),
            exchange=names.EXCHANGE,
            routing_key=ReserveSlot.NAME,
            reply_to="requester-that-has-gone",
            persist=True,
        )
        await _eventually(lambda: _async_true(bool(calls)))
        await asyncio.sleep(1.5)
    assert calls == [5]
    assert await _queue_messages(amqp_url, SLOTS.name) == []
    assert await _queue_messages(amqp_url, SLOTS.retry) == []


async def _async_true(value: bool) -> bool:
    return value


async def test_a_redelivered_message_has_no_second_effect(runtime: Runtime) -> None:
    handler = Recorder(runtime)
    runtime.bus.consume(SCANS, ParcelScanned, handler)
    event = ParcelScanned(parcel="P2")
    async with runtime.app:
        await runtime.bus.publish(event)
        await runtime.bus.publish(event)
        await runtime.bus.publish(ParcelScanned(parcel="P2b"))
        await _eventually(lambda: _count_is(runtime, "P2b", 1))
        await _eventually(lambda: _count_is(runtime, "P2", 1))
        await asyncio.sleep(1.0)
        assert await _count(runtime, "P2") == 1
    assert handler.calls == 2


async def test_a_consumer_without_the_ledger_gives_every_copy_to_its_handler(
    runtime: Runtime,
) -> None:
    """``ledger=False``: the handler drops repeats itself; retries still work, and the
    processed-message ledger is not written at all."""
    handler = Recorder(runtime, failures=1)
    runtime.bus.consume(SCANS, ParcelScanned, handler, ledger=False)
    event = ParcelScanned(parcel="P9")
    async with runtime.app:
        await runtime.bus.publish(event)
        await runtime.bus.publish(event)
        await _eventually(lambda: _count_is(runtime, "P9", 2))
        assert await runtime.db["processed_messages"].count_documents({}) == 0
    assert handler.calls == 3, "the first call failed and was retried; the copy went through"


async def test_a_failing_handler_is_retried_then_succeeds(runtime: Runtime, amqp_url: str) -> None:
    handler = Recorder(runtime, failures=2)
    runtime.bus.consume(SCANS, ParcelScanned, handler)
    async with runtime.app:
        await runtime.bus.publish(ParcelScanned(parcel="P3"))
        await _eventually(lambda: _count_is(runtime, "P3", 1))
    assert handler.calls == 3
    assert await _queue_messages(amqp_url, SCANS.dead) == []


async def test_a_handler_that_keeps_failing_is_dead_lettered_with_reason(
    runtime: Runtime, amqp_url: str
) -> None:
    handler = Recorder(runtime, failures=99)
    runtime.bus.consume(SCANS, ParcelScanned, handler)
    event = ParcelScanned(parcel="P4")
    async with runtime.app:
        await runtime.bus.publish(event)

        async def dead() -> list[Any]:
            return await _queue_messages(amqp_url, SCANS.dead)

        [message] = await _eventually(dead)
        assert await _count(runtime, "P4") == 0
    assert handler.calls == 3
    assert message.headers[names.HEADER_ATTEMPTS] == 3
    assert "scanner offline (call 3)" in str(message.headers[names.HEADER_ERROR])
    assert message.headers[names.HEADER_CONSUMER] == SCANS.name
    assert json.loads(message.body)["parcel"] == "P4"
    assert message.message_id == str(event.message_id)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"hold_seconds": 1}', "parcel"),
        (b"not json at all", "invalid"),
        (b'{"parcel": "P5", "schema_version": 9}', "schema_version"),
    ],
)
async def test_an_invalid_message_is_dead_lettered_with_the_validation_error(
    runtime: Runtime, amqp_url: str, body: bytes, named: str
) -> None:
    handler = Recorder(runtime)
    runtime.bus.consume(SCANS, ParcelScanned, handler)
    async with runtime.app:
        await runtime.broker.publish(
            body, exchange=names.EXCHANGE, routing_key=ParcelScanned.NAME, persist=True
        )

        async def dead() -> list[Any]:
            return await _queue_messages(amqp_url, SCANS.dead)

        [message] = await _eventually(dead)
    assert handler.calls == 0
    assert named in str(message.headers[names.HEADER_ERROR])
    assert message.body == body


async def test_a_command_is_answered_and_a_refusal_names_the_field(runtime: Runtime) -> None:
    tries: list[int] = []

    async def reserve(command: ReserveSlot) -> dict[str, Any]:
        tries.append(command.slot)
        if command.slot == 7 and tries.count(7) == 1:
            raise RuntimeError("slot table locked; try again")
        if command.slot > 10:
            raise Refused("no_such_slot", f"slot {command.slot} does not exist", field="slot")
        return {"slot": command.slot, "reserved": True}

    runtime.bus.consume(SLOTS, ReserveSlot, reserve)
    async with runtime.app:
        ok = await runtime.bus.request(ReserveSlot(slot=3))
        flaky_then_ok = await runtime.bus.request(ReserveSlot(slot=7))
        refused = await runtime.bus.request(ReserveSlot(slot=42))
    assert ok.ok and ok.result == {"slot": 3, "reserved": True}
    assert flaky_then_ok.ok and flaky_then_ok.result == {"slot": 7, "reserved": True}
    assert not refused.ok and refused.error is not None
    assert refused.error.field == "slot" and "42" in refused.error.message


async def test_shutdown_waits_for_the_message_in_hand(
    make_settings: Callable[..., Any], amqp_url: str
) -> None:
    first = Runtime("kit", make_settings())
    handler = Recorder(first)
    first.bus.consume(SCANS, ParcelScanned, handler)
    await first.app.start()
    await first.bus.publish(ParcelScanned(parcel="P6", hold_seconds=1.5))
    await asyncio.wait_for(handler.started.wait(), 10)
    await first.app.stop()
    assert handler.calls == 1
    second = Runtime("kit", make_settings())
    second.bus.consume(SCANS, ParcelScanned, Recorder(second))
    async with second.app:
        await asyncio.sleep(1.0)
        assert await _count(second, "P6") == 1
    assert await _queue_messages(amqp_url, SCANS.name) == []


@pytest.mark.owns_broker
async def test_consumers_resume_after_the_broker_restarts(
    runtime: Runtime, real_servers: Backends
) -> None:
    if real_servers.restart_broker is None:
        pytest.skip(reason="the broker was not started by this harness, so it cannot restart it")
    runtime.bus.consume(SCANS, ParcelScanned, Recorder(runtime))
    async with runtime.app:
        await runtime.bus.publish(ParcelScanned(parcel="before"))
        await _eventually(lambda: _count_is(runtime, "before", 1))
        await asyncio.to_thread(real_servers.restart_broker)

        async def handled_after_restart() -> bool:
            try:
                await runtime.bus.publish(ParcelScanned(parcel=f"after-{uuid.uuid4()}"))
            except Exception:
                return False
            return await runtime.db["scans"].count_documents({"_id": {"$regex": "^after-"}}) > 0

        await _eventually(handled_after_restart, seconds=60)


async def test_a_lost_broker_is_tried_again_at_the_pace_the_operator_set(
    make_settings: Callable[..., Any],
) -> None:
    """After a RabbitMQ restart the mail in flight waits for the reconnection: aio-pika's own
    pause of 5 s between attempts was most of the recovery time."""
    default = Runtime("kit", make_settings())
    paced = Runtime("kit", make_settings(broker_reconnect_seconds=0.25))
    async with default.app, paced.app:
        assert default.broker._connection is not None
        assert paced.broker._connection is not None
        assert default.broker._connection.reconnect_interval == 1.0
        assert paced.broker._connection.reconnect_interval == 0.25


@pytest.mark.owns_broker
async def test_a_service_whose_broker_stays_lost_reports_unhealthy_and_gives_up(
    make_settings: Callable[..., Any], real_servers: Backends
) -> None:
    if real_servers.restart_broker is None:
        pytest.skip(reason="the broker was not started by this harness, so it cannot stop it")
    runtime = Runtime("kit", make_settings(broker_lost_exit_seconds=1.0))
    runtime.watch_interval = 0.5
    gave_up = asyncio.Event()
    runtime.give_up = gave_up.set
    runtime.bus.consume(SCANS, ParcelScanned, Recorder(runtime))
    async with runtime.app:
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kit") as client:
            assert (await client.get("/health/live")).status_code == 200
            await asyncio.to_thread(stop_local_rabbitmq_app)
            try:
                await asyncio.wait_for(gave_up.wait(), 30)
                live = await client.get("/health/live")
                ready = await client.get("/health/ready")
            finally:
                await asyncio.to_thread(start_local_rabbitmq_app)
    assert live.status_code == 503
    assert ready.status_code == 503 and ready.json()["broker"] is False


async def test_a_service_whose_database_stays_lost_gives_up_and_one_that_reaches_it_does_not(
    make_settings: Callable[..., Any],
) -> None:
    """A client pool left paused after a database restart waits for ever: the process exits
    so its supervisor starts it again with a fresh client."""
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on: the database is gone
        probe.bind(("127.0.0.1", 0))
        gone = probe.getsockname()[1]
    lost = Runtime(
        "kit",
        make_settings(
            mongodb_url=f"mongodb://127.0.0.1:{gone}/?serverSelectionTimeoutMS=300",
            mongo_lost_exit_seconds=0.5,
        ),
    )
    healthy = Runtime("kit", make_settings(mongo_lost_exit_seconds=0.5))
    gave_up: list[str] = []
    lost.give_up = lambda: gave_up.append("lost")
    healthy.give_up = lambda: gave_up.append("healthy")
    clock = asyncio.get_running_loop()
    deadline = clock.time() + 20
    try:
        # each check of the lost one waits out its server selection (0.3 s): no sleep needed;
        # the healthy one is checked over the same span, so its moment to give up has passed
        while "lost" not in gave_up:
            assert clock.time() < deadline, "a database lost for good was never given up on"
            await lost._report_dependencies()
            await healthy._report_dependencies()
        await healthy._report_dependencies()
    finally:
        await lost.mongo.close()
        await healthy.mongo.close()
    assert gave_up == ["lost"]


async def test_health_and_metrics_endpoints(runtime: Runtime) -> None:
    runtime.bus.consume(SCANS, ParcelScanned, Recorder(runtime))
    async with runtime.app:
        await runtime.bus.publish(ParcelScanned(parcel="P7"))
        await _eventually(lambda: _count_is(runtime, "P7", 1))
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kit") as client:
            ready = await client.get("/health/ready")
            live = await client.get("/health/live")
            metrics = await client.get("/metrics")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "broker": True, "mongodb": True}
    assert live.status_code == 200
    assert "switchboard_bus_received_messages_total" in metrics.text
    assert "faststream_" not in metrics.text
    assert 'switchboard_dependency_up{dependency="mongodb"} 1.0' in metrics.text
    assert 'switchboard_dependency_up{dependency="rabbitmq"} 1.0' in metrics.text
    assert "switchboard_messages_retried_total" in metrics.text


async def test_a_dead_consumers_claim_is_taken_over_by_exactly_one(
    make_settings: Callable[..., Any],
) -> None:
    from datetime import timedelta

    from switchboard.runtime.mongo import Claim, ProcessedLedger

    runtime = Runtime("kit", make_settings())

    def process() -> ProcessedLedger:
        return ProcessedLedger(runtime.db, keep=timedelta(days=1), lease=timedelta(seconds=0.2))

    dead = process()
    first, _ = await dead.claim("q", "m1")
    again, _ = await process().claim("q", "m1")
    await asyncio.sleep(0.4)
    contenders = await asyncio.gather(*(process().claim("q", "m1") for _ in range(8)))
    await process().complete("q", "m1", {"ok": True})
    done, answer = await process().claim("q", "m1")
    await runtime.mongo.close()
    assert first is Claim.NEW and again is Claim.BUSY
    assert [c for c, _ in contenders].count(Claim.NEW) == 1
    assert done is Claim.DONE and answer == {"ok": True}


async def test_copies_reaching_one_process_at_once_are_handled_once(
    make_settings: Callable[..., Any],
) -> None:
    """Replicas that each publish an outbox's events send copies that reach one consumer
    together (prefetch > 1): its own claim in the making is not taken for a leftover."""
    from switchboard.runtime.metrics import DUPLICATES

    runtime = Runtime("kit", make_settings(prefetch=32))
    calls: dict[str, int] = {}

    async def count(event: ParcelScanned) -> None:
        calls[event.parcel] = calls.get(event.parcel, 0) + 1

    runtime.bus.consume(SCANS, ParcelScanned, count)
    events = [ParcelScanned(parcel=f"P{i}") for i in range(30)]
    before = DUPLICATES.labels(SCANS.name)._value.get()
    async with runtime.app:
        await asyncio.gather(*(runtime.bus.publish(e) for e in events for _ in range(6)))

        def settled() -> bool:
            repeats = DUPLICATES.labels(SCANS.name)._value.get() - before
            return sum(calls.values()) + repeats >= 6 * len(events)

        await _eventually(settled, seconds=60)
    assert calls == {e.parcel: 1 for e in events}


def _busy_retries(queue: str) -> float:
    from switchboard.runtime.metrics import BUSY_RETRIED

    return float(BUSY_RETRIED.labels(queue)._value.get())


def _vhost_of(amqp_url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(amqp_url).path.lstrip("/"))


async def test_a_handler_cut_off_by_a_dropped_connection_is_handled_again_at_once(
    make_settings: Callable[..., Any], real_servers: Backends, amqp_url: str
) -> None:
    """The broker connection drops while a handler works: the copy the broker delivers again
    is handled as soon as the service is reconnected, not after the claim's lease."""
    from urllib.parse import quote

    from switchboard.app.localstack import management_call

    if real_servers.management_url is None:
        pytest.skip(reason="closing a connection needs RabbitMQ's management API")
    runtime = Runtime("kit", make_settings(handling_lease_seconds=120.0))
    handler = Recorder(runtime)
    runtime.bus.consume(SCANS, ParcelScanned, handler)
    vhost = _vhost_of(amqp_url)
    async with runtime.app:
        await runtime.bus.publish(ParcelScanned(parcel="P8", hold_seconds=30))
        await asyncio.wait_for(handler.started.wait(), 15)

        async def connections() -> Any:  # the management API lists them after a moment
            return management_call(
                real_servers.management_url, "GET", f"/api/vhosts/{vhost}/connections"
            )

        for connection in await _eventually(connections, seconds=30):
            management_call(
                real_servers.management_url,
                "DELETE",
                f"/api/connections/{quote(connection['name'], safe='')}",
            )
        # the copy delivered again must not wait for the first one's 30 s hold nor the lease
        await _eventually(lambda: _async_true(handler.calls >= 2), seconds=20)
        await _eventually(lambda: _count_is(runtime, "P8", 1), seconds=45)


async def test_a_dead_processes_claim_is_taken_over_within_the_short_lease(
    make_settings: Callable[..., Any],
) -> None:
    """A process claimed a message and was killed (its lease is never renewed): the copy the
    broker delivers is handled once the short lease runs out, not before, not minutes later."""
    from datetime import timedelta

    from switchboard.runtime.mongo import Claim, ProcessedLedger

    runtime = Runtime("kit", make_settings(handling_lease_seconds=2.0))
    handler = Recorder(runtime)
    runtime.bus.consume(SCANS, ParcelScanned, handler)
    event = ParcelScanned(parcel="P9")
    killed = ProcessedLedger(runtime.db, keep=timedelta(days=1), lease=timedelta(seconds=2))
    async with runtime.app:
        claim, _ = await killed.claim(SCANS.name, str(event.message_id))
        claimed_at = asyncio.get_running_loop().time()
        assert claim is Claim.NEW
        await runtime.bus.publish(event)
        await asyncio.wait_for(handler.started.wait(), 15)
        started_after = asyncio.get_running_loop().time() - claimed_at
        await _eventually(lambda: _count_is(runtime, "P9", 1), seconds=15)
    assert handler.calls == 1
    assert started_after >= 2.0, "the claim was ignored before its lease ran out"


async def test_a_copy_waiting_for_a_live_claim_backs_off_and_is_counted(
    make_settings: Callable[..., Any],
) -> None:
    """Another process works on the message for a long time and keeps its lease: the waiting
    copy checks back less and less often (not every retry delay), and is handled once the
    other process gives the claim back."""
    from datetime import timedelta

    from switchboard.runtime.mongo import Claim, ProcessedLedger

    runtime = Runtime("kit", make_settings(retry_delay_seconds=0.2, handling_lease_seconds=3.0))
    handler = Recorder(runtime)
    runtime.bus.consume(SCANS, ParcelScanned, handler)
    event = ParcelScanned(parcel="P10")
    other = ProcessedLedger(runtime.db, keep=timedelta(days=1), lease=timedelta(seconds=3))
    before = _busy_retries(SCANS.name)
    async with runtime.app:
        claim, _ = await other.claim(SCANS.name, str(event.message_id))
        assert claim is Claim.NEW
        async with other.holding(SCANS.name, str(event.message_id)):
            await runtime.bus.publish(event)
            await _eventually(lambda: _async_true(_busy_retries(SCANS.name) > before))
            await asyncio.sleep(8)  # the other process keeps working, renewing its lease
            checks = _busy_retries(SCANS.name) - before
            assert handler.calls == 0
        await other.release(SCANS.name, str(event.message_id))
        await _eventually(lambda: _count_is(runtime, "P10", 1), seconds=15)
    # 8 s of checks every 0.2 s would be 40; growing from 0.1 s to 1 s it is about 11
    assert 2 <= checks <= 16, checks
    assert handler.calls == 1


async def test_work_in_hand_elsewhere_is_checked_back_without_spending_attempts(
    runtime: Runtime, amqp_url: str
) -> None:
    """A handler that finds the work under way elsewhere (an outbound mail in DATA) is tried
    again later, more times than the message's attempts, and never dead-lettered for it."""
    from switchboard.runtime.errors import InHandElsewhere

    tries: list[int] = []

    async def send(event: ParcelScanned) -> None:
        tries.append(1)
        if len(tries) <= 5:  # runtime's max_attempts is 3
            raise InHandElsewhere("another copy is being sent right now")
        await runtime.db["scans"].update_one(
            {"_id": event.parcel}, {"$inc": {"count": 1}}, upsert=True
        )

    runtime.bus.consume(SCANS, ParcelScanned, send)
    before = _busy_retries(SCANS.name)
    async with runtime.app:
        await runtime.bus.publish(ParcelScanned(parcel="P11"))
        await _eventually(lambda: _count_is(runtime, "P11", 1), seconds=30)
    assert len(tries) == 6
    assert _busy_retries(SCANS.name) - before == 5
    assert await _queue_messages(amqp_url, SCANS.dead) == []

"""What every bench script shares: servers of its own, the floor, counting, printing.

A bench is a script (``python bench/bench_x.py``), so this module is imported as ``support``
from the scripts' own folder. Nothing here asserts: benches print figures.

* :func:`servers`: the local RabbitMQ and MongoDB-protocol server found or started like the
  tests do (loopback only), with a virtual host of the bench's own, removed afterwards.
* :func:`floor_rate`: the bare loop every hop is compared with (consume with prefetch 16, one
  ``insert_one``, one confirmed publish, ack), on the same servers; ``make bench`` measures it
  once and hands it on in ``BENCH_FLOOR_MSG_S``, a bench run alone measures it itself.
* :class:`Commands` and :class:`Publishes`: database commands (PyMongo command listener) and
  broker publishes of this process, to print what one message costs at each hop.
* :func:`service_settings`, :data:`QUIET` and :func:`run_ops`: what the ``bench_*_ops.py``
  scripts share (a service in this process on this run's servers, its periodic jobs quiet,
  the count printed per message).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
from pymongo import AsyncMongoClient, monitoring

from switchboard.app.localstack import backends, management_call

REPO = Path(__file__).resolve().parents[1]
FLOOR_ENV = "BENCH_FLOOR_MSG_S"
WRITES = frozenset({"insert", "update", "delete", "findAndModify"})
LEDGER = "processed_messages"


# --- printing ---------------------------------------------------------------------------------


def say(text: str) -> None:
    """Progress on stderr (stdout keeps the figures)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latency_line(name: str, seconds: list[float]) -> str:
    """``name: n=… p50 … p95 … p99 … max …`` in milliseconds."""
    if not seconds:
        return f"{name}: no samples"
    ms = [s * 1000 for s in seconds]
    return (
        f"{name}: n={len(ms)} p50 {percentile(ms, 0.5):.0f} ms  p95 {percentile(ms, 0.95):.0f} ms"
        f"  p99 {percentile(ms, 0.99):.0f} ms  max {max(ms):.0f} ms"
    )


def command_line() -> str:
    """The command that repeats this run."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def ratio_line(name: str, rate: float, floor: float) -> str:
    """``name = R msg/s   name/floor = 0.NN``: the hop beside the bare loop."""
    share = rate / floor if floor else float("nan")
    return f"{name} = {rate:.1f}/s   {name}/floor = {share:.2f}"


# --- servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Servers:
    """Where a bench runs: its own virtual host on the shared broker, and the database server."""

    amqp_url: str
    mongodb_url: str
    origin: dict[str, str]
    tag: str
    """Unique per run: the database prefix ``bench<tag>`` and the virtual host ``bench-<tag>``."""

    @property
    def prefix(self) -> str:
        return f"bench{self.tag}"


@contextlib.contextmanager
def servers(*, vhost: bool = True) -> Iterator[Servers]:
    """Find or start the local servers; a virtual host of this run's own, deleted at the end."""
    tag = uuid.uuid4().hex[:8]
    with backends(REPO / ".local", use_containers=False) as found:
        amqp_url, name = found.amqp_url, f"bench-{tag}"
        own = vhost and found.management_url is not None
        if own:
            assert found.management_url is not None
            user = found.amqp_url.split("://", 1)[1].split(":", 1)[0]
            management_call(found.management_url, "PUT", f"/api/vhosts/{name}")
            management_call(
                found.management_url,
                "PUT",
                f"/api/permissions/{name}/{user}",
                {"configure": ".*", "write": ".*", "read": ".*"},
            )
            amqp_url = found.vhost_url(name)
        try:
            yield Servers(amqp_url, found.mongodb_url, dict(found.origin), tag)
        finally:
            if own and found.management_url is not None:
                management_call(found.management_url, "DELETE", f"/api/vhosts/{name}")


async def drop_databases(mongodb_url: str, *names: str) -> None:
    """Drop the bench's databases by name (listing every database can stall a busy server)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    try:
        for name in names:
            await client.drop_database(name)
    finally:
        await client.close()


# --- counting ---------------------------------------------------------------------------------


class Commands(monitoring.CommandListener):
    """Database commands of this process while ``counting``, by command and collection, with
    the time they took. Register before the clients are made: :func:`count_commands`."""

    def __init__(self) -> None:
        self.counting = False
        self.databases: set[str] | None = None
        """Only these databases (None: all)."""
        self.seen: Counter[tuple[str, str]] = Counter()
        self.seconds: Counter[tuple[str, str]] = Counter()
        self._open: dict[int, tuple[str, str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.counting:
            return
        if self.databases is not None and event.database_name not in self.databases:
            return
        target = event.command.get(event.command_name)
        key = (event.command_name, target if isinstance(target, str) else "")
        self.seen[key] += 1
        self._open[event.request_id] = key

    def _ended(
        self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent
    ) -> None:
        key = self._open.pop(event.request_id, None)
        if key is not None:
            self.seconds[key] += event.duration_micros / 1e6

    succeeded = _ended
    failed = _ended

    def total(self, *, ledger: bool = True) -> int:
        return sum(n for (_, c), n in self.seen.items() if ledger or c != LEDGER)

    def writes(self, *, ledger: bool = True) -> int:
        return sum(
            n for (name, c), n in self.seen.items() if name in WRITES and (ledger or c != LEDGER)
        )

    def ledger(self) -> int:
        return sum(n for (_, c), n in self.seen.items() if c == LEDGER)

    def table(self, per: int, top: int = 12) -> list[str]:
        """The busiest commands, per ``per`` messages, with their mean time."""
        rows = sorted(self.seen.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return [
            f"  {name:14s} {collection:24s} {n / per:6.2f}"
            f"   mean {self.seconds[(name, collection)] / n * 1000:6.1f} ms"
            for (name, collection), n in rows
        ]


def count_commands(databases: set[str] | None = None) -> Commands:
    """A :class:`Commands`, registered for every PyMongo client made from now on."""
    commands = Commands()
    commands.databases = databases
    monitoring.register(commands)
    return commands


class Publishes:
    """Broker publishes of this process (FastStream and aio-pika both end in
    ``aio_pika.Exchange.publish``) while ``counting``."""

    def __init__(self) -> None:
        self.counting = False
        self.count = 0
        original = aio_pika.Exchange.publish
        outer = self

        async def counted(self: aio_pika.Exchange, *args: Any, **kwargs: Any) -> Any:
            if outer.counting:
                outer.count += 1
            return await original(self, *args, **kwargs)

        aio_pika.Exchange.publish = counted  # type: ignore[method-assign]


def cost_lines(per: int, what: str, commands: Commands, publishes: Publishes | None) -> list[str]:
    """What one ``what`` cost: database commands (writes; the ledger apart), publishes."""
    if per <= 0:
        return [f"per {what}: nothing counted"]
    head = (
        f"per {what}: {commands.total(ledger=False) / per:.2f} database commands "
        f"({commands.writes(ledger=False) / per:.2f} writes) + "
        f"{commands.ledger() / per:.2f} for the processed-message ledger"
    )
    if publishes is not None:
        head += f"; {publishes.count / per:.2f} confirmed publishes"
    return [head, *commands.table(per)]


# --- the ops benches -----------------------------------------------------------------------------

QUIET = 3600.0 * 5
"""A periodic job's interval in an ops bench: hours, so that only the messages are counted."""


def service_settings(found: Servers) -> dict[str, Any]:
    """The settings of a service a bench runs in its own process: this run's servers and
    database prefix, no HTTP port, warnings only (pass them to the service's settings class)."""
    return {
        "amqp_url": found.amqp_url,
        "mongodb_url": found.mongodb_url,
        "database_prefix": found.prefix,
        "http_port": 0,
        "log_level": "WARNING",
        "log_format": "console",
    }


Count = Callable[[Servers, Commands, Publishes], Awaitable[list[str] | None]]
"""An ops bench's run: counts what the hop costs; the lines to print, or None for
:func:`cost_lines` of every message."""


def run_ops(count: Count, *, per: int, what: str, vhost: bool = True, broker: bool = True) -> None:
    """An ops bench from start to end: commands and publishes counted while ``count`` runs on
    this run's servers, then printed per ``what`` (``per`` of them), after the command line.
    ``broker=False``: the hop runs without a broker (no publishes to print)."""
    commands = count_commands()
    publishes = Publishes()
    with servers(vhost=vhost) as found:
        lines = asyncio.run(count(found, commands, publishes))
    print(f"command: {command_line()}")
    print(f"server: {found.origin.get('mongodb')} {found.mongodb_url}")
    counted = publishes if broker else None
    print("\n".join(lines if lines is not None else cost_lines(per, what, commands, counted)))


# --- the floor --------------------------------------------------------------------------------


async def measure_floor(
    amqp_url: str, mongodb_url: str, *, messages: int = 400, prefetch: int = 16
) -> float:
    """Messages per second of the bare loop: consume (``prefetch``), ``insert_one``, confirmed
    publish, ack. The queue is filled first, so only the loop is timed."""
    tag = uuid.uuid4().hex[:8]
    database = f"benchfloor{tag}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    collection = client[database]["messages"]
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        exchange = await channel.declare_exchange(
            f"bench.floor.{tag}", aio_pika.ExchangeType.DIRECT, auto_delete=True
        )
        inbox = await channel.declare_queue(f"bench.floor.{tag}.in", durable=True)
        outbox = await channel.declare_queue(f"bench.floor.{tag}.out", durable=True)
        await inbox.bind(exchange, "in")
        await outbox.bind(exchange, "out")
        await collection.insert_one({"_id": "warm"})  # the collection exists before timing
        body = b'{"subject": "a customer mail standing in"}' + b" " * 400
        for start in range(0, messages, 100):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        "in",
                    )
                    for _ in range(start, min(start + 100, messages))
                )
            )
        done = asyncio.Event()
        handled = 0

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal handled
            await collection.insert_one({"_id": message.delivery_tag, "body": message.body})
            await exchange.publish(
                aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                "out",
            )
            await message.ack()
            handled += 1
            if handled >= messages:
                done.set()

        started = time.perf_counter()
        tag_consumer = await inbox.consume(handle)
        await asyncio.wait_for(done.wait(), timeout=300)
        elapsed = time.perf_counter() - started
        await inbox.cancel(tag_consumer)
        await inbox.delete(if_unused=False, if_empty=False)
        await outbox.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
        await client.drop_database(database)
        await client.close()
    return messages / elapsed


async def floor_rate(found: Servers, *, messages: int = 400) -> float:
    """The floor of this ``make bench`` run (``BENCH_FLOOR_MSG_S``), else measured now."""
    given = os.environ.get(FLOOR_ENV)
    if given:
        return float(given)
    say("measuring the floor (bare consume -> insert_one -> confirmed publish -> ack)")
    return await measure_floor(found.amqp_url, found.mongodb_url, messages=messages)


async def wait_for(check: Callable[[], bool], seconds: float, step: float = 0.05) -> bool:
    """Poll ``check`` until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True

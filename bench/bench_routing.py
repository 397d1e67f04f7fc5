"""Routing benchmark: time to offer, p50/p99, and offers per second.

    python bench/bench_routing.py            # 1,000 agents, 10,000 waiting interactions
    python bench/bench_routing.py --scale 0.2  # a smaller run (prints what it ran)
    python bench/bench_routing.py --rate 100 --replicas 2  # the issue's goal, two replicas

Runs one routing replica in-process (and ``--replicas`` - 1 more as ``python -m
switchboard.routing`` processes of their own, on the same queues and database) against the
local RabbitMQ and MongoDB-protocol server (``switchboard.app.localstack``, loopback only),
in a fresh virtual host and database. Database commands are counted in this process only.

1. Setup: ``agents`` agents (half in team "live" and Ready, half in team "backlog" and Not
   Ready) and ``waiting`` interactions waiting in service "backlog" (written straight into
   routing's collection, the same documents a route request writes); then routing starts.
2. Request -> offer: route requests for service "live" at a steady pace while the backlog
   waits; latency = publish of the request to arrival of its ``offer.made``.
3. Ready -> offer: the backlog agents become Ready at a steady pace; latency = publish of the
   state change to arrival of the agent's ``offer.made`` (the head of a 10,000-deep queue).
4. Offers per second: the same again for a burst (every remaining backlog agent Ready at once),
   counting offers until all are out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import support

from switchboard.contracts import EXCHANGE
from switchboard.contracts.agents import AgentStateChanged
from switchboard.contracts.routing import RouteRequested, ServiceDefinition
from switchboard.routing.app import RoutingSettings, wire
from switchboard.routing.domain import SNAPSHOT_TIME, AgentRecord, new_round, with_room


def describe(name: str, values: list[float]) -> str:
    return support.latency_line(name, values)


async def run(args: argparse.Namespace, found: support.Servers) -> dict[str, Any]:
    amqp_url, mongodb_url = found.amqp_url, found.mongodb_url
    floor = await support.floor_rate(found)
    agents = max(int(1000 * args.scale), 4)
    waiting = max(int(10000 * args.scale), 10)
    live_agents = agents // 2
    backlog_agents = agents - live_agents
    requests = min(live_agents, max(int(args.requests * args.scale), 2))
    paced_ready = min(backlog_agents // 2, max(int(args.requests * args.scale), 2))

    settings = RoutingSettings(
        amqp_url=amqp_url,
        mongodb_url=mongodb_url,
        database_prefix=found.prefix,
        http_port=0,
        log_level="WARNING",
        log_format="console",
        prefetch=64,
        sweep_seconds=2.0,
    )
    runtime, router = wire(settings)
    others: list[asyncio.subprocess.Process] = []
    COMMANDS.databases = REQUEST_COMMANDS.databases = {settings.database_name("routing")}
    store = router.store
    offers: dict[str, float] = {}
    offer_by_agent: dict[str, float] = {}

    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000)
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    observer = await channel.declare_queue("", exclusive=True)
    await observer.bind(exchange, routing_key="offer.made")

    async def on_offer(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            body = json.loads(message.body)
            now = time.perf_counter()
            offers.setdefault(body["interaction_id"], now)
            offer_by_agent.setdefault(body["agent_id"], now)
            PROGRESS.set()

    await observer.consume(on_offer)
    started = False
    try:
        for name, team in (("live", "live"), ("backlog", "backlog")):
            await store.put_service(
                ServiceDefinition(name=name, channel="email", team=team, offer_timeout_seconds=3600)
            )
        router.catalog.invalidate()

        # --- setup: agents and the waiting backlog, written in bulk --------------------------
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        docs = []
        for n in range(agents):
            live = n < live_agents
            record = AgentRecord(
                id=f"agent-{n:04d}",
                teams=["live" if live else "backlog"],
                capacity={"email": 1, "preview": 0},
                state="ready" if live else "not_ready",
                state_seq=1,
                idle_since=now - timedelta(seconds=n),
                profile_key=(1, SNAPSHOT_TIME),  # as agent-state's answer would leave it
                version=1,
            )
            docs.append(with_room(record, store.default_capacity).model_dump(by_alias=True))
        await store.agents.collection.insert_many(docs)
        backlog = []
        for n in range(waiting):
            request = RouteRequested(
                interaction_id=f"backlog-{n:05d}",
                channel="email",
                service="backlog",
                requested_at=now - timedelta(seconds=waiting - n),
            )
            backlog.append(new_round(request, None, None, now).model_dump(by_alias=True))
        for start in range(0, len(backlog), 1000):
            await store.work.collection.insert_many(backlog[start : start + 1000])
        setup_seconds = time.perf_counter() - t0
        progress(f"setup: {agents} agents, {waiting} waiting, {setup_seconds:.1f} s")
        # Routing starts over the backlog, as after a restart (written straight into the
        # database, it was never announced to the queue index: the first full read finds it).
        await runtime.app.start()
        started = True
        for _ in range(args.replicas - 1):
            others.append(await start_replica(settings))

        # --- request -> offer, paced ------------------------------------------------------------
        sent: dict[str, float] = {}
        interval = 1.0 / args.rate
        REQUEST_COMMANDS.counting = True
        for n in range(requests):
            request = RouteRequested(
                interaction_id=f"live-{n:05d}", channel="email", service="live"
            )
            sent[request.interaction_id] = time.perf_counter()
            await runtime.bus.publish(request)
            await asyncio.sleep(interval)
        await wait_until(lambda: all(i in offers for i in sent), args.phase_timeout)
        REQUEST_COMMANDS.counting = False
        request_latency = [offers[i] - t for i, t in sent.items() if i in offers]
        progress(describe("request -> offer", request_latency))

        # --- ready -> offer, paced (10,000 waiting) --------------------------------------------
        ready_sent: dict[str, float] = {}
        backlog_ids = [f"agent-{n:04d}" for n in range(live_agents, agents)]
        for agent_id in backlog_ids[:paced_ready]:
            ready_sent[agent_id] = time.perf_counter()
            await runtime.bus.publish(ready(agent_id, 2))
            await asyncio.sleep(interval)
        await wait_until(lambda: all(a in offer_by_agent for a in ready_sent), args.phase_timeout)
        ready_latency = [
            offer_by_agent[a] - t for a, t in ready_sent.items() if a in offer_by_agent
        ]
        progress(describe("ready -> offer", ready_latency))

        # --- burst: every other backlog agent Ready at once -> offers per second ---------------
        burst = backlog_ids[paced_ready:]
        before = len(offers)
        COMMANDS.counting = PUBLISHES.counting = True
        t1 = time.perf_counter()
        await asyncio.gather(*(runtime.bus.publish(ready(a, 2)) for a in burst))
        await wait_until(lambda: all(a in offer_by_agent for a in burst), args.phase_timeout)
        burst_seconds = time.perf_counter() - t1
        burst_offers = len(offers) - before
        COMMANDS.counting = PUBLISHES.counting = False
        view = await router.queue_view(["backlog"])
    finally:
        if started:
            await runtime.app.stop()
        for process in others:
            process.terminate()
            await process.wait()
        await connection.close()
        await support.drop_databases(mongodb_url, settings.database_name("routing"))
    return {
        "agents": agents,
        "waiting": waiting,
        "requests": requests,
        "paced_ready": paced_ready,
        "burst": len(burst),
        "setup_seconds": setup_seconds,
        "request_latency": request_latency,
        "ready_latency": ready_latency,
        "burst_seconds": burst_seconds,
        "burst_offers": burst_offers,
        "still_waiting": view["backlog"]["depth"],
        "floor": floor,
    }


async def start_replica(settings: RoutingSettings) -> asyncio.subprocess.Process:
    """Another routing replica, a process of its own, on the same vhost and database."""
    env = {
        **os.environ,
        "SB_AMQP_URL": settings.amqp_url.get_secret_value(),
        "SB_MONGODB_URL": settings.mongodb_url.get_secret_value(),
        "SB_DATABASE_PREFIX": settings.database_prefix,
        "SB_HTTP_PORT": "0",
        "SB_LOG_LEVEL": "WARNING",
        "SB_PREFETCH": str(settings.prefetch),
        "SB_SWEEP_SECONDS": str(settings.sweep_seconds),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchboard.routing",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    async with asyncio.timeout(60):  # until it says its consumers are up
        while b"started successfully" not in await process.stdout.readline():
            pass
    DRAINS.append(asyncio.ensure_future(drain(process.stdout)))
    return process


async def drain(stream: asyncio.StreamReader) -> None:
    """Keep reading a replica's output (a full pipe would stop it)."""
    while await stream.readline():
        pass


DRAINS: list[asyncio.Future[None]] = []


def progress(line: str) -> None:
    """A phase done (a full-scale run on FerretDB takes many minutes)."""
    print(f"  .. {line}", file=sys.stderr, flush=True)


def ready(agent_id: str, sequence: int) -> AgentStateChanged:
    return AgentStateChanged(
        agent_id=agent_id,
        previous="not_ready",
        state="ready",
        actor=agent_id,
        sequence=sequence,
        changed_at=datetime.now(UTC),
    )


PROGRESS = asyncio.Event()
COMMANDS = support.count_commands()
REQUEST_COMMANDS = support.count_commands()
PUBLISHES = support.Publishes()


async def wait_until(check: Any, seconds: float) -> None:
    """Until ``check()`` holds (re-checked whenever an offer arrives) or the time is up."""
    deadline = time.perf_counter() + seconds
    while not check():
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return
        PROGRESS.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(PROGRESS.wait(), min(remaining, 0.5))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="1.0 = 1,000 agents, 10,000 waiting"
    )
    parser.add_argument("--requests", type=int, default=300, help="paced samples per phase")
    parser.add_argument("--rate", type=float, default=50.0, help="paced samples per second")
    parser.add_argument("--phase-timeout", type=float, default=60.0)
    parser.add_argument("--replicas", type=int, default=1, help="routing replicas (processes)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile of this process, top functions by own time"
    )
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.profile else None
    with support.servers() as found:
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = asyncio.run(run(args, found))
        if profiler is not None:
            profiler.disable()
        total = time.perf_counter() - started
    print(f"command: {support.command_line()}")
    print(
        f"ran: {result['agents']} agents, {result['waiting']} waiting interactions, "
        f"{result['requests']} paced requests and {result['paced_ready']} paced Ready at "
        f"{args.rate:g}/s, burst of {result['burst']} Ready; {args.replicas} routing "
        f"replica(s); servers: "
        f"{found.origin}; total {total:.1f} s (setup {result['setup_seconds']:.1f} s)"
    )
    print(describe("route request -> offer", result["request_latency"]))
    print(describe(f"agent Ready -> offer ({result['waiting']} waiting)", result["ready_latency"]))
    rate = result["burst_offers"] / result["burst_seconds"] if result["burst_seconds"] else 0.0
    print(
        f"offers/s: {rate:.0f} ({result['burst_offers']} offers in "
        f"{result['burst_seconds']:.2f} s); still waiting in backlog: {result['still_waiting']}"
    )
    # the bench's own Ready events are in the count: one per agent, taken off
    PUBLISHES.count -= result["burst"]
    print(
        "\n".join(
            support.cost_lines(
                len(result["request_latency"]), "route request offered", REQUEST_COMMANDS, None
            )
        )
    )
    print(
        "\n".join(support.cost_lines(result["burst_offers"], "offer (burst)", COMMANDS, PUBLISHES))
    )
    print(support.ratio_line("routing", rate, result["floor"]))
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Agent-state benchmark: state changes per second and event latency with 1,000 agents.

Run: ``.venv/bin/python bench/bench_agent_state.py [--agents 1000] [--rounds 5] [--seconds 45]``

It finds (or starts) the local RabbitMQ and MongoDB-protocol server like the tests do, on
loopback only, in a virtual host and databases of its own (removed afterwards). One agent-state
service and one listener run in this process. 1,000 agents are seeded logged in and Ready; each
alternates Not Ready / Ready ``rounds`` times (or until ``--seconds``), one command in flight per
agent (a person clicks, then sees the change), at most ``--in-flight`` commands overall.
Latency: from publishing the command to receiving its ``agent.state_changed`` event.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import support
from aio_pika.abc import AbstractIncomingMessage

from switchboard.agent_state import domain
from switchboard.agent_state.app import AgentStateSettings, build
from switchboard.agent_state.store import AgentStore, agent_fields
from switchboard.contracts import Message
from switchboard.contracts.agents import AgentStateChanged, SetNotReady, SetReady
from switchboard.runtime.service import Runtime


class Listener:
    def __init__(self) -> None:
        self.waiting: dict[tuple[str, int], asyncio.Future[float]] = {}
        self.received = 0

    def expect(self, agent_id: str, sequence: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[(agent_id, sequence)] = future
        return future

    async def on_change(self, message: AbstractIncomingMessage) -> None:
        event = AgentStateChanged.model_validate_json(message.body)
        self.received += 1
        future = self.waiting.pop((event.agent_id, event.sequence), None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())


async def _seed_logged_in(store: AgentStore, agents: list[str]) -> None:
    """1,000 agents logged in and Ready (written directly: the bench measures changes)."""
    now = datetime.now(UTC)
    docs = []
    for agent_id in agents:
        agent = domain.Agent(
            agent_id,
            state="ready",
            reason="ready",
            since=now,
            sequence=1,
            last_seen=now,
            presence_due=now + timedelta(hours=2),
        )
        profile = {"name": agent_id, "teams": ["support"], "skills": [], "capacity": {"email": 5}}
        doc = AgentStore._new_doc(agent_id, profile)
        docs.append(
            doc | agent_fields(agent) | {"profile_unpublished": False, "published_sequence": 1}
        )
    await store.agents.insert_many(docs)


async def _bench(found: support.Servers, args: argparse.Namespace) -> dict[str, Any]:
    floor = await support.floor_rate(found)
    settings = AgentStateSettings(
        amqp_url=found.amqp_url,
        mongodb_url=found.mongodb_url,
        database_prefix=found.prefix,
        http_port=0,
        http_host="127.0.0.1",
        log_level="WARNING",
        log_format="console",
        prefetch=16,
        retry_delay_seconds=0.2,
        not_ready_reasons=["Break", "Lunch"],
        heartbeat_timeout_seconds=3600,
        presence_logout_seconds=7200,
        reconcile_interval_seconds=3600,
    )
    agents = [f"agent-{i:04d}" for i in range(args.agents)]
    listener = Listener()
    probe = Runtime("bench_listener", settings)
    service = build(settings)
    latencies: list[float] = []
    missed: list[str] = []
    try:
        async with probe.app, service.app:
            # a bare queue of this process (no ledger): the bench's listener costs the
            # database nothing, like the floor's output queue
            await probe.bus.replica_queue(
                f"bench.agent_state.changes.{found.tag}",
                [AgentStateChanged.NAME],
                listener.on_change,
                max_length=1_000_000,
            )
            support.say(f"seeding {len(agents)} agents")
            await _seed_logged_in(AgentStore(service.db), agents)
            support.say("changing states")
            gate = asyncio.Semaphore(args.in_flight)
            deadline = time.perf_counter() + args.seconds

            async def change(command: Message, agent_id: str, sequence: int) -> None:
                async with gate:
                    if time.perf_counter() > deadline:
                        raise TimeoutError("deadline")
                    arrived = listener.expect(agent_id, sequence)
                    sent = time.perf_counter()
                    await probe.bus.publish(command)
                    try:
                        done = await asyncio.wait_for(arrived, timeout=30)
                    except TimeoutError:
                        missed.append(agent_id)
                        raise
                    latencies.append(done - sent)

            async def person(agent_id: str) -> None:
                me = {"agent_id": agent_id, "actor_id": agent_id, "actor_role": "agent"}
                sequence = 1  # seeded Ready
                for _ in range(args.rounds):
                    for command in (SetNotReady(**me, reason="Break"), SetReady(**me)):
                        if time.perf_counter() > deadline:
                            return
                        sequence += 1
                        await change(command, agent_id, sequence)

            started = time.perf_counter()
            await asyncio.gather(*(person(a) for a in agents), return_exceptions=True)
            elapsed = time.perf_counter() - started
            support.say(f"{len(latencies)} changes seen; stopping")
    finally:
        support.say("cleaning up")
        await support.drop_databases(
            found.mongodb_url,
            settings.database_name("agent_state"),
            settings.database_name("bench_listener"),
        )
    return {
        "agents": len(agents),
        "changes": len(latencies),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": support.percentile(latencies, 0.95) * 1000,
        "p99_ms": support.percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "in_flight": args.in_flight,
        "missed": len(missed),
        "servers": found.origin,
        "floor": floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="Not Ready/Ready pairs per agent")
    parser.add_argument("--in-flight", type=int, default=32, help="commands in flight at most")
    parser.add_argument("--seconds", type=float, default=45.0, help="stop issuing after this")
    args = parser.parse_args()
    with support.servers() as found:
        figures = asyncio.run(_bench(found, args))
    print(f"command: {support.command_line()}")
    print(f"servers: {figures['servers']}")
    print(
        f"agents: {figures['agents']}  state changes: {figures['changes']}  "
        f"in {figures['seconds']:.1f} s  ->  {figures['per_second']:.0f} changes/s "
        f"(<= {figures['in_flight']} commands in flight; "
        f"{figures['missed']} events not seen within 30 s)"
    )
    print(
        "latency command -> agent.state_changed received: "
        f"p50 {figures['p50_ms']:.1f} ms  p95 {figures['p95_ms']:.1f} ms  "
        f"p99 {figures['p99_ms']:.1f} ms  max {figures['max_ms']:.1f} ms"
    )
    print("(database commands per change: bench/bench_agent_state_ops.py)")
    print(support.ratio_line("agent_state", figures["per_second"], figures["floor"]))


if __name__ == "__main__":
    main()

"""Database operations per agent state change, counted with a PyMongo command listener.

Run: ``.venv/bin/python bench/bench_agent_state_ops.py [--changes 40]``

One agent-state service runs in this process against the local RabbitMQ and MongoDB-protocol
server (found or started like the tests do, in a virtual host and databases of its own). One
agent logs in; then it alternates Not Ready / Ready ``--changes`` times, one command at a time,
each waited for until its ``agent.state_changed`` event arrives. Every command the service sends
to its own database in that window is counted, by command and collection; the periodic jobs are
set to hours so that only the changes are counted. The runtime's processed-message ledger is
listed apart (it is the same for every consumer).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from switchboard.agent_state.app import AgentStateSettings, build
from switchboard.contracts import ConsumerQueue
from switchboard.contracts.agents import (
    AgentStateChanged,
    LogIn,
    RegisterAgent,
    SetNotReady,
    SetReady,
)
from switchboard.runtime.localstack import Backends, backends, management_call
from switchboard.runtime.service import Runtime

LISTENER = ConsumerQueue("bench.agent_state_ops.changes", (AgentStateChanged.NAME,))
WRITES = {"insert", "update", "delete", "findAndModify"}


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.database = ""
        self.counting = False
        self.seen: Counter[tuple[str, str]] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.counting and event.database_name == self.database:
            target = event.command.get(event.command_name)
            self.seen[(event.command_name, str(target))] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def _count(found: Backends, changes: int, commands: Commands) -> None:
    tag = uuid.uuid4().hex[:8]
    vhost = f"bench-{tag}"
    amqp_url = found.amqp_url
    if found.management_url:
        user = found.amqp_url.split("://", 1)[1].split(":", 1)[0]
        management_call(found.management_url, "PUT", f"/api/vhosts/{vhost}")
        management_call(
            found.management_url,
            "PUT",
            f"/api/permissions/{vhost}/{user}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        amqp_url = found.vhost_url(vhost)
    hours = 3600.0 * 5
    settings = AgentStateSettings(
        amqp_url=amqp_url,
        mongodb_url=found.mongodb_url,
        database_prefix=f"bench{tag}",
        http_port=0,
        log_level="WARNING",
        log_format="console",
        not_ready_reasons=["Break"],
        heartbeat_timeout_seconds=hours,
        presence_logout_seconds=hours,
        timer_poll_seconds=hours,
        presence_poll_seconds=hours,
        outbox_relay_seconds=hours,
        outbox_sweep_seconds=hours,
        timer_repair_seconds=hours,
        reconcile_interval_seconds=hours,
        gauges_seconds=hours,
    )
    commands.database = settings.database_name("agent_state")
    seen: asyncio.Queue[AgentStateChanged] = asyncio.Queue()

    async def on_change(event: AgentStateChanged) -> None:
        await seen.put(event)

    probe = Runtime("bench_ops_probe", settings)
    probe.bus.consume(LISTENER, AgentStateChanged, on_change)
    service = build(settings)
    me = {"agent_id": "ann", "actor_id": "ann", "actor_role": "agent"}
    try:
        async with probe.app, service.app:
            sue = {"actor_id": "sue", "actor_role": "supervisor"}
            await probe.bus.request(RegisterAgent(agent_id="ann", **sue, name="Ann"), timeout=15)
            await probe.bus.request(LogIn(**me, initial_state="ready"), timeout=15)
            await asyncio.wait_for(seen.get(), 15)
            await asyncio.sleep(1.0)  # the periodic jobs' first runs are over
            commands.counting = True
            for n in range(changes):
                command = SetNotReady(**me, reason="Break") if n % 2 == 0 else SetReady(**me)
                outcome = await probe.bus.request(command, timeout=15)
                assert outcome.ok, outcome.error
                await asyncio.wait_for(seen.get(), 15)
            await asyncio.sleep(0.5)  # the mark-published write after the event went out
            commands.counting = False
    finally:
        if found.management_url:
            management_call(found.management_url, "DELETE", f"/api/vhosts/{vhost}")
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(found.mongodb_url)
        for name in (commands.database, settings.database_name("bench_ops_probe")):
            await client.drop_database(name)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=40)
    args = parser.parse_args()
    commands = Commands()
    monitoring.register(commands)
    with backends(Path(".local"), use_containers=False) as found:
        asyncio.run(_count(found, args.changes, commands))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"server: {found.origin.get('mongodb')} {found.mongodb_url}")
    ledger = sum(n for (_, c), n in commands.seen.items() if c == "processed_messages")
    total = sum(commands.seen.values()) - ledger
    writes = sum(
        n for (name, c), n in commands.seen.items() if name in WRITES and c != "processed_messages"
    )
    print(
        f"per agent state change: {total / args.changes:.2f} database commands "
        f"({writes / args.changes:.2f} writes), plus {ledger / args.changes:.2f} "
        "for the processed-message ledger"
    )
    for (name, collection), n in sorted(commands.seen.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {name:14s} {collection:22s} {n / args.changes:6.2f}")


if __name__ == "__main__":
    main()

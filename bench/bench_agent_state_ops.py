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

import support
from aio_pika.abc import AbstractIncomingMessage

from switchboard.agent_state.app import AgentStateSettings, build
from switchboard.contracts.agents import (
    AgentStateChanged,
    LogIn,
    RegisterAgent,
    SetNotReady,
    SetReady,
)
from switchboard.runtime.service import Runtime


async def _count(
    found: support.Servers, changes: int, commands: support.Commands, publishes: support.Publishes
) -> None:
    quiet = support.QUIET
    settings = AgentStateSettings(
        **support.service_settings(found),
        not_ready_reasons=["Break"],
        heartbeat_timeout_seconds=quiet,
        presence_logout_seconds=quiet,
        timer_poll_seconds=quiet,
        presence_poll_seconds=quiet,
        outbox_relay_seconds=quiet,
        outbox_sweep_seconds=quiet,
        timer_repair_seconds=quiet,
        reconcile_interval_seconds=quiet,
        gauges_seconds=quiet,
    )
    commands.databases = {settings.database_name("agent_state")}
    seen: asyncio.Queue[AgentStateChanged] = asyncio.Queue()

    async def on_change(message: AbstractIncomingMessage) -> None:
        await seen.put(AgentStateChanged.model_validate_json(message.body))

    probe = Runtime("bench_ops_probe", settings)
    service = build(settings)
    me = {"agent_id": "ann", "actor_id": "ann", "actor_role": "agent"}
    try:
        async with probe.app, service.app:
            # a bare queue of this process: the listener adds no database commands
            await probe.bus.replica_queue(
                f"bench.agent_state_ops.changes.{found.tag}", [AgentStateChanged.NAME], on_change
            )
            sue = {"actor_id": "sue", "actor_role": "supervisor"}
            await probe.bus.request(RegisterAgent(agent_id="ann", **sue, name="Ann"), timeout=15)
            await probe.bus.request(LogIn(**me, initial_state="ready"), timeout=15)
            await asyncio.wait_for(seen.get(), 15)
            await asyncio.sleep(1.0)  # the periodic jobs' first runs are over
            commands.counting = publishes.counting = True
            for n in range(changes):
                command = SetNotReady(**me, reason="Break") if n % 2 == 0 else SetReady(**me)
                outcome = await probe.bus.request(command, timeout=15)
                assert outcome.ok, outcome.error
                await asyncio.wait_for(seen.get(), 15)
            await asyncio.sleep(0.5)  # the mark-published write after the event went out
            commands.counting = publishes.counting = False
            publishes.count -= changes  # the probe's own commands
    finally:
        await support.drop_databases(
            found.mongodb_url,
            settings.database_name("agent_state"),
            settings.database_name("bench_ops_probe"),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=40)
    args = parser.parse_args()

    async def count(
        found: support.Servers, commands: support.Commands, publishes: support.Publishes
    ) -> None:
        await _count(found, args.changes, commands, publishes)

    support.run_ops(count, per=args.changes, what="agent state change")


if __name__ == "__main__":
    main()

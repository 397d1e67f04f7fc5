"""Database operations per offer accepted, counted with a PyMongo command listener.

Run: ``.venv/bin/python bench/bench_routing_ops.py [--offers 40] [--backlog 0]``

One routing replica runs in this process against the local RabbitMQ and MongoDB-protocol server
(found or started like the tests do, in a virtual host and databases of its own). One agent is
Ready with capacity 1 for email; then ``--offers`` times, one at a time: a route request, its
offer, the agent's accept (until ``interaction.assigned``) and the interaction's end (until the
agent is free again, seen by the next request's offer). Every command routing sends to its own
database in that window is counted, by command and collection; the periodic jobs are set to
hours so that only the work is counted. The runtime's processed-message ledger is listed apart.

``--backlog N`` first queues N interactions in a service no agent serves, so that the
collections hold what a busy contact center holds; each cycle's time (request to the end handled)
is printed, and whether the server looks a document up by the ``_id`` index when the filter is
``{_id}`` alone and when it is ``{_id, version}`` (the version-guarded write's filter): the
server's ``explain`` and the time of a lookup with each filter.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from switchboard.app.localstack import Backends, backends, management_call
from switchboard.contracts import ConsumerQueue
from switchboard.contracts.agents import AgentProfileChanged, AgentStateChanged
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    OfferAnswer,
    OfferMade,
    RouteRequested,
    ServiceConfigured,
    ServiceDefinition,
)
from switchboard.routing.app import RoutingSettings, build
from switchboard.runtime.service import Runtime

WRITES = {"insert", "update", "delete", "findAndModify"}


class Figures:
    """What one run measured besides the commands: cycle times and the lookup probe."""

    def __init__(self) -> None:
        self.cycles: list[float] = []
        self.lookups: dict[str, tuple[bool | None, float]] = {}


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


async def _queue_backlog(
    probe: Runtime, client: AsyncMongoClient[dict[str, Any]], database: str, backlog: int
) -> None:
    """``backlog`` interactions waiting in "parked" (no agent is in its team): one routed, the
    rest copies of its document written straight in (routing the lot would take minutes)."""
    definition = ServiceDefinition(name="parked", channel="email", team="nobody")
    outcome = await probe.bus.request(ServiceConfigured(service=definition), timeout=15)
    assert outcome.ok, outcome.error
    await probe.bus.publish(
        RouteRequested(interaction_id="parked-000000", channel="email", service="parked")
    )
    work = client[database]["work"]
    deadline = time.monotonic() + 60
    while (first := await work.find_one({"_id": "parked-000000"})) is None:
        assert time.monotonic() < deadline, "the backlog's first interaction was not queued"
        await asyncio.sleep(0.2)
    copies = [{**first, "_id": f"parked-{n:06d}"} for n in range(1, backlog)]
    for start in range(0, len(copies), 500):
        await work.insert_many(copies[start : start + 500])


async def _probe_lookups(
    client: AsyncMongoClient[dict[str, Any]], database: str, figures: Figures
) -> None:
    """Does the server use the _id index for each filter (explain), and how long a lookup takes."""
    db = client[database]
    doc = await db["work"].find_one({}, {"_id": 1, "version": 1}, sort=[("_id", -1)])
    if doc is None:
        return
    filters = {
        "{_id}": {"_id": doc["_id"]},
        "{_id, version}": {"_id": doc["_id"], "version": doc["version"]},
    }
    for name, query in filters.items():
        explained = await db.command("explain", {"find": "work", "filter": query})
        pushdown = explained.get("filterPushdown")
        started = time.perf_counter()
        for _ in range(20):
            await db["work"].find_one(query)
        figures.lookups[name] = (pushdown, (time.perf_counter() - started) / 20)


async def _count(
    found: Backends, offers: int, backlog: int, commands: Commands, figures: Figures
) -> None:
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
    settings = RoutingSettings(
        amqp_url=amqp_url,
        mongodb_url=found.mongodb_url,
        database_prefix=f"bench{tag}",
        http_port=0,
        log_level="WARNING",
        log_format="console",
        timer_poll_seconds=hours,
        sweep_seconds=hours,
        queue_index_seconds=hours,
        stale_hold_seconds=hours,
        metrics_seconds=hours,
        agent_reconcile_seconds=hours,
    )
    commands.database = settings.database_name("routing")
    made: asyncio.Queue[OfferMade] = asyncio.Queue()
    assigned: asyncio.Queue[InteractionAssigned] = asyncio.Queue()

    async def on_offer(event: OfferMade) -> None:
        await made.put(event)

    async def on_assigned(event: InteractionAssigned) -> None:
        await assigned.put(event)

    probe = Runtime("bench_routing_ops_probe", settings)
    probe.bus.consume(
        ConsumerQueue("bench.routing_ops.offers", (OfferMade.NAME,)), OfferMade, on_offer
    )
    probe.bus.consume(
        ConsumerQueue("bench.routing_ops.assigned", (InteractionAssigned.NAME,)),
        InteractionAssigned,
        on_assigned,
    )
    service = build(settings)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(found.mongodb_url)
    starts: list[float] = []
    try:
        async with probe.app, service.app:
            definition = ServiceDefinition(name="support", channel="email", team="support")
            outcome = await probe.bus.request(ServiceConfigured(service=definition), timeout=15)
            assert outcome.ok, outcome.error
            await probe.bus.publish(
                AgentProfileChanged(
                    agent_id="ann", name="Ann", teams=["support"], capacity={"email": 1}
                )
            )
            await asyncio.sleep(1.0)  # the profile is applied before the state
            await probe.bus.publish(
                AgentStateChanged(
                    agent_id="ann",
                    previous="logged_out",
                    state="ready",
                    actor="ann",
                    sequence=1,
                    changed_at=datetime.now(UTC),
                )
            )
            await asyncio.sleep(1.0)  # the start's jobs and the state are done
            if backlog:
                await _queue_backlog(probe, client, commands.database, backlog)
            commands.counting = True
            for n in range(offers):
                interaction = f"case-{n}"
                starts.append(time.perf_counter())
                await probe.bus.publish(
                    RouteRequested(interaction_id=interaction, channel="email", service="support")
                )
                offer = await asyncio.wait_for(made.get(), 20)
                answer = OfferAnswer(offer_id=offer.offer_id, agent_id="ann", accept=True)
                outcome = await probe.bus.request(answer, timeout=20)
                assert outcome.ok, outcome.error
                await asyncio.wait_for(assigned.get(), 20)
                await probe.bus.publish(
                    InteractionEnded(interaction_id=interaction, agent_id="ann", channel="email")
                )
            # the last end is handled once a next request is offered at once
            await probe.bus.publish(
                RouteRequested(interaction_id="case-last", channel="email", service="support")
            )
            await asyncio.wait_for(made.get(), 60)
            commands.counting = False
            # a cycle ends when the next request's offer shows the agent free again
            figures.cycles = [
                b - a for a, b in zip(starts, [*starts[1:], time.perf_counter()], strict=True)
            ]
            await _probe_lookups(client, commands.database, figures)
    finally:
        if found.management_url:
            management_call(found.management_url, "DELETE", f"/api/vhosts/{vhost}")
        for name in (commands.database, settings.database_name("bench_routing_ops_probe")):
            await client.drop_database(name)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=40)
    parser.add_argument("--backlog", type=int, default=0, help="interactions left waiting")
    args = parser.parse_args()
    commands = Commands()
    figures = Figures()
    monitoring.register(commands)
    with backends(Path(".local"), use_containers=False) as found:
        asyncio.run(_count(found, args.offers, args.backlog, commands, figures))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"server: {found.origin.get('mongodb')} {found.mongodb_url}")
    ledger = sum(n for (_, c), n in commands.seen.items() if c == "processed_messages")
    total = sum(commands.seen.values()) - ledger
    writes = sum(
        n for (name, c), n in commands.seen.items() if name in WRITES and c != "processed_messages"
    )
    print(
        f"per offer accepted (request, offer, accept, end): {total / args.offers:.2f} database "
        f"commands ({writes / args.offers:.2f} writes), plus {ledger / args.offers:.2f} "
        "for the processed-message ledger"
    )
    for (name, collection), n in sorted(commands.seen.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {name:14s} {collection:22s} {n / args.offers:6.2f}")
    cycles = sorted(figures.cycles)
    if cycles:
        p90 = cycles[int(0.9 * (len(cycles) - 1))]
        print(
            f"cycle (request to end handled) with {args.backlog} waiting elsewhere: "
            f"p50 {statistics.median(cycles) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms"
        )
    for name, (pushdown, seconds) in figures.lookups.items():
        print(
            f"lookup of one interaction by {name:15s}: {seconds * 1000:7.2f} ms "
            f"(server's explain: filterPushdown={pushdown})"
        )


if __name__ == "__main__":
    main()

"""Races, replicas, restarts, timers and reconciliation, against real servers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from switchboard.agent_state.app import AgentStateSettings, build
from switchboard.agent_state.store import AgentStore
from switchboard.contracts import ConsumerQueue
from switchboard.contracts.agents import AgentHeartbeat, LogIn, SetNotReady
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    LiveAssignmentsRequested,
    OfferTimedOut,
)
from switchboard.runtime.service import Runtime

Settings = Callable[..., AgentStateSettings]
FAKE_ROUTING = ConsumerQueue("test.routing.live", (LiveAssignmentsRequested.NAME,))


def me(agent_id: str) -> dict[str, str]:
    return {"agent_id": agent_id, "actor_id": agent_id, "actor_role": "agent"}


async def test_not_ready_requested_while_work_is_offered_and_assigned(
    probe: Any, service: Runtime
) -> None:
    """Whatever order the two arrive in, the work is honoured and Not Ready follows it."""
    agents = [f"a{i}" for i in range(8)]
    await probe.register(*agents)
    for agent_id in agents:
        await probe.ok(LogIn(**me(agent_id), initial_state="ready"))
    bus = probe.runtime.bus

    async def race(agent_id: str) -> None:
        assigned = InteractionAssigned(
            interaction_id=f"rec-{agent_id}", agent_id=agent_id, channel="preview", service="s"
        )
        await asyncio.gather(
            bus.publish(assigned), probe.ok(SetNotReady(**me(agent_id), reason="Break"))
        )

    await asyncio.gather(*(race(a) for a in agents))
    store = AgentStore(service.db)

    async def all_busy_pending() -> bool:
        docs = await store.find(agents)
        return all(d["state"] == "busy" and d["pending"] == "not_ready" for d in docs)

    await probe.eventually(all_busy_pending)
    for agent_id in agents:
        await bus.publish(
            InteractionEnded(interaction_id=f"rec-{agent_id}", agent_id=agent_id, channel="preview")
        )
    await probe.eventually(lambda: all(probe.states(a)[-1:] == ["not_ready"] for a in agents))
    for agent_id in agents:
        assert probe.of(agent_id)[-1].reason == "Break"
        assert probe.states(agent_id)[-1] == "not_ready"
        assert "ready" not in probe.states(agent_id)[2:], "never Ready in between"


async def test_not_ready_requested_while_an_offer_times_out(probe: Any, service: Runtime) -> None:
    await probe.register("ann")
    await probe.ok(LogIn(**me("ann"), initial_state="ready"))
    timed_out = OfferTimedOut(offer_id="o1", interaction_id="c1", agent_id="ann", channel="email")
    outcome, _ = await asyncio.gather(
        probe.ask(SetNotReady(**me("ann"), reason="Lunch")), probe.runtime.bus.publish(timed_out)
    )
    assert outcome.ok
    await asyncio.sleep(0.5)
    doc = await AgentStore(service.db).get("ann")
    assert doc is not None
    assert (doc["state"], doc["reason"]) == ("not_ready", "Lunch") or doc["state"] == "rona"
    if doc["state"] == "rona":  # the timeout won: the agent's own action still applies next
        await probe.ok(SetNotReady(**me("ann"), reason="Lunch"))


async def test_two_replicas_changing_one_agent_lose_nothing_and_double_nothing(
    probe: Any, agent_settings: Settings
) -> None:
    settings = agent_settings(prefetch=8)
    first, second = build(settings), build(settings)
    async with first.app, second.app:
        await probe.register("ann")
        await probe.ok(LogIn(**me("ann")))
        reasons = [f"R{i}" for i in range(30)]
        # Thirty changes of one agent are applied one after another (each a version-guarded
        # write): this proves nothing is lost or doubled, not how fast (that is bench_agent_state).
        outcomes = await asyncio.gather(
            *(probe.ask(SetNotReady(**me("ann"), reason=r), timeout=90) for r in reasons)
        )
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        await probe.eventually(lambda: len(probe.of("ann")) == 31, seconds=60)
        await asyncio.sleep(0.5)
        changes = probe.of("ann")
        assert [c.sequence for c in changes] == list(range(1, 32)), "each change exactly once"
        assert sorted(c.reason for c in changes[1:]) == sorted(reasons)
        for before, after in itertools.pairwise(changes):
            assert after.previous == before.state
        doc = await AgentStore(first.db).get("ann")
        assert doc is not None and doc["sequence"] == 31 and doc["reason"] == changes[-1].reason
        history = await AgentStore(first.db).history.count_documents({"agent_id": "ann"})
        assert history == 31


async def test_a_wrap_up_timer_fires_after_a_restart(probe: Any, agent_settings: Settings) -> None:
    settings = agent_settings(wrap_up_max_seconds=1.5, wrap_up_timeout_state="not_ready")
    first = build(settings)
    async with first.app:
        await probe.register("ann")
        await probe.ok(LogIn(**me("ann"), initial_state="ready"))
        bus = probe.runtime.bus
        await bus.publish(
            InteractionAssigned(interaction_id="c1", agent_id="ann", channel="email", service="s")
        )
        await probe.eventually(lambda: probe.states("ann")[-1:] == ["busy"])
        await bus.publish(
            InteractionEnded(interaction_id="c1", agent_id="ann", channel="email", wrap_up=True)
        )
        await probe.eventually(lambda: probe.states("ann")[-1:] == ["wrap_up"])
    await asyncio.sleep(2.0)  # the limit passes while no replica runs
    assert probe.states("ann")[-1] == "wrap_up"
    second = build(settings)
    async with second.app:
        await probe.eventually(lambda: probe.states("ann")[-1:] == ["not_ready"])
    last = probe.of("ann")[-1]
    assert (last.previous, last.reason, last.actor) == (
        "wrap_up",
        "wrap-up time exceeded",
        "system",
    )


async def test_heartbeats_keep_an_agent_and_their_loss_means_not_ready_then_logged_out(
    probe: Any, agent_settings: Settings
) -> None:
    settings = agent_settings(heartbeat_timeout_seconds=1.0, presence_logout_seconds=2.5)
    service = build(settings)
    async with service.app:
        await probe.register("ann")
        await probe.ok(LogIn(**me("ann"), initial_state="ready"))
        for _ in range(6):
            await probe.ok(AgentHeartbeat(**me("ann")))
            await asyncio.sleep(0.3)
        assert probe.states("ann") == ["ready"], "heartbeats keep the agent Ready"
        await probe.eventually(lambda: probe.states("ann")[-1:] == ["not_ready"], seconds=5)
        assert probe.of("ann")[-1].reason == "connection lost"
        await probe.eventually(lambda: probe.states("ann")[-1:] == ["logged_out"], seconds=5)
        assert probe.states("ann") == ["ready", "not_ready", "logged_out"]
        refused = await probe.ask(AgentHeartbeat(**me("ann")))
        assert refused.error is not None and refused.error.code == "logged_out"


class FakeRouting:
    """Answers the live-assignment check like routing does (or never, when told)."""

    def __init__(self, assignments: dict[str, list[str]], delay: float = 0.0) -> None:
        self.assignments = assignments
        self.delay = delay
        self.asked: list[list[str]] = []

    async def __call__(self, command: LiveAssignmentsRequested) -> dict[str, Any]:
        self.asked.append(list(command.agent_ids))
        await asyncio.sleep(self.delay)
        wanted = command.agent_ids or list(self.assignments)
        return {"assignments": {a: self.assignments.get(a, []) for a in wanted}}


@pytest.fixture
def fake_routing(make_settings: Callable[..., Any]) -> Callable[..., Any]:
    def start(routing: FakeRouting) -> Any:
        runtime = Runtime("fake_routing", make_settings())
        runtime.bus.consume(FAKE_ROUTING, LiveAssignmentsRequested, routing)
        return runtime.app

    return start


async def _busy(probe: Any, agent_id: str, *interactions: str) -> None:
    await probe.ok(LogIn(**me(agent_id), initial_state="ready"))
    for interaction_id in interactions:
        await probe.runtime.bus.publish(
            InteractionAssigned(
                interaction_id=interaction_id, agent_id=agent_id, channel="email", service="s"
            )
        )
    await probe.eventually(lambda: probe.states(agent_id)[-1:] == ["busy"])


async def test_reconciliation_frees_an_agent_routing_holds_no_work_for(
    probe: Any, agent_settings: Settings, fake_routing: Callable[..., Any]
) -> None:
    routing = FakeRouting({"ann": [], "bob": ["c2"]})
    async with fake_routing(routing):
        first = build(agent_settings())
        async with first.app:
            await probe.register("ann", "bob")
            await _busy(probe, "ann", "c1")
            await _busy(probe, "bob", "c2")
        service = build(agent_settings(reconcile_interval_seconds=0.5))
        async with service.app:  # on start, and then periodically
            await probe.eventually(lambda: probe.states("ann")[-1:] == ["ready"])
            await asyncio.sleep(1.2)
    assert sorted(routing.asked[0]) == ["ann", "bob"]
    assert probe.of("ann")[-1].reason == "no live work in routing"
    assert probe.states("bob")[-1] == "busy", "work routing still holds stays"


async def test_reconciliation_survives_routing_not_answering(
    probe: Any, agent_settings: Settings, fake_routing: Callable[..., Any]
) -> None:
    settings = agent_settings(reconcile_interval_seconds=0.5, reconcile_timeout_seconds=0.5)
    service = build(settings)
    async with service.app:
        await probe.register("ann")
        await _busy(probe, "ann", "c1")
        await asyncio.sleep(1.0)  # nobody serves the check at all (unroutable)
        routing = FakeRouting({"ann": []}, delay=3.0)
        async with fake_routing(routing):
            await probe.eventually(lambda: routing.asked)
            await asyncio.sleep(0.8)  # routing is too slow: the check times out
            assert probe.states("ann")[-1] == "busy"
            answer = await probe.ask(SetNotReady(**me("ann"), reason="Break"))
            assert answer.ok and answer.result["pending"] == "not_ready", "still serving"


async def test_concurrent_writes_to_one_agent_are_serialised_by_the_store(
    service: Runtime,
) -> None:
    """FerretDB lets concurrent filtered updates all 'win': the version claims must not."""
    from datetime import UTC, datetime

    from switchboard.agent_state import domain

    store = AgentStore(service.db)
    await store.save_profile("ann", {"name": "Ann"})
    policy = domain.Policy(not_ready_reasons=tuple(f"R{i}" for i in range(20)))
    ann = domain.Actor("ann", "agent")
    await store.apply("ann", lambda a: domain.log_in(a, ann, datetime.now(UTC), policy))
    results = await asyncio.gather(
        *(
            store.apply(
                "ann",
                lambda a, r=f"R{i}": domain.set_not_ready(
                    a, ann, datetime.now(UTC), policy, reason=r
                ),
            )
            for i in range(20)
        )
    )
    sequences = sorted(r.decision.change.sequence for r in results if r.decision.change)
    assert sequences == list(range(2, 22)), "every change applied once, none lost"
    doc = await store.get("ann")
    assert doc is not None and doc["sequence"] == 21
    assert {e["sequence"] for e in doc["outbox"]} >= {21}


async def test_timer_rows_lost_in_a_crash_are_rebuilt_from_the_agents(
    probe: Any, service: Runtime
) -> None:
    await probe.register("ann")
    await probe.ok(LogIn(**me("ann"), initial_state="ready"))
    store = AgentStore(service.db)
    assert await store.timers.count_documents({"agent_id": "ann", "kind": "presence"}) == 1
    await store.timers.delete_many({})
    assert await store.repair_timers() == 1
    assert await store.timers.count_documents({"agent_id": "ann", "kind": "presence"}) == 1

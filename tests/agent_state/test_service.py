"""Agent-state against real RabbitMQ and a MongoDB-protocol server: commands, events, refusals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from switchboard.agent_state.app import AgentStateSettings, build
from switchboard.agent_state.store import AgentStore
from switchboard.app.localstack import REPO_ROOT
from switchboard.contracts import Message
from switchboard.contracts.agents import (
    AgentStateChanged,
    AgentStatesRequested,
    ForceAgentState,
    LogIn,
    LogOut,
    RegisterAgent,
    SetNotReady,
    SetReady,
    StateReportRequested,
)
from switchboard.contracts.queues.agent_state import LOG_IN
from switchboard.contracts.routing import InteractionAssigned, InteractionEnded, OfferTimedOut
from switchboard.runtime.service import Runtime

Settings = Callable[..., AgentStateSettings]
DEMO_FILE = REPO_ROOT / "deploy" / "demo" / "agent_state.json"


def me(agent_id: str) -> dict[str, str]:
    return {"agent_id": agent_id, "actor_id": agent_id, "actor_role": "agent"}


def boss(agent_id: str) -> dict[str, str]:
    return {"agent_id": agent_id, "actor_id": "sue", "actor_role": "supervisor"}


async def test_register_log_in_ready_not_ready_publishes_ordered_events(
    probe: Any, service: Runtime
) -> None:
    await probe.register("ann")
    await probe.eventually(lambda: [p for p in probe.profiles if p.agent_id == "ann"])
    assert probe.profiles[0].capacity == {"email": 5, "preview": 1}

    login = await probe.ok(LogIn(**me("ann")))
    assert login["state"] == "not_ready" and login["sequence"] == 1
    await probe.ok(SetReady(**me("ann")))
    await probe.ok(SetNotReady(**me("ann"), reason="Lunch"))
    await probe.ok(LogOut(**me("ann")))

    await probe.eventually(lambda: len(probe.of("ann")) == 4)
    changes = probe.of("ann")
    assert [(c.previous, c.state) for c in changes] == [
        ("logged_out", "not_ready"),
        ("not_ready", "ready"),
        ("ready", "not_ready"),
        ("not_ready", "logged_out"),
    ]
    assert [c.sequence for c in changes] == [1, 2, 3, 4]
    assert changes[2].reason == "Lunch" and changes[2].actor == "ann"
    assert all(c.changed_at.tzinfo is not None for c in changes)

    answer = await probe.ok(AgentStatesRequested(actor_id="sue", actor_role="supervisor"))
    [ann] = answer["agents"]
    assert (ann["agent_id"], ann["state"], ann["sequence"], ann["teams"]) == (
        "ann",
        "logged_out",
        4,
        ["support"],
    )


async def test_an_agent_may_only_change_their_own_state(probe: Any, service: Runtime) -> None:
    await probe.register("ann", "bob")
    await probe.ok(LogIn(**me("ann")))
    refused = await probe.ask(SetReady(agent_id="ann", actor_id="bob", actor_role="agent"))
    assert not refused.ok and refused.error is not None
    assert refused.error.code == "forbidden" and refused.error.field == "actor_id"
    forced = await probe.ask(
        ForceAgentState(
            agent_id="ann", actor_id="ann", actor_role="agent", state="ready", reason="x"
        )
    )
    assert forced.error is not None and forced.error.field == "actor_role"
    self_register = await probe.ask(
        RegisterAgent(agent_id="bob", actor_id="bob", actor_role="agent", name="Bob")
    )
    assert self_register.error is not None and self_register.error.code == "forbidden"
    peek = await probe.ask(
        AgentStatesRequested(actor_id="bob", actor_role="agent", agent_ids=["ann"])
    )
    assert peek.error is not None and peek.error.field == "agent_ids"
    mine = await probe.ok(AgentStatesRequested(actor_id="bob", actor_role="agent"))
    assert [a["agent_id"] for a in mine["agents"]] == ["bob"]

    by_supervisor = await probe.ok(ForceAgentState(**boss("ann"), state="ready", reason="queue"))
    assert by_supervisor["state"] == "ready"
    await probe.eventually(lambda: probe.states("ann") == ["not_ready", "ready"])
    assert probe.of("ann")[-1].actor == "sue"


async def test_illegal_transitions_are_refused_clearly_and_change_nothing(
    probe: Any, service: Runtime
) -> None:
    await probe.register("ann")
    not_logged_in = await probe.ask(SetReady(**me("ann")))
    assert not not_logged_in.ok and not_logged_in.error is not None
    assert not_logged_in.error.code == "logged_out"
    assert "log in" in not_logged_in.error.message

    await probe.ok(LogIn(**me("ann"), initial_state="ready"))
    bad_reason = await probe.ask(SetNotReady(**me("ann"), reason="Nap"))
    assert bad_reason.error is not None and bad_reason.error.field == "reason"
    assert "Break" in bad_reason.error.message
    twice = await probe.ask(LogIn(**me("ann")))
    assert twice.error is not None and twice.error.code == "already_logged_in"
    unknown = await probe.ask(SetReady(**me("zed")))
    assert unknown.error is not None and unknown.error.field == "agent_id"

    await probe.eventually(lambda: len(probe.of("ann")) == 1)
    await asyncio.sleep(0.5)
    assert probe.states("ann") == ["ready"], "refusals publish nothing"
    doc = await AgentStore(service.db).get("ann")
    assert doc is not None and doc["state"] == "ready" and doc["sequence"] == 1


async def test_busy_with_capacity_pending_not_ready_and_wrap_up(
    probe: Any, service: Runtime
) -> None:
    await probe.register("ann")
    await probe.ok(LogIn(**me("ann"), initial_state="ready"))
    bus = probe.runtime.bus
    await bus.publish(
        InteractionAssigned(interaction_id="c1", agent_id="ann", channel="email", service="s")
    )
    await probe.eventually(lambda: probe.states("ann")[-1:] == ["busy"])
    await bus.publish(
        InteractionAssigned(interaction_id="c2", agent_id="ann", channel="email", service="s")
    )
    store = AgentStore(service.db)

    async def holds_two() -> bool:
        doc = await store.get("ann")
        return doc is not None and len(doc["live"]) == 2

    await probe.eventually(holds_two)
    pending = await probe.ok(SetNotReady(**me("ann"), reason="Break"))
    assert pending["state"] == "busy" and pending["pending"] == "not_ready"
    assert pending["live"] == {"email": 2}
    assert probe.of("ann")[-1].not_ready_pending or await probe.eventually(
        lambda: probe.of("ann")[-1].not_ready_pending
    )
    await bus.publish(InteractionEnded(interaction_id="c1", agent_id="ann", channel="email"))
    await bus.publish(
        InteractionEnded(interaction_id="c2", agent_id="ann", channel="email", wrap_up=True)
    )
    await probe.eventually(lambda: probe.states("ann")[-1:] == ["wrap_up"])
    await probe.ok(SetNotReady(**me("ann"), reason="Break"))
    await probe.eventually(
        lambda: probe.states("ann") == ["ready", "busy", "busy", "wrap_up", "not_ready"]
    )
    assert probe.of("ann")[-1].reason == "Break"


async def test_a_redelivered_command_has_no_second_effect(probe: Any, service: Runtime) -> None:
    await probe.register("ann")
    command = LogIn(**me("ann"))
    await probe.runtime.bus.publish(command)
    await probe.runtime.bus.publish(command)
    await probe.eventually(lambda: len(probe.of("ann")) == 1)
    # a crash after the write but before the ledger: the handler runs again for the same id
    store = AgentStore(service.db)
    again = await store.apply(
        "ann",
        lambda a: (_ for _ in ()).throw(AssertionError("decided twice")),
        command_id=str(command.message_id),
    )
    assert again.repeated and again.agent.sequence == 1
    await asyncio.sleep(0.5)
    assert len(probe.of("ann")) == 1
    # the agent's own write remembers the command: no processed-message ledger entry for it
    ledger = service.db["processed_messages"]
    assert await ledger.count_documents({"_id": f"{LOG_IN.name}/{command.message_id}"}) == 0


async def test_rona_from_an_offer_timeout_is_left_only_by_a_person(
    probe: Any, service: Runtime
) -> None:
    await probe.register("ann")
    await probe.ok(LogIn(**me("ann"), initial_state="ready"))
    await probe.runtime.bus.publish(
        OfferTimedOut(offer_id="o1", interaction_id="c1", agent_id="ann", channel="email")
    )
    await probe.eventually(lambda: probe.states("ann")[-1:] == ["rona"])
    await probe.runtime.bus.publish(
        InteractionEnded(interaction_id="zz", agent_id="ann", channel="email")
    )
    await asyncio.sleep(0.5)
    assert probe.states("ann")[-1] == "rona"
    await probe.ok(SetReady(**me("ann")))
    await probe.eventually(lambda: probe.states("ann")[-1:] == ["ready"])


async def test_events_not_published_because_the_broker_failed_are_published_later(
    probe: Any, agent_settings: Settings
) -> None:
    service = build(agent_settings())
    real_publish = service.bus.publish
    broker_down = True

    async def flaky_publish(message: Message, **options: Any) -> None:
        if broker_down:
            raise ConnectionError("broker unreachable")
        await real_publish(message, **options)

    service.bus.publish = flaky_publish  # type: ignore[method-assign]
    async with service.app:
        await probe.register("ann")
        login = await probe.ok(LogIn(**me("ann")))
        assert login["state"] == "not_ready", "the change is stored although not yet announced"
        store = AgentStore(service.db)
        doc = await store.get("ann")
        assert doc is not None and doc["unpublished"] and doc["profile_unpublished"]
        await asyncio.sleep(1.0)
        assert probe.states("ann") == [] and probe.profiles == []
        broker_down = False
        await probe.eventually(lambda: probe.states("ann") == ["not_ready"])
        await probe.eventually(lambda: [p.agent_id for p in probe.profiles] == ["ann"])

        async def marked_published() -> bool:
            # the relay marks the events published after the broker's confirm, which may come
            # a moment after the probe has them
            doc = await store.get("ann")
            return doc is not None and not doc["unpublished"] and not doc["profile_unpublished"]

        await probe.eventually(marked_published)


async def test_a_change_publishes_only_its_own_event_and_a_replica_sweeps_an_earlier_one(
    probe: Any, agent_settings: Settings
) -> None:
    """One change's publish fails; the next change publishes its own event, not the earlier
    one again; that one stays in the outbox until another replica's sweep publishes it."""
    hours = 3600.0
    service = build(agent_settings(outbox_relay_seconds=hours, outbox_sweep_seconds=hours))
    real_publish = service.bus.publish
    attempts: list[int] = []

    async def publish_failing_once(message: Message, **options: Any) -> None:
        if isinstance(message, AgentStateChanged):
            attempts.append(message.sequence)
            if message.sequence == 2 and attempts.count(2) == 1:
                raise ConnectionError("broker unreachable")
        await real_publish(message, **options)

    service.bus.publish = publish_failing_once  # type: ignore[method-assign]
    store = AgentStore(service.db)
    async with service.app:
        await probe.register("ann")
        await probe.ok(LogIn(**me("ann")))
        await probe.ok(SetReady(**me("ann")))
        await probe.ok(SetNotReady(**me("ann"), reason="Break"))
        await probe.eventually(lambda: [c.sequence for c in probe.of("ann")] == [1, 3])

        assert attempts == [1, 2, 3], "each change published its own event once"
        doc = await store.get("ann")
        assert doc is not None and doc["unpublished"]
        assert [e["sequence"] for e in doc["outbox"]] == [2], "the failed one is kept"
        assert doc["published_sequence"] == 1, "not marked past the event still unsent"

    sweeper = build(agent_settings(outbox_sweep_seconds=0.5))
    async with sweeper.app:
        store = AgentStore(sweeper.db)
        await probe.eventually(lambda: [c.sequence for c in probe.of("ann")] == [1, 2, 3])

        async def marked_published() -> bool:
            doc = await store.get("ann")
            return doc is not None and not doc["unpublished"] and doc["outbox"] == []

        await probe.eventually(marked_published)
        assert probe.states("ann") == ["not_ready", "ready", "not_ready"]


async def test_demo_agents_are_seeded_once_with_their_reasons(
    probe: Any, agent_settings: Settings
) -> None:
    demo = json.loads(DEMO_FILE.read_text())
    service = build(agent_settings(agents_file=DEMO_FILE, not_ready_reasons=None))
    async with service.app:
        answer = await probe.ok(AgentStatesRequested(actor_id="sue", actor_role="supervisor"))
        assert len(answer["agents"]) == len(demo["agents"])
        first = demo["agents"][0]["agent_id"]
        refused = await probe.ask(SetNotReady(**me(first), reason="Nap"))
        assert refused.error is not None
        assert demo["not_ready_reasons"][0] in refused.error.message
        await probe.eventually(lambda: len(probe.profiles) == len(demo["agents"]))
    again = build(agent_settings(agents_file=DEMO_FILE, not_ready_reasons=None))
    async with again.app:
        store = AgentStore(again.db)
        assert len(await store.find()) == len(demo["agents"])


async def test_state_report_gives_time_in_each_state(probe: Any, service: Runtime) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    await probe.register("ann")
    await probe.ok(LogIn(**me("ann"), initial_state="ready"))
    await asyncio.sleep(0.6)
    await probe.ok(SetNotReady(**me("ann"), reason="Break"))
    await asyncio.sleep(0.4)
    await probe.eventually(lambda: len(probe.of("ann")) == 2)
    report = await probe.ok(
        StateReportRequested(
            actor_id="sue",
            actor_role="supervisor",
            start=start,
            end=start + timedelta(hours=1),
            interval_seconds=900,
        )
    )
    seconds = {row["state"]: row["seconds"] for row in report["rows"] if row["agent_id"] == "ann"}
    assert set(seconds) == {"ready", "not_ready"}, "no state is known before the first change"
    assert 0.5 <= seconds["ready"] <= 1.5
    assert 0.3 <= seconds["not_ready"] <= 1.5
    bad = await probe.ask(
        StateReportRequested(
            actor_id="ann", actor_role="agent", agent_ids=["bob"], start=start, end=start
        )
    )
    assert bad.error is not None and bad.error.field == "agent_ids"


async def test_metrics_show_agents_per_state_transitions_and_rona(
    probe: Any, service: Runtime
) -> None:
    await probe.register("ann")
    await probe.ok(LogIn(**me("ann"), initial_state="ready"))
    await probe.runtime.bus.publish(
        OfferTimedOut(offer_id="o1", interaction_id="c1", agent_id="ann", channel="email")
    )
    await probe.eventually(lambda: probe.states("ann")[-1:] == ["rona"])
    await asyncio.sleep(0.7)
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent-state") as client:
        text = (await client.get("/metrics")).text
    assert 'switchboard_agents{state="rona"}' in text
    assert 'switchboard_agent_transitions_total{previous="ready",state="rona"}' in text
    assert "switchboard_agent_rona_total" in text

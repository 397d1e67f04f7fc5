"""Helpers for agent-state tests: a probe runtime that sends commands and records events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from testkit import eventually

from switchboard.agent_state.app import AgentStateSettings, build
from switchboard.contracts import ConsumerQueue, Message, Outcome
from switchboard.contracts.agents import AgentProfileChanged, AgentStateChanged, RegisterAgent
from switchboard.runtime.service import Runtime

STATE_EVENTS = ConsumerQueue("test.agent_state.changes", (AgentStateChanged.NAME,))
PROFILE_EVENTS = ConsumerQueue("test.agent_state.profiles", (AgentProfileChanged.NAME,))
REASONS = ["Break", "Lunch", "Meeting", *(f"R{i}" for i in range(40))]


class Probe:
    """Stands for the gateway (sends commands) and a consumer of agent events."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.changes: list[AgentStateChanged] = []
        self.profiles: list[AgentProfileChanged] = []

    async def on_state(self, event: AgentStateChanged) -> None:
        self.changes.append(event)

    async def on_profile(self, event: AgentProfileChanged) -> None:
        self.profiles.append(event)

    async def ask(self, command: Message, timeout: float = 15.0) -> Outcome:
        return await self.runtime.bus.request(command, timeout=timeout)

    async def ok(self, command: Message) -> dict[str, Any]:
        outcome = await self.ask(command)
        assert outcome.ok, outcome.error
        return outcome.result

    def of(self, agent_id: str) -> list[AgentStateChanged]:
        return sorted((c for c in self.changes if c.agent_id == agent_id), key=lambda c: c.sequence)

    def states(self, agent_id: str) -> list[str]:
        return [c.state for c in self.of(agent_id)]

    eventually = staticmethod(eventually)

    async def register(self, *agent_ids: str, capacity: dict[str, int] | None = None) -> None:
        for agent_id in agent_ids:
            await self.ok(
                RegisterAgent(
                    agent_id=agent_id,
                    actor_id="sue",
                    actor_role="supervisor",
                    name=agent_id.title(),
                    teams=["support"],
                    capacity=capacity or {"email": 5, "preview": 1},
                )
            )


@pytest.fixture
def agent_settings(make_settings: Callable[..., Any]) -> Callable[..., AgentStateSettings]:
    def make(**overrides: Any) -> AgentStateSettings:
        values: dict[str, Any] = {
            "not_ready_reasons": REASONS,
            "timer_poll_seconds": 0.2,
            "outbox_relay_seconds": 0.5,
            "outbox_sweep_seconds": 0.5,
            "presence_poll_seconds": 0.2,
            "reconcile_interval_seconds": 600.0,
            "gauges_seconds": 0.5,
            **overrides,
        }
        settings: AgentStateSettings = make_settings(AgentStateSettings, **values)
        return settings

    return make


@pytest.fixture
def probe_factory(make_settings: Callable[..., Any]) -> Callable[[], Probe]:
    """A probe not started yet (``async with probe.runtime.app``)."""

    def make() -> Probe:
        runtime = Runtime("probe", make_settings())
        found = Probe(runtime)
        runtime.bus.consume(STATE_EVENTS, AgentStateChanged, found.on_state)
        runtime.bus.consume(PROFILE_EVENTS, AgentProfileChanged, found.on_profile)
        return found

    return make


@pytest.fixture
async def probe(probe_factory: Callable[[], Probe]) -> AsyncIterator[Probe]:
    found = probe_factory()
    async with found.runtime.app:
        yield found


@pytest.fixture
async def service(
    probe: Probe, agent_settings: Callable[..., AgentStateSettings]
) -> AsyncIterator[Runtime]:
    """One agent-state runtime with default test settings (started after the probe)."""
    runtime = build(agent_settings())
    async with runtime.app:
        yield runtime

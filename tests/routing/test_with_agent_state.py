"""Routing beside a real agent-state: profiles routing never heard of are learnt from it.

``agent.profile_changed`` published before routing's queue existed is lost to routing (an event
with no listener). Without the profile an agent has no team, and a team service offers them
nothing: the symptom an operator sees is an agent Ready while email waits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from switchboard.agent_state.app import AgentStateSettings
from switchboard.agent_state.app import build as build_agent_state
from switchboard.contracts.agents import LogIn, RegisterAgent, SetReady
from switchboard.contracts.queues import routing as queues
from switchboard.contracts.routing import RouteRequested


def _agents_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.json"
    path.write_text(
        json.dumps(
            {
                "agents": [
                    {
                        "agent_id": "alice",
                        "name": "Alice",
                        "teams": ["support"],
                        "capacity": {"email": 1, "preview": 1},
                    }
                ]
            }
        )
    )
    return path


def _agent_state(make_settings: Any, tmp_path: Path) -> Any:
    settings: AgentStateSettings = make_settings(
        AgentStateSettings,
        agents_file=_agents_file(tmp_path),
        outbox_relay_seconds=0.5,
        outbox_sweep_seconds=0.5,
        timer_poll_seconds=0.2,
    )
    return build_agent_state(settings)


async def _alice_ready(agent_state: Any) -> None:
    """Alice logs in and makes herself Ready, through agent-state."""
    for command in (
        LogIn(agent_id="alice", actor_id="alice", actor_role="agent"),
        SetReady(agent_id="alice", actor_id="alice", actor_role="agent"),
    ):
        outcome = await agent_state.bus.request(command, timeout=15)
        assert outcome.ok, outcome.error


async def _offered_to(harness: Any, interaction_id: str, service: str) -> str:
    """Route an email to ``service``; whom routing offered it to."""
    await harness.publish(
        RouteRequested(interaction_id=interaction_id, channel="email", service=service)
    )
    offers = await harness.observer.wait_for("offer.made", interaction_id=interaction_id)
    return str(offers[0]["agent_id"])


async def _routing_knows(harness: Any, agent_id: str, teams: list[str]) -> bool:
    agent = await harness.router.store.get_agent(agent_id)
    return agent is not None and agent.teams == teams


async def test_an_agent_seeded_before_routing_started_is_offered_team_work(
    harness: Any, make_settings: Any, tmp_path: Path
) -> None:
    agent_state = _agent_state(make_settings, tmp_path)
    async with agent_state.app:  # seeds alice and publishes her profile: nobody listens yet
        await harness.start(agent_reconcile_seconds=3600.0)  # only the start-up pass
        await harness.configure(name="support", channel="email", team="support")
        await harness.eventually(lambda: _routing_knows(harness, "alice", ["support"]))
        await _alice_ready(agent_state)
        assert await _offered_to(harness, "case-1", "support") == "alice"


async def test_a_profile_missed_while_routing_was_down_is_learnt_on_the_next_state_change(
    harness: Any, make_settings: Any, tmp_path: Path
) -> None:
    agent_state = _agent_state(make_settings, tmp_path)
    async with agent_state.app:
        await harness.start(agent_reconcile_seconds=3600.0)
        await harness.configure(name="billing", channel="email", team="billing")
        await harness.eventually(lambda: _routing_knows(harness, "alice", ["support"]))
        router = harness.router
        await harness.stop(router)
        # A supervisor moves alice to billing while routing is down: the event is queued for
        # routing and would arrive; drop it, as if routing's queue had never existed.
        outcome = await agent_state.bus.request(
            RegisterAgent(
                agent_id="alice",
                actor_id="sue",
                actor_role="supervisor",
                name="Alice",
                teams=["billing"],
                capacity={"email": 1},
            ),
            timeout=15,
        )
        assert outcome.ok, outcome.error
        await harness.purge_queue(queues.AGENT_PROFILES.name)
        await harness.start(agent_reconcile_seconds=3600.0)
        await harness.eventually(lambda: _routing_knows(harness, "alice", ["billing"]))
        await _alice_ready(agent_state)
        assert await _offered_to(harness, "case-2", "billing") == "alice"


async def test_routing_asks_agent_state_for_an_agent_it_has_no_profile_of(
    harness: Any, make_settings: Any, tmp_path: Path
) -> None:
    """The state event arrives for an agent routing has no profile of: it asks at once."""
    agent_state = _agent_state(make_settings, tmp_path)
    async with agent_state.app:
        await harness.start(agent_reconcile_seconds=3600.0)
        await harness.configure(name="support", channel="email", team="support")
        await harness.eventually(lambda: _routing_knows(harness, "alice", ["support"]))
        await harness.router.store.agents.collection.delete_many({})  # routing forgot everything
        await _alice_ready(agent_state)
        await harness.eventually(lambda: _routing_knows(harness, "alice", ["support"]))
        assert await _offered_to(harness, "case-3", "support") == "alice"

"""Rebuilding the read model from what the owning services hold (issue 20: "rebuildable from
the services' data by a command"), asked over the bus, against a real agent-state service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from owners import other_owners
from testkit import eventually

from switchboard.agent_state.app import AgentStateSettings
from switchboard.agent_state.app import build as build_agent_state
from switchboard.agent_state.store import AgentStore
from switchboard.contracts.agents import AgentStateChanged
from switchboard.reporting.app import ReportingSettings, build, rebuild_from_services
from switchboard.runtime.service import Runtime
from switchboard.threading.app import ThreadingSettings
from switchboard.threading.app import build as build_threading

from .conftest import handlers_of, login
from .script import ALICE, BOB, TARGETS, scripted_day

DAY_QUERY = {"from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"}
TIME_IN_STATE = (
    "ready_seconds",
    "not_ready_seconds",
    "busy_seconds",
    "wrap_up_seconds",
    "rona_seconds",
    "occupancy",
)


async def _time_in_state(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, dict[str, Any]]:
    answer = await http.get(
        "/supervisor/reports/agents",
        params={**DAY_QUERY, "agent": ["alice", "bob"]},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    return {
        row["agent_id"]: {name: row[name] for name in TIME_IN_STATE}
        for row in answer.json()["rows"]
    }


async def test_a_wiped_read_model_rebuilt_from_the_services_gives_the_live_time_in_state(
    reporting_settings: Callable[..., ReportingSettings],
    make_settings: Callable[..., Any],
    publisher: Runtime,
    gateway: httpx.AsyncClient,
) -> None:
    settings = reporting_settings(
        first_response_targets=TARGETS,
        default_first_response_seconds=None,
        sla_poll_seconds=3600.0,
    )
    events = scripted_day()
    changes = [e for e in events if isinstance(e, AgentStateChanged)]
    boss = await login(gateway, "boss")

    # Fed live: the scripted day, every event folded.
    live_service = build(settings)
    async with live_service.app:
        for event in events:
            await publisher.bus.publish(event)
        journal = handlers_of(live_service, settings).store.journal

        async def all_folded() -> bool:
            return await journal.count_documents({}) == len(events)

        await eventually(all_folded, 240)
        live = await _time_in_state(gateway, boss)
    expected = {"alice": ALICE, "bob": BOB}
    assert sorted(live) == ["alice", "bob"]
    for agent, figures in live.items():  # the live figures are the hand-computed ones
        hand = {name: expected[agent][name] for name in TIME_IN_STATE}
        assert figures["occupancy"] == pytest.approx(hand["occupancy"]), agent
        assert {**figures, "occupancy": hand["occupancy"]} == hand, agent

    # Agent-state holds the day's changes as it records each one it makes (the other owners
    # asked hold nothing here: the scripted day's cases and offers are events only).
    owner = build_agent_state(make_settings(AgentStateSettings))
    cases = build_threading(make_settings(ThreadingSettings, thread_key="reporting-suite-key"))
    async with owner.app, cases.app, other_owners(make_settings, "agent_state", "threading"):
        store = AgentStore(owner.db)
        for change in changes:
            await store.record_history(change)

        # The read model is wiped, journal and all; the command asks the owners over the bus.
        await publisher.mongo.drop_database(settings.database_name("reporting"))
        folded, told = await rebuild_from_services(settings)
    assert (folded, told) == (0, len(changes))

    rebuilt_service = build(settings)
    async with rebuilt_service.app:
        assert await _time_in_state(gateway, boss) == live
        # the owners' events were journalled: a rebuild from the journal alone keeps them
        assert await handlers_of(rebuilt_service, settings).rebuild() == len(changes)
        assert await _time_in_state(gateway, boss) == live

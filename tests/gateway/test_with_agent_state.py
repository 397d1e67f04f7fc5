"""The gateway against the real agent-state service (its contract, not a stand-in)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.gateway.app import GatewaySettings, build

agent_state_app = pytest.importorskip("switchboard.agent_state.app")

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo"


async def test_state_actions_reach_agent_state_and_its_refusals_come_back(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    users = tmp_path / "people.json"
    users.write_text(
        json.dumps(
            {
                "people": [
                    {"id": "alice", "role": "agent", "password": "alice-pass"},
                    {"id": "boss", "role": "supervisor", "password": "boss-pass"},
                ]
            }
        ),
        encoding="utf-8",
    )
    gateway = build(
        make_settings(
            GatewaySettings,
            gateway_users_file=users,
            password_time_cost=1,
            password_memory_kib=64,
            password_parallelism=1,
            command_timeout_seconds=15.0,
        )
    )
    agent_state = agent_state_app.build(
        make_settings(agent_state_app.AgentStateSettings, agents_file=DEMO / "agent_state.json")
    )
    transport = httpx.ASGITransport(app=gateway.api)
    async with (
        agent_state.app,
        gateway.app,
        httpx.AsyncClient(transport=transport, base_url="http://gw") as http,
    ):
        token = (
            await http.post("/auth/login", json={"login": "alice", "password": "alice-pass"})
        ).json()["token"]
        alice = {"Authorization": f"Bearer {token}"}
        token = (
            await http.post("/auth/login", json={"login": "boss", "password": "boss-pass"})
        ).json()["token"]
        boss = {"Authorization": f"Bearer {token}"}

        logged_in = await http.post("/me/log-in", json={"initial_state": "ready"}, headers=alice)
        assert logged_in.status_code == 200, logged_in.text
        again = await http.post("/me/ready", headers=alice)
        assert again.status_code == 409, again.text
        assert again.json()["code"] == "already_ready"

        nap = await http.post("/me/not-ready", json={"reason": "Nap"}, headers=alice)
        assert nap.status_code == 422, nap.text
        assert nap.json()["field"] == "reason"
        lunch = await http.post("/me/not-ready", json={"reason": "Lunch"}, headers=alice)
        assert lunch.status_code == 200, lunch.text

        mine = await http.get("/me/state", headers=alice)
        assert mine.status_code == 200, mine.text
        assert [a["agent_id"] for a in mine.json()["agents"]] == ["alice"]

        everyone = await http.get("/supervisor/agents", headers=boss)
        assert everyone.status_code == 200, everyone.text
        assert len(everyone.json()["agents"]) >= 6

        forced = await http.post(
            "/supervisor/agents/alice/state",
            json={"state": "ready", "reason": "back to work"},
            headers=boss,
        )
        assert forced.status_code == 200, forced.text

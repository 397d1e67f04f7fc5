"""The gateway against the real agent-state service (its contract, not a stand-in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets

from switchboard.gateway.app import GatewayRuntime

from .conftest import DEMO, demo_login, next_frame, serving

agent_state_app = pytest.importorskip("switchboard.agent_state.app")


async def test_state_actions_reach_agent_state_and_its_refusals_come_back(
    make_settings: Callable[..., Any], demo_gateway: Callable[..., GatewayRuntime]
) -> None:
    gateway = demo_gateway()
    agent_state = agent_state_app.build(
        make_settings(agent_state_app.AgentStateSettings, agents_file=DEMO / "agent_state.json")
    )
    async with (
        agent_state.app,
        serving(gateway.api) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http,
    ):
        alice = await demo_login(http, "alice")
        boss = await demo_login(http, "supervisor-1")

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

        # the live stream's snapshot carries agent-state's answer (routing is not running)
        async with websockets.connect(f"ws://{address}/me/live", additional_headers=alice) as live:
            snapshot = (await next_frame(live, "snapshot"))["data"]
            assert snapshot["state"]["agent_id"] == "alice"
            assert snapshot["state"]["state"] == mine.json()["agents"][0]["state"]
            assert snapshot["assignments"] is None
            assert snapshot["unavailable"] == {"assignments": "unavailable"}

        everyone = await http.get("/supervisor/agents", headers=boss)
        assert everyone.status_code == 200, everyone.text
        assert len(everyone.json()["agents"]) >= 6

        forced = await http.post(
            "/supervisor/agents/alice/state",
            json={"state": "ready", "reason": "back to work"},
            headers=boss,
        )
        assert forced.status_code == 200, forced.text

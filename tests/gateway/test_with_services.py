"""The gateway against the real routing, threading and dialer services (their contracts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from switchboard.gateway.app import GatewayRuntime

from .conftest import DEMO, demo_login

routing_app = pytest.importorskip("switchboard.routing.app")
threading_app = pytest.importorskip("switchboard.threading.app")
dialer_app = pytest.importorskip("switchboard.dialer.app")


async def test_work_case_and_record_actions_reach_their_owners(
    make_settings: Callable[..., Any], demo_gateway: Callable[..., GatewayRuntime]
) -> None:
    gateway = demo_gateway()
    routing = routing_app.build(
        make_settings(routing_app.RoutingSettings, routing_config_file=DEMO / "routing.json")
    )
    threading = threading_app.build(
        make_settings(
            threading_app.ThreadingSettings, threading_config_file=DEMO / "threading.json"
        )
    )
    dialer = dialer_app.build(
        make_settings(dialer_app.DialerSettings, campaigns_file=DEMO / "dialer.json")
    )
    transport = httpx.ASGITransport(app=gateway.api)
    async with (
        routing.app,
        threading.app,
        dialer.app,
        gateway.app,
        httpx.AsyncClient(transport=transport, base_url="http://gw") as http,
    ):
        alice = await demo_login(http, "alice")
        boss = await demo_login(http, "supervisor-1")

        team = await http.get("/queues/team", headers=alice)
        # routing learns agents from agent-state's profiles, which is not running here
        assert team.status_code == 403, team.text
        assert team.json()["code"] == "unknown_agent"
        queues = await http.get("/supervisor/queues", headers=boss)
        assert queues.status_code == 200, queues.text
        assert "services" in queues.json()
        offer = await http.post("/offers/no-such-offer/accept", headers=alice)
        assert offer.status_code == 404, offer.text

        case = await http.get("/cases/999999", headers=alice)
        assert case.status_code == 404, case.text
        assert case.json()["code"] == "no_such_case"
        reply = await http.post("/cases/999999/reply", json={"text": "hi"}, headers=alice)
        assert reply.status_code in {403, 404}, reply.text

        record = await http.post("/records/no-such-record/skip", json={}, headers=alice)
        assert record.status_code == 404, record.text
        assert record.json()["field"] == "record_id"

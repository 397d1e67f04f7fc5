"""My Cases, search, contact history, cases opened by hand and work statuses through the
gateway, against the real threading and routing services (issue 20)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from switchboard.gateway.app import GatewayRuntime

from .conftest import DEMO, demo_login

routing_app = pytest.importorskip("switchboard.routing.app")
threading_app = pytest.importorskip("switchboard.threading.app")


async def test_cases_by_hand_my_cases_search_history_and_bad_input(
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
    transport = httpx.ASGITransport(app=gateway.api)
    async with (
        routing.app,
        threading.app,
        gateway.app,
        httpx.AsyncClient(transport=transport, base_url="http://gw") as http,
    ):
        alice = await demo_login(http, "alice")
        boss = await demo_login(http, "supervisor-1")
        opened = await http.post(
            "/cases/by-hand",
            json={
                "service": "support",
                "contact": {"name": "Petra Phone", "address": "petra@customer.example"},
                "subject": "Phoned about a refund",
                "note": "Wants her refund for order 5512 before Friday.",
                "channel": "phone",
            },
            headers=alice,
        )
        assert opened.status_code == 200, opened.text
        number = opened.json()["case_number"]

        mine = await http.get("/me/cases", headers=alice)
        assert mine.status_code == 200, mine.text
        row = mine.json()["cases"][0]
        assert (row["case_number"], row["subject"], row["status"]) == (
            number,
            "Phoned about a refund",
            "open",
        )
        assert row["contact"]["address"] == "petra@customer.example"
        assert row["preview"].startswith("Wants her refund")

        for params in (
            {"text": "REFUND friday"},
            {"contact": "petra@customer.example"},
            {"subject": "refund"},
            {"thread_id": opened.json()["thread_id"]},
        ):
            found = await http.get("/cases/search", params=params, headers=boss)
            assert found.status_code == 200, (params, found.text)
            assert [r["case_number"] for r in found.json()["cases"]] == [number], params
        bob = await demo_login(http, "bruno")  # not his case; routing knows no services of his
        hidden = await http.get("/cases/search", params={"text": "refund"}, headers=bob)
        assert hidden.status_code == 200 and hidden.json()["cases"] == [], hidden.text

        history = await http.get(f"/cases/{number}/history", headers=boss)
        assert history.status_code == 200, history.text
        assert [r["case_number"] for r in history.json()["cases"]] == [number]
        by_address = await http.get(
            "/contacts/history", params={"address": "PETRA@customer.example"}, headers=boss
        )
        assert [r["case_number"] for r in by_address.json()["cases"]] == [number]

        paused = await http.post(
            f"/cases/{number}/status", json={"status": "pending customer"}, headers=boss
        )
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] is True

        for params, field in (
            ({"service": "nowhere"}, "service"),
            ({"since": "yesterday"}, "since"),
            ({"text": "refund", "page": 9}, "page"),
            ({"status": "sleeping"}, "status"),
        ):
            bad = await http.get("/cases/search", params=params, headers=boss)
            assert bad.status_code == 422, (params, bad.text)
            body = bad.json()
            named = body.get("field") or " ".join(str(e) for e in body.get("errors", []))
            assert field in named, (params, body)
        unknown = await http.post(
            f"/cases/{number}/status", json={"status": "asleep"}, headers=boss
        )
        assert unknown.status_code == 422 and unknown.json()["field"] == "status", unknown.text

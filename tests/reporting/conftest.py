"""A real reporting service, a real gateway in front of it, and a publisher of the day's events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.gateway.app import GatewayRuntime, GatewaySettings
from switchboard.gateway.app import build as build_gateway
from switchboard.reporting.app import ReportingSettings, policy_of
from switchboard.reporting.folding import Folder
from switchboard.reporting.handlers import ReportingHandlers
from switchboard.reporting.store import ReportStore
from switchboard.runtime.service import Runtime

PEOPLE = {"agent-1": ("agent", "first-password-1"), "boss": ("supervisor", "boss-password-1")}


@pytest.fixture
def reporting_settings(make_settings: Callable[..., Any]) -> Callable[..., ReportingSettings]:
    def make(**overrides: Any) -> ReportingSettings:
        # the scripted day is in the past: retention (a job run at start) keeps it unless told
        overrides = {"journal_retention_days": 3650.0, **overrides}
        settings: ReportingSettings = make_settings(ReportingSettings, **overrides)
        return settings

    return make


@pytest.fixture
async def publisher(make_settings: Callable[..., Any]) -> AsyncIterator[Runtime]:
    runtime = Runtime("probe", make_settings())
    async with runtime.app:
        yield runtime


def handlers_of(runtime: Runtime, settings: ReportingSettings) -> ReportingHandlers:
    """The handlers over the same database as a running service (to fire timers, rebuild)."""
    store = ReportStore(runtime.db)
    return ReportingHandlers(store, runtime.bus, Folder(store, policy_of(settings)))


@pytest.fixture
async def gateway(
    make_settings: Callable[..., Any], tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    users = tmp_path / "gateway.json"
    people = [
        {"id": pid, "name": pid.title(), "role": role, "password": password}
        for pid, (role, password) in PEOPLE.items()
    ]
    users.write_text(json.dumps({"people": people}), encoding="utf-8")
    settings: GatewaySettings = make_settings(
        GatewaySettings,
        gateway_users_file=users,
        password_time_cost=1,
        password_memory_kib=64,
        password_parallelism=1,
        command_timeout_seconds=15.0,
    )
    runtime: GatewayRuntime = build_gateway(settings)
    async with runtime.app:
        transport = httpx.ASGITransport(app=runtime.api, client=("10.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


async def login(http: httpx.AsyncClient, person: str) -> dict[str, str]:
    answer = await http.post("/auth/login", json={"login": person, "password": PEOPLE[person][1]})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}

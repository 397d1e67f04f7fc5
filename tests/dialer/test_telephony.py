"""The telephony simulator keeps its calls in MongoDB: a restart mid-call still ends the call."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from switchboard.contracts.campaigns import CallNumber, DialRequested
from switchboard.dialer.app import DialerSettings, build
from switchboard.dialer.telephony import SimulatedTelephony

_spec = importlib.util.spec_from_file_location(
    "dialer_conftest", Path(__file__).parent / "conftest.py"
)
assert _spec and _spec.loader
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

START = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def request(number: str) -> DialRequested:
    return DialRequested(call_id="c1", record_id="r1", campaign_id="k", agent_id="a", number=number)


def test_the_plan_of_a_call_follows_its_outcome() -> None:
    simulator = SimulatedTelephony(
        None,  # type: ignore[arg-type]
        outcomes={"+12125550100": "busy"},
        default="answered",
        ring_seconds=2,
        talk_seconds=5,
    )
    busy = simulator.plan(request("+12125550100"), START)
    assert [(s["status"], s["at"]) for s in busy] == [
        ("ringing", START),
        ("busy", START + timedelta(seconds=2)),
    ]
    answered = simulator.plan(request("+12125550199"), START)
    assert [(s["status"], s["at"]) for s in answered] == [
        ("ringing", START),
        ("answered", START + timedelta(seconds=2)),
        ("ended", START + timedelta(seconds=7)),
    ]


async def test_a_restarted_simulator_reports_the_rest_of_the_call(
    dialer_settings: Callable[..., DialerSettings], routing: Any
) -> None:
    settings = dialer_settings(simulator_ring_seconds=0.2, simulator_talk_seconds=4.0)
    customer = {
        "external_id": "t-1",
        "name": "Grace Hopper",
        "phones": [{"number": "+12125550123", "type": "mobile"}],
    }
    first = build(settings)
    async with first.app:
        await helpers.make_campaign(first, [customer])
        held = await helpers.eventually(
            lambda: helpers.find_record(first.db, state="held", agent_id="agent-1")
        )
        record_id = held["_id"]
        call = await helpers.ok(first, CallNumber(agent_id="agent-1", record_id=record_id))

        async def answered() -> Any:
            doc = await helpers.record_doc(first.db, record_id)
            attempt = doc["attempts"][-1] if doc and doc["attempts"] else None
            return attempt if attempt and attempt["status"] == "answered" else None

        await helpers.eventually(answered)
        planned = await first.db["simulated_calls"].find_one({"_id": call["call_id"]})
        assert planned is not None and planned["next"] == 2  # only the hang-up is left
    # the process is gone mid-call; a new one reports the hang-up when it is due
    second = build(settings)
    async with second.app:

        async def ended() -> Any:
            doc = await helpers.record_doc(second.db, record_id)
            attempt = doc["attempts"][-1] if doc and doc["attempts"] else None
            return attempt if attempt and attempt["status"] == "ended" else None

        attempt = await helpers.eventually(ended, seconds=30)
        assert attempt["answered"] is True and attempt["call_id"] == call["call_id"]
        assert await second.db["simulated_calls"].count_documents({}) == 0

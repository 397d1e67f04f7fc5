"""The demo campaign of `make run` seeds itself into an empty dialer, once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from switchboard.dialer.app import DialerSettings, build

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "dialer.json"


async def test_the_demo_file_seeds_an_empty_dialer_once(
    dialer_settings: Callable[..., DialerSettings], routing: Any
) -> None:
    settings = dialer_settings(campaigns_file=DEMO, dispatch_interval_seconds=60.0)
    for _ in range(2):  # a restart (or a second replica) seeds nothing twice
        runtime = build(settings)
        async with runtime.app:
            campaign = await runtime.db["campaigns"].find_one({"_id": "spring-renewals"})
            assert campaign["spec"]["service"] == "outbound-preview"
            assert await runtime.db["records"].count_documents({}) == 6
            seed = await runtime.db["imports"].find_one({"_id": "seed-spring-renewals"})
            assert seed["bad"] == 0 and seed["imported"] == 6
            assert await runtime.db["dnc"].count_documents({}) == 1
            records = runtime.db["records"].find({})
            numbers = {p["number"] async for d in records for p in d["phones"]}
            assert {"+12125550123", "+442079460958", "+4930901820"} <= numbers

"""A burst of offers reaches the desk while they can still be accepted, database slow or not.

Issue 15: after a RabbitMQ restart the chaos run's agents got their offers a minute late, after
routing had timed them out. The gateway journaled each pushed event with three database round
trips of its own, one event after another, so a burst (every service catching up at once) left
it behind for good on a loaded machine, out of sight: it took the events off its queue unacked
into memory. Here the gateway's database is behind a link that adds a delay to every round
trip, and a burst of offers must still reach the desk before each one expires.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import websockets
from pydantic import SecretStr
from slowlink import SlowLink

from switchboard.app.localstack import Backends
from switchboard.gateway.app import GatewaySettings, build

from .conftest import StandIns, login, next_event, offer_to, serving

OFFERS = 100
OPEN_FOR = 12.0
"""Seconds each offer stays open (routing's offer timeout is longer: this is a tight one)."""
ROUND_TRIP = 0.04
"""Added to every exchange with the database (half each way): a loaded or distant server."""


async def test_a_burst_of_offers_reaches_the_desk_before_they_expire_with_a_slow_database(
    gateway_settings: GatewaySettings,
    stand_ins: StandIns,
    running: Callable[..., Any],
    real_servers: Backends,
) -> None:
    database = urlsplit(real_servers.mongodb_url)
    async with SlowLink(database.hostname or "127.0.0.1", database.port or 27017).running() as link:
        through_link = database._replace(
            netloc=database.netloc.replace(f":{database.port}", f":{link.port}")
        ).geturl()
        runtime = build(
            gateway_settings.model_copy(update={"mongodb_url": SecretStr(through_link)})
        )
        async with (
            serving(runtime.api) as address,
            running(stand_ins),
            httpx.AsyncClient(base_url=f"http://{address}") as http,
        ):
            agent = await login(http, "agent-1")
            async with websockets.connect(
                f"ws://{address}/me/live", additional_headers=agent
            ) as desk:
                await next_event(desk, "hello")
                link.delay = ROUND_TRIP / 2
                bus = stand_ins.runtime.bus
                offers = []
                for _ in range(OFFERS):
                    offer = offer_to("agent-1", seconds=OPEN_FOR)
                    await bus.publish(offer)
                    offers.append(offer)
                arrived: dict[str, datetime] = {}
                last_expiry = max(o.expires_at for o in offers)
                wait = (last_expiry - datetime.now(UTC)).total_seconds() + 1.0
                try:
                    async with asyncio.timeout(wait):
                        while len(arrived) < OFFERS:
                            frame = json.loads(await desk.recv())
                            if frame["event"] == "offer.made":
                                arrived[frame["data"]["offer_id"]] = datetime.now(UTC)
                except TimeoutError:
                    pass
    late = [
        o.offer_id
        for o in offers
        if o.offer_id not in arrived or arrived[o.offer_id] > o.expires_at
    ]
    assert not late, f"{len(late)} of {OFFERS} offers reached the desk only after they expired"

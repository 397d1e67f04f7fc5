"""Offers reach the desk while they can still be accepted, the gateway's database slow or away.

Issue 15: after a RabbitMQ restart the chaos run's agents got their offers a minute late, after
routing had timed them out. The gateway journaled each pushed event with three database round
trips of its own, one event after another, so a burst (every service catching up at once) left
it behind for good on a loaded machine, out of sight: it took the events off its queue unacked
into memory. Here the gateway's database is behind a link that adds a delay to every round
trip, and a burst of offers must still reach the desk before each one expires; and offers
heard while the database is unreachable must not be given up on (the push queue keeps them
until they are journaled).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import websockets
from pydantic import SecretStr
from slowlink import SlowLink
from testkit import eventually

from switchboard.app.localstack import Backends
from switchboard.gateway.app import GatewayRuntime, GatewaySettings, build

from .conftest import StandIns, login, next_event, offer_to, serving

OFFERS = 100
OPEN_FOR = 12.0
"""Seconds each offer stays open (routing's offer timeout is longer: this is a tight one)."""
ROUND_TRIP = 0.04
"""Added to every exchange with the database (half each way): a loaded or distant server."""


@contextlib.asynccontextmanager
async def through_link(
    gateway_settings: GatewaySettings, real_servers: Backends
) -> AsyncIterator[tuple[SlowLink, GatewayRuntime, str]]:
    """The gateway behind uvicorn, its database reached through a :class:`SlowLink`."""
    database = urlsplit(real_servers.mongodb_url)
    async with SlowLink(database.hostname or "127.0.0.1", database.port or 27017).running() as link:
        url = database._replace(
            netloc=database.netloc.replace(f":{database.port}", f":{link.port}")
        ).geturl()
        runtime = build(gateway_settings.model_copy(update={"mongodb_url": SecretStr(url)}))
        async with serving(runtime.api) as address:
            yield link, runtime, address


@dataclass
class Desk:
    """agent-1 logged in, with the live stream open, the gateway's database behind ``link``."""

    link: SlowLink
    address: str
    headers: dict[str, str]
    socket: Any
    hello: dict[str, Any]


@contextlib.asynccontextmanager
async def desk_behind_link(
    gateway_settings: GatewaySettings,
    stand_ins: StandIns,
    running: Callable[..., Any],
    real_servers: Backends,
) -> AsyncIterator[Desk]:
    async with (
        through_link(gateway_settings, real_servers) as (link, _, address),
        running(stand_ins),
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        agent = await login(http, "agent-1")
        live = f"ws://{address}/me/live"
        async with websockets.connect(live, additional_headers=agent) as socket:
            hello = await next_event(socket, "hello")
            yield Desk(link, address, agent, socket, hello)


async def test_a_burst_of_offers_reaches_the_desk_before_they_expire_with_a_slow_database(
    gateway_settings: GatewaySettings,
    stand_ins: StandIns,
    running: Callable[..., Any],
    real_servers: Backends,
) -> None:
    async with desk_behind_link(gateway_settings, stand_ins, running, real_servers) as desk:
        desk.link.delay = ROUND_TRIP / 2
        bus = stand_ins.runtime.bus
        offers = []
        for _ in range(OFFERS):
            offer = offer_to("agent-1", seconds=OPEN_FOR)
            await bus.publish(offer)
            offers.append(offer)
        arrived: dict[str, datetime] = {}
        last_expiry = max(o.expires_at for o in offers)
        wait = (last_expiry - datetime.now(UTC)).total_seconds() + 1.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while len(arrived) < OFFERS:
                    frame = json.loads(await desk.socket.recv())
                    if frame["event"] == "offer.made":
                        arrived[frame["data"]["offer_id"]] = datetime.now(UTC)
    late = [
        o.offer_id
        for o in offers
        if o.offer_id not in arrived or arrived[o.offer_id] > o.expires_at
    ]
    assert not late, f"{len(late)} of {OFFERS} offers reached the desk only after they expired"


OUTAGE = 20.0
"""Seconds the database stays away after the offers were published: longer than the old push
tried (three attempts, each failing after the runtime's 5 s server selection timeout)."""


async def test_offers_heard_while_the_database_is_away_reach_the_desk_once_it_is_back(
    gateway_settings: GatewaySettings,
    stand_ins: StandIns,
    running: Callable[..., Any],
    real_servers: Backends,
) -> None:
    async with desk_behind_link(gateway_settings, stand_ins, running, real_servers) as desk:
        address, agent, last_seq = desk.address, desk.headers, desk.hello["last_seq"]
        desk.link.cut()
        offers = [offer_to("agent-1", seconds=120) for _ in range(3)]
        for offer in offers:
            await stand_ins.runtime.bus.publish(offer)
        await asyncio.sleep(OUTAGE)  # the outage itself: the database is away this long
        desk.link.restore()
        # the desk's stream went down with the database; once the gateway reads its database
        # again (the session behind GET /me), the desk comes back for what it missed
        async with httpx.AsyncClient(base_url=f"http://{address}", headers=agent) as http:

            async def database_back() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get("/me")).status_code == 200
                return False

            await eventually(database_back, seconds=30, every=0.2)
        arrived: set[str] = set()
        with contextlib.suppress(TimeoutError):
            async with (
                asyncio.timeout(30),
                websockets.connect(
                    f"ws://{address}/me/live?since={last_seq}", additional_headers=agent
                ) as again,
            ):
                while len(arrived) < len(offers):
                    frame = json.loads(await again.recv())
                    if frame["event"] == "offer.made":
                        arrived.add(frame["data"]["offer_id"])
    missing = [o.offer_id for o in offers if o.offer_id not in arrived]
    assert not missing, f"offers never reached the desk after the database came back: {missing}"

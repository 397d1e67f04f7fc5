"""The live stream keeps bringing offers after the gateway's broker connection was lost.

Issue 15 suspected the replica's own push queue (exclusive, auto-delete) of not coming back
after a RabbitMQ restart. aio-pika's robust channel re-declares it, re-binds it and consumes it
again; this test holds that in place (it fails when the queue is declared ``robust=False``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
import websockets
from testkit import eventually

from switchboard.app.localstack import Backends, management_call
from switchboard.contracts import routing
from switchboard.contracts.queues import routing as routing_queues
from switchboard.gateway.app import GatewayRuntime

from .conftest import StandIns, login, next_event, offer_to


async def test_an_open_live_stream_gets_offers_after_the_broker_connection_drops(
    served: tuple[GatewayRuntime, str],
    stand_ins: StandIns,
    running: Callable[..., Any],
    real_servers: Backends,
    amqp_url: str,
) -> None:
    """As after a RabbitMQ restart: the broker drops every connection (and with them the
    replica's exclusive push queue). Once reconnected, an offer routed to the agent reaches
    the desktop that kept its stream open."""
    if real_servers.management_url is None:
        pytest.skip(reason="closing connections needs RabbitMQ's management API")
    management_url = real_servers.management_url
    vhost = unquote(urlsplit(amqp_url).path.lstrip("/"))
    _, address = served

    async def accepted(command: routing.OfferAnswer) -> dict[str, Any]:
        return {"offer_id": command.offer_id, "accepted": command.accept}

    stand_ins.answer(routing_queues.OFFER_ANSWERS, routing.OfferAnswer, accepted)
    async with (
        running(stand_ins),
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        agent = await login(http, "agent-1")
        async with websockets.connect(f"ws://{address}/me/live", additional_headers=agent) as mine:
            await next_event(mine, "hello")
            bus = stand_ins.runtime.bus
            before = offer_to("agent-1")
            await bus.publish(before)
            assert (await next_event(mine, "offer.made"))["offer_id"] == before.offer_id

            async def connections() -> Any:
                found = management_call(management_url, "GET", f"/api/vhosts/{vhost}/connections")
                return found or None

            for connection in await eventually(connections, seconds=30):
                management_call(
                    management_url,
                    "DELETE",
                    f"/api/connections/{quote(connection['name'], safe='')}",
                )

            # routing offers again until the desktop shows one: publish until one arrives
            made: set[str] = set()

            async def offered_after_the_drop() -> str | bool:
                after = offer_to("agent-1")
                try:
                    await bus.publish(after)
                except Exception:  # the stand-in may still be reconnecting
                    return False
                made.add(after.offer_id)
                try:
                    got = await next_event(mine, "offer.made", seconds=2.0)
                except TimeoutError:
                    return False
                return got["offer_id"] if got["offer_id"] in made else False

            offer_id = await eventually(offered_after_the_drop, seconds=40)
            # and the desktop's accept reaches routing and comes back answered
            answer = await http.post(f"/offers/{offer_id}/accept", headers=agent, timeout=15)
            assert answer.status_code == 200, answer.text
            assert [a.offer_id for a in stand_ins.of(routing.OfferAnswer)] == [offer_id]

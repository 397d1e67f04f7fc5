"""The live stream over a real socket: pushes, heartbeats, revocation; the runtime endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets

from switchboard.contracts import agents, cases, routing
from switchboard.contracts.queues import agent_state as agent_queues
from switchboard.gateway.app import GatewayRuntime

from .conftest import StandIns, login, next_event, offer_to


async def test_an_agent_gets_their_offers_and_mail_on_their_cases_and_beats(
    served: tuple[GatewayRuntime, str],
    stand_ins: StandIns,
    running: Callable[..., Any],
) -> None:
    _, address = served

    async def beat(command: agents.AgentHeartbeat) -> None:
        return None

    stand_ins.answer(agent_queues.HEARTBEATS, agents.AgentHeartbeat, beat)
    async with (
        running(stand_ins),
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        agent = await login(http, "agent-1")
        boss = await login(http, "supervisor-1")
        async with (
            websockets.connect(f"ws://{address}/me/live", additional_headers=agent) as mine,
            websockets.connect(f"ws://{address}/me/live", additional_headers=boss) as watching,
        ):
            hello = await next_event(mine, "hello")
            assert hello["person_id"] == "agent-1"
            await next_event(watching, "hello")

            bus = stand_ins.runtime.bus
            await bus.publish(offer_to("agent-2"))
            offer = offer_to("agent-1")
            await bus.publish(offer)
            got = await next_event(mine, "offer.made")
            assert got["offer_id"] == offer.offer_id  # agent-2's offer never reached agent-1
            assert (await next_event(watching, "offer.made"))["agent_id"] == "agent-2"

            await bus.publish(
                routing.InteractionAssigned(
                    interaction_id="case-7", agent_id="agent-1", channel="email", service="billing"
                )
            )
            await next_event(mine, "interaction.assigned")
            # the projection (durable consumer) may lag the push queue a little
            for _ in range(50):
                if await served[0].db["holdings"].count_documents({"case_number": 7}):
                    break
                await asyncio.sleep(0.1)
            await bus.publish(
                cases.CaseEmailAttached(case_number=7, email_id="<new@x>", direction="inbound")
            )
            attached = await next_event(mine, "case.email_attached")
            assert attached["email_id"] == "<new@x>"

            await mine.send("ping")
            await next_event(mine, "pong")

        beats = stand_ins.of(agents.AgentHeartbeat)
        assert beats, "the open stream sends heartbeats"
        assert {(b.agent_id, b.actor_id, b.actor_role) for b in beats} == {
            ("agent-1", "agent-1", "agent")
        }


async def test_the_stream_refuses_a_bad_token_and_closes_when_revoked(
    served: tuple[GatewayRuntime, str],
) -> None:
    _, address = served
    async with websockets.connect(
        f"ws://{address}/me/live", additional_headers={"Authorization": "Bearer nope"}
    ) as refused:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await refused.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        agent = await login(http, "agent-2")
        boss = await login(http, "supervisor-1")
        async with websockets.connect(f"ws://{address}/me/live", additional_headers=agent) as ws:
            await next_event(ws, "hello")
            assert (await http.post("/people/agent-2/revoke", headers=boss)).status_code == 200
            with pytest.raises(websockets.ConnectionClosed) as ended:
                await next_event(ws, "never")
            assert ended.value.rcvd is not None and ended.value.rcvd.code == 4401


async def test_metrics_health_and_the_openapi_document_are_served(
    served: tuple[GatewayRuntime, str],
) -> None:
    _, address = served
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        ready = await http.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert (await http.get("/health/live")).status_code == 200
        metrics = await http.get("/metrics")
        assert "switchboard_gateway_live_sockets" in metrics.text
        document = (await http.get("/openapi.json")).json()
        assert "/cases/{case_number}/reply" in document["paths"]
        assert "/metrics" not in document["paths"]
        assert (await http.get("/docs")).status_code == 200

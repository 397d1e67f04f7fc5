"""Commands reach their owner with the person from the token; answers become HTTP statuses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from switchboard.contracts import agents, cases, routing
from switchboard.contracts.queues import agent_state as agent_queues
from switchboard.contracts.queues import routing as routing_queues
from switchboard.contracts.queues import threading as threading_queues
from switchboard.gateway.app import GatewayRuntime
from switchboard.runtime.errors import Refused

from .conftest import StandIns, login


async def test_an_agent_acts_as_themselves_whatever_the_body_says(
    client: httpx.AsyncClient, stand_ins: StandIns, running: Callable[..., Any]
) -> None:
    async def not_ready(command: agents.SetNotReady) -> dict[str, Any]:
        return {"agent_id": command.agent_id, "state": "not_ready"}

    stand_ins.answer(agent_queues.SET_NOT_READY, agents.SetNotReady, not_ready)
    async with running(stand_ins):
        headers = await login(client, "agent-1")
        done = await client.post("/me/not-ready", json={"reason": "Lunch"}, headers=headers)
        assert done.status_code == 200, done.text
        assert done.json() == {"agent_id": "agent-1", "state": "not_ready"}
        [sent] = stand_ins.of(agents.SetNotReady)
        assert (sent.agent_id, sent.actor_id, sent.actor_role) == ("agent-1", "agent-1", "agent")

        spoofed = await client.post(
            "/me/not-ready", json={"reason": "Lunch", "agent_id": "agent-2"}, headers=headers
        )
        assert spoofed.status_code == 422
        assert spoofed.json()["field"] == "agent_id"
        empty = await client.post("/me/not-ready", json={"reason": ""}, headers=headers)
        assert empty.status_code == 422
        assert empty.json()["field"] == "reason"
        two_lines = await client.post("/me/not-ready", json={"reason": "a\r\nb"}, headers=headers)
        assert two_lines.status_code == 422
        assert two_lines.json()["field"] == "reason"
        assert len(stand_ins.of(agents.SetNotReady)) == 1


@pytest.mark.parametrize(
    ("code", "field", "status"),
    [
        ("not_yours", "offer_id", 403),
        ("unknown_offer", "offer_id", 404),
        ("offer_closed", "offer_id", 409),
        ("invalid", "reason", 422),
    ],
)
async def test_the_owners_refusal_keeps_its_reason_and_maps_to_a_status(
    client: httpx.AsyncClient,
    stand_ins: StandIns,
    running: Callable[..., Any],
    code: str,
    field: str,
    status: int,
) -> None:
    async def answer(command: routing.OfferAnswer) -> dict[str, Any]:
        raise Refused(code, f"refused: {code}", field=field)

    stand_ins.answer(routing_queues.OFFER_ANSWERS, routing.OfferAnswer, answer)
    async with running(stand_ins):
        headers = await login(client, "agent-1")
        refused = await client.post("/offers/o-1/accept", headers=headers)
        assert refused.status_code == status
        assert refused.json() == {"detail": f"refused: {code}", "code": code, "field": field}
        [sent] = stand_ins.of(routing.OfferAnswer)
        assert (sent.offer_id, sent.agent_id, sent.accept) == ("o-1", "agent-1", True)


async def test_case_commands_carry_the_case_from_the_url_and_the_role_from_the_token(
    client: httpx.AsyncClient, stand_ins: StandIns, running: Callable[..., Any]
) -> None:
    async def reply(command: cases.ReplyToCase) -> dict[str, Any]:
        return {"case_number": command.case_number, "email_id": "<r1@x>"}

    async def transfer(command: cases.TransferCase) -> dict[str, Any]:
        raise Refused("unknown_service", "no service 'nope'", field="to_service")

    stand_ins.answer(threading_queues.COMMANDS[cases.ReplyToCase.NAME], cases.ReplyToCase, reply)
    stand_ins.answer(
        threading_queues.COMMANDS[cases.TransferCase.NAME], cases.TransferCase, transfer
    )
    async with running(stand_ins):
        agent = await login(client, "agent-1")
        boss = await login(client, "supervisor-1")
        body = {"text": "Thanks!", "cc": [{"name": "Cc", "address": "cc@example.com"}]}
        done = await client.post("/cases/14355/reply", json=body, headers=agent)
        assert done.status_code == 200, done.text
        assert done.json()["case_number"] == 14355
        await client.post("/cases/14355/reply", json=body, headers=boss)
        first, second = stand_ins.of(cases.ReplyToCase)
        assert (first.agent_id, first.acting_role, first.case_number) == ("agent-1", "agent", 14355)
        assert (second.agent_id, second.acting_role) == ("supervisor-1", "supervisor")
        assert first.cc[0].address == "cc@example.com"

        bad_address = await client.post(
            "/cases/14355/reply", json={"to": [{"address": "not-an-address"}]}, headers=agent
        )
        assert bad_address.status_code == 422
        assert bad_address.json()["field"] == "to.0.address"
        # an unknown thing named in the body is bad input, not a missing page
        moved = await client.post(
            "/cases/14355/transfer", json={"to_service": "nope"}, headers=agent
        )
        assert moved.status_code == 422
        assert moved.json()["field"] == "to_service"


async def test_an_owner_that_does_not_answer_in_time_gives_504(
    gateway: GatewayRuntime,
    client: httpx.AsyncClient,
    stand_ins: StandIns,
    running: Callable[..., Any],
) -> None:
    async def slow(command: agents.SetReady) -> None:
        await asyncio.sleep(1.5)

    stand_ins.answer(agent_queues.SET_READY, agents.SetReady, slow)
    async with running(stand_ins):
        headers = await login(client, "agent-1")
        gateway.forwarder.timeout = 0.5
        late = await client.post("/me/ready", headers=headers)
        assert late.status_code == 504
        assert late.json()["code"] == "timeout"
        assert "agent-state did not answer agent.set_ready" in late.json()["detail"]


async def test_no_owner_running_gives_503(client: httpx.AsyncClient) -> None:
    headers = await login(client, "agent-1")
    answer = await client.post("/me/ready", headers=headers)
    assert answer.status_code == 503
    assert answer.json()["code"] == "unavailable"


async def test_supervisor_views_are_for_supervisors(
    client: httpx.AsyncClient, stand_ins: StandIns, running: Callable[..., Any]
) -> None:
    async def states(command: agents.AgentStatesRequested) -> dict[str, Any]:
        return {"agents": [{"agent_id": "agent-1", "state": "ready"}], "by": command.actor_id}

    async def force(command: agents.ForceAgentState) -> dict[str, Any]:
        return {"agent_id": command.agent_id, "state": command.state}

    async def queues(command: routing.QueueViewRequested) -> dict[str, Any]:
        return {"services": {"billing": {"depth": 3, "oldest_wait_seconds": 42.0}}}

    stand_ins.answer(agent_queues.STATES, agents.AgentStatesRequested, states)
    stand_ins.answer(agent_queues.FORCE_STATE, agents.ForceAgentState, force)
    stand_ins.answer(routing_queues.QUEUE_VIEW, routing.QueueViewRequested, queues)
    async with running(stand_ins):
        agent = await login(client, "agent-1")
        boss = await login(client, "supervisor-1")
        for path in ("/supervisor/agents", "/supervisor/queues"):
            assert (await client.get(path, headers=agent)).status_code == 403
        forced = await client.post(
            "/supervisor/agents/agent-2/state",
            json={"state": "not_ready", "reason": "Meeting"},
            headers=agent,
        )
        assert forced.status_code == 403
        assert stand_ins.seen == []

        seen = await client.get("/supervisor/agents", headers=boss)
        assert seen.status_code == 200 and seen.json()["by"] == "supervisor-1"
        depth = await client.get("/supervisor/queues", headers=boss)
        assert depth.json()["services"]["billing"]["depth"] == 3
        forced = await client.post(
            "/supervisor/agents/agent-2/state",
            json={"state": "not_ready", "reason": "Meeting"},
            headers=boss,
        )
        assert forced.status_code == 200
        [sent] = stand_ins.of(agents.ForceAgentState)
        assert (sent.agent_id, sent.actor_id, sent.actor_role) == (
            "agent-2",
            "supervisor-1",
            "supervisor",
        )
        mine = await client.get("/me/state", headers=agent)
        assert mine.status_code == 200
        ask = stand_ins.of(agents.AgentStatesRequested)[-1]
        assert (ask.actor_id, ask.actor_role, ask.agent_ids) == ("agent-1", "agent", [])


async def test_a_repeated_idempotency_key_is_carried_out_once(
    client: httpx.AsyncClient, stand_ins: StandIns, running: Callable[..., Any]
) -> None:
    async def pull(command: routing.TeamQueuePull) -> dict[str, Any]:
        return {"interaction_id": f"case-{len(stand_ins.seen)}"}

    stand_ins.answer(routing_queues.TEAM_QUEUE_PULL, routing.TeamQueuePull, pull)
    async with running(stand_ins):
        headers = {**await login(client, "agent-1"), "Idempotency-Key": "click-1"}
        first = await client.post("/queues/team/pull", json={}, headers=headers)
        again = await client.post("/queues/team/pull", json={}, headers=headers)
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json() == {"interaction_id": "case-1"}
        assert len(stand_ins.seen) == 1

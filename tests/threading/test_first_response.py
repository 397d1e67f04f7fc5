"""First response time: from an inbound case's opening to the agent's first reply, once."""

from __future__ import annotations

from prometheus_client import REGISTRY

from switchboard.contracts import cases as c

from .conftest import Threading


def _count(queue: str) -> float:
    found = REGISTRY.get_sample_value(
        "switchboard_threading_first_response_seconds_count", {"queue": queue}
    )
    return found or 0.0


async def test_the_first_reply_to_a_customer_is_measured_once(threading: Threading) -> None:
    t = threading
    first = await t.held_case()
    queue = first["service"]
    before = _count(queue)
    reply = c.ReplyToCase(
        case_number=first["case_number"], agent_id="a1", text="On it.", finish=False
    )
    assert (await t.command(reply)).ok
    assert _count(queue) == before + 1
    case = await t.case(first["case_number"])
    assert case["first_response_at"] >= case["created_at"]

    again = c.ReplyToCase(case_number=first["case_number"], agent_id="a1", text="Done now.")
    answered = await t.command(again)
    assert answered.ok, answered.error
    assert _count(queue) == before + 1, "only the first reply is a first response"

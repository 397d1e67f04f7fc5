"""Agent actions end to end over real RabbitMQ and the MongoDB-protocol server.

A stand-in for routing (``FakeRouting`` in conftest) offers each preview to agent-1 and
auto-accepts, and frees the agent on ``interaction.ended``.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from switchboard.contracts.campaigns import (
    AcceptRecord,
    CallNumber,
    ChangeDoNotCall,
    CompleteRecord,
    GetCampaignReport,
    GetRecord,
    ListCampaigns,
    RescheduleRecord,
    SetCallDisposition,
    SkipRecord,
)
from switchboard.dialer.domain import record_id_for
from switchboard.runtime.service import Runtime

_conftest = importlib.util.spec_from_file_location(
    "dialer_conftest", Path(__file__).parent / "conftest.py"
)
assert _conftest and _conftest.loader
helpers = importlib.util.module_from_spec(_conftest)
_conftest.loader.exec_module(helpers)
eventually, ok, ask, make_campaign = (
    helpers.eventually,
    helpers.ok,
    helpers.ask,
    helpers.make_campaign,
)
record_doc, find_record, records_now = (
    helpers.record_doc,
    helpers.find_record,
    helpers.records_now,
)

ADA = {
    "external_id": "c-1",
    "name": "Ada Lovelace",
    "phones": [
        {"number": "+12125550123", "type": "mobile"},
        {"number": "+442079460958", "type": "work"},
    ],
}
ALAN = {
    "external_id": "c-2",
    "name": "Alan Turing",
    "phones": [{"number": "+4930901820", "type": "home"}],
}


async def held_record(dialer: Runtime, routing: Any, count: int = 1) -> str:
    """Wait until agent-1 holds a record of the campaign; its id."""

    async def holding() -> str | None:
        doc = await find_record(dialer.db, state="held", agent_id="agent-1")
        return None if doc is None else str(doc["_id"])

    try:
        found: str = await eventually(holding)
    except AssertionError:
        docs = [
            {k: d.get(k) for k in ("_id", "state", "agent_id", "version")}
            for d in await records_now(dialer.db)
        ]
        raise AssertionError(f"nobody holds a record: {docs}") from None
    return found


async def test_a_preview_is_routed_with_campaign_and_customer(
    dialer: Runtime, routing: Any
) -> None:
    await make_campaign(dialer, [ADA])
    record_id = await held_record(dialer, routing)
    [request] = routing.requests
    assert request.interaction_id == f"record-{record_id}"
    assert request.channel == "preview" and request.reason == "preview"
    assert request.service == "outbound-preview"
    assert request.summary["campaign"] == "Spring renewals"
    assert request.summary["customer"] == "Ada Lovelace"
    preview = await ok(dialer, GetRecord(agent_id="agent-1", record_id=record_id))
    assert preview["campaign"] == "Spring renewals" and preview["customer"] == "Ada Lovelace"
    marked = [n for n in preview["numbers"] if n["recommended"]]
    assert len(marked) == 1 and preview["recommended"] == marked[0]["number"]
    assert preview["attempts"] == [] and preview["state"] == "held"


async def test_complete_without_a_call_is_a_bad_record_and_frees_the_agent(
    dialer: Runtime, routing: Any
) -> None:
    await make_campaign(dialer, [ADA, ALAN])
    first = await held_record(dialer, routing)
    done = await ok(dialer, CompleteRecord(agent_id="agent-1", record_id=first))
    assert done["disposition"] == "Bad Record" and done["state"] == "closed"

    async def ended() -> bool:
        return any(e.interaction_id == f"record-{first}" for e in routing.ended)

    await eventually(ended)
    [ending] = [e for e in routing.ended if e.interaction_id == f"record-{first}"]
    assert ending.channel == "preview" and ending.outcome == "completed"
    assert ending.agent_id == "agent-1"

    async def next_one() -> bool:
        doc = await find_record(dialer.db, state="held", agent_id="agent-1")
        return doc is not None and doc["_id"] != first

    await eventually(next_one)  # the agent is free again and gets the next preview


async def test_only_the_holding_agent_may_act(dialer: Runtime, routing: Any) -> None:
    await make_campaign(dialer, [ADA])
    record_id = await held_record(dialer, routing)
    for command in (
        CompleteRecord(agent_id="agent-2", record_id=record_id),
        SkipRecord(agent_id="agent-2", record_id=record_id),
        CallNumber(agent_id="agent-2", record_id=record_id),
        GetRecord(agent_id="agent-2", record_id=record_id),
    ):
        outcome = await ask(dialer, command)
        assert not outcome.ok and outcome.error is not None
        # another agent's record is answered like a record that is not there
        assert outcome.error.code == "unknown_record" and outcome.error.field == "record_id"
        assert outcome.error.message == f"no record {record_id!r}"
    unknown = await ask(dialer, GetRecord(agent_id="agent-1", record_id="nope"))
    assert unknown.error is not None and unknown.error.field == "record_id"
    accept = await ok(dialer, AcceptRecord(agent_id="agent-1", record_id=record_id))
    assert accept["state"] == "held"  # auto-accepted already: accepting again changes nothing


async def test_call_disposition_and_complete(dialer: Runtime, routing: Any) -> None:
    await make_campaign(dialer, [ADA])
    record_id = await held_record(dialer, routing)
    call = await ok(
        dialer, CallNumber(agent_id="agent-1", record_id=record_id, number="(212) 555-0123")
    )
    assert call["number"] == "+12125550123"

    async def call_over() -> dict[str, Any] | None:
        doc = await record_doc(dialer.db, record_id)
        attempt = doc["attempts"][-1] if doc and doc["attempts"] else None
        done = attempt and attempt["status"] == "ended" and attempt["answered"]
        return attempt if done else None

    attempt = await eventually(call_over)  # dial.requested -> simulator -> call.progressed
    assert attempt["answered"] is True and attempt["agent_id"] == "agent-1"
    again = await ask(dialer, CallNumber(agent_id="agent-1", record_id=record_id))
    assert again.error is not None and again.error.code == "disposition_required"
    skip = await ask(dialer, SkipRecord(agent_id="agent-1", record_id=record_id))
    assert skip.error is not None and skip.error.code == "disposition_required"
    complete = await ask(dialer, CompleteRecord(agent_id="agent-1", record_id=record_id))
    assert complete.error is not None and complete.error.field == "disposition"
    wrong = await ask(
        dialer, SetCallDisposition(agent_id="agent-1", record_id=record_id, disposition="Maybe")
    )
    assert wrong.error is not None and wrong.error.code == "unknown_disposition"
    await ok(
        dialer,
        SetCallDisposition(
            agent_id="agent-1", record_id=record_id, disposition="Success", note="renewed"
        ),
    )
    done = await ok(dialer, CompleteRecord(agent_id="agent-1", record_id=record_id))
    assert done["disposition"] == "Success" and done["result"] == "success"
    doc = await record_doc(dialer.db, record_id)
    assert doc["state"] == "closed"
    assert [(a["number"], a["disposition"], a["note"]) for a in doc["attempts"]] == [
        ("+12125550123", "Success", "renewed")
    ]
    report = await ok(dialer, GetCampaignReport(campaign_id="spring"))
    assert report["attempts"] == 1 and report["contacts"] == 1 and report["contact_rate"] == 1.0
    assert report["by_state"] == {"closed": 1} and report["by_disposition"] == {"Success": 1}
    listed = await ok(dialer, ListCampaigns())  # the wallboard's list: the same figures
    assert [(c["campaign_id"], c["name"], c["active"]) for c in listed["campaigns"]] == [
        ("spring", "Spring renewals", True)
    ]
    assert {k: v for k, v in listed["campaigns"][0].items() if k in report} == report


async def test_a_busy_number_is_retried_later_and_a_wrong_number_never_recommended(
    dialer_settings: Any, routing: Any
) -> None:
    from switchboard.dialer.app import build

    runtime = build(dialer_settings(simulator_outcomes={"+12125550123": "busy"}))
    async with runtime.app:
        await make_campaign(runtime, [ADA])
        record_id = await held_record(runtime, routing)
        await ok(
            runtime, CallNumber(agent_id="agent-1", record_id=record_id, number="+12125550123")
        )

        async def busy() -> bool:
            doc = await record_doc(runtime.db, record_id)
            return bool(doc["attempts"]) and doc["attempts"][-1]["status"] == "busy"

        await eventually(busy)
        await ok(
            runtime,
            SetCallDisposition(agent_id="agent-1", record_id=record_id, disposition="Wrong Number"),
        )
        preview = await ok(runtime, GetRecord(agent_id="agent-1", record_id=record_id))
        [ny] = [n for n in preview["numbers"] if n["number"] == "+12125550123"]
        assert ny["why_not"] == "bad_number" and not ny["recommended"]
        refused = await ask(
            runtime, CallNumber(agent_id="agent-1", record_id=record_id, number="+12125550123")
        )
        assert refused.error is not None and refused.error.code == "bad_number"
        done = await ok(
            runtime, CompleteRecord(agent_id="agent-1", record_id=record_id, disposition="Busy")
        )
        assert done["state"] == "pending"
        assert datetime.fromisoformat(done["next_at"]) > datetime.now(UTC) + timedelta(seconds=500)


async def test_skip_is_counted_and_the_record_comes_back(dialer: Runtime, routing: Any) -> None:
    await make_campaign(dialer, [ADA], skip_policy={"delay_seconds": 1, "max_skips": 2})
    record_id = await held_record(dialer, routing)
    skipped = await ok(dialer, SkipRecord(agent_id="agent-1", record_id=record_id))
    assert skipped["state"] == "pending" and skipped["skips"] == 1

    async def offered_again() -> bool:
        return sum(1 for r in routing.requests if r.interaction_id == f"record-{record_id}") == 2

    await eventually(offered_again)
    await held_record(dialer, routing)
    last = await ok(dialer, SkipRecord(agent_id="agent-1", record_id=record_id))
    assert last["state"] == "closed" and last["result"] == "max_skips"
    report = await ok(dialer, GetCampaignReport(campaign_id="spring"))
    assert report["skips_by_agent"] == {"agent-1": 2} and report["skips"] == 2
    assert report["by_result"] == {"max_skips": 1}
    assert [e.outcome for e in routing.ended] == ["skipped", "skipped"]


async def test_reschedule_for_this_agent_only(dialer: Runtime, routing: Any) -> None:
    await make_campaign(dialer, [ADA])
    record_id = await held_record(dialer, routing)
    past = await ask(
        dialer,
        RescheduleRecord(
            agent_id="agent-1", record_id=record_id, at=datetime.now(UTC) - timedelta(minutes=1)
        ),
    )
    assert past.error is not None and past.error.field == "at"
    soon = datetime.now(UTC) + timedelta(seconds=1)
    done = await ok(
        dialer, RescheduleRecord(agent_id="agent-1", record_id=record_id, at=soon, personal=True)
    )
    assert done["state"] == "pending" and done["personal"] is True

    async def routed_again() -> list[Any]:
        return [
            r
            for r in routing.requests
            if r.interaction_id == f"record-{record_id}" and r.personal_agent_id
        ]

    [again] = await eventually(routed_again)
    assert again.personal_agent_id == "agent-1"
    assert any(e.outcome == "rescheduled" for e in routing.ended)
    await held_record(dialer, routing)


async def test_do_not_call_refuses_the_call_and_closes_records(
    dialer: Runtime, routing: Any
) -> None:
    await make_campaign(dialer, [ADA])
    record_id = await held_record(dialer, routing)
    await ok(dialer, ChangeDoNotCall(add=["(212) 555-0123"]))
    refused = await ask(
        dialer, CallNumber(agent_id="agent-1", record_id=record_id, number="+12125550123")
    )
    assert refused.error is not None
    assert refused.error.code == "do_not_call" and "do-not-call" in refused.error.message
    preview = await ok(dialer, GetRecord(agent_id="agent-1", record_id=record_id))
    assert preview["recommended"] == "+442079460958"  # never the DNC number
    # a campaign-only list: the other number too -> the record closes when next due
    await ok(dialer, ChangeDoNotCall(campaign_id="spring", add=["+44 20 7946 0958"]))
    await ok(
        dialer, CompleteRecord(agent_id="agent-1", record_id=record_id, disposition="No Answer")
    )
    await dialer.db["records"].update_one(
        {"_id": record_id}, {"$set": {"next_at": datetime.now(UTC)}}
    )

    async def closed() -> Any:
        doc = await record_doc(dialer.db, record_id)
        return doc if doc and doc["state"] == "closed" else None

    doc = await eventually(closed)
    assert doc["result"] == "do_not_call"


async def test_outside_the_calling_hours_a_call_is_refused_and_nothing_is_routed(
    dialer: Runtime, routing: Any
) -> None:
    now = datetime.now(UTC)
    start, end = now + timedelta(hours=2), now + timedelta(hours=3)
    hours = {"start": f"{start:%H}:00", "end": f"{end:%H}:00"}
    await make_campaign(dialer, [{**ALAN, "time_zone": "UTC"}], calling_hours=hours)
    record_id = record_id_for("spring", "c-2")

    async def postponed() -> bool:
        doc = await record_doc(dialer.db, record_id)
        return doc["next_at"] > now + timedelta(minutes=30)

    await eventually(postponed)
    assert routing.requests == []
    # force it into an agent's hands to see the refusal a person would get
    await dialer.db["records"].update_one(
        {"_id": record_id},
        {"$set": {"state": "held", "agent_id": "agent-1", "held_since": now}},
    )
    refused = await ask(dialer, CallNumber(agent_id="agent-1", record_id=record_id))
    assert refused.error is not None and refused.error.code == "no_callable_number"
    refused = await ask(
        dialer, CallNumber(agent_id="agent-1", record_id=record_id, number="+4930901820")
    )
    assert refused.error is not None and refused.error.code == "outside_calling_hours"
    assert "local time" in refused.error.message and "UTC" in refused.error.message

"""Reporting rebuilt from threading's stored cases (issue 20: the read model "rebuildable from
the services' data by a command"): cases worked through a real threading service are folded
live by a real reporting service; the reporting database is then wiped, journal and all, and
``rebuild --from-services`` asks the owners over the bus. The service figures come back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from owners import other_owners
from testkit import eventually

from switchboard.agent_state.app import AgentStateSettings
from switchboard.agent_state.app import build as build_agent_state
from switchboard.contracts import casebook as cb
from switchboard.contracts import cases as c
from switchboard.contracts.queues.reporting import EVENTS
from switchboard.contracts.reports import ServiceReportRequested
from switchboard.reporting.app import ReportingSettings, policy_of, rebuild_from_services
from switchboard.reporting.app import build as build_reporting
from switchboard.reporting.folding import Folder
from switchboard.reporting.handlers import ReportingHandlers
from switchboard.reporting.store import ReportStore
from switchboard.runtime.service import Runtime

from .conftest import Threading

FOLDED = {event.NAME for event in EVENTS}
SECONDS = (
    "first_response_p50_seconds",
    "first_response_p90_seconds",
    "resolution_p50_seconds",
    "resolution_p90_seconds",
)


async def _report(runtime: Runtime, settings: ReportingSettings) -> dict[str, dict[str, Any]]:
    """Today's figures per service, as the gateway would be answered."""
    store = ReportStore(runtime.db)
    handlers = ReportingHandlers(store, runtime.bus, Folder(store, policy_of(settings)))
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    query = ServiceReportRequested(
        services=["support", "sales", "billing"],
        start=hour - timedelta(hours=2),
        end=hour + timedelta(hours=2),
        granularity="day",
    )
    answer = await handlers.on_service_report(query)
    return {row["service"]: row for row in answer["rows"]}


async def _ok(t: Threading, command: Any) -> dict[str, Any]:
    outcome = await t.request(command)
    assert outcome.ok, outcome.error
    return outcome.result


async def _work_a_few_cases(t: Threading) -> None:
    # 1: answered and closed by its agent, then reopened by the customer's answer
    first = await t.held_case("a1", subject="Printer broken")
    one = first["case_number"]
    reply = await _ok(t, c.ReplyToCase(case_number=one, agent_id="a1", text="Fixed."))
    closing = c.CloseCase(
        case_number=one, agent_id="sup", acting_role="supervisor", disposition="Resolved"
    )
    await _ok(t, closing)
    again = await t.file(t.mail(subject=f"Re: Printer broken [Ref:{reply['thread_id']}]"))
    assert again["case_number"] == one and again["intake"]["action"] == "reopened"

    # 2: moved to sales by hand, then transferred to billing
    second = await t.held_case("a1", subject="Invoice wrong")
    two = second["case_number"]
    await _ok(t, c.ChangeCaseService(case_number=two, agent_id="a1", service="sales"))
    await _ok(t, c.TransferCase(case_number=two, agent_id="a1", to_service="billing"))

    # 3: pending customer, back to open, answered; 4: pending and closed while pending
    for subject, close in (("Need the serial", False), ("Where is my parcel", True)):
        held = await t.held_case("a1", subject=subject)
        number = held["case_number"]
        await _ok(t, cb.SetCaseStatus(case_number=number, agent_id="a1", status="Pending customer"))
        if close:
            await _ok(t, c.CloseCase(case_number=number, agent_id="a1", disposition="Resolved"))
            continue
        await _ok(t, cb.SetCaseStatus(case_number=number, agent_id="a1", status="open"))
        await _ok(t, c.ReplyToCase(case_number=number, agent_id="a1", text="Here it is."))

    # 5: opened and left waiting
    await t.file(t.mail(subject="Nobody answers"))


async def test_a_wiped_read_model_rebuilt_from_threading_gives_the_live_service_figures(
    threading: Threading, make_settings: Callable[..., Any]
) -> None:
    t = threading
    settings: ReportingSettings = make_settings(
        ReportingSettings,
        journal_retention_days=3650.0,
        first_response_targets={"support": 3600.0},
        default_first_response_seconds=None,
        sla_poll_seconds=3600.0,
    )
    agent_state = build_agent_state(make_settings(AgentStateSettings))
    reporting = build_reporting(settings)
    async with agent_state.app:
        async with reporting.app:
            await _work_a_few_cases(t)
            published = [e for e in await t.drain("events") if e["_name"] in FOLDED]
            journal = ReportStore(reporting.db).journal

            async def all_folded() -> bool:  # the case events (routing's are folded too)
                folded = await journal.count_documents({"name": {"$regex": "^case[.]"}})
                return folded == len(published)

            await eventually(all_folded, 120)
            live = await _report(reporting, settings)
        assert live["support"]["opened"] == 5 and live["support"]["reopened"] == 1
        assert live["billing"]["transfers_in"] == 1 and live["sales"]["transfers_in"] == 1

        reader = Runtime("reporting", settings)  # not started: its database only
        await reader.mongo.drop_database(settings.database_name("reporting"))
        async with other_owners(make_settings, "agent_state", "threading"):
            folded, told = await rebuild_from_services(settings)
        # nothing journalled is left; threading told every case event it had published
        assert (folded, told) == (0, len(published))

    rebuilt = await _report(reader, settings)
    for service, row in live.items():
        again = rebuilt[service]
        for name in SECONDS:
            # an email's event is told at the moment the email was stored; the live one was
            # stamped when the case was written after it: milliseconds apart, seconds on a
            # loaded machine
            if row[name] is None:
                assert again[name] is None, (service, name)
            else:
                assert again[name] == pytest.approx(row[name], abs=10.0), (service, name)
        exact = {k: v for k, v in row.items() if k not in SECONDS}
        assert {k: again[k] for k in exact} == exact, service
    await reader.mongo.close()

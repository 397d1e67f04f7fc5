"""The supervisors' reports against a real reporting service, a real gateway, real RabbitMQ
and a real MongoDB-protocol server: a scripted day checked figure by figure (script.py)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from testkit import eventually

from switchboard.contracts import ConsumerQueue, Message
from switchboard.contracts.cases import CaseCreated, CaseEmailAttached
from switchboard.contracts.reports import (
    AgentReportRequested,
    CaseFirstResponseOverdue,
    ServicePeriod,
    ServiceReportRequested,
)
from switchboard.gateway.metrics import FORWARDED
from switchboard.reporting.app import ReportingSettings, build, journal_keeper, rebuild
from switchboard.runtime.service import Runtime

from .conftest import handlers_of, login
from .script import (
    ALICE,
    BILLING_DAY,
    BOB,
    CAMPAIGN,
    DAY,
    SUPPORT_BACKLOG_AT_END,
    SUPPORT_DAY,
    SUPPORT_HOURS,
    TARGETS,
    scripted_day,
)

DAY_QUERY = {"from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"}
OVERDUE_EVENTS = ConsumerQueue("test.reporting.overdue", (CaseFirstResponseOverdue.NAME,))


def _subset(row: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in expected}


async def _day(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    answer = await http.get(
        "/supervisor/reports/services",
        params={**DAY_QUERY, "service": ["support", "billing"], "granularity": "day"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    return {row["service"]: row for row in answer.json()["rows"]}


async def _all_folded(runtime: Runtime, settings: ReportingSettings, count: int) -> None:
    journal = handlers_of(runtime, settings).store.journal

    async def done() -> bool:
        return await journal.count_documents({}) == count

    await eventually(done, 240)


def _answers_after_a_pause(events: list[Message]) -> list[Message]:
    """The answers of the cases that were pending before (cases 5 and 7)."""
    return [
        e
        for e in events
        if isinstance(e, CaseEmailAttached)
        and e.direction == "outbound"
        and e.case_number in (5, 7)
    ]


async def _publish_day(
    publisher: Runtime,
    service: Runtime,
    settings: ReportingSettings,
    events: list[Message],
    times: int = 1,
) -> None:
    """Publish the day (each message ``times``: a repeat must count once). The answers that
    follow a pending interval go once the rest is folded: live, minutes separate a status
    change and the answer after it, while a burst on separate queues may fold them in either
    order (a rebuild folds in time order)."""
    later = _answers_after_a_pause(events)
    first = [e for e in events if e not in later]
    for wave in (first, later):
        for event in wave:
            for _ in range(times):
                await publisher.bus.publish(event)
        await _all_folded(service, settings, len(first) if wave is first else len(events))


async def test_a_scripted_day_gives_the_hand_computed_figures_each_event_counted_once(
    reporting_settings: Callable[..., ReportingSettings],
    publisher: Runtime,
    gateway: httpx.AsyncClient,
) -> None:
    settings = reporting_settings(
        first_response_targets=TARGETS,
        default_first_response_seconds=None,
        sla_poll_seconds=3600.0,  # fired below, once every event is folded
    )
    overdue: list[CaseFirstResponseOverdue] = []

    async def heard(event: CaseFirstResponseOverdue) -> None:
        overdue.append(event)

    listener = Runtime("listener", settings)
    listener.bus.consume(OVERDUE_EVENTS, CaseFirstResponseOverdue, heard)
    service = build(settings)
    events = scripted_day()
    boss = await login(gateway, "boss")
    async with listener.app, service.app:
        await _publish_day(publisher, service, settings, events, times=2)
        handlers = handlers_of(service, settings)

        # The timers of the rounds still unanswered are due (14:00): they mark cases 3 and 4.
        await handlers.fire_sla_timers()
        await eventually(lambda: len(overdue) == 2, 30)
        assert sorted((e.case_number, e.round, e.service) for e in overdue) == [
            (3, 2, "support"),
            (4, 1, "billing"),
        ]
        assert {e.due_at for e in overdue} == {DAY.replace(hour=14)}

        day = await _day(gateway, boss)
        support = _subset(day["support"], SUPPORT_DAY)
        assert support.pop("service_level") == pytest.approx(SUPPORT_DAY["service_level"])
        assert support == {k: v for k, v in SUPPORT_DAY.items() if k != "service_level"}
        assert _subset(day["billing"], BILLING_DAY) == BILLING_DAY

        hours = await gateway.get(
            "/supervisor/reports/services",
            params={**DAY_QUERY, "service": "support", "granularity": "hour"},
            headers=boss,
        )
        assert hours.status_code == 200, hours.text
        by_hour = {int(r["start"][11:13]): r for r in hours.json()["rows"]}
        assert len(by_hour) == 24
        for hour, (opened, closed, e_in, e_out, backlog, out) in SUPPORT_HOURS.items():
            row = by_hour[hour]
            assert (
                row["opened"],
                row["closed"],
                row["emails_in"],
                row["emails_out"],
                row["backlog_at_end"],
                row["transfers_out"],
            ) == (opened, closed, e_in, e_out, backlog, out), hour
        assert by_hour[8]["backlog_at_end"] == 0
        assert by_hour[23]["backlog_at_end"] == SUPPORT_BACKLOG_AT_END

        agents = await gateway.get(
            "/supervisor/reports/agents",
            params={**DAY_QUERY, "agent": ["alice", "bob"]},
            headers=boss,
        )
        assert agents.status_code == 200, agents.text
        rows = {r["agent_id"]: r for r in agents.json()["rows"]}
        assert _subset(rows["alice"], ALICE) == ALICE
        bob = _subset(rows["bob"], BOB)
        assert bob.pop("occupancy") == pytest.approx(BOB["occupancy"])
        assert bob == {k: v for k, v in BOB.items() if k != "occupancy"}

        campaigns = await gateway.get("/supervisor/reports/campaigns", headers=boss)
        assert campaigns.status_code == 200, campaigns.text
        [camp] = campaigns.json()["rows"]
        assert camp.pop("completion") == pytest.approx(CAMPAIGN["completion"])
        assert camp == {k: v for k, v in CAMPAIGN.items() if k != "completion"}

        # Folding every journalled event a second time changes nothing (natural keys) ...
        await handlers.rebuild(clear=False)
        again = await _day(gateway, boss)
        for name in ("support", "billing"):
            assert {
                k: (v, again[name][k]) for k, v in day[name].items() if again[name][k] != v
            } == {}
        # ... and a rebuild from the journal (the command's work) gives the same figures again.
        assert await rebuild(settings) == len(events)
        await handlers.fire_sla_timers()
        assert await _day(gateway, boss) == day


async def test_an_open_case_past_its_target_is_marked_published_and_counted(
    reporting_settings: Callable[..., ReportingSettings],
    publisher: Runtime,
    gateway: httpx.AsyncClient,
) -> None:
    # 10 s: case 8's answer (1 s after its opening) is folded well before, even on a loaded
    # machine, while case 7 stays unanswered past it.
    settings = reporting_settings(first_response_targets={"support": 10.0}, sla_poll_seconds=0.2)
    overdue: list[CaseFirstResponseOverdue] = []

    async def heard(event: CaseFirstResponseOverdue) -> None:
        overdue.append(event)

    listener = Runtime("listener", settings)
    listener.bus.consume(OVERDUE_EVENTS, CaseFirstResponseOverdue, heard)
    service = build(settings)
    boss = await login(gateway, "boss")
    now = datetime.now(UTC)
    async with listener.app, service.app:
        store = handlers_of(service, settings).store
        await publisher.bus.publish(CaseCreated(case_number=7, service="support", occurred_at=now))
        await publisher.bus.publish(CaseCreated(case_number=8, service="support", occurred_at=now))
        await eventually(lambda: store.case(8), 30)
        await publisher.bus.publish(
            CaseEmailAttached(
                case_number=8,
                email_id="out-8",
                direction="outbound",
                service="support",
                occurred_at=now + timedelta(seconds=1),
            )
        )

        async def answered() -> bool:
            case = await store.case(8)
            return case is not None and case.responded_at is not None

        await eventually(answered, 30)
        # Both timers were due at the same moment: once 7's is heard, 8's was looked at too.
        await eventually(lambda: overdue, 30)
        assert [(e.case_number, e.target_seconds) for e in overdue] == [(7, 10.0)]
        case = await store.case(7)
        assert case is not None and case.overdue
        hour = now.replace(minute=0, second=0, microsecond=0)
        answer = await gateway.get(
            "/supervisor/reports/services",
            params={
                "from": hour.isoformat(),
                "to": (hour + timedelta(hours=2)).isoformat(),
                "service": "support",
                "granularity": "hour",
            },
            headers=boss,
        )
        assert answer.status_code == 200, answer.text
        rows = answer.json()["rows"]
        assert sum(r["overdue"] for r in rows) == 1
        assert sum(r["answered_within_target"] for r in rows) == 1
        assert rows[-1]["backlog_at_end"] == 2


async def test_journal_retention_drops_old_entries_and_a_rebuild_gives_the_same_figures(
    reporting_settings: Callable[..., ReportingSettings],
) -> None:
    settings = reporting_settings(
        first_response_targets=TARGETS, default_first_response_seconds=None
    )
    runtime = Runtime("reporting", settings)
    handlers = handlers_of(runtime, settings)
    store = handlers.store
    await store.ensure_indexes()
    events = scripted_day()
    for event in events:
        await store.remember(event)
    assert await handlers.rebuild() == len(events)  # the day, folded in time order
    services = ServiceReportRequested(
        services=["support", "billing"], start=DAY, end=DAY + timedelta(days=1)
    )
    agents = AgentReportRequested(
        agent_ids=["alice", "bob"], start=DAY, end=DAY + timedelta(days=1)
    )
    day = await handlers.on_service_report(services)
    people = await handlers.on_agent_report(agents)
    support = day["rows"][0]
    assert (support["first_response_p50_seconds"], support["answered_within_target"]) == (
        SUPPORT_DAY["first_response_p50_seconds"],
        SUPPORT_DAY["answered_within_target"],
    )

    # Retention keeps one day: at noon the day after, what happened before noon is folded
    # into the checkpoint and dropped from the journal; a rebuild starts from the checkpoint
    # (case 3 reopens at 13:00, case 7 is paused at 19:30, on facts folded there).
    one_day = settings.model_copy(update={"journal_retention_days": 1.0})
    keeper = journal_keeper(store, one_day)
    noon = DAY + timedelta(days=1, hours=12)
    dropped = await keeper.trim(noon)
    left = await store.journal.count_documents({})
    assert dropped > 0 and left > 0 and dropped + left == len(events)
    assert await keeper.trim(noon) == 0  # a second run finds nothing more to drop
    assert await handlers.rebuild() == left
    assert await handlers.on_service_report(services) == day
    assert await handlers.on_agent_report(agents) == people
    # ... and the next day, everything is in the checkpoint: still the same figures.
    assert await keeper.trim(noon + timedelta(days=2)) == left
    assert await handlers.rebuild() == 0
    assert await handlers.on_service_report(services) == day
    await runtime.mongo.close()


def _forwarded(name: str) -> float:
    return (
        FORWARDED.labels(name, "ok")._value.get() + FORWARDED.labels(name, "refused")._value.get()
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-03-02", "to": "yesterday"}, "to"),
        ({"from": "not a date", "to": "2026-03-03T00:00:00Z"}, "from"),
        ({"from": "2026-03-02T00:00:00", "to": "2026-03-03T00:00:00Z"}, "from"),
        ({"from": "2026-03-02T00:30:00Z", "to": "2026-03-03T00:00:00Z"}, "from"),
        ({"from": "2026-03-03T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, "to"),
        ({**DAY_QUERY, "to": "2026-04-03T01:00:00Z", "granularity": "hour"}, "to"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"}, "to"),
        ({**DAY_QUERY, "granularity": "week"}, "granularity"),
        ({**DAY_QUERY, "format": "xml"}, "format"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field_and_asks_nothing(
    gateway: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    boss = await login(gateway, "boss")
    before = _forwarded("report.services")
    answer = await gateway.get("/supervisor/reports/services", params=params, headers=boss)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["field"] == field and problem["code"] == "invalid" and problem["detail"]
    assert _forwarded("report.services") == before


async def test_an_unknown_service_is_a_422_naming_the_service(
    reporting_settings: Callable[..., ReportingSettings], gateway: httpx.AsyncClient
) -> None:
    service = build(reporting_settings(first_response_targets=TARGETS))
    boss = await login(gateway, "boss")
    async with service.app:
        answer = await gateway.get(
            "/supervisor/reports/services", params={**DAY_QUERY, "service": "nope"}, headers=boss
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "service"
        known = await gateway.get(
            "/supervisor/reports/services", params={**DAY_QUERY, "service": "support"}, headers=boss
        )
        assert known.status_code == 200, known.text


async def test_agents_may_not_read_reports(gateway: httpx.AsyncClient) -> None:
    agent = await login(gateway, "agent-1")
    for path, params in (
        ("/supervisor/reports/services", DAY_QUERY),
        ("/supervisor/reports/agents", DAY_QUERY),
        ("/supervisor/reports/campaigns", {}),
    ):
        answer = await gateway.get(path, params=params, headers=agent)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["code"] == "forbidden"


async def test_csv_downloads_have_one_header_and_one_line_per_row(
    reporting_settings: Callable[..., ReportingSettings],
    publisher: Runtime,
    gateway: httpx.AsyncClient,
) -> None:
    settings = reporting_settings(first_response_targets=TARGETS, sla_poll_seconds=3600.0)
    service = build(settings)
    events = scripted_day()
    boss = await login(gateway, "boss")
    async with service.app:
        await _publish_day(publisher, service, settings, events)
        answer = await gateway.get(
            "/supervisor/reports/services",
            params={**DAY_QUERY, "service": ["support", "billing"], "format": "csv"},
            headers=boss,
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/csv")
        assert answer.headers["content-disposition"] == (
            'attachment; filename="services-report.csv"'
        )
        lines = list(csv.reader(io.StringIO(answer.text)))
        assert lines[0] == list(ServicePeriod.model_fields)
        assert [line[0] for line in lines[1:]] == ["support", "billing"]
        support = dict(zip(lines[0], lines[1], strict=True))
        assert support["opened"] == "5" and support["first_response_p50_seconds"] == "2400.0"
        assert float(support["service_level"]) == pytest.approx(2 / 3)

        agents = await gateway.get(
            "/supervisor/reports/agents",
            params={**DAY_QUERY, "agent": ["alice", "bob"], "format": "csv"},
            headers=boss,
        )
        rows = list(csv.DictReader(io.StringIO(agents.text)))
        assert [r["agent_id"] for r in rows] == ["alice", "bob"]
        assert rows[0]["not_ready_seconds.Lunch"] == "3600.0"
        assert rows[1]["not_ready_seconds.Lunch"] == ""

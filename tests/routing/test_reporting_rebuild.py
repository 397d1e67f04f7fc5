"""Reporting rebuilt from routing's stored interactions (issue 20: the read model "rebuildable
from the services' data by a command"): work offered, missed, accepted, transferred and ended
through a real routing service is folded live by a real reporting service; the reporting
database is then wiped, journal and all, and ``rebuild --from-services`` asks the owners over
the bus. RONA counts, handled interactions and handle times come back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from owners import other_owners
from testkit import eventually

from switchboard.contracts.queues.reporting import EVENTS
from switchboard.contracts.reports import AgentReportRequested, ServiceReportRequested
from switchboard.contracts.routing import (
    InteractionEnded,
    OfferAnswer,
    RouteRequested,
    TransferRequested,
)
from switchboard.reporting.app import ReportingSettings, policy_of, rebuild_from_services
from switchboard.reporting.app import build as build_reporting
from switchboard.reporting.folding import Folder
from switchboard.reporting.handlers import ReportingHandlers
from switchboard.reporting.store import ReportStore
from switchboard.runtime.service import Runtime

ROUTING_FOLDED = {e.NAME for e in EVENTS} & {
    "offer.made",
    "offer.timed_out",
    "interaction.assigned",
    "interaction.ended",
    "interaction.transferred",
}
AGENTS = ["sleepy", "a1", "b1"]


async def _figures(runtime: Runtime, settings: ReportingSettings) -> dict[str, dict[str, Any]]:
    """Today's figures per agent and per service, as the gateway would be answered."""
    store = ReportStore(runtime.db)
    handlers = ReportingHandlers(store, runtime.bus, Folder(store, policy_of(settings)))
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start, end = hour - timedelta(hours=2), hour + timedelta(hours=2)
    agents = await handlers.on_agent_report(
        AgentReportRequested(agent_ids=AGENTS, start=start, end=end)
    )
    services = await handlers.on_service_report(
        ServiceReportRequested(services=["support", "sales"], start=start, end=end)
    )
    found = {
        row["agent_id"]: {k: row[k] for k in ("handled", "rona", "average_handle_seconds")}
        for row in agents["rows"]
    }
    found.update({row["service"]: {"rona": row["rona"]} for row in services["rows"]})
    return found


async def _accept(harness: Any, interaction_id: str, agent_id: str) -> None:
    [offer] = await harness.observer.wait_for(
        "offer.made", interaction_id=interaction_id, agent_id=agent_id, seconds=15
    )
    answer = OfferAnswer(offer_id=offer["offer_id"], agent_id=agent_id, accept=True)
    outcome = await harness.request(answer)
    assert outcome.ok, outcome.error


async def _work_a_day(harness: Any) -> int:
    """The interactions of the scenario; the number of ends published (as threading would)."""
    await harness.configure(
        name="support", channel="email", team="support", offer_timeout_seconds=0.6
    )
    await harness.configure(name="sales", channel="email", team="sales")
    # 1: offered to sleepy, not answered in time (a RONA); a1 takes it and ends it
    await harness.agent("sleepy")
    await harness.publish(
        RouteRequested(interaction_id="case-1", channel="email", service="support")
    )
    await harness.observer.wait_for("offer.timed_out", interaction_id="case-1", seconds=15)
    await harness.set_state("sleepy", "logged_out", via_bus=False)
    # from now on every offer is answered: time enough for a loaded machine
    await harness.configure(name="support", channel="email", team="support")
    await harness.agent("a1")
    await _accept(harness, "case-1", "a1")
    await harness.publish(InteractionEnded(interaction_id="case-1", agent_id="a1", channel="email"))

    # 2: a1 takes it and transfers it to sales, where b1 takes it and ends it
    await harness.agent("b1", teams=("sales",))
    await harness.publish(
        RouteRequested(interaction_id="case-2", channel="email", service="support")
    )
    await _accept(harness, "case-2", "a1")
    moved = await harness.request(
        TransferRequested(interaction_id="case-2", agent_id="a1", to_service="sales")
    )
    assert moved.ok, moved.error
    await _accept(harness, "case-2", "b1")
    await harness.publish(InteractionEnded(interaction_id="case-2", agent_id="b1", channel="email"))

    # 1 again (the customer wrote back): a new round of an ended interaction, left waiting
    await harness.observer.wait_for("interaction.assigned", interaction_id="case-2", agent_id="b1")
    await harness.set_state("a1", "logged_out", via_bus=False)
    await harness.set_state("b1", "logged_out", via_bus=False)

    async def ends_heard() -> bool:
        ended = await harness.router.store.get_archived("case-2")
        return ended is not None and await harness.router.store.get_archived("case-1") is not None

    await eventually(ends_heard, 30)
    await harness.publish(
        RouteRequested(interaction_id="case-1", channel="email", service="support")
    )
    await harness.observer.wait_for("interaction.queued", interaction_id="case-1", count=2)
    return 2


async def test_a_wiped_read_model_rebuilt_from_routing_gives_the_live_rona_and_handle_times(
    harness: Any, make_settings: Callable[..., Any]
) -> None:
    settings: ReportingSettings = make_settings(
        ReportingSettings,
        journal_retention_days=3650.0,
        first_response_targets={"support": 3600.0, "sales": 3600.0},  # known without cases
        default_first_response_seconds=None,
        sla_poll_seconds=3600.0,
    )
    reporting = build_reporting(settings)
    async with reporting.app:
        await harness.start()
        ends = await _work_a_day(harness)
        published = [e for e in harness.observer.events if e["_name"] in ROUTING_FOLDED]
        journal = ReportStore(reporting.db).journal

        async def all_folded() -> bool:
            names = {"name": {"$in": sorted(ROUTING_FOLDED)}}
            return await journal.count_documents(names) == len(published) + ends

        await eventually(all_folded, 120)
        live = await _figures(reporting, settings)
    # the live figures are the hand-computed ones
    assert {a: (live[a]["handled"], live[a]["rona"]) for a in AGENTS} == {
        "sleepy": (0, 1),
        "a1": (2, 0),
        "b1": (1, 0),
    }
    assert live["support"]["rona"] == 1 and live["sales"]["rona"] == 0

    reader = Runtime("reporting", settings)  # not started: its database only
    await reader.mongo.drop_database(settings.database_name("reporting"))
    async with other_owners(make_settings, "routing"):
        folded, told = await rebuild_from_services(settings)
    # nothing journalled is left; routing told the missed offer (made, timed out), three
    # assignments, one transfer and two ends
    assert (folded, told) == (0, 8)

    rebuilt = await _figures(reader, settings)
    assert sorted(rebuilt) == sorted(live)
    for subject, row in live.items():
        again = rebuilt[subject]
        seconds = row.get("average_handle_seconds")
        if seconds is not None:
            # told at the moment routing wrote each change; the live events were stamped when
            # published (the end by its sender): milliseconds apart, seconds on a loaded machine
            assert again["average_handle_seconds"] == pytest.approx(seconds, abs=5.0), subject
        exact = {k: v for k, v in row.items() if k != "average_handle_seconds"}
        assert {k: again[k] for k in exact} == exact, subject
    await reader.mongo.close()

"""Reporting rebuilt from the dialer's stored records (issue 20: the read model "rebuildable
from the services' data by a command"): records called, dispositioned, completed and skipped
through a real dialer are folded live by a real reporting service; the reporting database is
then wiped, journal and all, and ``rebuild --from-services`` asks the owners over the bus. The
campaign figures come back."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from owners import other_owners

from switchboard.contracts.campaigns import (
    CallNumber,
    CompleteRecord,
    SetCallDisposition,
    SkipRecord,
)
from switchboard.contracts.reports import CampaignReportRequested
from switchboard.reporting.app import ReportingSettings, policy_of, rebuild_from_services
from switchboard.reporting.app import build as build_reporting
from switchboard.reporting.folding import Folder
from switchboard.reporting.handlers import ReportingHandlers
from switchboard.reporting.store import ReportStore
from switchboard.runtime.service import Runtime

_conftest = importlib.util.spec_from_file_location(
    "dialer_conftest", Path(__file__).parent / "conftest.py"
)
assert _conftest and _conftest.loader
helpers = importlib.util.module_from_spec(_conftest)
_conftest.loader.exec_module(helpers)
eventually, ok, make_campaign, find_record, record_doc = (
    helpers.eventually,
    helpers.ok,
    helpers.make_campaign,
    helpers.find_record,
    helpers.record_doc,
)

ADA = {"external_id": "c-1", "name": "Ada Lovelace", "phones": [{"number": "+12125550123"}]}
ALAN = {"external_id": "c-2", "name": "Alan Turing", "phones": [{"number": "+4930901820"}]}


async def _campaigns(runtime: Runtime, settings: ReportingSettings) -> dict[str, dict[str, Any]]:
    store = ReportStore(runtime.db)
    handlers = ReportingHandlers(store, runtime.bus, Folder(store, policy_of(settings)))
    answer = await handlers.on_campaign_report(CampaignReportRequested())
    return {row["campaign_id"]: row for row in answer["rows"]}


async def _held(dialer: Runtime, campaign_id: str) -> str:
    async def holding() -> str | None:
        doc = await find_record(dialer.db, state="held", campaign_id=campaign_id)
        return None if doc is None else str(doc["_id"])

    found: str = await eventually(holding)
    return found


async def _work_two_campaigns(dialer: Runtime) -> None:
    # spring: Ada is called, answers, and the call ends in a sale
    await make_campaign(dialer, [ADA])
    ada = await _held(dialer, "spring")
    await ok(dialer, CallNumber(agent_id="agent-1", record_id=ada, number="+12125550123"))

    async def call_over() -> bool:
        doc = await record_doc(dialer.db, ada)
        return bool(doc and doc["attempts"] and doc["attempts"][-1]["status"] == "ended")

    await eventually(call_over)
    await ok(dialer, SetCallDisposition(agent_id="agent-1", record_id=ada, disposition="Success"))
    await ok(dialer, CompleteRecord(agent_id="agent-1", record_id=ada))

    # autumn: Alan is skipped twice, which closes him (two skips allowed)
    policy = {"delay_seconds": 1, "max_skips": 2}
    await make_campaign(dialer, [ALAN], campaign_id="autumn", skip_policy=policy)
    alan = await _held(dialer, "autumn")
    first = await ok(dialer, SkipRecord(agent_id="agent-1", record_id=alan))
    assert first["state"] == "pending"
    alan = await _held(dialer, "autumn")
    last = await ok(dialer, SkipRecord(agent_id="agent-1", record_id=alan))
    assert last["state"] == "closed"


async def test_a_wiped_read_model_rebuilt_from_the_dialer_gives_the_live_campaign_figures(
    dialer: Runtime, routing: Any, make_settings: Callable[..., Any]
) -> None:
    settings: ReportingSettings = make_settings(
        ReportingSettings, journal_retention_days=3650.0, sla_poll_seconds=3600.0
    )
    reporting = build_reporting(settings)
    hand = {
        "spring": {"attempts": 1, "contacts": 1, "skips": 0, "completed": 1},
        "autumn": {"attempts": 0, "contacts": 0, "skips": 2, "completed": 0},
    }
    async with reporting.app:
        await _work_two_campaigns(dialer)

        async def folded_live() -> dict[str, dict[str, Any]] | None:
            rows = await _campaigns(reporting, settings)
            seen = {c: {k: rows[c][k] for k in hand[c]} for c in rows if c in hand}
            closed = [rows[c]["records_by_status"].get("closed") for c in hand if c in rows]
            return rows if seen == hand and closed == [1, 1] else None

        live = await eventually(folded_live, 60)
    assert live["spring"]["dispositions"] == {"Success": 1}

    reader = Runtime("reporting", settings)  # not started: its database only
    await reader.mongo.drop_database(settings.database_name("reporting"))
    async with other_owners(make_settings, "dialer"):
        folded, told = await rebuild_from_services(settings)
    # nothing journalled is left; the dialer told Ada's call (dialled, answered) and every
    # record event it journalled
    journalled = await dialer.db["journal"].count_documents({})
    assert (folded, told) == (0, 2 + journalled)

    rebuilt = await _campaigns(reader, settings)
    assert rebuilt == live
    await reader.mongo.close()

"""The supervisors' reports: JSON or a CSV download, answered by the reporting read model.

The period is checked here before anything is asked (whole UTC hours, with a time zone, end
after start, not longer than allowed): bad input is a 422 naming the field and computes
nothing. An unknown service is the reporting service's refusal, also a 422.
"""

# No ``from __future__ import annotations``: FastAPI resolves the endpoint annotations.

import csv
import io
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from switchboard.contracts.reports import (
    MAX_HOURS_BY_DAY,
    MAX_HOURS_BY_HOUR,
    AgentFigures,
    AgentReport,
    AgentReportRequested,
    CampaignFigures,
    CampaignReport,
    CampaignReportRequested,
    Granularity,
    ServicePeriod,
    ServiceReport,
    ServiceReportRequested,
)
from switchboard.gateway.auth import Principal
from switchboard.gateway.errors import ApiError
from switchboard.gateway.forward import Forwarder, build_command
from switchboard.gateway.routes import ERROR_RESPONSES

Format = Literal["json", "csv"]
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "the report"}
}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def check_period(start: datetime, end: datetime, longest_hours: int) -> None:
    for field, value in (("from", start), ("to", end)):
        if value.tzinfo is None:
            raise ApiError(422, "invalid", f"{field} needs a time zone (e.g. Z)", field=field)
        if value.minute or value.second or value.microsecond:
            raise ApiError(422, "invalid", f"{field} must be a whole hour", field=field)
    if end <= start:
        raise ApiError(422, "invalid", "to must be after from", field="to")
    if end - start > timedelta(hours=longest_hours):
        days = longest_hours // 24
        raise ApiError(422, "invalid", f"the period may be at most {days} days", field="to")


def _cell(value: Any) -> Any:
    """A value as a spreadsheet will not run it (names come from people: no formulas)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return "" if value is None else value


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """One CSV line: a mapping column (time by Not Ready reason ...) becomes ``name.key`` cells."""
    flat: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, dict):
            for key, inner in value.items():
                flat[f"{name}.{key}"] = inner
        else:
            flat[name] = value
    return flat


def to_csv(rows: Sequence[dict[str, Any]], fixed: Sequence[str], filename: str) -> Response:
    flat = [flatten(row) for row in rows]
    extra = sorted({name for row in flat for name in row} - set(fixed))
    columns = [*fixed, *extra]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in flat:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _scalar_fields(model: type[BaseModel]) -> list[str]:
    """The row model's columns, mapping fields left to :func:`flatten`."""
    return [
        name
        for name, info in model.model_fields.items()
        if not (info.annotation is not None and "dict" in str(info.annotation))
    ]


def report_router(forwarder: Forwarder, supervisor: Callable[..., Any]) -> APIRouter:
    router = APIRouter(tags=["reports"], responses={**ERROR_RESPONSES, **CSV_RESPONSE})

    async def ask(command: Any) -> dict[str, Any]:
        return await forwarder.send(command, owner="reporting")

    @router.get(
        "/supervisor/reports/services",
        response_model=ServiceReport,
        summary="Per service and hour or day: cases, emails, response times, service level",
        description="Supervisors only. `from` and `to` are whole UTC hours (ISO 8601 with a "
        "zone); at most 31 days by hour, 366 by day. `format=csv` downloads the rows.",
    )
    async def services_report(
        _: Annotated[Principal, Depends(supervisor)],
        start: Annotated[datetime, Query(alias="from")],
        end: Annotated[datetime, Query(alias="to")],
        service: Annotated[list[str] | None, Query(max_length=20)] = None,
        granularity: Granularity = "day",
        format: Format = "json",
    ) -> Any:
        longest = MAX_HOURS_BY_HOUR if granularity == "hour" else MAX_HOURS_BY_DAY
        check_period(start, end, longest)
        command = build_command(
            ServiceReportRequested,
            services=service or [],
            start=start,
            end=end,
            granularity=granularity,
        )
        result = await ask(command)
        if format == "csv":
            return to_csv(result["rows"], _scalar_fields(ServicePeriod), "services-report.csv")
        return result

    @router.get(
        "/supervisor/reports/agents",
        response_model=AgentReport,
        summary="Per agent: handled, replies, handle time, time in each state, occupancy",
        description="Supervisors only. `from` and `to` are whole UTC hours; at most 366 days.",
    )
    async def agents_report(
        _: Annotated[Principal, Depends(supervisor)],
        start: Annotated[datetime, Query(alias="from")],
        end: Annotated[datetime, Query(alias="to")],
        agent: Annotated[list[str] | None, Query(max_length=200)] = None,
        format: Format = "json",
    ) -> Any:
        check_period(start, end, MAX_HOURS_BY_DAY)
        command = build_command(AgentReportRequested, agent_ids=agent or [], start=start, end=end)
        result = await ask(command)
        if format == "csv":
            return to_csv(result["rows"], _scalar_fields(AgentFigures), "agents-report.csv")
        return result

    @router.get(
        "/supervisor/reports/campaigns",
        response_model=CampaignReport,
        summary="Per campaign: records by status, attempts, contacts, skips, completion",
        description="Supervisors only.",
    )
    async def campaigns_report(
        _: Annotated[Principal, Depends(supervisor)],
        campaign: Annotated[list[str] | None, Query(max_length=200)] = None,
        format: Format = "json",
    ) -> Any:
        command = build_command(CampaignReportRequested, campaign_ids=campaign or [])
        result = await ask(command)
        if format == "csv":
            return to_csv(result["rows"], _scalar_fields(CampaignFigures), "campaigns-report.csv")
        return result

    return router

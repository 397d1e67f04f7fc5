"""Work statuses of a case (per service: open, pending customer, ...) and the service-level
clock they pause: decisions without I/O.

A case records its paused intervals in ``sla_pauses`` (``{"from", "until"}``, ``until`` None
while paused); every change is published as ``case.status_changed`` for the reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from switchboard.contracts import Message
from switchboard.contracts.cases import CaseStatusChanged
from switchboard.threading.config import ServiceConfig

Document = dict[str, Any]


@dataclass(frozen=True)
class StatusChange:
    from_status: str
    to_status: str
    pending: bool
    was_pending: bool


class StatusProblem(ValueError):
    """The status asked for cannot be set (the message says why)."""


def current(case: Document, cfg: ServiceConfig) -> str:
    if case.get("status") == "closed":
        return "closed"
    return str(case.get("work_status") or (cfg.statuses[0].name if cfg.statuses else "open"))


def is_pending(case: Document, cfg: ServiceConfig) -> bool:
    found = cfg.status(current(case, cfg))
    return bool(found and found.pending)


def change_status(
    case: Document, to: str, cfg: ServiceConfig, now: datetime
) -> StatusChange | None:
    """Set the case's work status (in place); None when it already has it."""
    if case.get("status") == "closed":
        raise StatusProblem(f"case {case['_id']} is closed: a new mail or a reply reopens it")
    target = cfg.status(to)
    if target is None:
        names = ", ".join(repr(s.name) for s in cfg.statuses)
        raise StatusProblem(f"service {case.get('service')} has no status {to!r} (it has {names})")
    before = current(case, cfg)
    if before.casefold() == target.name.casefold():
        return None
    was_pending = is_pending(case, cfg)
    case["work_status"] = target.name
    pauses: list[Document] = case.setdefault("sla_pauses", [])
    if target.pending and not was_pending:
        pauses.append({"from": now, "until": None})
    if was_pending and not target.pending and pauses and pauses[-1].get("until") is None:
        pauses[-1]["until"] = now
    return StatusChange(before, target.name, target.pending, was_pending)


def end_pause(case: Document, now: datetime, ended_by: str) -> None:
    """Close the case's open pause (if any): a closed case's clock has stopped for good.
    ``ended_by`` ("closed", "reopened") tells a rebuild this end published no status change."""
    pauses: list[Document] = case.get("sla_pauses") or []
    if pauses and pauses[-1].get("until") is None:
        pauses[-1]["until"] = now
        pauses[-1]["ended_by"] = ended_by


def on_closed(case: Document, now: datetime) -> None:
    """A pending case that closes ends its pause at the closing."""
    end_pause(case, now, "closed")


def on_reopened(case: Document, cfg: ServiceConfig, now: datetime) -> None:
    """A reopened case is worked again: back in the first (working) status, no pause open
    (one left open by a closing before pauses were ended there is closed now)."""
    end_pause(case, now, "reopened")
    if cfg.statuses:
        case["work_status"] = cfg.statuses[0].name


def customer_wrote(case: Document, cfg: ServiceConfig, now: datetime) -> StatusChange | None:
    """Mail from the customer ends a pending status: the case is back in the first (working)
    status and the clock runs again."""
    if case.get("status") == "closed" or not is_pending(case, cfg) or not cfg.statuses:
        return None
    return change_status(case, cfg.statuses[0].name, cfg, now)


def status_changed(
    cause: Message, case: Document, change: StatusChange, agent_id: str | None, now: datetime
) -> CaseStatusChanged:
    return CaseStatusChanged.caused_by(
        cause,
        key=f"status:{change.from_status}->{change.to_status}",
        case_number=case["_id"],
        service=case.get("service", ""),
        from_status=change.from_status,
        to_status=change.to_status,
        pending=change.pending,
        was_pending=change.was_pending,
        agent_id=agent_id,
        at=now,
    )


def after_customer_mail(case: Document, cfg: ServiceConfig, cause: Message) -> list[Message]:
    """The hook threading's intake calls when a customer's mail is filed under ``case``."""
    now = datetime.now(UTC)
    change = customer_wrote(case, cfg, now)
    return [status_changed(cause, case, change, None, now)] if change else []

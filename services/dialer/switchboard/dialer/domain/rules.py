"""The rules: which numbers may be called and which is recommended, whether a due record is
routed, waits or closes, what a disposition or a skip leads to, what a campaign must satisfy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from switchboard.contracts.campaigns import CampaignSpec, Disposition
from switchboard.dialer.domain.numbers import normalise_number
from switchboard.dialer.domain.record import Phone, Record
from switchboard.dialer.domain.windows import (
    _within,
    in_window,
    local_minute,
    minutes,
    next_window_open,
    valid_zone,
    zone,
)


class Problem(Exception):
    """A rule says no; ``code`` and ``field`` go into the refusal."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


# -- which numbers may be called, which is recommended -----------------------------------------


@dataclass(frozen=True)
class NumberStatus:
    phone: Phone
    zones: tuple[str, ...]
    blocked: str | None  # why it may never be called now: dnc, bad, attempts
    in_window: bool


def number_statuses(
    record: Record, campaign: CampaignSpec, dnc: set[str], now: datetime
) -> list[NumberStatus]:
    out = []
    for phone in record.phones:
        zones = record.zones_of(phone, campaign)
        blocked: str | None = None
        if phone.number in dnc:
            blocked = "do_not_call"
        elif phone.number in record.bad_numbers:
            blocked = "bad_number"
        elif record.attempts_on(phone.number) >= campaign.max_attempts_per_number:
            blocked = "number_attempts_exhausted"
        out.append(
            NumberStatus(phone, zones, blocked, in_window(now, zones, campaign.calling_hours))
        )
    return out


def recommended_number(
    record: Record, campaign: CampaignSpec, dnc: set[str], now: datetime
) -> str | None:
    """The number to dial now: the first rule (type + local time) that a callable number meets,
    else the first callable number. Bad, DNC and used-up numbers are never recommended."""
    callable_now = [
        s for s in number_statuses(record, campaign, dnc, now) if s.blocked is None and s.in_window
    ]
    if record.attempt_count >= campaign.max_attempts or not callable_now:
        return None
    for rule in campaign.number_rules:
        start, end = minutes(rule.start), minutes(rule.end)
        for status in callable_now:
            if status.phone.type.lower() != rule.number_type.lower():
                continue
            if all(_within(local_minute(now, z), start, end) for z in status.zones):
                return status.phone.number
    return callable_now[0].phone.number


@dataclass(frozen=True)
class Routing:
    """What to do with a due record: route it now, wait until ``at``, or close it."""

    action: Literal["route", "wait", "close"]
    at: datetime | None = None
    reason: str = ""


def due_pending(record: Record, now: datetime) -> bool:
    """Whether a record waits for its turn and its turn has come (a hopper entry is offered
    only while this holds for the record read at claim time)."""
    return record.state == "pending" and record.next_at <= now


def decide_routing(record: Record, campaign: CampaignSpec, dnc: set[str], now: datetime) -> Routing:
    if record.attempt_count >= campaign.max_attempts:
        return Routing("close", reason="attempts_exhausted")
    statuses = number_statuses(record, campaign, dnc, now)
    if not statuses:
        return Routing("close", reason="no_number")
    if all(s.blocked == "do_not_call" for s in statuses):
        return Routing("close", reason="do_not_call")
    usable = [s for s in statuses if s.blocked is None]
    if not usable:
        return Routing("close", reason="no_callable_number")
    if any(s.in_window for s in usable):
        return Routing("route")
    opens = [
        t
        for s in usable
        if (t := next_window_open(now, s.zones, campaign.calling_hours)) is not None
    ]
    if not opens:
        return Routing("wait", at=now + timedelta(days=1), reason="no_common_window")
    return Routing("wait", at=min(opens), reason="outside_calling_hours")


def check_call(
    record: Record, campaign: CampaignSpec, dnc: set[str], number: str, now: datetime
) -> None:
    """Raise :class:`Problem` with a reason the agent can act on when ``number`` may not be
    dialled now."""
    phone = record.phone(number)
    if phone is None:
        raise Problem("unknown_number", f"{number} is not a number of this record", "number")
    if number in dnc:
        raise Problem("do_not_call", f"{number} is on a do-not-call list", "number")
    if number in record.bad_numbers:
        raise Problem("bad_number", f"{number} is marked as a bad number", "number")
    if record.attempt_count >= campaign.max_attempts:
        raise Problem(
            "attempts_exhausted",
            f"this record was called {record.attempt_count} times (campaign maximum)",
        )
    if record.attempts_on(number) >= campaign.max_attempts_per_number:
        raise Problem(
            "number_attempts_exhausted",
            f"{number} was called {record.attempts_on(number)} times (campaign maximum "
            f"{campaign.max_attempts_per_number})",
            "number",
        )
    zones = record.zones_of(phone, campaign)
    hours = campaign.calling_hours
    if not in_window(now, zones, hours):
        local = ", ".join(f"{now.astimezone(zone(z)):%H:%M} in {z}" for z in zones[:3])
        more = f" and {len(zones) - 3} more zones" if len(zones) > 3 else ""
        opens = next_window_open(now, zones, hours)
        when = f"; calling opens at {opens:%Y-%m-%d %H:%M} UTC" if opens else ""
        raise Problem(
            "outside_calling_hours",
            f"{number} may be called only {hours.start}-{hours.end} local time; it is {local}"
            f"{more}{when}",
            "number",
        )


# -- dispositions ------------------------------------------------------------------------------


def find_disposition(campaign: CampaignSpec, name: str) -> Disposition:
    for disposition in campaign.dispositions:
        if disposition.name.lower() == name.lower():
            return disposition
    known = ", ".join(d.name for d in campaign.dispositions)
    raise Problem("unknown_disposition", f"no disposition {name!r} (known: {known})", "disposition")


def first_of_kind(campaign: CampaignSpec, kind: str) -> Disposition | None:
    return next((d for d in campaign.dispositions if d.kind == kind), None)


@dataclass(frozen=True)
class Next:
    """Where a record goes after a disposition."""

    state: Literal["pending", "closed"]
    at: datetime | None = None
    result: str | None = None


def after_disposition(
    record: Record, campaign: CampaignSpec, disposition: Disposition, dnc: set[str], now: datetime
) -> Next:
    """The record's next state for a final disposition (``record`` already carries its
    attempts and bad numbers)."""
    if disposition.kind == "success":
        return Next("closed", result="success")
    if disposition.kind == "final_failure":
        return Next("closed", result="final_failure")
    if disposition.kind == "bad_record":
        return Next("closed", result="bad_record")
    delay = disposition.retry_delay_seconds
    wait = timedelta(seconds=campaign.retry_delay_seconds if delay is None else delay)
    if disposition.kind == "retry":
        decision = decide_routing(record, campaign, dnc, now)
        if decision.action == "close":
            return Next("closed", result=decision.reason)
    return Next("pending", at=now + wait)


def skip_outcome(record: Record, campaign: CampaignSpec, now: datetime) -> Next:
    """After ``record.skips`` skips (this one counted)."""
    if record.skips >= campaign.skip_policy.max_skips:
        return Next("closed", result="max_skips")
    return Next("pending", at=now + timedelta(seconds=campaign.skip_policy.delay_seconds))


def validate_campaign(spec: CampaignSpec) -> CampaignSpec:
    """Refuse a configuration that cannot work; normalise its DNC numbers to E.164."""
    if not valid_zone(spec.default_time_zone):
        raise Problem(
            "unknown_time_zone",
            f"unknown time zone {spec.default_time_zone!r}",
            "campaign.default_time_zone",
        )
    if spec.calling_hours.start == spec.calling_hours.end:
        raise Problem("empty_window", "calling hours start and end alike", "campaign.calling_hours")
    names = [d.name.lower() for d in spec.dispositions]
    if len(set(names)) != len(names):
        raise Problem("duplicate_disposition", "disposition names repeat", "campaign.dispositions")
    if spec.default_disposition.lower() not in names:
        raise Problem(
            "unknown_disposition",
            f"default disposition {spec.default_disposition!r} is not among the dispositions",
            "campaign.default_disposition",
        )
    dnc = []
    for raw in spec.do_not_call:
        try:
            dnc.append(normalise_number(raw, spec.default_region))
        except ValueError as exc:
            raise Problem("bad_number", str(exc), "campaign.do_not_call") from None
    return spec.model_copy(update={"do_not_call": sorted(set(dnc))})

"""The dialer's rules: calling windows, numbers, attempts, dispositions, the record lifecycle.

Plain functions and models, no I/O: every rule takes the instant it decides for (``now``), so the
tests pin instants across DST changes.

Record lifecycle (``Record.state``)::

    pending --(due, in window, attempts left, not DNC)--> ready   (RouteRequested sent)
    ready   --(offer.made)--> offered --(interaction.assigned)--> held (agent Busy)
    held    --(complete: success / final failure / bad record)--> closed
    held    --(complete: retry or reschedule, skip, reschedule)--> pending (due later)
    pending --(attempts used up / every number DNC or bad / skipped too often)--> closed

A call is made while ``held``; it needs a disposition before the record can be completed
(unless Complete names one), skipped, or a further number dialled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_zones
from pydantic import BaseModel, ConfigDict, Field

from switchboard.contracts.campaigns import (
    CallingHours,
    CallStatus,
    CampaignSpec,
    Disposition,
)

RecordState = Literal["pending", "ready", "offered", "held", "closed"]
IN_ROUTING: tuple[RecordState, ...] = ("ready", "offered")
LIVE_STATES: frozenset[str] = frozenset({"ready", "offered", "held"})
"""States kept in the small ``live`` collection (routing and agents work on these)."""
TERMINAL_CALL: frozenset[str] = frozenset({"busy", "no_answer", "failed", "ended"})
CONTACT: frozenset[str] = frozenset({"answered"})
_RECORD_NS = uuid.UUID("0b7d6a52-1f55-4d0e-9a57-8c4b9a1d2f10")


class Problem(Exception):
    """A rule says no; ``code`` and ``field`` go into the refusal."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


# -- time zones and calling windows ------------------------------------------------------------


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """A time zone by IANA name; ``ValueError`` when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def valid_zone(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


def minutes(clock: str) -> int:
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


def local_minute(at: datetime, zone_name: str) -> int:
    local = at.astimezone(zone(zone_name))
    return local.hour * 60 + local.minute


def _within(minute: int, start: int, end: int) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # a window across midnight


def in_window(at: datetime, zones: tuple[str, ...], hours: CallingHours) -> bool:
    """Whether ``at`` is inside the calling hours in every one of ``zones``."""
    start, end = minutes(hours.start), minutes(hours.end)
    return bool(zones) and all(_within(local_minute(at, z), start, end) for z in zones)


def next_window_open(
    at: datetime, zones: tuple[str, ...], hours: CallingHours, *, horizon_days: int = 8
) -> datetime | None:
    """The first instant at or after ``at`` that is inside the window in all ``zones``.

    The common window of several zones starts where one zone's window starts, so the candidates
    are each zone's local start times over the horizon (a start inside a DST gap lands just
    after it). ``None`` when the zones never share a window.
    """
    if in_window(at, zones, hours):
        return at
    start = minutes(hours.start) % (24 * 60)
    candidates: list[datetime] = []
    for name in zones:
        tz = zone(name)
        today = at.astimezone(tz).date()
        for offset in range(horizon_days + 1):
            day = today + timedelta(days=offset)
            local = datetime.combine(day, time(start // 60, start % 60), tzinfo=tz)
            instant = local.astimezone(UTC)
            if instant > at:
                candidates.append(instant)
    for instant in sorted(candidates):
        if in_window(instant, zones, hours):
            return instant
    return None


# -- phone numbers -----------------------------------------------------------------------------


def normalise_number(raw: str, region: str) -> str:
    """E.164 of ``raw`` (``region`` for numbers without +country); ``ValueError`` says why not."""
    text = raw.strip()
    if not text:
        raise ValueError("empty number")
    try:
        parsed = phonenumbers.parse(text, region.upper() or None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{raw!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{raw!r} is not a valid number (region {region.upper()})")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=65536)
def number_zones(e164: str) -> tuple[str, ...]:
    """The time zones phonenumbers knows for a number; empty when it does not know."""
    try:
        found = phone_zones.time_zones_for_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return ()
    return tuple(sorted(z for z in found if z != "Etc/Unknown" and valid_zone(z)))


def record_id_for(campaign_id: str, external_id: str) -> str:
    """The one id of a record: re-importing the same external id finds the same record."""
    return uuid.uuid5(_RECORD_NS, f"{campaign_id}\n{external_id}").hex


# -- the record --------------------------------------------------------------------------------


class Phone(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: str
    type: str = "other"
    zones: tuple[str, ...] = ()


class Attempt(BaseModel):
    """One call: when, which number, by whom, how it went, and its disposition."""

    call_id: str
    at: datetime
    number: str
    agent_id: str
    automatic: bool = False
    status: CallStatus | Literal["requested"] = "requested"
    answered: bool = False
    ended_at: datetime | None = None
    disposition: str | None = None
    note: str = ""


class HistoryEntry(BaseModel):
    """Anything else that happened to the record: skips, completions, reschedules, closing."""

    at: datetime
    kind: str
    agent_id: str | None = None
    disposition: str | None = None
    detail: str = ""


class Record(BaseModel):
    """A calling record as stored (``_id`` is ``id``)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    campaign_id: str
    external_id: str
    name: str
    phones: list[Phone]
    time_zone: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    state: RecordState = "pending"
    next_at: datetime
    agent_id: str | None = None
    offer_id: str | None = None
    personal_agent_id: str | None = None
    routed_at: datetime | None = None
    held_since: datetime | None = None
    review_due: datetime | None = None
    call_id: str | None = None
    needs_disposition: bool = False
    attempts: list[Attempt] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    attempt_count: int = 0
    answered_count: int = 0
    skips: int = 0
    bad_numbers: list[str] = Field(default_factory=list)
    disposition: str | None = None
    result: str | None = None
    last_command: str | None = None
    last_result: dict[str, Any] = Field(default_factory=dict)
    outbox: list[dict[str, str]] = Field(default_factory=list)
    version: int = 0

    @classmethod
    def load(cls, document: dict[str, Any]) -> Record:
        for key in ("next_at", "routed_at", "held_since", "review_due"):
            if isinstance(document.get(key), datetime):
                document[key] = _aware(document[key])
        return cls.model_validate(document)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="python")

    def zones_of(self, phone: Phone, campaign: CampaignSpec) -> tuple[str, ...]:
        """Record zone, else the number's zones, else the campaign default."""
        if self.time_zone:
            return (self.time_zone,)
        return phone.zones or (campaign.default_time_zone,)

    def phone(self, number: str) -> Phone | None:
        return next((p for p in self.phones if p.number == number), None)

    def attempts_on(self, number: str) -> int:
        return sum(1 for a in self.attempts if a.number == number)

    def active_call(self) -> Attempt | None:
        """The call of the current holding that has not ended yet."""
        for attempt in self.current_attempts():
            if attempt.call_id == self.call_id and attempt.status not in TERMINAL_CALL:
                return attempt
        return None

    def current_attempts(self) -> list[Attempt]:
        """Calls made while the current agent holds the record."""
        since = self.held_since
        return [a for a in self.attempts if since is not None and a.at >= since]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def new_record_fields(now: datetime) -> dict[str, Any]:
    """What a freshly imported record starts with (``$setOnInsert``)."""
    return {
        "state": "pending",
        "next_at": now,
        "attempts": [],
        "history": [],
        "attempt_count": 0,
        "answered_count": 0,
        "skips": 0,
        "bad_numbers": [],
        "needs_disposition": False,
    }


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

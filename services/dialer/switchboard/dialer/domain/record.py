"""The calling record: its numbers, its calls and history, its state in the lifecycle."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from switchboard.contracts.campaigns import CallStatus, CampaignSpec

RecordState = Literal["pending", "ready", "offered", "held", "closed"]
IN_ROUTING: tuple[RecordState, ...] = ("ready", "offered")
LIVE_STATES: frozenset[str] = frozenset({"ready", "offered", "held"})
"""States kept in the small ``live`` collection (routing and agents work on these)."""
TERMINAL_CALL: frozenset[str] = frozenset({"busy", "no_answer", "failed", "ended"})
CONTACT: frozenset[str] = frozenset({"answered"})
_RECORD_NS = uuid.UUID("0b7d6a52-1f55-4d0e-9a57-8c4b9a1d2f10")


def record_id_for(campaign_id: str, external_id: str) -> str:
    """The one id of a record: re-importing the same external id finds the same record."""
    return uuid.uuid5(_RECORD_NS, f"{campaign_id}\n{external_id}").hex


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
    version: int = 0

    @classmethod
    def load(cls, document: dict[str, Any]) -> Self:
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

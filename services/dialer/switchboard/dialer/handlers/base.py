"""What every dialer handler shares: its store, bus and settings, and the lookups that
open most handlers (the campaign, the record behind an interaction, its DNC hits)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from switchboard.contracts import Message, message_class
from switchboard.contracts.campaigns import (
    CampaignSpec,
)
from switchboard.dialer import domain, metrics
from switchboard.dialer.domain import (
    LIVE_STATES,
    Problem,
    Record,
)
from switchboard.dialer.store import DialerStore, Document
from switchboard.dialer.store.records import StoredRecord
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import Refused
from switchboard.runtime.storage import Outbox

log = structlog.get_logger("switchboard.dialer")

PREFIX = "record-"


def interaction_id(record_id: str) -> str:
    return f"{PREFIX}{record_id}"


def record_id_of(interaction: str) -> str | None:
    return interaction[len(PREFIX) :] if interaction.startswith(PREFIX) else None


def refused(problem: Problem) -> Refused:
    metrics.REFUSED.labels(problem.code).inc()
    return Refused(problem.code, problem.message, field=problem.field)


class _Replay(Exception):
    def __init__(self, record: StoredRecord) -> None:
        self.record = record


class HandlerBase:
    """The dialer's dependencies and settings; each concern's handlers extend it."""

    def __init__(
        self,
        store: DialerStore,
        bus: Bus,
        *,
        route_refresh_seconds: float = 60.0,
        hopper_size: int = 200,
        import_batch: int = 1000,
        review_lease_seconds: float = 30.0,
        default_region: str = "US",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.bus = bus
        self.route_refresh = timedelta(seconds=route_refresh_seconds)
        self.hopper_size = hopper_size
        self.backlog_grace = timedelta(seconds=30)
        self.backlog_excess: dict[str, tuple[int, datetime]] = {}  # campaign: (places, seen at)
        # per campaign: hopper entries read (when, entries), for the next picks
        self.hands: dict[str, tuple[float, list[tuple[str, StoredRecord | None]]]] = {}
        self.import_batch = import_batch
        self.review_lease = timedelta(seconds=review_lease_seconds)
        self.default_region = default_region
        self.now = clock
        self.outbox = Outbox(store.versioned_records, self._publish_stored)

    async def _publish_stored(self, message: Document) -> None:
        await self.bus.publish(message_class(message["name"]).model_validate_json(message["json"]))

    async def _flush(self, record: StoredRecord) -> None:
        """Publish what the record's outbox holds (in order, each marked published), then
        bring its live copy up to the record as stored (a record out of the working set has
        none: its save removed it)."""
        if record.outbox:
            await self.outbox.flush(record.id, record.unsent())
            if record.state in LIVE_STATES:
                await self.store.published(record.id)

    async def _campaign(self, campaign_id: str) -> CampaignSpec:
        """The preamble of operator commands naming a campaign: it must exist."""
        spec = await self.store.campaign(campaign_id)
        if spec is None:
            raise _unknown_campaign(campaign_id)
        return spec

    def _valid_spec(self, spec: CampaignSpec) -> CampaignSpec:
        try:
            return domain.validate_campaign(spec)
        except Problem as problem:
            raise refused(problem) from None

    async def _for_interaction(self, interaction: str) -> tuple[Record | None, CampaignSpec | None]:
        record_id = record_id_of(interaction)
        if record_id is None:
            return None, None
        record = await self.store.record(record_id)
        if record is None:
            log.warning("interaction of an unknown record", interaction_id=interaction)
            return None, None
        return record, await self.store.campaign(record.campaign_id)

    async def _dnc(self, record: Record, spec: CampaignSpec) -> set[str]:
        return await self.store.dnc_hits(
            record.campaign_id, spec, [p.number for p in record.phones]
        )


def stored_message(message: Message) -> Document:
    """A message as the record's outbox keeps it until it is published."""
    return {"name": message.NAME, "json": message.model_dump_json()}


def _unknown_campaign(campaign_id: str) -> Refused:
    return Refused("unknown_campaign", f"no campaign {campaign_id!r}", field="campaign_id")


def _json(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value

"""The hopper: a pick takes a record from a small collection of ready ones, re-checks it and
never writes (nor scans) ``records``; the refill does the scanning in the background.

These run the handlers on the real MongoDB-protocol server with a stub publisher (what would be
sent to routing is collected), so each step is called exactly when the test wants it.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from switchboard.contracts import Message
from switchboard.contracts.campaigns import CallingHours, CampaignSpec, DialRequested
from switchboard.contracts.routing import InteractionAssigned, RouteRequested
from switchboard.dialer.app import DialerSettings
from switchboard.dialer.domain import Phone, Record, due_pending, holding, record_id_for
from switchboard.dialer.handlers import DialerHandlers
from switchboard.dialer.importer import ParsedRow
from switchboard.dialer.store import GLOBAL, DialerStore
from switchboard.dialer.store.records import StoredRecord

_spec = importlib.util.spec_from_file_location(
    "dialer_conftest", Path(__file__).parent / "conftest.py"
)
assert _spec and _spec.loader
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 11:00 in New York, 16:00 in Berlin
CAMPAIGN = "hop"


class StubBus:
    def __init__(self) -> None:
        self.published: list[Message] = []

    async def publish(self, message: Message) -> None:
        self.published.append(message)

    def routed(self) -> list[str]:
        return [m.interaction_id for m in self.published if isinstance(m, RouteRequested)]


@dataclass
class Dialer:
    store: DialerStore
    handlers: DialerHandlers
    bus: StubBus
    spec: CampaignSpec


@pytest.fixture
async def dialer(make_settings: Callable[..., Any]) -> AsyncIterator[Dialer]:
    settings = make_settings(DialerSettings)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_url.get_secret_value(), tz_aware=True
    )
    store = DialerStore(client[settings.database_name("dialer")])
    await store.ensure_indexes()
    bus = StubBus()
    handlers = DialerHandlers(store, bus, hopper_size=10, clock=lambda: NOW)  # type: ignore[arg-type]
    spec = CampaignSpec(
        name="Hopper", service="outbound", calling_hours=CallingHours(start="09:00", end="17:00")
    )
    await store.create_campaign(CAMPAIGN, spec, NOW)
    try:
        yield Dialer(store, handlers, bus, spec)
    finally:
        await client.close()


def row(external_id: str, number: str, time_zone: str | None = None) -> ParsedRow:
    return ParsedRow(
        line=1,
        external_id=external_id,
        name=f"Customer {external_id}",
        phones=[Phone(number=number, type="mobile")],
        time_zone=time_zone,
        fields={},
    )


async def load(d: Dialer, *rows: ParsedRow) -> list[str]:
    await d.store.upsert_records(CAMPAIGN, list(rows), NOW - timedelta(minutes=5))
    return [record_id_for(CAMPAIGN, r.external_id) for r in rows]


def test_only_a_pending_record_whose_time_has_come_is_due() -> None:
    record = Record.model_validate(
        {
            "_id": "r",
            "campaign_id": "c",
            "external_id": "e",
            "name": "n",
            "phones": [],
            "next_at": NOW,
        }
    )
    assert due_pending(record, NOW)
    assert not due_pending(record, NOW - timedelta(seconds=1))
    assert not due_pending(record.model_copy(update={"state": "ready"}), NOW)


async def test_refill_takes_ready_records_postpones_and_closes_the_others(dialer: Dialer) -> None:
    d = dialer
    ready, tokyo, listed, later = await load(
        d,
        row("ready", "+12125550101"),
        row("tokyo", "+12125550102", time_zone="Asia/Tokyo"),  # 00:00 there: window closed
        row("listed", "+12125550103"),
        row("later", "+12125550104"),
    )
    await d.store.change_dnc(GLOBAL, ["+12125550103"], [], NOW)
    await d.store.records.update_one(
        {"_id": later}, {"$set": {"next_at": NOW + timedelta(hours=1)}}
    )
    assert await d.handlers.refill(CAMPAIGN, d.spec, NOW) == 1
    assert await d.store.hopper_entries(CAMPAIGN, 0) == [ready]
    postponed = await d.store.record(tokyo)
    assert postponed is not None and postponed.state == "pending" and postponed.next_at > NOW
    closed = await d.store.record(listed)
    assert closed is not None and closed.state == "closed" and closed.result == "do_not_call"
    untouched = await d.store.record(later)
    assert untouched is not None and untouched.version == 1
    assert await d.handlers.refill(CAMPAIGN, d.spec, NOW) == 0  # nothing else is ready


async def test_a_pick_routes_from_the_hopper_into_the_live_set(dialer: Dialer) -> None:
    d = dialer
    ids = await load(d, *(row(f"c{i}", f"+1212555020{i}") for i in range(3)))
    assert await d.handlers.refill(CAMPAIGN, d.spec, NOW) == 3
    before = {doc["_id"]: doc async for doc in d.store.records.find({})}
    assert await d.handlers.pick(CAMPAIGN, d.spec, 2, NOW) == 2
    routed = d.bus.routed()
    assert len(routed) == 2 and len(set(routed)) == 2
    for interaction in routed:
        record_id = interaction.removeprefix("record-")
        record = await d.store.record(record_id)
        assert record is not None and record.state == "ready"
        assert record.version == before[record_id]["version"] + 1  # one guarded write
        copy = await d.store.live.find_one({"_id": record_id})
        assert copy is not None and StoredRecord.load(copy) == record
    assert len(await d.store.in_routing(CAMPAIGN)) == 2
    assert len(await d.store.hopper_entries(CAMPAIGN, 0)) == 1
    # the refill never hands out a live record again
    await d.store.hopper.delete_many({})
    assert await d.handlers.refill(CAMPAIGN, d.spec, NOW) == 1
    [left] = await d.store.hopper_entries(CAMPAIGN, 0)
    assert f"record-{left}" not in routed and left in ids


async def test_a_stale_hopper_entry_is_never_offered(dialer: Dialer) -> None:
    d = dialer
    listed, closing, taken = await load(
        d,
        row("listed", "+12125550301"),
        row("closing", "+12125550302"),
        row("taken", "+12125550303"),
    )
    assert await d.handlers.refill(CAMPAIGN, d.spec, NOW) == 3
    # after the refill: a DNC entry, another replica routed one, and the window closes
    await d.store.change_dnc(CAMPAIGN, ["+12125550301"], [], NOW)
    record = await d.store.record(taken)
    assert record is not None
    await d.store.save(record.model_copy(update={"state": "ready"}))
    evening = NOW + timedelta(hours=7)  # 18:00 in New York: the window has closed
    assert await d.handlers.pick(CAMPAIGN, d.spec, 5, evening) == 0
    assert d.bus.routed() == []
    assert await d.store.hopper_entries(CAMPAIGN, 0) == []  # stale entries are dropped
    # inside the window again: the DNC record is closed by the refill, the other one routed
    assert await d.handlers.refill(CAMPAIGN, d.spec, NOW) == 1
    assert await d.handlers.pick(CAMPAIGN, d.spec, 5, NOW) == 1
    assert d.bus.routed() == [f"record-{closing}"]
    done = await d.store.record(listed)
    assert done is not None and done.state == "closed" and done.result == "do_not_call"


async def test_a_deactivated_campaign_offers_nothing_from_its_hopper(dialer: Dialer) -> None:
    d = dialer
    await load(d, row("a", "+12125550401"), row("b", "+12125550402"))
    assert await d.handlers.refill(CAMPAIGN, d.spec, NOW) == 2
    await d.store.update_campaign(CAMPAIGN, d.spec.model_copy(update={"active": False}), NOW)
    await d.handlers.dispatch()
    await d.handlers.refill_hoppers()
    assert d.bus.routed() == []
    await d.store.update_campaign(CAMPAIGN, d.spec, NOW)
    await d.handlers.dispatch()
    assert len(d.bus.routed()) == 2


async def test_a_live_copy_left_behind_by_a_crash_is_dropped(dialer: Dialer) -> None:
    d = dialer
    [record_id] = await load(d, row("a", "+12125550501"))
    record = await d.store.record(record_id)
    assert record is not None
    ready = await d.store.save(record.model_copy(update={"state": "ready"}))
    stale = await d.store.live.find_one({"_id": record_id})
    back = await d.store.save(ready.model_copy(update={"state": "pending"}))
    assert await d.store.live.count_documents({}) == 0
    await d.store.live.insert_one(stale)  # as if the process died before deleting it
    current = await d.store.record(record_id)
    assert current is not None and current.version == back.version
    assert current.state == "pending"
    assert await d.store.in_routing(CAMPAIGN) == []
    assert await d.store.live.count_documents({}) == 0


async def test_the_preview_backlog_holds_across_replicas(
    dialer: Dialer, make_settings: Callable[..., Any]
) -> None:
    """Two replicas (each its own client and handlers) pick at once, again and again: the
    records waiting in routing never exceed the campaign's backlog, counted across both."""
    d = dialer
    spec = d.spec.model_copy(update={"preview_backlog": 3})
    await d.store.update_campaign(CAMPAIGN, spec, NOW)
    await load(d, *(row(f"b{i}", f"+1212555{600 + i:04d}") for i in range(20)))
    assert await d.handlers.refill(CAMPAIGN, spec, NOW) == 10
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        make_settings(DialerSettings).mongodb_url.get_secret_value(), tz_aware=True
    )
    try:
        other = DialerStore(client[d.store.db.name])
        bus = StubBus()
        two = DialerHandlers(other, bus, hopper_size=10, clock=lambda: NOW)  # type: ignore[arg-type]
        picks = [h.pick(CAMPAIGN, spec, 3, NOW) for h in (d.handlers, two) for _ in range(4)]
        routed = sum(await asyncio.gather(*picks))
        assert routed == 3
        interactions = d.bus.routed() + bus.routed()
        assert len(interactions) == 3 and len(set(interactions)) == 3
        assert len(await d.store.in_routing(CAMPAIGN)) == 3
        assert await d.store.backlog_used(CAMPAIGN) == 3
        # an agent takes one: its slot is free again, and exactly one more is routed
        first = interactions[0]
        await d.handlers.on_assigned(
            InteractionAssigned(
                interaction_id=first,
                agent_id="agent-1",
                channel="preview",
                service="outbound",
                offer_id="offer-1",
                how="accepted",
            )
        )
        assert await d.store.backlog_used(CAMPAIGN) == 2
        picks = [h.pick(CAMPAIGN, spec, 3, NOW) for h in (d.handlers, two) for _ in range(4)]
        assert sum(await asyncio.gather(*picks)) == 1
        assert len(await d.store.in_routing(CAMPAIGN)) == 3
    finally:
        await client.close()


async def test_a_slot_left_by_a_crash_is_freed(dialer: Dialer) -> None:
    d = dialer
    spec = d.spec.model_copy(update={"preview_backlog": 1})
    await d.store.update_campaign(CAMPAIGN, spec, NOW)
    [record_id] = await load(d, row("a", "+12125550701"))
    # a replica took the slot and died before routing anything
    assert await d.store.take_backlog_slot(CAMPAIGN, 1)
    assert await d.handlers.refill(CAMPAIGN, spec, NOW) == 1
    assert await d.handlers.pick(CAMPAIGN, spec, 1, NOW) == 0  # the backlog looks full
    await d.handlers.dispatch()  # the refresh sees a place taken with nothing in routing...
    assert d.bus.routed() == [] and await d.store.backlog_used(CAMPAIGN) == 1
    d.handlers.now = lambda: NOW + timedelta(seconds=31)  # ...and still, past the grace:
    await d.handlers.dispatch()  # it is given back, then the pick routes
    assert d.bus.routed() == [f"record-{record_id}"]
    assert await d.store.backlog_used(CAMPAIGN) == 1


async def test_a_reimport_updates_in_one_batch_and_reaches_the_live_copy(dialer: Dialer) -> None:
    d = dialer
    ids = await load(d, *(row(f"r{i}", f"+1212555{800 + i:04d}") for i in range(30)))
    assert await d.handlers.refill(CAMPAIGN, d.spec, NOW) == 10
    assert await d.handlers.pick(CAMPAIGN, d.spec, 1, NOW) == 1
    [live_id] = [i.removeprefix("record-") for i in d.bus.routed()]
    lines = ["external_id,name,phone"]
    lines += [f"r{i},Renamed {i},+1202555{1000 + i:04d}" for i in range(30)]
    lines.insert(10, "r99,Nobody,12")  # line 11: a bad number
    lines.append("new,New Customer,+12025559999")

    async def body() -> AsyncIterator[bytes]:
        yield "\n".join(lines).encode()

    d.handlers.import_batch = 7  # several batches, each a mix of known and new records
    summary = await d.handlers.run_import(CAMPAIGN, body(), "csv", "US", import_id="again")
    assert (summary["imported"], summary["updated"], summary["bad"]) == (1, 30, 1)
    assert summary["bad_rows"] == [{"line": 11, "reason": summary["bad_rows"][0]["reason"]}]
    assert "'12'" in summary["bad_rows"][0]["reason"]
    assert await d.store.records.count_documents({"campaign_id": CAMPAIGN}) == 31
    for index, record_id in enumerate(ids):
        record = await d.store.record(record_id)
        assert record is not None and record.name == f"Renamed {index}"
        assert [p.number for p in record.phones] == [f"+1202555{1000 + index:04d}"]
    live = await d.store.record(live_id)
    assert live is not None and live.state == "ready"  # still in routing, with the new data
    assert live.name.startswith("Renamed")


async def test_records_an_earlier_version_left_in_routing_join_the_live_set(
    dialer: Dialer,
) -> None:
    d = dialer
    held, pending = await load(d, row("h", "+12125550901"), row("p", "+12125550902"))
    await d.store.records.update_one(
        {"_id": held}, {"$set": {"state": "held", "agent_id": "agent-1"}}
    )
    assert await d.store.adopt_working_set(NOW) == 1
    assert await d.store.held_by("agent-1") != []
    assert await d.store.adopt_working_set(NOW) == 0  # once
    record = await d.store.record(held)
    assert record is not None and record.state == "held"
    other = await d.store.record(pending)
    assert other is not None and other.state == "pending"


async def test_of_replicas_writing_one_record_version_exactly_one_wins(
    dialer: Dialer, make_settings: Callable[..., Any]
) -> None:
    """Writers on two clients change the same version of one record at once, half moving it
    into the working set (``ready``), half keeping or moving it out (``pending``): exactly
    one wins every time, and both ``records`` and the live copy show that one's change."""
    d = dialer
    [record_id] = await load(d, row("race", "+12125550991"))
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        make_settings(DialerSettings).mongodb_url.get_secret_value(), tz_aware=True
    )
    try:
        stores = (d.store, DialerStore(client[d.store.db.name]))
        for trial in range(12):
            read = await d.store.record(record_id)
            assert read is not None

            async def write(
                writer: int, base: Record = read, mixed: bool = trial % 2 == 1
            ) -> Record | None:
                state = "ready" if writer % 2 else "pending"
                change = base.model_copy(update={"state": state, "name": f"writer {writer}"})
                return await stores[writer % 2 if mixed else 0].try_save(change)

            won = [r for r in await asyncio.gather(*(write(w) for w in range(6))) if r]
            assert len(won) == 1, f"trial {trial}: {len(won)} writers won one version"
            [winner] = won
            stored = await d.store.record(record_id)
            assert stored == winner and stored.version == read.version + 1
            copy = await d.store.live.find_one({"_id": record_id})
            if winner.state == "ready":
                assert copy is not None and StoredRecord.load(copy) == winner
            else:
                assert copy is None
    finally:
        await client.close()


async def test_a_claim_whose_live_copy_was_lost_in_a_crash_joins_the_live_set(
    dialer: Dialer,
) -> None:
    """A replica claimed a record (its write to ``records``) and died before deriving the
    live copy: the hopper entry it left makes the next pick put the record in the live set,
    where the dispatcher's refresh re-routes it, and it is not routed twice meanwhile."""
    d = dialer
    [record_id] = await load(d, row("gap", "+12125550981"))
    assert await d.handlers.refill(CAMPAIGN, d.spec, NOW) == 1
    record = await d.store.record(record_id)
    assert record is not None
    claimed = record.model_copy(update={"state": "ready", "routed_at": NOW, "version": 2})
    await d.store.records.replace_one({"_id": record_id, "version": 1}, claimed.dump())
    assert await d.store.in_routing(CAMPAIGN) == []  # the crash: no live copy
    assert await d.handlers.pick(CAMPAIGN, d.spec, 1, NOW) == 0
    assert [r.id for r in await d.store.in_routing(CAMPAIGN)] == [record_id]
    assert d.bus.routed() == []
    assert await d.store.hopper_entries(CAMPAIGN, 0) == []


async def test_live_copies_an_earlier_version_wrote_ahead_become_the_records(
    dialer: Dialer,
) -> None:
    """An earlier version wrote a record in the working set to ``live`` only: once, at start,
    the newer live copy becomes the record (``records`` is the authority now)."""
    d = dialer
    [record_id] = await load(d, row("old", "+12125550971"))
    record = await d.store.record(record_id)
    assert record is not None
    held = record.model_copy(update={"state": "held", "agent_id": "agent-1", "version": 3})
    await d.store.live.insert_one(held.dump())
    assert await d.store.promote_live_copies(NOW) == 1
    assert await d.store.record(record_id) == held
    assert [r.id for r in await d.store.held_by("agent-1")] == [record_id]
    assert await d.store.promote_live_copies(NOW) == 0  # once


async def test_backlog_places_and_review_timers_of_an_earlier_version_carry_over(
    dialer: Dialer,
) -> None:
    """An earlier version kept one document per backlog place and polled ``review_due`` in
    ``live``: after the upgrade step the places still count and the review still fires."""
    d = dialer
    await d.store.db["backlog_slots"].insert_many(
        [
            {"_id": f"{CAMPAIGN}|{n}", "campaign_id": CAMPAIGN, "record_id": f"x{n}", "at": NOW}
            for n in range(2)
        ]
    )
    [record_id] = await load(d, row("held", "+12125550901"))
    record = await d.store.record(record_id)
    assert record is not None
    held = holding.assigned(record, "agent-1", "offer-1", NOW - timedelta(minutes=2), 60)
    await d.store.save(held)  # held as the earlier version stored it: no timer armed

    assert await d.store.adopt_backlog_slots(NOW) == 2
    assert await d.store.adopt_review_timers(NOW) == 1
    assert await d.store.adopt_backlog_slots(NOW) == 0  # once per database
    assert await d.store.backlog_used(CAMPAIGN) == 2
    assert "backlog_slots" not in await d.store.db.list_collection_names()

    await d.handlers.fire_reviews()
    dialled = await d.store.record(record_id)
    assert dialled is not None and [a.automatic for a in dialled.attempts] == [True]
    assert [m for m in d.bus.published if isinstance(m, DialRequested)]

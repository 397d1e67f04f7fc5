"""Database operations per campaign record completed, counted with a PyMongo command listener.

Run: ``.venv/bin/python bench/bench_dialer_ops.py [--records 20]``

The dialer's handlers run in this process against the local MongoDB-protocol server (found or
started like the tests do, in a database of their own) with a stub publisher, so only the
dialer's own commands are counted (the runtime's processed-message ledger is the same for every
consumer and is left out). ``--records`` records are imported; then, counted: one hopper refill
and one pick route them all; each then goes the way a preview call goes: offer made, assigned to
an agent, the agent dials, the call is answered and ends, the agent sets the disposition and
completes the record.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import support
from pymongo import AsyncMongoClient

from switchboard.contracts.base import Message
from switchboard.contracts.campaigns import (
    CallingHours,
    CallNumber,
    CallProgressed,
    CampaignSpec,
    CompleteRecord,
    SetCallDisposition,
)
from switchboard.contracts.routing import InteractionAssigned, OfferMade
from switchboard.dialer.domain import Phone, record_id_for
from switchboard.dialer.handlers import DialerHandlers
from switchboard.dialer.importer import ParsedRow
from switchboard.dialer.store import DialerStore

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 11:00 in New York
CAMPAIGN = "bench-ops"


class StubBus:
    async def publish(self, message: Message) -> None:
        pass


async def _count(mongodb_url: str, records: int, commands: support.Commands) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    database = f"bench_dialer_ops_{uuid.uuid4().hex[:8]}"
    commands.databases = {database}
    store = DialerStore(client[database])
    handlers = DialerHandlers(store, StubBus(), hopper_size=records, clock=lambda: NOW)  # type: ignore[arg-type]
    spec = CampaignSpec(
        name="Ops",
        service="outbound",
        calling_hours=CallingHours(start="09:00", end="17:00"),
        preview_backlog=records,
    )
    try:
        await store.ensure_indexes()
        await store.create_campaign(CAMPAIGN, spec, NOW)
        rows = [
            ParsedRow(
                line=i + 1,
                external_id=f"c{i}",
                name=f"Customer {i}",
                phones=[Phone(number=f"+1212555{i:04d}", type="mobile")],
                time_zone=None,
                fields={},
            )
            for i in range(records)
        ]
        await store.upsert_records(CAMPAIGN, rows, NOW - timedelta(minutes=5))
        commands.counting = True
        await handlers.refill(CAMPAIGN, spec, NOW)
        assert await handlers.pick(CAMPAIGN, spec, records, NOW) == records
        for i in range(records):
            record_id = record_id_for(CAMPAIGN, f"c{i}")
            agent = f"agent-{i}"
            interaction = f"record-{record_id}"
            offer = OfferMade(
                offer_id=f"offer-{i}",
                interaction_id=interaction,
                agent_id=agent,
                channel="preview",
                service="outbound",
                expires_at=NOW + timedelta(seconds=30),
            )
            await handlers.on_offer_made(offer)
            await handlers.on_assigned(
                InteractionAssigned(
                    interaction_id=interaction,
                    agent_id=agent,
                    channel="preview",
                    service="outbound",
                    offer_id=offer.offer_id,
                )
            )
            me = {"agent_id": agent, "record_id": record_id}
            call = await handlers.call(CallNumber(**me))
            for status in ("answered", "ended"):
                await handlers.on_call_progress(
                    CallProgressed(call_id=call["call_id"], status=status, at=NOW)
                )
            await handlers.set_disposition(SetCallDisposition(**me, disposition="Success"))
            done = await handlers.complete(CompleteRecord(**me))
            assert done["state"] == "closed", done
        commands.counting = False
    finally:
        await client.drop_database(database)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20)
    args = parser.parse_args()

    async def count(
        found: support.Servers, commands: support.Commands, _: support.Publishes
    ) -> None:
        await _count(found.mongodb_url, args.records, commands)

    support.run_ops(count, per=args.records, what="record completed", vhost=False, broker=False)


if __name__ == "__main__":
    main()

"""Replay of the live stream: numbered frames kept in MongoDB, shared by every replica.

A desktop whose stream dropped reconnects with ``?since=<seq>`` (or ``Last-Event-ID``), to any
replica, and gets what was pushed meanwhile, then a snapshot, then live frames.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from switchboard.contracts import cases, routing
from switchboard.gateway.app import GatewaySettings, build
from switchboard.gateway.journal import PRUNE_EVERY, LiveJournal
from switchboard.gateway.live import replay
from switchboard.runtime.service import Runtime

from .conftest import login, next_frame, serving


def _offer(agent_id: str, seconds: float = 60.0) -> routing.OfferMade:
    return routing.OfferMade(
        offer_id=f"offer-{uuid.uuid4().hex[:6]}",
        interaction_id=f"case-{uuid.uuid4().int % 10_000}",
        agent_id=agent_id,
        channel="email",
        service="billing",
        expires_at=datetime.now(UTC) + timedelta(seconds=seconds),
    )


async def _frames_until(socket: ClientConnection, name: str) -> list[dict[str, Any]]:
    """Every frame up to and including the first one called ``name``."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not frames or frames[-1]["event"] != name:
            frames.append(json.loads(await socket.recv()))
    return frames


async def _journaled(runtime: Runtime, agent_id: str, count: int) -> None:
    """Wait until the journal holds ``count`` frames of the agent (it is written asynchronously)."""
    for _ in range(100):
        if await runtime.db["live_frames"].count_documents({"agent_id": agent_id}) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{agent_id} never had {count} journaled frames")


async def test_a_reconnecting_agent_gets_the_offer_made_while_away_from_another_replica(
    gateway_settings: GatewaySettings, make_settings: Callable[..., Any]
) -> None:
    """Two replicas share the journal: an offer while connected to one; dropped; an offer and
    new mail on a held case while away; reconnect to the other with ``since`` -> what was
    missed, in order, then the snapshot, then live frames numbered on."""
    first, second = build(gateway_settings), build(gateway_settings)
    publisher = Runtime("publisher", make_settings())
    async with (
        serving(first.api) as one,
        serving(second.api) as two,
        publisher.app,
        httpx.AsyncClient(base_url=f"http://{one}") as http,
    ):
        agent = await login(http, "agent-1")
        async with websockets.connect(f"ws://{one}/me/live", additional_headers=agent) as ws:
            hello = await next_frame(ws, "hello")
            assert hello["data"]["last_seq"] == 0  # a new agent: nothing journaled yet
            snapshot = await next_frame(ws, "snapshot")
            # no agent-state or routing runs here: the snapshot says so and carries on
            assert snapshot["data"]["state"] is None
            assert set(snapshot["data"]["unavailable"]) == {"state", "assignments"}
            seen = _offer("agent-1")
            await publisher.bus.publish(seen)
            got = await next_frame(ws, "offer.made")
            assert got["data"]["offer_id"] == seen.offer_id
            handled = got["seq"]
            assert isinstance(handled, int) and handled > 0

        # the stream has dropped; routing offers work meanwhile (and someone else's), and new
        # mail arrives on a case the agent holds
        missed = _offer("agent-1")
        await publisher.bus.publish(_offer("agent-2"))
        await publisher.bus.publish(missed)
        await publisher.bus.publish(
            routing.InteractionAssigned(
                interaction_id="case-77", agent_id="agent-1", channel="email", service="billing"
            )
        )
        for _ in range(100):  # the holdings projection (a durable consumer) may lag a little
            if await first.db["holdings"].count_documents({"case_number": 77}):
                break
            await asyncio.sleep(0.1)
        await publisher.bus.publish(
            cases.CaseEmailAttached(case_number=77, email_id="<while-away@x>", direction="inbound")
        )
        await _journaled(first, "agent-1", 4)

        async with websockets.connect(
            f"ws://{two}/me/live?since={handled}", additional_headers=agent
        ) as ws:
            frames = await _frames_until(ws, "snapshot")
            names = [f["event"] for f in frames]
            assert names == [
                "hello",
                "offer.made",
                "interaction.assigned",
                "case.email_attached",
                "replayed",
                "snapshot",
            ], names
            hello, offer, assigned, mail, replayed, snapshot = frames
            assert hello["data"]["last_seq"] == handled + 3
            assert offer["data"]["offer_id"] == missed.offer_id
            assert [offer["seq"], assigned["seq"], mail["seq"]] == [
                handled + 1,
                handled + 2,
                handled + 3,
            ]
            assert mail["data"]["email_id"] == "<while-away@x>"
            assert replayed["data"] == {
                "since": handled,
                "count": 3,
                "last_seq": handled + 3,
                "complete": True,
            }
            # both offers are still open as far as the stream told: the snapshot lists them
            assert {o["offer_id"] for o in snapshot["data"]["offers"]} == {
                seen.offer_id,
                missed.offer_id,
            }

            # live again: the next frame continues the numbering
            await publisher.bus.publish(
                routing.OfferTimedOut(
                    offer_id=missed.offer_id,
                    interaction_id=missed.interaction_id,
                    agent_id="agent-1",
                    channel="email",
                )
            )
            timed_out = await next_frame(ws, "offer.timed_out")
            assert timed_out["seq"] == handled + 4

        # Last-Event-ID works like ?since=; a number this journal never gave is "incomplete"
        async with websockets.connect(
            f"ws://{one}/me/live",
            additional_headers={**agent, "Last-Event-ID": str(handled + 3)},
        ) as ws:
            frames = await _frames_until(ws, "snapshot")
            assert [f["event"] for f in frames] == [
                "hello",
                "offer.timed_out",
                "replayed",
                "snapshot",
            ]
            assert frames[2]["data"]["complete"] is True
            # the timed-out offer is no longer listed as open
            assert {o["offer_id"] for o in frames[3]["data"]["offers"]} == {seen.offer_id}
        async with websockets.connect(
            f"ws://{two}/me/live?since=7", additional_headers=agent
        ) as ws:
            frames = await _frames_until(ws, "snapshot")
            assert [f["event"] for f in frames][-2:] == ["replayed", "snapshot"]
            assert frames[-2]["data"]["complete"] is False  # the desktop reloads its views

        # every replica journaled every event; the journal kept each once
        kept = [d async for d in first.db["live_frames"].find({"agent_id": "agent-1"})]
        assert sorted(d["seq"] for d in kept) == [handled + i for i in range(5)]
        assert len({d["event_id"] for d in kept}) == 5


async def test_a_bad_since_is_refused(gateway_settings: GatewaySettings) -> None:
    gateway = build(gateway_settings)
    async with (
        serving(gateway.api) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as h,
    ):
        agent = await login(h, "agent-2")
        async with websockets.connect(
            f"ws://{address}/me/live?since=yesterday", additional_headers=agent
        ) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4400
            else:
                raise AssertionError("the stream should have been closed")


async def test_the_journal_keeps_one_chain_under_concurrent_writers(
    make_settings: Callable[..., Any],
) -> None:
    """Four writers (replicas) journal the same 30 events at once: each is kept once, numbered
    one after the other; the chain is cut to its bound and an old ``since`` is incomplete."""
    runtime = Runtime("gateway", make_settings())
    try:
        await _one_chain(LiveJournal(runtime.db, max_age=timedelta(hours=1), max_frames=20))
    finally:
        await runtime.mongo.close()


async def _one_chain(journal: LiveJournal) -> None:
    await journal.ensure_indexes()
    events = [(f"event-{i}", {"n": i}) for i in range(30)]

    async def writer() -> list[int]:
        return [await journal.append("ann", eid, "offer.made", data) for eid, data in events]

    numbered = await asyncio.gather(*(writer() for _ in range(4)))
    assert all(seqs == numbered[0] for seqs in numbered), "every writer got the same numbers"
    first = numbered[0][0]
    assert numbered[0] == list(range(first, first + 30))
    kept = await journal.after("ann", 0)
    assert [f.data["n"] for f in kept] == list(range(30))
    assert all(f.prev == f.seq - 1 for f in kept[1:])

    for i in range(30, PRUNE_EVERY):
        await journal.append("ann", f"event-{i}", "offer.made", {"n": i})
    kept = await journal.after("ann", 0)
    assert len(kept) == 20 and kept[-1].data["n"] == PRUNE_EVERY - 1
    assert (await replay(journal, "ann", first)).complete is False
    resumed = await replay(journal, "ann", kept[-3].seq)
    assert resumed.complete and [f.data["n"] for f in resumed.frames] == [48, 49]


async def test_frames_older_than_the_journals_age_are_purged(
    make_settings: Callable[..., Any],
) -> None:
    runtime = Runtime("gateway", make_settings())
    journal = LiveJournal(runtime.db, max_age=timedelta(hours=1), max_frames=20)
    try:
        await journal.ensure_indexes()
        old = await journal.append("ann", "event-old", "offer.made", {"n": 1})
        await journal.append("ann", "event-new", "offer.made", {"n": 2})
        two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
        await journal.frames.update_one({"seq": old}, {"$set": {"at": two_hours_ago}})
        await journal.purge()
        assert [f.data["n"] for f in await journal.after("ann", 0)] == [2]
    finally:
        await runtime.mongo.drop_database(runtime.db.name)
        await runtime.mongo.close()

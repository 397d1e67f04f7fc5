"""Live push: events from the exchange to the sockets of the people they concern.

Every gateway replica declares an exclusive, auto-delete queue of its own, bound to the topic
exchange for the events worth pushing, and consumes it without acks. The runtime's
``Bus.consume`` declares durable *shared* queues (one copy per service, not per replica), so this
queue is declared on ``runtime.broker`` directly.

Who gets an event:

* events naming an ``agent_id`` (offers, assignments, state changes, record events) go to that
  agent;
* case events go to the agents holding an interaction of the case (the gateway's projection of
  ``interaction.assigned`` / ``interaction.ended``, kept in MongoDB by a durable consumer);
* supervisors' sockets get every event, as it comes (not journaled).

An agent's events are journaled first (:mod:`switchboard.gateway.journal`: numbered per agent,
in MongoDB, whether or not the agent is connected), then their sockets on this replica are woken
and read the journal from the last frame they sent. Every replica journals every event (each
receives them all); the journal keeps one copy. So a desktop that reconnects, to any replica,
with the number of the last frame it handled gets what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage
from pymongo.errors import PyMongoError

from switchboard.contracts import registered_messages
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    InteractionTransferred,
)
from switchboard.gateway.journal import Entry, LiveJournal, event_id_of
from switchboard.gateway.metrics import LIVE_SOCKETS, PUSH_BACKLOG, PUSH_DELAY, PUSHED
from switchboard.gateway.store import GatewayStore
from switchboard.runtime.bus import ReplicaQueue
from switchboard.runtime.service import Runtime

log = structlog.get_logger("switchboard.gateway.push")
DELIVERY_ATTEMPTS = 3
"""Tries to journal and push one event before it is given up (and logged)."""

PUSHED_DOMAINS = ("agent.", "offer.", "interaction.", "case.", "campaign.")


def pushed_events() -> tuple[str, ...]:
    """The events worth pushing: every *event* (never a command) of these domains.

    Read from the contracts, so an event added there is pushed without a change here. (A topic
    pattern such as ``case.*`` would also catch commands like ``case.reply``.)
    """
    import switchboard.contracts.agents
    import switchboard.contracts.campaigns
    import switchboard.contracts.cases
    import switchboard.contracts.routing  # noqa: F401  (registers the messages)

    return tuple(
        sorted(
            name
            for name, message in registered_messages().items()
            if message.KIND == "event" and name.startswith(PUSHED_DOMAINS)
        )
    )


class Connection:
    """One open live socket.

    An agent's frames come from the journal: :meth:`wake` says there may be new ones and the
    socket's writer reads every frame numbered above the last one it sent, in order. Frames
    not journaled (a supervisor's events, ``pong``) go through a bounded outbox.
    """

    def __init__(
        self, person_id: str, supervisor: bool, size: int, journal: LiveJournal | None
    ) -> None:
        self.person_id = person_id
        self.supervisor = supervisor
        self.journal = journal
        self.last_seq = 0
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=size)
        self.overflowed = asyncio.Event()
        self._ready = asyncio.Event()

    def offer(self, frame: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed.set()
            return
        self._ready.set()

    def wake(self) -> None:
        self._ready.set()

    async def next_frames(self, poll_seconds: float) -> list[dict[str, Any]]:
        """The frames to send next (waits for some; reads the journal at least every poll)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=poll_seconds)
        self._ready.clear()
        frames: list[dict[str, Any]] = []
        while not self.outbox.empty():
            frames.append(self.outbox.get_nowait())
        if self.journal is not None:
            # read on a wake and on every poll: an event journaled by another replica while
            # this one missed it is still sent
            for frame in await self.journal.after(self.person_id, self.last_seq):
                frames.append(frame.wire())
                self.last_seq = frame.seq
                observe_delay("sent", frame.data)
        return frames


@dataclass(frozen=True)
class Heard:
    """One event taken from the replica's push queue, not yet journaled (and not yet acked)."""

    name: str
    data: dict[str, Any]
    body: bytes | None = None
    message: AbstractIncomingMessage | None = None


class PushHub:
    def __init__(
        self,
        runtime: Runtime,
        store: GatewayStore,
        journal: LiveJournal,
        *,
        outbox_size: int,
        prefetch: int = 200,
    ) -> None:
        self._runtime = runtime
        self._store = store
        self.journal = journal
        self._outbox_size = outbox_size
        self._prefetch = prefetch
        self._by_person: dict[str, set[Connection]] = defaultdict(set)
        self._supervisors: set[Connection] = set()
        self.queue_name = f"gateway.push.{socket.gethostname()}.{uuid.uuid4().hex[:8]}"
        self._queue: ReplicaQueue | None = None
        # the events the broker handed over, journaled in batches in the order it gave them;
        # never more than ``prefetch`` (the rest wait, acked on journaling, in the queue)
        self._backlog: asyncio.Queue[Heard] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._held = 0
        """Events taken from the queue and not acked yet (the backlog gauge's share of this hub)."""

    # -- sockets ---------------------------------------------------------------------------

    def connect(self, person_id: str, supervisor: bool) -> Connection:
        connection = Connection(
            person_id, supervisor, self._outbox_size, None if supervisor else self.journal
        )
        self._by_person[person_id].add(connection)
        if supervisor:
            self._supervisors.add(connection)
        LIVE_SOCKETS.inc()
        return connection

    def disconnect(self, connection: Connection) -> None:
        people = self._by_person.get(connection.person_id)
        if people is not None:
            people.discard(connection)
            if not people:
                del self._by_person[connection.person_id]
        self._supervisors.discard(connection)
        LIVE_SOCKETS.dec()

    # -- the replica's own queue -------------------------------------------------------------

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="live journal")
        self._queue = await self._runtime.bus.replica_queue(
            self.queue_name, pushed_events(), self._on_message, prefetch=self._prefetch
        )
        log.info("live push queue ready", queue=self.queue_name)

    async def stop(self) -> None:
        if self._queue is not None:
            await self._queue.close()
        self._queue = None
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        PUSH_BACKLOG.dec(self._held)  # not acked: the broker takes them back with the channel
        self._held = 0

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        name = message.routing_key or ""
        try:
            data = json.loads(message.body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            log.warning("unreadable event not pushed", event=name)
            await _ack(message)
            return
        observe_delay("heard", data)
        self._held += 1
        PUSH_BACKLOG.inc()
        self._backlog.put_nowait(Heard(name, data, message.body, message))

    async def _work(self) -> None:
        while True:
            batch = [await self._backlog.get()]
            while not self._backlog.empty():
                batch.append(self._backlog.get_nowait())
            await self._deliver_batch(batch)
            for heard in batch:
                if heard.message is not None:
                    await _ack(heard.message)
            self._held -= len(batch)
            PUSH_BACKLOG.dec(len(batch))

    async def _deliver_batch(self, batch: list[Heard]) -> None:
        """Journal a batch, trying again while the database is away (the broker holds the
        rest meanwhile); any other failure is tried a few times, then logged and given up."""
        failures = 0
        while True:
            try:
                await self.deliver_many(batch)
                return
            except (PyMongoError, OSError) as exc:
                # the database is away (PyMongo lets some connection errors through as OSError)
                failures += 1
                log.warning("live journal unavailable; trying again", error=repr(exc))
            except Exception:
                failures += 1
                if failures >= DELIVERY_ATTEMPTS:
                    events = sorted({heard.name for heard in batch})
                    log.exception("push failed", events=events, attempts=failures)
                    return
            await asyncio.sleep(min(0.5 * failures, 5.0))

    async def deliver(self, name: str, data: dict[str, Any], body: bytes | None = None) -> int:
        """Journal one event for every agent it concerns and wake their sockets here; hand it to
        every supervisor's socket. How many sockets were told."""
        return await self.deliver_many([Heard(name, data, body)])

    async def deliver_many(self, events: list[Heard]) -> int:
        """:meth:`deliver` for several events, in order: each agent's frames in one write."""
        sent = 0
        segment: list[Heard] = []
        for heard in events:
            case_number = heard.data.get("case_number")
            if heard.name == "case.masked" and isinstance(case_number, int):
                # what came before the mask is journaled, then masked; what comes after is not
                sent += await self._journal(segment)
                segment = []
                await self.journal.mask_case(case_number)
            segment.append(heard)
        return sent + await self._journal(segment)

    async def _journal(self, events: list[Heard]) -> int:
        entries: dict[str, list[Entry]] = defaultdict(list)
        concerned: list[set[str]] = []
        holders = await self._store.holders_of_cases(
            {number for heard in events if (number := _held_case(heard)) is not None}
        )
        for heard in events:
            targets = _people_named(heard.data)
            if (number := _held_case(heard)) is not None:
                targets |= holders.get(number, set())
            concerned.append(targets)
            entry = Entry(event_id_of(heard.data, heard.body), heard.name, heard.data)
            for person in sorted(targets):
                entries[person].append(entry)
        await asyncio.gather(
            *(self.journal.append_many(person, mine) for person, mine in entries.items())
        )
        sent = 0
        for person in entries:
            for connection in self._by_person.get(person, ()):
                if not connection.supervisor:
                    connection.wake()
        for heard, targets in zip(events, concerned, strict=True):
            told = sum(
                1
                for person in targets
                for connection in self._by_person.get(person, ())
                if not connection.supervisor
            )
            if targets:
                observe_delay("journaled", heard.data)
            frame = {"event": heard.name, "data": heard.data}
            for connection in self._supervisors:
                connection.offer(frame)
                told += 1
            if told:
                PUSHED.labels(heard.name).inc()
            sent += told
        return sent


def _people_named(data: dict[str, Any]) -> set[str]:
    """The agents an event names (its own agent, either side of a transfer, ...)."""
    people: set[str] = set()
    for key in ("agent_id", "to_agent_id", "from_agent_id", "personal_agent_id"):
        value = data.get(key)
        if isinstance(value, str) and value:
            people.add(value)
    return people


def _held_case(heard: Heard) -> int | None:
    """The case whose holders a case event goes to, if it is one."""
    number = heard.data.get("case_number")
    return number if heard.name.startswith("case.") and isinstance(number, int) else None


class HoldingsProjection:
    """Who holds which interaction, from routing's events (durable, shared by replicas)."""

    def __init__(self, store: GatewayStore) -> None:
        self._store = store

    async def on_assigned(self, event: InteractionAssigned) -> None:
        await self._store.hold(event.interaction_id, event.agent_id, event.occurred_at)

    async def on_ended(self, event: InteractionEnded) -> None:
        await self._store.release(event.interaction_id, event.agent_id, event.occurred_at)

    async def on_transferred(self, event: InteractionTransferred) -> None:
        await self._store.release(event.interaction_id, event.from_agent_id, event.occurred_at)


async def _ack(message: AbstractIncomingMessage) -> None:
    """Ack a handled event; one whose channel went with a lost connection needs none (the
    broker dropped the queue with it)."""
    with contextlib.suppress(Exception):
        await message.ack()


def now() -> datetime:
    return datetime.now(UTC)


def observe_delay(stage: str, data: dict[str, Any]) -> None:
    """Count how long after the event's ``occurred_at`` its frame reached ``stage``."""
    try:
        occurred = datetime.fromisoformat(str(data.get("occurred_at")))
    except ValueError:
        return
    if occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)
    PUSH_DELAY.labels(stage).observe(max(0.0, (now() - occurred).total_seconds()))

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
from datetime import UTC, datetime
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage

from switchboard.contracts import registered_messages
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    InteractionTransferred,
)
from switchboard.gateway.journal import LiveJournal, event_id_of
from switchboard.gateway.metrics import LIVE_SOCKETS, PUSHED
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
        return frames


class PushHub:
    def __init__(
        self,
        runtime: Runtime,
        store: GatewayStore,
        journal: LiveJournal,
        *,
        outbox_size: int,
        backlog_size: int = 10_000,
    ) -> None:
        self._runtime = runtime
        self._store = store
        self.journal = journal
        self._outbox_size = outbox_size
        self._by_person: dict[str, set[Connection]] = defaultdict(set)
        self._supervisors: set[Connection] = set()
        self.queue_name = f"gateway.push.{socket.gethostname()}.{uuid.uuid4().hex[:8]}"
        self._queue: ReplicaQueue | None = None
        # events are journaled one at a time, in the order the broker gave them
        self._backlog: asyncio.Queue[tuple[str, dict[str, Any], bytes]] = asyncio.Queue(
            maxsize=backlog_size
        )
        self._worker: asyncio.Task[None] | None = None

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
            self.queue_name, pushed_events(), self._on_message
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

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        name = message.routing_key or ""
        try:
            data = json.loads(message.body)
        except ValueError:
            log.warning("unreadable event not pushed", event=name)
            return
        if not isinstance(data, dict):
            return
        try:
            self._backlog.put_nowait((name, data, message.body))
        except asyncio.QueueFull:
            # the other replicas journal it too; this replica's sockets read it from there
            log.warning("push backlog full, event left to the other replicas", event=name)

    async def _work(self) -> None:
        while True:
            name, data, body = await self._backlog.get()
            for attempt in range(1, DELIVERY_ATTEMPTS + 1):
                try:
                    await self.deliver(name, data, body)
                    break
                except Exception:
                    # a busy database must not cost an agent a frame they would replay later
                    if attempt == DELIVERY_ATTEMPTS:
                        log.exception("push failed", event=name, attempts=attempt)
                    else:
                        await asyncio.sleep(0.5 * attempt)

    async def deliver(self, name: str, data: dict[str, Any], body: bytes | None = None) -> int:
        """Journal one event for every agent it concerns and wake their sockets here; hand it to
        every supervisor's socket. How many sockets were told."""
        targets = await self._people_concerned(name, data)
        event_id = event_id_of(data, body)
        if name == "case.masked" and isinstance(data.get("case_number"), int):
            await self.journal.mask_case(data["case_number"])
        sent = 0
        for person in sorted(targets):
            await self.journal.append(person, event_id, name, data)
            for connection in self._by_person.get(person, ()):
                if not connection.supervisor:
                    connection.wake()
                    sent += 1
        frame = {"event": name, "data": data}
        for connection in self._supervisors:
            connection.offer(frame)
            sent += 1
        if sent:
            PUSHED.labels(name).inc()
        return sent

    async def _people_concerned(self, name: str, data: dict[str, Any]) -> set[str]:
        people: set[str] = set()
        for key in ("agent_id", "to_agent_id", "from_agent_id", "personal_agent_id"):
            value = data.get(key)
            if isinstance(value, str) and value:
                people.add(value)
        case_number = data.get("case_number")
        if name.startswith("case.") and isinstance(case_number, int):
            people |= await self._store.holders_of_case(case_number)
        return people


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


def now() -> datetime:
    return datetime.now(UTC)

"""Commands with answers: many at once, over this process's own reply queue.

Why not FastStream's ``broker.request``: it holds one lock per broker for the whole wait, so a
process using it carries out one request at a time (one slow owner stalls every caller), and it
asks for the answer over RabbitMQ's direct reply-to pseudo-queue. :class:`Requester` publishes the
command as ``Bus.publish`` does, with ``reply_to`` naming this process's own exclusive,
auto-delete queue, and matches answers to waiting requests by the command's message id (sent as
the AMQP correlation id of the request, and echoed by the answering runtime).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections import defaultdict
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

from switchboard.contracts import EXCHANGE, Message, Outcome
from switchboard.contracts import topology as names

TOPIC_EXCHANGE = RabbitExchange(EXCHANGE, type=ExchangeType.TOPIC, durable=True)


class Requester:
    """Commands with answers, concurrently, over this replica's own reply queue."""

    def __init__(self, broker: RabbitBroker, service: str) -> None:
        self._broker = broker
        self.queue_name = f"{service}.replies.{socket.gethostname()}.{uuid.uuid4().hex[:8]}"
        self._waiting: dict[str, list[asyncio.Future[bytes]]] = defaultdict(list)
        self._queue: Any = None
        self._tag: str | None = None

    async def start(self) -> None:
        self._queue = await self._broker.declare_queue(
            RabbitQueue(self.queue_name, durable=False, exclusive=True, auto_delete=True)
        )
        self._tag = await self._queue.consume(self._on_answer, no_ack=True)

    async def stop(self) -> None:
        if self._queue is not None and self._tag is not None:
            # bounded: the exclusive queue goes with the connection anyway
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._tag), timeout=2.0)
        self._queue = self._tag = None

    async def _on_answer(self, message: AbstractIncomingMessage) -> None:
        for future in self._waiting.pop(message.correlation_id or "", []):
            if not future.done():
                future.set_result(message.body)

    async def request(self, command: Message, *, timeout: float) -> Outcome:
        """Send ``command`` and wait for its owner's answer; TimeoutError after ``timeout``."""
        if self._queue is None:
            raise RuntimeError("the service is not started")
        # Matched by the command's own id: two commands may share a correlation id.
        key = str(command.message_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[key].append(future)
        try:
            async with asyncio.timeout(timeout):
                await self._broker.publish(
                    command.model_dump_json().encode(),
                    exchange=TOPIC_EXCHANGE,
                    routing_key=command.NAME,
                    persist=True,
                    mandatory=True,
                    reply_to=self.queue_name,
                    message_id=str(command.message_id),
                    correlation_id=key,
                    content_type="application/json",
                    message_type=command.NAME,
                    timestamp=command.occurred_at,
                    headers={names.HEADER_NAME: command.NAME},
                )
                body = await future
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None:
                with contextlib.suppress(ValueError):
                    waiting.remove(future)
                if not waiting:
                    self._waiting.pop(key, None)
        return Outcome.model_validate_json(body)

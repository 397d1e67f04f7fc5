"""Forward one command to its owning service and turn the answer into HTTP terms.

Why not ``Bus.request``: FastStream's request holds one lock per broker for the whole wait, so a
gateway using it carries out one command at a time for everybody (one slow owner stalls every
desktop), and it asks for the answer over RabbitMQ's direct reply-to, whose answers RabbitMQ 3.10
*returns* to the answering service as unroutable (``NO_ROUTE``; the runtime's channel raises on a
return and the answer is redelivered again and again). :class:`Requester` sends the command the
same way ``Bus.publish`` does, with ``reply_to`` naming this replica's own exclusive, auto-delete
reply queue, and matches answers to waiting requests by correlation id, any number at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage
from faststream.rabbit import RabbitBroker, RabbitQueue
from pydantic import ValidationError

from switchboard.contracts import Message, Outcome
from switchboard.contracts import topology as names
from switchboard.gateway.errors import ApiError, status_for
from switchboard.gateway.metrics import FORWARDED
from switchboard.runtime.bus import TOPIC_EXCHANGE
from switchboard.runtime.errors import describe_validation_error

log = structlog.get_logger("switchboard.gateway.forward")


def build_command(factory: Callable[..., Message], **fields: Any) -> Message:
    """Build a command; a value the contract refuses becomes 422 naming the field."""
    try:
        return factory(**fields)
    except ValidationError as exc:
        text, field = describe_validation_error(exc)
        raise ApiError(422, "invalid", text, field=field) from exc


class Requester:
    """Commands with answers, concurrently, over this replica's own reply queue."""

    def __init__(self, broker: RabbitBroker) -> None:
        self._broker = broker
        self.queue_name = f"gateway.replies.{socket.gethostname()}.{uuid.uuid4().hex[:8]}"
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
            raise RuntimeError("the gateway is not started")
        key = str(command.correlation_id)
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


class Forwarder:
    def __init__(self, requester: Requester, timeout: float) -> None:
        self._requester = requester
        self.timeout = timeout

    async def send(
        self,
        command: Message,
        *,
        owner: str,
        path_fields: Collection[str] = (),
        identity_fields: Collection[str] = (),
    ) -> dict[str, Any]:
        """The owner's ``result``; its refusal, silence or absence as an :class:`ApiError`."""
        name = command.NAME
        try:
            outcome = await self._requester.request(command, timeout=self.timeout)
        except TimeoutError:
            FORWARDED.labels(name, "timeout").inc()
            log.warning("owner did not answer", command=name, owner=owner, timeout=self.timeout)
            raise ApiError(
                504,
                "timeout",
                f"{owner} did not answer {name} within {self.timeout:g} s; "
                "it may still carry it out, check before retrying",
            ) from None
        except Exception as exc:
            FORWARDED.labels(name, "unavailable").inc()
            log.warning("command not delivered", command=name, owner=owner, error=repr(exc))
            raise ApiError(
                503,
                "unavailable",
                f"{owner} cannot take {name} now (not running or broker unreachable)",
            ) from None
        if outcome.ok:
            FORWARDED.labels(name, "ok").inc()
            return outcome.result
        refusal = outcome.error
        if refusal is None:
            FORWARDED.labels(name, "refused").inc()
            raise ApiError(409, "refused", f"{owner} refused {name} without a reason")
        FORWARDED.labels(name, "refused").inc()
        raise ApiError(
            status_for(refusal, path_fields, identity_fields),
            refusal.code,
            refusal.message,
            field=refusal.field,
        )

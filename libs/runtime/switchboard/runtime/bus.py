"""One broker factory, and the one way to publish and consume Switchboard messages.

Guarantees (see docs/architecture.md):

* publishes are persistent, mandatory and confirmed; an unroutable message raises;
* a consumer acks only after its handler returned; a handler error sends the message to
  ``<queue>.retry`` with a growing delay, and after ``max_attempts`` to ``<queue>.dead`` with the
  error and the attempt count in its headers;
* a message that does not validate goes straight to ``<queue>.dead`` with the validation error;
* a message already handled (same consumer, same message id) is acked without a second effect:
  the processed-message ledger sees to it, or, for a consumer declared ``ledger=False``, the
  handler itself (it remembers the message ids it applied in its aggregate's own write, or
  a repeat has no effect worth preventing);
* a copy that finds another copy in hand is checked again later, after a growing delay, and
  counted; a handler cancelled (the broker connection dropped) gives its claim back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from faststream import AckPolicy
from faststream.rabbit import (
    Channel,
    QueueType,
    RabbitBroker,
    RabbitMessage,
    RabbitQueue,
)
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from switchboard.contracts import ConsumerQueue, Message, Outcome
from switchboard.contracts import topology as names
from switchboard.runtime.dead_letters import scrub_masked_text
from switchboard.runtime.errors import InHandElsewhere, Refused, describe_validation_error
from switchboard.runtime.metrics import (
    BUSY_RETRIED,
    DEAD_LETTERED,
    DUPLICATES,
    RETRIED,
    bus_middleware,
)
from switchboard.runtime.mongo import Claim, ProcessedLedger
from switchboard.runtime.requests import TOPIC_EXCHANGE, Requester
from switchboard.runtime.settings import ServiceSettings

M = TypeVar("M", bound=Message)
Handler = Callable[[M], Awaitable[dict[str, Any] | None]]

log = structlog.get_logger("switchboard.bus")

HEADER_BUSY_CHECKS = "x-sb-busy-checks"
"""How many times this copy found another copy in hand (not a failed attempt)."""


def make_broker(
    settings: ServiceSettings, *, app_name: str, tracer_provider: TracerProvider | None = None
) -> RabbitBroker:
    middlewares: list[Any] = [bus_middleware(app_name)]
    if tracer_provider is not None:
        middlewares.append(RabbitTelemetryMiddleware(tracer_provider=tracer_provider))
    return RabbitBroker(
        settings.amqp_url.get_secret_value(),
        default_channel=Channel(
            prefetch_count=settings.prefetch, publisher_confirms=True, on_return_raises=True
        ),
        graceful_timeout=settings.graceful_timeout_seconds,
        reconnect_interval=settings.broker_reconnect_seconds,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        app_id=app_name,
        middlewares=middlewares,
        logger=structlog.get_logger("faststream"),
    )


class ReplicaQueue:
    """A queue of one process alone: see :meth:`Bus.replica_queue`."""

    def __init__(self, queue: AbstractQueue, consumer_tag: str) -> None:
        self.name = queue.name
        self._queue = queue
        self._consumer_tag = consumer_tag

    async def close(self) -> None:
        # bounded: the exclusive queue goes with the connection anyway
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._queue.cancel(self._consumer_tag), timeout=2.0)


class Bus:
    """Publishes messages and runs consumers with retry, dead-lettering and idempotency."""

    def __init__(
        self,
        broker: RabbitBroker,
        settings: ServiceSettings,
        ledger: ProcessedLedger,
        *,
        service: str,
    ) -> None:
        self.broker = broker
        self._settings = settings
        self._ledger = ledger
        self._queues: list[ConsumerQueue] = []
        self.requester = Requester(broker, service)
        self.consumers: dict[str, type[Message]] = {}
        """Queue name -> the message it carries (for the AsyncAPI documents)."""

    async def publish(self, message: Message, *, must_be_routed: bool | None = None) -> None:
        """Publish durably; returns once the broker confirmed.

        A command must reach the service that owns it: an unroutable command raises. An event
        is news for whoever listens, and may have no listener (yet): it is not an error, unless
        the producer says ``must_be_routed`` (the mail edge answers 250 only for mail some
        queue has taken).
        """
        mandatory = message.KIND == "command" if must_be_routed is None else must_be_routed
        await self.broker.publish(
            message.model_dump_json().encode(),
            exchange=TOPIC_EXCHANGE,
            routing_key=message.NAME,
            persist=True,
            mandatory=mandatory,
            message_id=str(message.message_id),
            correlation_id=str(message.correlation_id),
            content_type="application/json",
            message_type=message.NAME,
            timestamp=message.occurred_at,
            headers={names.HEADER_NAME: message.NAME},
        )

    async def request(self, command: Message, *, timeout: float = 10.0) -> Outcome:
        """Send a command and wait for its owner's answer; TimeoutError after ``timeout``.

        Many requests may wait at once; the answer comes to this process's own reply queue.
        """
        return await self.requester.request(command, timeout=timeout)

    def consume(
        self,
        queue: ConsumerQueue,
        model: type[M],
        handler: Handler[M],
        *,
        description: str = "",
        ledger: bool = True,
    ) -> None:
        """Handle every message routed into ``queue`` with ``handler``.

        The handler may return a small dict: it becomes the ``result`` of the :class:`Outcome`
        sent back when the message came with a reply address. Raising :class:`Refused` answers
        with the refusal and changes nothing; any other exception is retried.

        ``ledger=False`` is for a handler that drops a repeated message itself, in the same
        write as its effect (the message id remembered in the aggregate it changes), or whose
        repeat has no effect worth preventing (a query): the processed-message ledger's claim
        and completion, two writes per message, are skipped.
        """
        self._queues.append(queue)
        self.consumers[queue.name] = model

        async def on_message(msg: RabbitMessage) -> None:
            outcome = await self._handle(queue, model, handler, msg, ledger=ledger)
            if outcome is not None and msg.reply_to:
                await self._answer(msg, outcome)

        on_message.__name__ = f"{queue.name}:{getattr(handler, '__name__', 'handler')}"
        self.broker.subscriber(
            RabbitQueue(queue.name, declare=False),
            title=queue.name,
            description=description or (handler.__doc__ or "").strip() or model.__doc__,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            no_reply=True,
        )(on_message)

    async def replica_queue(
        self,
        name: str,
        keys: Iterable[str],
        on_message: Callable[[AbstractIncomingMessage], Awaitable[None]],
        *,
        max_length: int = 10_000,
        prefetch: int | None = None,
    ) -> ReplicaQueue:
        """Hear every message published under ``keys`` in this process, whichever replica it is.

        The queues of :meth:`consume` are shared: a message goes to one replica. Some news every
        replica needs (a live push for its sockets, a change to its in-memory index); this queue
        is this process's own (exclusive, gone with the connection) and drops its oldest
        messages past ``max_length``: best effort, for news that has a backstop.

        Unacked by default. With ``prefetch``, consumed with acks on a channel of its own: the
        broker hands out at most ``prefetch`` messages ``on_message`` has not acked yet, so a
        consumer that falls behind leaves its backlog in the queue, where its depth shows,
        rather than in memory where nothing does; ``on_message`` must ack each message.
        """
        exchange = await self.broker.declare_exchange(TOPIC_EXCHANGE)
        queue = await self.broker.config.declarer.declare_queue(
            RabbitQueue(
                name,
                durable=False,
                exclusive=True,
                auto_delete=True,
                arguments={"x-max-length": max_length, "x-overflow": "drop-head"},
            ),
            channel=None if prefetch is None else Channel(prefetch_count=prefetch),
        )
        for key in keys:
            await queue.bind(exchange, routing_key=key)
        consumer_tag = await queue.consume(on_message, no_ack=prefetch is None)
        return ReplicaQueue(queue, consumer_tag)

    def publishes(self, *messages: type[Message]) -> None:
        """Declare what this service publishes, so its AsyncAPI document shows it."""
        for message in messages:
            self.broker.publisher(
                exchange=TOPIC_EXCHANGE,
                routing_key=message.NAME,
                title=message.NAME,
                description=(message.__doc__ or "").strip(),
                schema=message,
                persist=True,
            )

    async def scrub_masked_text(self, pieces: Sequence[str]) -> int:
        """Star text an agent masked in every dead letter and waiting retry (``dead_letters``)."""
        return await scrub_masked_text(self._settings.amqp_url.get_secret_value(), pieces)

    async def declare_topology(self) -> None:
        """Declare the exchange and every consumer's queue, retry queue and dead queue."""
        exchange = await self.broker.declare_exchange(TOPIC_EXCHANGE)
        for queue in self._queues:
            main = await self.broker.declare_queue(self._durable_queue(queue.name, queue.dead))
            for key in queue.binds:
                await main.bind(exchange, routing_key=key)
            await self.broker.declare_queue(self._durable_queue(queue.retry, queue.name))
            await self.broker.declare_queue(self._durable_queue(queue.dead))

    def _durable_queue(self, name: str, dead_letter_to: str | None = None) -> RabbitQueue:
        """A consumer, retry or dead queue, of the type the operator chose (SB_QUEUE_TYPE)."""
        arguments: dict[str, Any] = {}
        if dead_letter_to is not None:
            arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_letter_to}
        if self._settings.queue_type == "classic":
            return RabbitQueue(name, durable=True, arguments=cast(Any, arguments))
        if dead_letter_to is not None:
            # A retry's way back to its queue must survive a broker crash: at-least-once
            # dead-lettering (which needs reject-publish overflow), not the default at-most-once.
            arguments |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        return RabbitQueue(
            name, queue_type=QueueType.QUORUM, durable=True, arguments=cast(Any, arguments)
        )

    async def _handle(
        self,
        queue: ConsumerQueue,
        model: type[M],
        handler: Handler[M],
        msg: RabbitMessage,
        *,
        ledger: bool = True,
    ) -> Outcome | None:
        attempt = int(msg.headers.get(names.HEADER_ATTEMPT, 1))
        wants_answer = bool(msg.reply_to)
        try:
            message = model.model_validate_json(msg.body)
        except ValidationError as exc:
            text, field = describe_validation_error(exc)
            await self._dead_letter(queue, msg, f"invalid {model.NAME}: {text}", attempt, "invalid")
            return _refusal("invalid", text, field) if wants_answer else None
        message_id = str(message.message_id)
        with structlog.contextvars.bound_contextvars(
            correlation_id=str(message.correlation_id),
            message_id=message_id,
            message_name=message.NAME,
            consumer=queue.name,
        ):
            claim, answer = (
                await self._ledger.claim(queue.name, message_id) if ledger else (Claim.NEW, None)
            )
            if claim is Claim.DONE:
                DUPLICATES.labels(queue.name).inc()
                log.info("duplicate message ignored")
                return Outcome.model_validate(answer) if wants_answer and answer else None
            if claim is Claim.BUSY:
                await self._check_back_later(queue, msg, attempt)
                return None
            try:
                held = self._ledger.holding(queue.name, message_id) if ledger else _unheld()
                async with held:
                    result = await handler(message)
            except Refused as refused:
                log.info("command refused", reason=refused.refusal.message)
                outcome = Outcome(ok=False, error=refused.refusal)
            except InHandElsewhere:
                if ledger:
                    await self._give_back(queue, message_id)
                await self._check_back_later(queue, msg, attempt)
                return None
            except Exception as exc:
                if ledger:
                    await self._give_back(queue, message_id)
                await self._retry_or_dead(queue, msg, exc, attempt)
                return None
            except asyncio.CancelledError:
                log.warning("handling cancelled; the broker will deliver the message again")
                if ledger:
                    await self._give_back(queue, message_id)
                raise
            else:
                outcome = Outcome(ok=True, result=result or {})
            if ledger:
                answer = outcome.model_dump(mode="json")
                await self._ledger.complete(queue.name, message_id, answer)
            return outcome if wants_answer else None

    async def _give_back(self, queue: ConsumerQueue, message_id: str) -> None:
        """Release a claim, best effort and shielded from a cancellation: if it fails (the
        database is gone) the claim's short lease, or this process taking its own leftover
        back, lets the next copy through."""
        release = asyncio.ensure_future(self._ledger.release(queue.name, message_id))
        try:
            await asyncio.wait_for(asyncio.shield(release), timeout=10.0)
        except (Exception, asyncio.CancelledError) as exc:
            log.warning("claim not given back; its lease will expire", error=repr(exc))

    async def _check_back_later(
        self, queue: ConsumerQueue, msg: RabbitMessage, attempt: int
    ) -> None:
        """Another copy is in hand (or its holder died and the lease has not run out): look
        again later, a little later each time, without spending one of the message's attempts."""
        checks = int(msg.headers.get(HEADER_BUSY_CHECKS, 0)) + 1
        BUSY_RETRIED.labels(queue.name).inc()
        delay = min(
            self._settings.retry_delay_seconds / 2 * 2 ** (checks - 1),
            self._settings.handling_lease_seconds / 3,
        )
        log.info("a copy of this message is in hand elsewhere: checking back later", checks=checks)
        await self._send_to_retry(
            queue, msg, attempt, "copy in hand elsewhere", delay=delay, busy_checks=checks
        )

    async def _answer(self, msg: RabbitMessage, outcome: Outcome) -> None:
        """Answer a request. The requester may have given up (timed out) and gone: a reply
        nobody waits for is dropped, never retried, since the command's effect is stored."""
        try:
            await self.broker.publish(
                outcome.model_dump_json().encode(),
                routing_key=msg.reply_to,
                mandatory=False,
                correlation_id=msg.correlation_id,
                content_type="application/json",
            )
        except Exception as exc:
            log.warning("answer could not be sent; the requester has gone", error=str(exc))

    async def _retry_or_dead(
        self, queue: ConsumerQueue, msg: RabbitMessage, exc: Exception, attempt: int
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if attempt >= self._settings.max_attempts:
            log.error("handling failed for good", attempt=attempt, error=error, exc_info=exc)
            await self._dead_letter(queue, msg, error, attempt, "failed")
            return
        log.warning("handling failed, will retry", attempt=attempt, error=error)
        RETRIED.labels(queue.name).inc()
        delay = min(
            self._settings.retry_delay_seconds * 2 ** max(attempt - 1, 0),
            self._settings.retry_delay_max_seconds,
        )
        await self._send_to_retry(queue, msg, attempt + 1, error, delay=delay)

    async def _send_to_retry(
        self,
        queue: ConsumerQueue,
        msg: RabbitMessage,
        attempt: int,
        error: str,
        *,
        delay: float,
        busy_checks: int = 0,
    ) -> None:
        headers = {k: v for k, v in _plain_headers(msg).items() if k != HEADER_BUSY_CHECKS}
        if busy_checks:
            headers[HEADER_BUSY_CHECKS] = busy_checks
        await self.broker.publish(
            msg.body,
            queue=queue.retry,
            persist=True,
            expiration=delay,
            message_id=msg.message_id,
            correlation_id=msg.correlation_id,
            reply_to=msg.reply_to or None,
            content_type=msg.content_type,
            headers={
                **headers,
                names.HEADER_ATTEMPT: attempt,
                names.HEADER_ERROR: error[:1000],
            },
        )

    async def _dead_letter(
        self, queue: ConsumerQueue, msg: RabbitMessage, error: str, attempt: int, reason: str
    ) -> None:
        DEAD_LETTERED.labels(queue.name, reason).inc()
        log.error("message dead-lettered", queue=queue.dead, error=error, attempts=attempt)
        await self.broker.publish(
            msg.body,
            queue=queue.dead,
            persist=True,
            message_id=msg.message_id,
            correlation_id=msg.correlation_id,
            content_type=msg.content_type,
            headers={
                **_plain_headers(msg),
                names.HEADER_ERROR: error[:4000],
                names.HEADER_ATTEMPTS: attempt,
                names.HEADER_CONSUMER: queue.name,
                names.HEADER_FAILED_AT: datetime.now(UTC).isoformat(),
            },
        )


@contextlib.asynccontextmanager
async def _unheld() -> AsyncIterator[None]:
    """No claim to hold (a consumer without the ledger)."""
    yield


def _plain_headers(msg: RabbitMessage) -> dict[str, Any]:
    """The headers worth carrying to a retry or dead copy (not RabbitMQ's own x-death)."""
    return {k: v for k, v in msg.headers.items() if k != "x-death" and _json_safe(v)}


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def _refusal(code: str, text: str, field: str | None) -> Outcome:
    from switchboard.contracts import Refusal

    return Outcome(ok=False, error=Refusal(code=code, message=text, field=field))

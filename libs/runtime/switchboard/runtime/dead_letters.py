"""Dead letters and waiting retries that still hold text an agent masked: rewritten, starred.

A copy of a customer's mail can sit in a ``<queue>.dead`` queue (kept for a person to act on)
or a ``<queue>.retry`` queue (waiting to be tried again) when an agent masks part of it. Masking
must reach those copies too (docs/security.md). Threading knows the masked text only while it
carries the mask command out, so it hands it here then: every dead and retry queue of every
service (``switchboard.contracts.queues``) is read through and each message put back, with every
masked piece starred in its body and headers (the dead letter stays, for its reason; the retry
still runs). Nothing is kept of the masked text.

Messages are put back rather than requeued, so a scrub never counts as a delivery (a quorum
queue drops a message delivered too often). A crash halfway may leave a copy twice; consumers
are idempotent and a dead letter twice is harmless.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
from collections.abc import Iterable, Sequence
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelClosed

from switchboard.contracts import ConsumerQueue
from switchboard.contracts import queues as queue_modules

log = structlog.get_logger("switchboard.dead_letters")
MASK = "*"
PARALLEL_QUEUES = 16
"""Queues with messages read at once, each on a channel of its own."""


def every_consumer_queue() -> list[ConsumerQueue]:
    """Every consumer queue any service declares (its dead and retry queues follow its name)."""
    found: dict[str, ConsumerQueue] = {}

    def collect(value: Any) -> None:
        if isinstance(value, ConsumerQueue):
            found[value.name] = value
        elif isinstance(value, (tuple, list)):
            for item in value:
                collect(item)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)

    for info in pkgutil.iter_modules(queue_modules.__path__):
        module = importlib.import_module(f"{queue_modules.__name__}.{info.name}")
        for value in vars(module).values():
            collect(value)
    return sorted(found.values(), key=lambda q: q.name)


def _forms(piece: str) -> list[str]:
    """How a piece of text can appear in a JSON body or a header."""
    escaped = json.dumps(piece)[1:-1]
    ascii_only = json.dumps(piece, ensure_ascii=True)[1:-1]
    return sorted({piece, escaped, ascii_only}, key=len, reverse=True)


def star(text: str, pieces: Sequence[str]) -> str:
    for piece in pieces:
        for form in _forms(piece):
            text = text.replace(form, MASK * len(form))
    return text


def _starred_body(body: bytes, pieces: Sequence[str]) -> bytes:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    return star(text, pieces).encode("utf-8")


def _starred_headers(headers: dict[str, Any], pieces: Sequence[str]) -> dict[str, Any]:
    return {k: star(v, pieces) if isinstance(v, str) else v for k, v in headers.items()}


def _copy(message: AbstractIncomingMessage, pieces: Sequence[str]) -> aio_pika.Message:
    return aio_pika.Message(
        _starred_body(message.body, pieces),
        headers=_starred_headers(dict(message.headers or {}), pieces),
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        reply_to=message.reply_to,
        expiration=message.expiration,
        timestamp=message.timestamp,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def _scrub_queue(
    connection: aio_pika.abc.AbstractConnection, name: str, pieces: Sequence[str]
) -> int:
    """Put every message of this queue back with the pieces starred; how many changed."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        try:
            queue = await channel.declare_queue(name, passive=True)
        except ChannelClosed:
            return 0  # no such queue in this deployment
        if not queue.declaration_result.message_count:
            return 0
        held: list[AbstractIncomingMessage] = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            held.append(message)
        changed = 0
        for message in held:
            copy = _copy(message, pieces)
            changed += copy.body != message.body or copy.headers != (message.headers or {})
            await channel.default_exchange.publish(copy, routing_key=name)
            await message.ack()
        return changed
    finally:
        if not channel.is_closed:
            await channel.close()


async def _holding_messages(
    connection: aio_pika.abc.AbstractConnection, names: Sequence[str]
) -> list[str]:
    """The queues among ``names`` that exist and hold messages.

    Asked one after another on one channel: a missing queue makes the broker close the channel,
    and opening channels while others are being closed by the broker can reuse a number it
    still holds ("second 'channel.open' seen", which closes the whole connection).
    """
    found: list[str] = []
    channel = await connection.channel()
    try:
        for name in names:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except ChannelClosed:
                channel = await connection.channel()  # no such queue in this deployment
                continue
            if queue.declaration_result.message_count:
                found.append(name)
    finally:
        if not channel.is_closed:
            await channel.close()
    return found


async def scrub_masked_text(
    amqp_url: str, pieces: Sequence[str], queues: Iterable[ConsumerQueue] | None = None
) -> int:
    """Star ``pieces`` in every dead letter and waiting retry; how many messages changed."""
    if not pieces:
        return 0
    names = [
        name
        for queue in (queues if queues is not None else every_consumer_queue())
        for name in (queue.dead, queue.retry)
    ]
    at_once = asyncio.Semaphore(PARALLEL_QUEUES)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        holding = await _holding_messages(connection, names)

        async def one(name: str) -> int:
            async with at_once:
                return await _scrub_queue(connection, name, pieces)

        changed = sum(await asyncio.gather(*(one(name) for name in holding)))
    if changed:
        log.info("masked text starred in dead letters and retries", messages=changed)
    return changed

"""A service's consumer table: each message it consumes declared once, message -> handler.

The queue is not named in the table: it is found by the message's ``NAME`` among the service's
queues in ``switchboard.contracts.queues.<service>`` (one queue per message, bound to that
name). So a queue's name and what it carries are written once, in contracts, and the table says
only who handles what. Wiring refuses, at start-up, a message with no queue of its own, a message
declared twice, and a queue of the service that nobody consumes.

Use::

    consume_table(runtime.bus, queues.ALL, [
        Consumer(EmailReceived, handlers.on_email_received),
        Consumer(cases.ReplyToCase, handlers.on_reply),
    ])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from switchboard.contracts import ConsumerQueue, Message
from switchboard.runtime.bus import Bus, Handler

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Consumer(Generic[M]):
    """One row of the table: ``handler`` handles every ``message``."""

    message: type[M]
    handler: Handler[M]


def consume_table(
    bus: Bus, queues: Iterable[ConsumerQueue], table: Iterable[Consumer[Any]]
) -> None:
    """Consume each row's message from the one queue bound to its name."""
    by_message = {queue.binds[0]: queue for queue in queues if len(queue.binds) == 1}
    taken: set[str] = set()
    for row in table:
        name = row.message.NAME
        queue = by_message.get(name)
        if queue is None:
            raise LookupError(f"no queue of this service carries {name!r} alone")
        if name in taken:
            raise ValueError(f"{name!r} is declared twice in the consumer table")
        taken.add(name)
        bus.consume(queue, row.message, row.handler)
    missing = sorted(queue.name for name, queue in by_message.items() if name not in taken)
    if missing:
        raise ValueError(f"queues nobody consumes: {', '.join(missing)}")

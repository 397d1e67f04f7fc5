"""The consumer table: each consumed message declared once, its queue found by its NAME.

Pure: ``consume_table`` only calls ``bus.consume``; a recorder stands in for the bus.
"""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.contracts import ConsumerQueue
from switchboard.contracts.mail import EmailReceived, EmailSent
from switchboard.contracts.queues import threading as threading_queues
from switchboard.runtime.bus import Bus
from switchboard.runtime.consumers import Consumer, consume_table
from switchboard.threading.app import ThreadingSettings, build


class Recorder:
    def __init__(self) -> None:
        self.consumed: list[tuple[str, type[Any]]] = []

    def consume(self, queue: ConsumerQueue, model: type[Any], handler: Any) -> None:
        self.consumed.append((queue.name, model))


async def handle(_: Any) -> None:
    return None


RECEIVED = ConsumerQueue(f"svc.{EmailReceived.NAME}", (EmailReceived.NAME,))
SENT = ConsumerQueue(f"svc.{EmailSent.NAME}", (EmailSent.NAME,))


def wire(queues: list[ConsumerQueue], table: list[Consumer[Any]]) -> Recorder:
    recorder = Recorder()
    bus: Bus = recorder  # type: ignore[assignment]
    consume_table(bus, queues, table)
    return recorder


def test_each_message_is_consumed_from_the_queue_bound_to_its_name() -> None:
    done = wire([RECEIVED, SENT], [Consumer(EmailSent, handle), Consumer(EmailReceived, handle)])
    assert sorted(done.consumed, key=lambda c: c[0]) == [
        ("svc.email.received", EmailReceived),
        ("svc.email.sent", EmailSent),
    ]


def test_a_message_without_a_queue_of_its_own_is_refused_naming_it() -> None:
    with pytest.raises(LookupError, match=r"'email\.sent'"):
        wire([RECEIVED], [Consumer(EmailReceived, handle), Consumer(EmailSent, handle)])


def test_a_message_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        wire([RECEIVED], [Consumer(EmailReceived, handle), Consumer(EmailReceived, handle)])


def test_a_queue_nobody_consumes_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"svc\.email\.sent"):
        wire([RECEIVED, SENT], [Consumer(EmailReceived, handle)])


def test_threading_consumes_every_queue_of_its_contracts_once() -> None:
    runtime = build(ThreadingSettings(development=True))
    assert runtime.bus.consumers == {
        queue.name: runtime.bus.consumers[queue.name] for queue in threading_queues.ALL
    }
    assert {model.NAME for model in runtime.bus.consumers.values()} == {
        queue.binds[0] for queue in threading_queues.ALL
    }

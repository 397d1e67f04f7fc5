"""A copy of a mail in a dead-letter or retry queue is masked with the mail.

Against the real stack: a customer's mail is filed; a copy of the very message the mail edge
published (taken off the exchange) lies in threading's dead-letter queue, as the bus leaves a
message it gave up on, and another waits in its retry queue. The agent then masks an account
number in the mail. The dead letter must still be there, for its reason, but no longer hold the
number; the waiting retry neither.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import aio_pika
import pytest

from switchboard.app.localstack import Backends, management_call
from switchboard.contracts import EXCHANGE
from switchboard.contracts import topology as names
from switchboard.contracts.mail import EmailReceived
from switchboard.contracts.queues import threading as threading_queues
from tests.security.conftest import Stack, customer_mail, until
from tests.security.test_card_numbers import leaks, needles

ACCOUNT = "7310.4452.8865"


def queued(real_servers: Backends, amqp_url: str, queue: str) -> list[dict[str, Any]]:
    """The messages of a queue as the management API shows them (left in place)."""
    assert real_servers.management_url is not None
    vhost = urllib.parse.quote(urllib.parse.urlsplit(amqp_url).path.lstrip("/"), safe="")
    got = management_call(
        real_servers.management_url,
        "POST",
        f"/api/queues/{vhost}/{urllib.parse.quote(queue, safe='')}/get",
        {"count": 100, "ackmode": "ack_requeue_true", "encoding": "auto"},
    )
    assert isinstance(got, list)
    return got


async def test_a_dead_letter_of_a_mail_no_longer_holds_what_the_agent_masked(
    stack: Stack, real_servers: Backends, amqp_url: str
) -> None:
    if real_servers.management_url is None:
        pytest.skip("no RabbitMQ management API to read the queues")
    await stack.login("alice")
    alice = stack.headers["alice"]
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE)
        tap = await channel.declare_queue(exclusive=True)
        await tap.bind(exchange, routing_key=EmailReceived.NAME)
        await stack.deliver(
            customer_mail(
                f"Close account {ACCOUNT}",
                f"Hello, please close account {ACCOUNT} today.",
                sender="Ben Customer <ben@example.org>",
            )
        )
        published = await until(lambda: tap.get(no_ack=True, fail=False))
        assert ACCOUNT in published.body.decode()  # the copy the edge published holds it
        dead = threading_queues.EMAILS_RECEIVED.dead
        retry = threading_queues.EMAILS_RECEIVED.retry
        # as the bus leaves a message it gave up on, and one waiting to be tried again
        await channel.default_exchange.publish(
            aio_pika.Message(
                published.body,
                content_type="application/json",
                message_id=published.message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={
                    names.HEADER_ERROR: f"RuntimeError: could not file 'Close account {ACCOUNT}'",
                    names.HEADER_ATTEMPTS: 5,
                    names.HEADER_CONSUMER: threading_queues.EMAILS_RECEIVED.name,
                },
            ),
            routing_key=dead,
        )
        await channel.default_exchange.publish(
            aio_pika.Message(
                published.body,
                content_type="application/json",
                message_id=published.message_id,
                expiration=3600,
                headers={names.HEADER_ATTEMPT: 2},
            ),
            routing_key=retry,
        )

    case = await stack.take_case("alice", f"Close account {ACCOUNT}")
    view = (await stack.http.get(f"/cases/{case}", headers=alice)).json()
    mail = next(e for e in view["emails"] if e["direction"] == "inbound")
    spans = [
        {
            "email_id": mail["email_id"],
            "field": field,
            "start": mail[field].index(ACCOUNT),
            "end": mail[field].index(ACCOUNT) + len(ACCOUNT),
        }
        for field in ("subject", "text")
    ]
    secrets = needles(ACCOUNT) | {ACCOUNT}
    before = queued(real_servers, amqp_url, dead)
    assert leaks(json.dumps(before), secrets)  # the test can see a leak

    masked = await stack.http.post(f"/cases/{case}/mask", json={"spans": spans}, headers=alice)
    assert masked.status_code == 200, masked.text

    dead_now = queued(real_servers, amqp_url, dead)
    assert len(dead_now) == 1, dead_now  # the dead letter stays, for its reason
    letter = dead_now[0]
    assert letter["properties"]["headers"][names.HEADER_CONSUMER] == "threading.email.received"
    assert letter["properties"]["headers"][names.HEADER_ATTEMPTS] == 5
    assert "*" * len(ACCOUNT) in letter["payload"]
    EmailReceived.model_validate_json(letter["payload"])  # still the message, starred
    retry_now = queued(real_servers, amqp_url, retry)
    assert len(retry_now) == 1, retry_now
    assert not leaks(json.dumps(dead_now), secrets), dead_now
    assert not leaks(json.dumps(retry_now), secrets), retry_now

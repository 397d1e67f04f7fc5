"""Threading throughput: emails/s from `email.received` published to case stored + route request.

    python bench/bench_threading.py [--mails 200] [--prefetch 16]

Finds or starts real RabbitMQ and FerretDB/MongoDB (loopback) like the tests, runs one threading
service in-process on a fresh virtual host and database prefix, publishes new customer mails as
fast as the broker confirms them, and waits until every mail is filed under its own case and its
`interaction.route_requested` has reached a queue (standing in for routing). Bounded: gives up
after 90 s. Prints the figures and the command to repeat them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import support

from switchboard.contracts import EXCHANGE
from switchboard.contracts.mail import Address, EmailReceived
from switchboard.threading.app import ThreadingSettings, build

LIMIT_SECONDS = 90.0
COMMANDS = support.count_commands()
PUBLISHES = support.Publishes()


def _mail(i: int) -> EmailReceived:
    now = datetime.now(UTC)
    return EmailReceived(
        email_id=uuid.uuid4().hex * 2,
        channel="smtp",
        mailbox="support@acme.example",
        service="support",
        received_at=now,
        size=2000,
        internet_message_id=f"<{uuid.uuid4().hex}@bench.example>",
        sender=Address(name=f"Customer {i}", address=f"customer{i}@bench.example"),
        to=[Address(name="Support", address="support@acme.example")],
        subject=f"Request {i}: printer broken",
        sent_at=now,
        text="Hello,\n\nmy printer is broken; card 4111 1111 1111 1111.\n\nRegards",
    )


async def run(found: support.Servers, mails: int, prefetch: int) -> dict[str, Any]:
    floor = await support.floor_rate(found)
    settings = ThreadingSettings(
        amqp_url=found.amqp_url,
        mongodb_url=found.mongodb_url,
        database_prefix=found.prefix,
        http_port=0,
        prefetch=prefetch,
        log_level="WARNING",
        threading_config_file=Path("deploy/demo/threading.json"),
        development=True,
    )
    COMMANDS.databases = {settings.database_name("threading")}
    runtime = build(settings)
    connection = await aio_pika.connect(found.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for name, key in (
            ("bench.routes", "interaction.route_requested"),
            ("bench.outbound", "email.outbound.requested"),
            ("bench.events", "case.#"),
        ):
            queue = await channel.declare_queue(name, durable=True)
            await queue.bind(exchange, routing_key=key)
        routes = await channel.declare_queue("bench.routes", passive=True)
        async with runtime.app:
            batch = [_mail(i) for i in range(mails)]
            COMMANDS.counting = PUBLISHES.counting = True
            started = time.monotonic()
            sent_at: dict[str, float] = {}
            for start in range(0, mails, 50):
                chunk = batch[start : start + 50]
                await asyncio.gather(*(runtime.bus.publish(m) for m in chunk))
                now = time.monotonic()
                sent_at.update({m.subject: now for m in chunk})
            published = time.monotonic() - started
            latencies: list[float] = []
            seen = 0
            while seen < mails and time.monotonic() - started < LIMIT_SECONDS:
                message = await routes.get(fail=False, no_ack=True)
                if message is None:
                    await asyncio.sleep(0.02)
                    continue
                seen += 1
                subject = json.loads(message.body)["summary"].get("subject", "")
                if subject in sent_at:
                    latencies.append(time.monotonic() - sent_at[subject])
            elapsed = time.monotonic() - started
            COMMANDS.counting = PUBLISHES.counting = False
            cases = await runtime.db["cases"].count_documents({})
    finally:
        await connection.close()
        await support.drop_databases(found.mongodb_url, settings.database_name("threading"))
    return {
        "mails": mails,
        "prefetch": prefetch,
        "published_in_s": round(published, 2),
        "route_requests": seen,
        "cases": cases,
        "elapsed_s": round(elapsed, 2),
        "emails_per_s": round(seen / elapsed, 1) if elapsed else 0.0,
        "latency_p50_s": round(support.percentile(latencies, 0.5), 2),
        "latency_p95_s": round(support.percentile(latencies, 0.95), 2),
        "floor": round(floor, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=200)
    parser.add_argument("--prefetch", type=int, default=16)
    args = parser.parse_args()
    with support.servers() as found:
        figures = asyncio.run(run(found, args.mails, args.prefetch))
    print(f"command: {support.command_line()}")
    print(f"servers: {found.origin}")
    print("threading bench: email.received -> case stored + route request published")
    for key, value in figures.items():
        print(f"  {key:16} {value}")
    if figures["route_requests"] < args.mails:
        print(f"  (stopped at the {LIMIT_SECONDS:.0f} s limit: the rate is over the mails filed)")
    # the bench's own publishes of the mails are in the count: one per mail, taken off
    PUBLISHES.count -= args.mails
    print("\n".join(support.cost_lines(figures["route_requests"], "new mail", COMMANDS, PUBLISHES)))
    print(support.ratio_line("threading", figures["emails_per_s"], figures["floor"]))


if __name__ == "__main__":
    main()

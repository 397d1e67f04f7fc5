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
from pymongo import AsyncMongoClient

from switchboard.contracts import EXCHANGE
from switchboard.contracts.mail import Address, EmailReceived
from switchboard.runtime.localstack import backends, management_call
from switchboard.threading.app import ThreadingSettings, build

LIMIT_SECONDS = 90.0


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


async def run(mails: int, prefetch: int) -> dict[str, Any]:
    with backends(Path(".local")) as found:
        vhost = f"bench-{uuid.uuid4().hex[:8]}"
        amqp_url = found.amqp_url
        if found.management_url:
            user = found.amqp_url.split("://", 1)[1].split(":", 1)[0]
            management_call(found.management_url, "PUT", f"/api/vhosts/{vhost}")
            management_call(
                found.management_url,
                "PUT",
                f"/api/permissions/{vhost}/{user}",
                {"configure": ".*", "write": ".*", "read": ".*"},
            )
            amqp_url = found.vhost_url(vhost)
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        settings = ThreadingSettings(
            amqp_url=amqp_url,
            mongodb_url=found.mongodb_url,
            database_prefix=prefix,
            http_port=0,
            prefetch=prefetch,
            log_level="WARNING",
            threading_config_file=Path("deploy/demo/threading.json"),
            development=True,
        )
        runtime = build(settings)
        connection = await aio_pika.connect(amqp_url)
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
                cases = await runtime.db["cases"].count_documents({})
        finally:
            await connection.close()
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(found.mongodb_url)
            # By name: listing every database can stall on a busy shared FerretDB.
            await client.drop_database(f"{prefix}_threading")
            await client.close()
            if found.management_url:
                management_call(found.management_url, "DELETE", f"/api/vhosts/{vhost}")
        return {
            "mails": mails,
            "prefetch": prefetch,
            "published_in_s": round(published, 2),
            "route_requests": seen,
            "cases": cases,
            "elapsed_s": round(elapsed, 2),
            "emails_per_s": round(seen / elapsed, 1) if elapsed else 0.0,
            "latency_p50_s": _quantile(latencies, 0.5),
            "latency_p95_s": _quantile(latencies, 0.95),
            "mongodb": found.origin.get("mongodb", "?"),
            "amqp": found.origin.get("amqp", "?"),
        }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=200)
    parser.add_argument("--prefetch", type=int, default=16)
    args = parser.parse_args()
    figures = asyncio.run(run(args.mails, args.prefetch))
    print("threading bench: email.received -> case stored + route request published")
    for key, value in figures.items():
        print(f"  {key:16} {value}")
    print(
        f"  command          python bench/bench_threading.py --mails {args.mails}"
        f" --prefetch {args.prefetch}"
    )
    if figures["route_requests"] < args.mails:
        print(f"  (stopped at the {LIMIT_SECONDS:.0f} s limit: the rate is over the mails filed)")


if __name__ == "__main__":
    main()

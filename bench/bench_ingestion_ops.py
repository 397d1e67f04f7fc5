"""Database operations per inbound email, counted with a PyMongo command listener.

Run: ``.venv/bin/python bench/bench_ingestion_ops.py [--mails 40]``

One ingestion service runs in this process against the local RabbitMQ and MongoDB-protocol
server (found or started like the tests do, in a virtual host and databases of its own). A
probe queue stands in for threading's, so ``email.received`` is routable. ``--mails`` distinct
mails (text and HTML, ~3 KB) are sent through its SMTP server one at a time, each answered 250
(raw bytes stored, event confirmed). Every command the service sends to its own database in
that window is counted, by command and collection; the periodic sweep is set to hours so that
only the mails are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "ingestion"))

import support  # noqa: E402
from bench_ingestion import make_mail  # noqa: E402
from faststream.rabbit import RabbitQueue  # noqa: E402

from switchboard.contracts.mail import EmailReceived  # noqa: E402
from switchboard.ingestion.app import IngestionSettings, build  # noqa: E402
from switchboard.runtime.bus import TOPIC_EXCHANGE  # noqa: E402


def _send(port: int, mails: list[bytes]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo("bench.example.com")
        for raw in mails:
            refused = smtp.sendmail("kunde@example.de", ["support@switchboard.local"], raw)
            assert not refused, refused


async def _count(
    found: support.Servers, mails: int, commands: support.Commands, publishes: support.Publishes
) -> None:
    settings = IngestionSettings(
        **support.service_settings(found),
        smtp_port=0,
        mailboxes=[{"address": "support@switchboard.local", "service": "support"}],
        stale_publish_sweep_seconds=support.QUIET,
        service_token="bench-ingestion-ops-token",
    )
    commands.databases = {settings.database_name("ingestion")}
    runtime = build(settings)
    probe = f"bench.ingestion_ops.received.{found.prefix}"

    async def bind_probe() -> None:
        queue = await runtime.broker.declare_queue(RabbitQueue(probe, durable=False))
        exchange = await runtime.broker.declare_exchange(TOPIC_EXCHANGE)
        await queue.bind(exchange, routing_key=EmailReceived.NAME)

    runtime.on_start(bind_probe)
    try:
        async with runtime.app:
            assert runtime.smtp is not None and runtime.smtp.port
            port = runtime.smtp.port
            await asyncio.to_thread(_send, port, [make_mail("warm", n) for n in range(3)])
            await asyncio.sleep(1.0)  # the periodic jobs' first runs are over
            commands.counting = publishes.counting = True
            await asyncio.to_thread(_send, port, [make_mail("ops", n) for n in range(mails)])
            commands.counting = publishes.counting = False
            queue = await runtime.broker.declare_queue(RabbitQueue(probe, durable=False))
            await queue.delete(if_unused=False, if_empty=False)
    finally:
        await support.drop_databases(found.mongodb_url, settings.database_name("ingestion"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=40)
    args = parser.parse_args()

    async def count(
        found: support.Servers, commands: support.Commands, publishes: support.Publishes
    ) -> None:
        await _count(found, args.mails, commands, publishes)

    support.run_ops(count, per=args.mails, what="inbound email")


if __name__ == "__main__":
    main()

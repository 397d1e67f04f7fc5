"""Database operations per inbound email (new mail, follow-up), counted with a PyMongo command
listener.

Run: ``.venv/bin/python bench/bench_threading_ops.py [--mails 30]``

One threading service runs in this process against the local RabbitMQ and MongoDB-protocol
server (found or started like the tests do, in a virtual host and databases of its own), with
the demo configuration. ``--mails`` new customer mails are published one at a time, each waited
for until its ``interaction.route_requested`` arrives (the case is filed and routed); then one
follow-up per case (``In-Reply-To`` the first mail), waited for the same way. Every command the
service sends to its own database in each phase is counted, by command and collection; the
periodic jobs are set to hours so that only the mails are counted. The runtime's
processed-message ledger is listed apart (it is the same for every consumer).
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import support

from switchboard.contracts import ConsumerQueue
from switchboard.contracts.cases import CaseEmailAttached
from switchboard.contracts.mail import Address, EmailOutboundRequested, EmailReceived
from switchboard.contracts.routing import RouteRequested
from switchboard.runtime.service import Runtime
from switchboard.threading.app import ThreadingSettings, build

LISTENER = ConsumerQueue("bench.threading_ops.routes", (RouteRequested.NAME,))
FILED = ConsumerQueue("bench.threading_ops.filed", (CaseEmailAttached.NAME,))
MAIL_EDGE = ConsumerQueue("bench.threading_ops.outbound", (EmailOutboundRequested.NAME,))


def _mail(i: int, *, reply_to: str | None = None) -> EmailReceived:
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
        subject=f"{'Re: ' if reply_to else ''}Request {i}: printer broken",
        sent_at=now,
        text="Hello,\n\nmy printer is still broken.\n\nRegards",
        in_reply_to=reply_to,
        references=[reply_to] if reply_to else [],
    )


async def _count(
    found: support.Servers,
    mails: int,
    commands: support.Commands,
    publishes: support.Publishes,
) -> list[str]:
    settings = ThreadingSettings(
        **support.service_settings(found),
        threading_config_file=Path("deploy/demo/threading.json"),
        development=True,
        config_refresh_seconds=support.QUIET,
        outbox_sweep_seconds=support.QUIET,
    )
    commands.databases = {settings.database_name("threading")}
    routed: asyncio.Queue[RouteRequested] = asyncio.Queue()

    async def on_route(event: RouteRequested) -> None:
        await routed.put(event)

    probe = Runtime("bench_ops_probe", settings)

    async def on_outbound(_: EmailOutboundRequested) -> None:
        """Stands in for the mail edge (the automatic answers need a queue to go to)."""

    filed: asyncio.Queue[CaseEmailAttached] = asyncio.Queue()

    async def on_filed(event: CaseEmailAttached) -> None:
        await filed.put(event)

    probe.bus.consume(LISTENER, RouteRequested, on_route)
    probe.bus.consume(FILED, CaseEmailAttached, on_filed)
    probe.bus.consume(MAIL_EDGE, EmailOutboundRequested, on_outbound)
    service = build(settings)
    lines: list[str] = []
    try:
        async with probe.app, service.app:
            await asyncio.sleep(1.0)  # the periodic jobs' first runs are over
            first: list[EmailReceived] = []
            for phase, what in (("new", "new mail"), ("follow-up", "follow-up")):
                commands.seen.clear()
                commands.seconds.clear()
                publishes.count = 0
                commands.counting = publishes.counting = True
                for i in range(mails):
                    mail = (
                        _mail(i)
                        if phase == "new"
                        else _mail(i, reply_to=first[i].internet_message_id)
                    )
                    if phase == "new":
                        first.append(mail)
                    await probe.bus.publish(mail)
                    await asyncio.wait_for(filed.get(), 30)
                    if phase == "new":  # a follow-up to a case being routed is not routed again
                        await asyncio.wait_for(routed.get(), 30)
                await asyncio.sleep(0.5)  # writes after the route request went out
                commands.counting = publishes.counting = False
                publishes.count -= mails  # the probe's own publishes of the mails
                lines += support.cost_lines(mails, what, commands, publishes)[:1]
                lines += commands.table(mails, top=40)
    finally:
        await support.drop_databases(
            found.mongodb_url,
            settings.database_name("threading"),
            settings.database_name("bench_ops_probe"),
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=30)
    args = parser.parse_args()

    async def count(
        found: support.Servers, commands: support.Commands, publishes: support.Publishes
    ) -> list[str]:
        return await _count(found, args.mails, commands, publishes)

    support.run_ops(count, per=args.mails, what="mail")


if __name__ == "__main__":
    main()

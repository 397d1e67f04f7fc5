"""Mails per second through the ingestion service's SMTP server and HTTP upload.

    python bench/bench_ingestion.py [--mails 400] [--runs 3] [--concurrency 16]

Finds or starts the local RabbitMQ and FerretDB (``switchboard.app.localstack``), runs the
ingestion service in this process behind uvicorn (exactly as ``serve()`` does), and pushes
distinct mails through it from loopback clients: ``smtplib`` connections in threads, and an
``httpx`` client against the upload endpoint. A mail counts when its sender got the answer
(SMTP 250 / HTTP 202), i.e. after the raw bytes are in GridFS and the broker confirmed the
event. Prints the median of the runs. Bounded: stops starting new runs after ~60 s.
Everything it creates (databases, queue) is removed at the end; only loopback is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import smtplib
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# the workspace may have been synced before the service had files: make it importable anyway
sys.path.insert(0, str(ROOT / "services" / "ingestion"))

import httpx  # noqa: E402
import support  # noqa: E402
import uvicorn  # noqa: E402
from faststream.rabbit import RabbitQueue  # noqa: E402

from switchboard.contracts.mail import EmailReceived  # noqa: E402
from switchboard.ingestion.app import IngestionSettings, build  # noqa: E402
from switchboard.runtime.bus import TOPIC_EXCHANGE  # noqa: E402

BUDGET_SECONDS = 60.0
COMMANDS = support.count_commands()
PUBLISHES = support.Publishes()
PARAGRAPH = (
    "Guten Tag, ich habe am Montag eine Bestellung aufgegeben und bisher keine "
    "Versandbestätigung erhalten. Können Sie bitte nachsehen, wo sie bleibt? "
)


def make_mail(tag: str, n: int) -> bytes:
    """A typical customer mail (~3 KB): text + HTML alternative, distinct bytes per n."""
    text = (PARAGRAPH * 12).strip()
    return (
        f"From: Kunde {n} <kunde{n}@example.de>\r\n"
        f"To: Support <support@switchboard.local>\r\n"
        f"Subject: =?utf-8?q?Bestellung_{n}_=E2=80=93_wo_bleibt_sie=3F?=\r\n"
        f"Message-ID: <bench-{tag}-{n}@example.de>\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="b{n}"\r\n\r\n'
        f"--b{n}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
        f"--b{n}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n<p>{text}</p><p><b>Danke</b></p>\r\n"
        f"--b{n}--\r\n"
    ).encode()


def _chunks(items: list[bytes], parts: int) -> Iterator[list[bytes]]:
    for i in range(parts):
        yield items[i::parts]


def smtp_run(port: int, mails: list[bytes], concurrency: int) -> float:
    def client(batch: list[bytes]) -> int:
        sent = 0
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            smtp.ehlo("bench.example.com")
            for raw in batch:
                refused = smtp.sendmail("kunde@example.de", ["support@switchboard.local"], raw)
                assert not refused, refused
                sent += 1
        return sent

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = sum(pool.map(client, _chunks(mails, concurrency)))
    elapsed = time.perf_counter() - started
    assert done == len(mails)
    return len(mails) / elapsed


SERVICE_TOKEN = secrets.token_urlsafe(24)
"""The mail edge's API asks for a service token; the benchmark makes one for its run."""


async def http_run(base: str, mails: list[bytes], concurrency: int, token: str) -> float:
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=auth) as http:

        async def client(batch: list[bytes]) -> None:
            for raw in batch:
                answer = await http.post(
                    "/mail/messages",
                    params={"mailbox": "support@switchboard.local"},
                    content=raw,
                    headers={"content-type": "message/rfc822"},
                )
                assert answer.status_code == 202, answer.text

        started = time.perf_counter()
        await asyncio.gather(*(client(b) for b in _chunks(mails, concurrency)))
        return len(mails) / (time.perf_counter() - started)


async def bench(found: support.Servers, args: argparse.Namespace) -> dict[str, Any]:
    amqp_url, mongodb_url, prefix = found.amqp_url, found.mongodb_url, found.prefix
    floor = await support.floor_rate(found)
    settings = IngestionSettings(
        amqp_url=amqp_url,
        mongodb_url=mongodb_url,
        database_prefix=prefix,
        http_port=0,
        smtp_port=0,
        log_level="WARNING",
        log_format="console",
        mailboxes=[{"address": "support@switchboard.local", "service": "support"}],
        service_token=SERVICE_TOKEN,
    )
    COMMANDS.databases = {settings.database_name("ingestion")}
    runtime = build(settings)
    # stands in for threading's queue, so email.received is routable; removed at the end
    probe = f"bench.email.received.{prefix}"

    async def bind_probe() -> None:
        queue = await runtime.broker.declare_queue(RabbitQueue(probe, durable=False))
        exchange = await runtime.broker.declare_exchange(TOPIC_EXCHANGE)
        await queue.bind(exchange, routing_key=EmailReceived.NAME)

    runtime.on_start(bind_probe)
    config = uvicorn.Config(
        runtime.app, host="127.0.0.1", port=0, log_config=None, lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
        if serving.done():
            serving.result()
    http_port = server.servers[0].sockets[0].getsockname()[1]
    assert runtime.smtp is not None and runtime.smtp.port
    count = args.mails
    smtp_rates: list[float] = []
    http_rates: list[float] = []
    size = len(make_mail("x", 0))
    deadline = time.monotonic() + BUDGET_SECONDS
    try:
        # warm-up: connections, indexes, first GridFS writes
        warm = await asyncio.to_thread(
            smtp_run, runtime.smtp.port, [make_mail("warm", n) for n in range(20)], 4
        )
        # keep each run near 8 s, so a slow (shared, loaded) backend cannot blow the time bound
        count = max(20, min(args.mails, int(warm * 8)))
        print(f"  warm-up {warm:.1f} mails/s: {count} mails per run and channel")
        COMMANDS.counting = PUBLISHES.counting = True
        for run in range(args.runs):
            if time.monotonic() > deadline:
                break
            mails = [make_mail(f"smtp{run}", n) for n in range(count)]
            rate = await asyncio.to_thread(smtp_run, runtime.smtp.port, mails, args.concurrency)
            smtp_rates.append(rate)
            mails = [make_mail(f"http{run}", n) for n in range(count)]
            http_rates.append(
                await http_run(
                    f"http://127.0.0.1:{http_port}", mails, args.concurrency, SERVICE_TOKEN
                )
            )
            print(
                f"  run {run + 1}: smtp {smtp_rates[-1]:7.1f} mails/s"
                f"   http {http_rates[-1]:7.1f} mails/s"
            )
    finally:
        COMMANDS.counting = PUBLISHES.counting = False
        with contextlib.suppress(Exception):
            queue = await runtime.broker.declare_queue(RabbitQueue(probe, durable=False))
            await queue.delete(if_unused=False, if_empty=False)
        server.should_exit = True
        await serving
        await support.drop_databases(mongodb_url, settings.database_name("ingestion"))
    return {
        "smtp": smtp_rates,
        "http": http_rates,
        "size": size,
        "count": count,
        "floor": floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mails", type=int, default=400, help="at most this many mails per run and channel"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="client connections (16: as many mails in hand as the floor's prefetch)",
    )
    args = parser.parse_args()
    with support.servers() as found:
        print(f"servers: {found.origin}")
        result = asyncio.run(bench(found, args))
    print(
        f"ingestion throughput, {result['count']} distinct mails of {result['size']} bytes "
        f"per run, {args.concurrency} loopback clients, median of {len(result['smtp'])} runs:"
    )
    smtp_rate = statistics.median(result["smtp"])
    http_rate = statistics.median(result["http"])
    print(f"  SMTP in (250 after GridFS + confirmed publish): {smtp_rate:.1f} mails/s")
    print(f"  HTTP upload (202 after the same):              {http_rate:.1f} mails/s")
    mails = result["count"] * (len(result["smtp"]) + len(result["http"]))
    print("\n".join(support.cost_lines(mails, "mail", COMMANDS, PUBLISHES)))
    print(f"command: {support.command_line()}")
    print(support.ratio_line("ingestion_smtp", smtp_rate, result["floor"]))
    print(support.ratio_line("ingestion_http", http_rate, result["floor"]))


if __name__ == "__main__":
    main()

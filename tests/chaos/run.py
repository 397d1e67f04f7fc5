"""`make chaos`: the whole stack under faults, then proof that nothing was lost or doubled.

Starts a RabbitMQ node and a FerretDB of its own (free loopback ports, own data directories),
every service as its own process under `switchboard run`'s supervisor, an SMTP sink for what
the system sends out, and agents working through the gateway's API and live stream. Sends N
distinct mails through SMTP from concurrent clients while it kills -9 ingestion, threading,
routing, agent-state and the gateway at random moments and restarts RabbitMQ and FerretDB once
each (killed, then started again); waits for quiescence; prints each figure and exits 1 on any
violation.

    uv run --frozen python tests/chaos/run.py --mails 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiosmtplib
import httpx
from agents import ChaosAgent, Desk
from checks import (
    Filed,
    Findings,
    Mail,
    check_answers,
    check_filing,
    check_offers,
    filed_mails,
    routed_cases,
    spread,
)
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from servers import OwnFerretDB, OwnRabbitMQ
from stack import REPO, SmtpSink, Stack

HERE = Path(__file__).resolve().parent
KILLED_SERVICES = ("ingestion", "threading", "routing", "agent_state", "gateway")
SUPPORT = "support@switchboard.local"
MAIL_QUEUES = ("threading.email.", "routing.route-requests")
STACK_START_SECONDS = 300.0
"""Every service up: the gateway alone hashes each agent's password before it is ready, which
took more than two minutes on the loaded 2-core machine."""


@dataclass
class Options:
    mails: int = 2000
    clients: int = 8
    rate: float = 8.0
    """Mails per second the clients send at most: spreads the run over the faults."""
    kills_per_service: int = 2
    agents: int = 6
    capacity: int = 5
    """Emails each agent works on at once."""
    seed: int = field(default_factory=lambda: random.randrange(1 << 30))
    stall_timeout: float = 120.0
    """After the last mail, keep waiting while mails are still being filed and routed; give up
    (a violation) once nothing moved for this long."""
    keep_data: bool = False


@dataclass
class Fault:
    kind: str
    at_mail: int
    started: float = 0.0
    ended: float = 0.0
    ended_mono: float = 0.0


@dataclass
class Report:
    findings: list[Findings]
    faults: list[Fault]
    recovery: list[tuple[str, str]]

    @property
    def violations(self) -> list[str]:
        return [v for f in self.findings for v in f.violations]

    def print(self, say: Callable[[str], None] = print) -> None:
        say("== figures")
        for findings in self.findings:
            for name, value in findings.figures:
                say(f"  {name:<46} {value}")
        say("== time to recover after each fault (s)")
        say(
            f"  {'fault':<22} {'mail in flight filed':>20} {'next 250':>9} {'next offer':>11}"
            f"  {'offers after: accepted / seen, delay p50 / p95 / max (s)'}"
        )
        for line in self.recovery:
            say("  " + line[1])
        say("== violations" + ("" if self.violations else ": none"))
        for violation in self.violations:
            say(f"  ! {violation}")


class ChaosRun:
    def __init__(self, options: Options, workdir: Path, say: Callable[[str], None]) -> None:
        self.o = options
        self.workdir = workdir
        self.say = say
        self.random = random.Random(options.seed)
        self.tag = f"chaos-{uuid.uuid4().hex[:8]}"
        self.prefix = f"chaos{uuid.uuid4().hex[:6]}"
        self.rabbit = OwnRabbitMQ(workdir / "rabbitmq")
        self.ferret = OwnFerretDB(workdir / "ferretdb")
        self.sink = SmtpSink()
        self.stack: Stack | None = None
        self.desk = Desk()
        self.mails = [
            Mail(i, f"Chaos {self.tag} #{i}", f"customer{i}.{self.tag}@example.org")
            for i in range(options.mails)
        ]
        self.faults = self._plan()
        self._sent = 0
        self.quiet_after: float | None = None

    def _plan(self) -> list[Fault]:
        kinds = [f"kill {s}" for s in KILLED_SERVICES for _ in range(self.o.kills_per_service)]
        kinds += ["restart rabbitmq", "restart ferretdb"]
        self.random.shuffle(kinds)
        span = self.o.mails * 0.75
        return [
            Fault(
                kind, int(self.o.mails * 0.1 + span * (i + self.random.random() * 0.5) / len(kinds))
            )
            for i, kind in enumerate(kinds)
        ]

    async def run(self) -> Report:
        self.say(f"seed {self.o.seed}; data and logs in {self.workdir}")
        await asyncio.to_thread(self.rabbit.start)
        await asyncio.to_thread(self.ferret.start)
        self.sink.start()
        self.stack = Stack(
            amqp_url=self.rabbit.amqp_url,
            mongodb_url=self.ferret.url,
            database_prefix=self.prefix,
            relay_port=self.sink.port,
            log_path=self.workdir / "stack.log",
            extra_env=self._config_files(),
        )
        try:
            await asyncio.to_thread(self.stack.start, STACK_START_SECONDS)
            self.say("stack up: every service its own process under the supervisor")
            return await self._drive(self.stack)
        finally:
            self.stack.stop()
            self.sink.stop()
            self.ferret.stop()
            await asyncio.to_thread(self.rabbit.stop)

    def _people(self) -> list[tuple[str, str]]:
        return [(f"chaos-agent-{i}", f"chaos-pass-{i}-{self.tag}") for i in range(self.o.agents)]

    def _config_files(self) -> dict[str, str]:
        """The run's own agents (the demo's three are too few to keep up) and no campaign."""
        people = self._people()
        files = {
            "SB_CAMPAIGNS_FILE": ("campaigns.json", {"campaigns": []}),
            "SB_GATEWAY_USERS_FILE": (
                "gateway.json",
                {
                    "people": [
                        {
                            "id": who,
                            "name": who,
                            "role": "agent",
                            "teams": ["support"],
                            "password": password,
                        }
                        for who, password in people
                    ]
                },
            ),
            "SB_AGENTS_FILE": (
                "agent_state.json",
                {
                    "not_ready_reasons": ["Break"],
                    "agents": [
                        {
                            "agent_id": who,
                            "name": who,
                            "teams": ["support"],
                            "skills": [{"name": "english", "level": 5}],
                            "capacity": {"email": self.o.capacity, "preview": 1},
                        }
                        for who, _ in people
                    ],
                },
            ),
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {}
        for variable, (name, content) in files.items():
            (self.workdir / name).write_text(json.dumps(content))
            env[variable] = str(self.workdir / name)
        return env

    async def _drive(self, stack: Stack) -> Report:
        stop = asyncio.Event()
        agents = [
            ChaosAgent(stack, login, password, self.desk) for login, password in self._people()
        ]
        working = [asyncio.create_task(a.run(stop)) for a in agents]
        await self._wait_for_offers_ready()
        started = time.monotonic()
        sending = asyncio.create_task(self._send_all())
        progress = asyncio.create_task(self._progress(stop))
        await self._inject(sending)
        await sending
        self.say(f"all mails sent in {time.monotonic() - started:.0f} s; waiting for quiescence")
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.ferret.url, tz_aware=True)
        try:
            filed, routed = await self._quiescence(client)
        finally:
            stop.set()
            await asyncio.gather(progress, *working, return_exceptions=True)
            await client.close()
        settled = Findings()
        if self.quiet_after is None:
            settled.violate(
                f"not quiescent: nothing more filed, routed or handled for "
                f"{self.o.stall_timeout:.0f} s while some mails were not filed and routed, "
                "or work was still queued"
            )
        settled.figure(
            "quiescent after the last mail (s)",
            "never" if self.quiet_after is None else f"{self.quiet_after:.0f}",
        )
        settled.figure("mail filed after its 250 (s): p50 / p95 / max", self._latency(filed))
        settled.figure("mails filed per second (first 250 to last filed)", self._rate(filed))
        findings = [
            settled,
            await self._push_figures(stack),
            check_filing(self.mails, filed, routed, self.desk),
            check_offers(self.desk),
            check_answers(self.mails, list(self.sink.received)),
            self._dead_letters(),
        ]
        return Report(findings, self.faults, self._recovery(filed))

    async def _progress(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(15.0)
            answered = sum(1 for m in self.mails if m.answered_at is not None)
            self.say(
                f"  {answered} of {len(self.mails)} mails answered 250; "
                f"{len(self.desk.offers)} offers, {len(self.desk.assigned)} accepted, "
                f"{len(self.desk.disposed)} closed"
            )

    async def _wait_for_offers_ready(self) -> None:
        # the agents log in and make themselves Ready before the first mail
        await asyncio.sleep(3.0)

    async def _send_all(self) -> None:
        queue: asyncio.Queue[Mail] = asyncio.Queue()
        for mail in self.mails:
            queue.put_nowait(mail)
        interval = self.o.clients / self.o.rate

        async def client() -> None:
            while not queue.empty():
                mail = queue.get_nowait()
                began = time.monotonic()
                await self._send(mail)
                self._sent += 1
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

        await asyncio.gather(*(client() for _ in range(self.o.clients)))

    async def _send(self, mail: Mail) -> None:
        assert self.stack is not None
        message = EmailMessage()
        message["From"] = f"Customer {mail.number} <{mail.sender}>"
        message["To"] = SUPPORT
        message["Subject"] = mail.subject
        message["Message-ID"] = make_msgid(domain="example.org")
        message.set_content(f"Hello, this is mail {mail.number} of run {self.tag}.")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                await aiosmtplib.send(
                    message, hostname="127.0.0.1", port=self.stack.smtp_port, timeout=30
                )
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code >= 500:
                    return
            except (aiosmtplib.SMTPException, OSError):
                pass
            else:
                mail.answered_at = time.time()
                return
            await asyncio.sleep(1.0)

    async def _inject(self, sending: asyncio.Task[None]) -> None:
        assert self.stack is not None
        for fault in self.faults:
            await _until(lambda f=fault: self._sent >= f.at_mail or sending.done())
            fault.started = time.time()
            self.say(f"fault at mail {self._sent}: {fault.kind}")
            if fault.kind.startswith("kill "):
                service = fault.kind.removeprefix("kill ")
                await self._when_running(service)
                self.stack.kill_service(service)
            elif fault.kind == "restart rabbitmq":
                await asyncio.to_thread(self.rabbit.kill)
                await asyncio.to_thread(self.rabbit.start)
            else:
                await asyncio.to_thread(self.ferret.kill)
                await asyncio.to_thread(self.ferret.start)
            fault.ended, fault.ended_mono = time.time(), time.monotonic()
            self.say(
                f"  over at {_clock(fault.ended)} UTC, {fault.ended - fault.started:.1f} s after "
                f"it began at {_clock(fault.started)}"
            )

    async def _when_running(self, service: str) -> None:
        assert self.stack is not None
        stack = self.stack
        await _until(lambda: stack.service_pid(service) is not None and stack.ready(service))

    async def _quiescence(
        self, client: AsyncMongoClient[dict[str, Any]]
    ) -> tuple[dict[str, list[Filed]], set[int]]:
        """Wait until every answered mail is filed and routed and no work is queued, as long as
        that keeps moving: a slow machine only takes longer, a stall fails after
        ``stall_timeout`` without progress. Whether every case was also offered is a figure: on
        a loaded machine offers time out while the agents' accepts are slow, which is not a
        loss."""
        began = last_moved = time.monotonic()
        answered = [m for m in self.mails if m.answered_at is not None]
        filed: dict[str, list[Filed]] = {}
        routed: set[int] = set()
        most_filed = most_routed = -1
        fewest_queued: int | None = None
        last_said = began
        while time.monotonic() - last_moved < self.o.stall_timeout:
            try:
                filed = await filed_mails(client, self.prefix, self.tag)
                routed = await routed_cases(client, self.prefix)
                queued = self.rabbit.still_queued(MAIL_QUEUES)
            except Exception as exc:
                self.say(f"  database or broker not answering yet: {exc!r}")
                await asyncio.sleep(2.0)
                continue
            numbers = {f[0].case_number for m in answered if (f := filed.get(m.subject))}
            if len(numbers) == len(answered) and numbers <= routed and queued == 0:
                self.quiet_after = time.monotonic() - began
                break
            routed_now = len(numbers & routed)
            if (
                len(numbers) > most_filed
                or routed_now > most_routed
                or fewest_queued is None
                or queued < fewest_queued
            ):
                last_moved = time.monotonic()
            most_filed, most_routed = max(most_filed, len(numbers)), max(most_routed, routed_now)
            fewest_queued = queued if fewest_queued is None else min(fewest_queued, queued)
            if time.monotonic() - last_said >= 15.0:
                last_said = time.monotonic()
                self.say(
                    f"  quiescence: {len(numbers)} of {len(answered)} filed, "
                    f"{len(numbers & routed)} routed, {queued} queued"
                )
            await asyncio.sleep(2.0)
        return filed, routed

    def _latency(self, filed: dict[str, list[Filed]]) -> str:
        waits = sorted(
            f[0].stored_at - m.answered_at
            for m in self.mails
            if m.answered_at is not None and (f := filed.get(m.subject))
        )
        if not waits:
            return "-"
        pick = [waits[len(waits) // 2], waits[int(len(waits) * 0.95)], waits[-1]]
        return " / ".join(f"{w:.1f}" for w in pick)

    def _rate(self, filed: dict[str, list[Filed]]) -> str:
        answered = [m.answered_at for m in self.mails if m.answered_at is not None]
        stored = [f[0].stored_at for f in filed.values()]
        if not answered or not stored or max(stored) <= min(answered):
            return "-"
        return f"{len(stored) / (max(stored) - min(answered)):.2f}"

    async def _push_figures(self, stack: Stack) -> Findings:
        """The gateway's own push figures (since it last started): how many frames reached
        each stage within 1, 5 and 30 s of their event, and its backlog now."""
        found = Findings()
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                text = (await http.get(stack.url("gateway", "/metrics"))).text
        except httpx.HTTPError as exc:
            found.figure("gateway push figures", f"not read: {exc!r}")
            return found
        buckets: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "switchboard_gateway_push_delay_seconds_bucket":
                    buckets.setdefault(sample.labels["stage"], {})[sample.labels["le"]] = (
                        sample.value
                    )
                elif sample.name == "switchboard_gateway_push_backlog":
                    found.figure("gateway push backlog at the end", int(sample.value))
        for stage, counts in sorted(buckets.items()):
            total = counts.get("+Inf", 0.0)
            within = " / ".join(f"{int(counts.get(le, 0))}" for le in ("1.0", "5.0", "30.0"))
            found.figure(f"frames {stage}: within 1 / 5 / 30 s, of all", f"{within}, {int(total)}")
        return found

    def _dead_letters(self) -> Findings:
        found = Findings()
        dead = self.rabbit.dead_letters()
        found.figure("messages in dead-letter queues", sum(dead.values()))
        # not lost, but not handled yet: a run that ends with work queued was too slow
        found.figure("messages still queued at the end", self.rabbit.still_queued())
        for queue, count in dead.items():
            found.violate(f"{count} message(s) dead-lettered in {queue}")
        return found

    def _recovery(self, filed: dict[str, list[Filed]]) -> list[tuple[str, str]]:
        stored = {m.number: f[0].stored_at for m in self.mails if (f := filed.get(m.subject))}
        offers = self.desk.offer_times()
        lines = []
        for fault in self.faults:
            if not fault.ended:
                continue
            in_flight = [
                stored.get(m.number, float("inf"))
                for m in self.mails
                if m.answered_at is not None
                and m.answered_at < fault.ended
                and stored.get(m.number, float("inf")) > fault.started
            ]
            last = max(in_flight, default=fault.ended)
            filed_after = "never" if last == float("inf") else f"{max(0.0, last - fault.ended):.1f}"
            next_250 = min(
                (
                    m.answered_at
                    for m in self.mails
                    if m.answered_at and m.answered_at > fault.ended
                ),
                default=None,
            )
            next_offer = next((t for t in offers if t > fault.ended_mono), None)
            after = [o for o in self.desk.offers.values() if o.made_at > fault.ended_mono]
            accepted = sum(1 for o in after if o.accepted)
            delays = spread([o.delay for o in after if o.delay is not None])
            lines.append(
                (
                    fault.kind,
                    f"{fault.kind:<22} {filed_after:>11} ({len(in_flight):>3} mails)"
                    f" {_secs(next_250, fault.ended):>9} {_secs(next_offer, fault.ended_mono):>11}"
                    f"  {accepted} / {len(after)}, {delays}",
                )
            )
        return lines


async def _until(condition: Callable[[], bool]) -> None:
    while True:
        if condition():
            return
        await asyncio.sleep(0.2)


def _clock(at: float) -> str:
    """A wall-clock time as the stack log writes it (UTC), to find a fault's phases there."""
    return time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 10)}"


def _secs(at: float | None, since: float) -> str:
    return "-" if at is None else f"{at - since:.1f}"


async def chaos(options: Options, workdir: Path, say: Callable[[str], None] = print) -> Report:
    run = ChaosRun(options, workdir, say)
    report = await run.run()
    if not report.violations and not options.keep_data:
        for sub in ("rabbitmq", "ferretdb"):
            shutil.rmtree(workdir / sub, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Options()
    parser.add_argument("--mails", type=int, default=defaults.mails)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="mails per second")
    parser.add_argument(
        "--kills",
        type=int,
        default=defaults.kills_per_service,
        help="kill -9 of each service this many times",
    )
    parser.add_argument("--agents", type=int, default=defaults.agents)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--stall",
        type=float,
        default=defaults.stall_timeout,
        help="after the last mail, fail once nothing was filed or routed for this many seconds",
    )
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args(argv)
    options = Options(
        args.mails,
        args.clients,
        args.rate,
        args.kills,
        agents=args.agents,
        seed=args.seed,
        stall_timeout=args.stall,
        keep_data=args.keep_data,
    )
    workdir = REPO / ".local" / "chaos" / time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    report = asyncio.run(chaos(options, workdir))
    report.print()
    print(f"== {len(report.violations)} violation(s); {time.monotonic() - started:.0f} s in all")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())

"""End to end: mails through SMTP into the whole stack, answered by agents on their desktops.

    python bench/bench_pipeline.py [--mails 200] [--agents 200] [--seconds 300] [--replicas 1,2,3]

The whole stack as ``switchboard run`` starts it (every service its own process, on free
loopback ports, a virtual host and database prefix of its own), an SMTP sink (aiosmtpd)
standing in for the customers' mail servers. ``--agents`` agents (written into the demo files'
place: team support, one email at a time) log in through the gateway's API with a live stream
open and make themselves Ready. Then ``--mails`` distinct customer mails go in over SMTP from 8
loopback connections; each is filed under a case, offered, accepted, answered with a reply that
must reach the sink, and dispositioned (final: the case closes), each by the agent it was
offered to. Prints mails/s sustained (first SMTP 250 to last disposition), p50/p95/p99 from
SMTP 250 to the offer on the agent's stream and to the reply at the sink, each service's
resident memory after the run, the CPU time each used per mail, and last
``pipeline/floor = 0.NN``. ``--replicas 1,2,3`` runs it
once per count with threading and routing at that many processes (a fresh stack each) and
prints the scaling curve; the last line is then the first count's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import smtplib
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import support
import websockets

sys.path.insert(0, str(support.REPO / "tests" / "e2e"))
from stack import SmtpSink, Stack

from switchboard.app.supervisor import installed_services
from switchboard.runtime.service_token import new_service_token

SUPPORT = "support@switchboard.local"
PASSWORD = "bench-agent-pass"
SCALED = ("threading", "routing")
"""The services ``--replicas`` runs at more than one process."""
DISPOSITION = "Customer confirmed"
"""A final disposition of the demo's support service (deploy/demo/threading.json)."""


@dataclass
class Timings:
    """When each mail (by subject) passed each point, on this process's monotonic clock."""

    accepted: dict[str, float] = field(default_factory=dict)
    offered: dict[str, float] = field(default_factory=dict)
    replied: dict[str, float] = field(default_factory=dict)
    closed: dict[str, float] = field(default_factory=dict)

    def since_accepted(self, points: dict[str, float]) -> list[float]:
        return [t - self.accepted[s] for s, t in points.items() if s in self.accepted]


class TimedSink(SmtpSink):
    """The SMTP sink, noting when each reply arrived (by the subject it answers)."""

    timings: Timings

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        subject = str(self.received[-1]["Subject"] or "")
        for original in list(self.timings.accepted):
            if original in subject:
                self.timings.replied.setdefault(original, time.monotonic())
                break
        return answer


def write_people(folder: Path, agents: list[str]) -> dict[str, str]:
    """The agents, in the demo files' place: agent-state's profiles and the gateway's logins;
    no demo campaign (its preview records would be offered to the same agents)."""
    profiles = {
        "not_ready_reasons": ["Break"],
        "agents": [
            {"agent_id": a, "name": a, "teams": ["support"], "capacity": {"email": 1, "preview": 0}}
            for a in agents
        ],
    }
    people = {
        "people": [
            {"id": a, "name": a, "role": "agent", "teams": ["support"], "password": PASSWORD}
            for a in agents
        ]
    }
    (folder / "agent_state.json").write_text(json.dumps(profiles))
    (folder / "gateway.json").write_text(json.dumps(people))
    (folder / "dialer.json").write_text(json.dumps({"campaigns": []}))
    return {
        "SB_AGENTS_FILE": str(folder / "agent_state.json"),
        "SB_CAMPAIGNS_FILE": str(folder / "dialer.json"),  # no preview records among the mails
        "SB_GATEWAY_USERS_FILE": str(folder / "gateway.json"),
        # cheap password hashing: 200 logins are not what is measured
        "SB_PASSWORD_TIME_COST": "1",
        "SB_PASSWORD_MEMORY_KIB": "64",
        "SB_PASSWORD_PARALLELISM": "1",
        "SB_LOG_LEVEL": "WARNING",
        # the gateway's wait for a service's answer: generous, the machine may be loaded
        "SB_COMMAND_TIMEOUT_SECONDS": "60",
        # every agent logs in from loopback: one address
        "SB_LOGIN_ADDRESS_LIMIT": str(len(agents) + 50),
    }


class OfferClosed(Exception):
    """The offer was no longer live when the agent accepted it."""


class Desk:
    """One agent at their desktop: an API session, a live stream, answering what is offered."""

    def __init__(self, stack: Stack, agent_id: str, timings: Timings) -> None:
        self.agent_id = agent_id
        self.timings = timings
        self.http = httpx.AsyncClient(base_url=stack.url("gateway"), timeout=120)
        self.live_url = stack.url("gateway", "/me/live").replace("http", "ws")
        self.offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.handled = 0
        self._socket: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = await self.http.request(method, path, json={} if body is None else body)
        if answer.status_code == 504:
            raise TimeoutError(f"{self.agent_id}: {method} {path}: {answer.text[:300]}")
        if answer.status_code == 409 and "offer_closed" in answer.text:
            raise OfferClosed(answer.text[:300])
        if answer.status_code >= 400:
            raise RuntimeError(
                f"{self.agent_id}: {method} {path} -> {answer.status_code} {answer.text[:300]}"
            )
        return answer.json() if answer.content else None

    async def log_in(self) -> None:
        answer = await self.http.post(
            "/auth/login", json={"login": self.agent_id, "password": PASSWORD}
        )
        answer.raise_for_status()
        token = answer.json()["token"]
        self.http.headers["authorization"] = f"Bearer {token}"
        self._socket = await websockets.connect(
            self.live_url, additional_headers={"Authorization": f"Bearer {token}"}
        )
        self._reader = asyncio.create_task(self._read())
        try:
            await self.call("POST", "/me/log-in", {"initial_state": "ready"})
        except TimeoutError:
            await self._until_state("ready", 300)  # a loaded agent-state answers late

    async def _until_state(self, wanted: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            with contextlib.suppress(TimeoutError):  # a loaded agent-state answers late
                if await self.state() == wanted:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.agent_id} not {wanted} after {seconds:.0f} s")
            await asyncio.sleep(5.0)  # each look is a query to agent-state: not every second

    async def state(self) -> str:
        answer = await self.call("GET", "/me/state")
        agents = answer.get("agents", []) if isinstance(answer, dict) else []
        return str(agents[0]["state"]) if agents else "unknown"

    async def _read(self) -> None:
        async for raw in self._socket:
            frame = json.loads(raw)
            if frame.get("event") == "offer.made" and frame.get("data", {}).get("channel") == (
                "email"
            ):
                subject = str(frame["data"].get("summary", {}).get("subject", ""))
                self.timings.offered.setdefault(subject, time.monotonic())
                await self.offers.put(frame["data"])

    async def work(self) -> None:
        """Answer every offer: accept, reply, final disposition, Ready again."""
        while True:
            offer = await self.offers.get()
            subject = str(offer.get("summary", {}).get("subject", ""))
            case = offer["summary"]["case_number"]
            try:
                await self.call("POST", f"/offers/{offer['offer_id']}/accept")
            except OfferClosed:
                # it timed out before the accept arrived (a loaded machine): it goes to the
                # next agent; this one is Ready again and takes the next offer
                await self._ready_again()
                continue
            await self.call(
                "POST", f"/cases/{case}/reply", {"text": "We are on it. Regards", "finish": False}
            )
            await self.call(
                "POST", f"/cases/{case}/disposition", {"disposition": DISPOSITION, "finish": True}
            )
            self.timings.closed[subject] = time.monotonic()
            self.handled += 1
            await self._ready_again()

    async def _ready_again(self) -> None:
        """Ready once the work has let go (wrap-up, or Not Ready after an offer timed out)."""
        for _ in range(100):
            now = await self.state()
            if now == "ready":
                return
            if now != "busy":
                with contextlib.suppress(TimeoutError):  # a loaded agent-state answers late
                    await self.call("POST", "/me/ready")
                return
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._socket is not None:
            await self._socket.close()
        await self.http.aclose()


def _mail(n: int, tag: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Customer {n} <customer{n}@bench.example>"
    message["To"] = SUPPORT
    message["Subject"] = f"Order {tag}-{n:05d} has not arrived"
    message["Message-ID"] = make_msgid(domain="bench.example")
    message.set_content(f"Hello,\n\nmy order {n} has not arrived yet. Where is it?\n\nCustomer {n}")
    return message


def _chunks(items: list[EmailMessage], parts: int) -> Iterator[list[EmailMessage]]:
    for i in range(parts):
        yield items[i::parts]


def send_mails(port: int, mails: list[EmailMessage], timings: Timings, clients: int = 8) -> None:
    """Over SMTP from ``clients`` connections; notes the moment of each 250."""

    def client(batch: list[EmailMessage]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            for message in batch:
                smtp.send_message(message)
                timings.accepted[str(message["Subject"])] = time.monotonic()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, _chunks(mails, clients)))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def processes(stack: Stack, replicas: dict[str, list[int]]) -> dict[str, int]:
    """Each service's process id; extra replicas as ``name#2``…"""
    found: dict[str, int] = {}
    for service in installed_services():
        pid = stack.service_pid(service)
        if pid is not None:
            found[service] = pid
        for n, extra in enumerate(replicas.get(service, []), start=2):
            found[f"{service}#{n}"] = extra
    return found


def resident_memory(pids: dict[str, int]) -> dict[str, float]:
    """Each process's resident set size (MiB), from /proc."""
    return {name: _rss_mib(pid) for name, pid in pids.items()}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) each process has used so far, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[name] = (int(fields[11]) + int(fields[12])) / ticks
    return used


async def run(
    found: support.Servers, args: argparse.Namespace, folder: Path, replicas: int = 1
) -> dict[str, Any]:
    floor = await support.floor_rate(found)
    timings = Timings()
    sink = TimedSink()
    sink.timings = timings
    sink.start()
    agents = [f"bench-agent-{n:03d}" for n in range(args.agents)]
    stack = Stack(
        amqp_url=found.amqp_url,
        mongodb_url=found.mongodb_url,
        database_prefix=found.prefix,
        relay_port=sink.port,
        log_path=support.REPO / ".local" / "bench" / "pipeline-stack.log",
        # one service token for the supervisor's processes and the extra replicas
        extra_env={**write_people(folder, agents), "SB_SERVICE_TOKEN": new_service_token()},
    )
    support.say(f"starting the stack (logs: {stack.log_path})")
    await asyncio.to_thread(stack.start, 600.0)  # a loaded machine starts seven processes slowly
    extra: dict[str, list[int]] = {}
    for service in SCALED if replicas > 1 else ():
        for _ in range(replicas - 1):
            extra.setdefault(service, []).append(
                await asyncio.to_thread(stack.start_replica, service, 600.0)
            )
    if extra:
        support.say(f"{', '.join(SCALED)} at {replicas} replicas each")
    desks = [Desk(stack, a, timings) for a in agents]
    workers: list[asyncio.Task[None]] = []
    try:
        support.say(f"{len(desks)} agents log in, open their live stream and make themselves Ready")
        for start in range(0, len(desks), 10):
            await asyncio.gather(*(d.log_in() for d in desks[start : start + 10]))
        await asyncio.sleep(2.0)  # the Ready states reach routing before the first mail
        workers = [asyncio.create_task(d.work()) for d in desks]
        mails = [_mail(n, found.tag) for n in range(args.mails)]
        support.say(f"{len(mails)} mails in over SMTP")
        started = time.monotonic()
        pids = processes(stack, extra)
        cpu_before = cpu_seconds(pids)
        sending = asyncio.create_task(
            asyncio.to_thread(send_mails, stack.smtp_port, mails, timings)
        )
        done = await support.wait_for(
            lambda: len(timings.closed) >= args.mails and sending.done(), args.seconds, 0.2
        )
        await sending
        failed = [w for w in workers if w.done() and w.exception() is not None]
        for worker in failed[:3]:
            support.say(f"an agent stopped: {worker.exception()!r}")
        last = max(timings.closed.values(), default=started)
        memory = resident_memory(pids)
        cpu_after = cpu_seconds(pids)
        cpu = {n: cpu_after[n] - cpu_before[n] for n in cpu_after if n in cpu_before}
    finally:
        for worker in workers:
            worker.cancel()
        # all at once: a socket's closing handshake may wait on a loaded gateway
        await asyncio.gather(*(d.close() for d in desks), return_exceptions=True)
        await asyncio.to_thread(stack.stop)
        sink.stop()
        support.say("dropping the databases")
        await support.drop_databases(
            found.mongodb_url, *(f"{found.prefix}_{s}" for s in installed_services())
        )
    first = min(timings.accepted.values(), default=started)
    return {
        "floor": floor,
        "finished": done,
        "closed": len(timings.closed),
        "seconds": last - first,
        "to_offer": timings.since_accepted(timings.offered),
        "to_reply": timings.since_accepted(timings.replied),
        "memory": memory,
        "cpu": cpu,
        "log": stack.log_path,
        "replicas": replicas,
    }


def report(args: argparse.Namespace, result: dict[str, Any]) -> float:
    """Print one run's figures; its mails/s."""
    rate = result["closed"] / result["seconds"] if result["seconds"] > 0 else 0.0
    print(
        f"{args.mails} mails, {args.agents} agents Ready with live streams, threading and "
        f"routing at {result['replicas']} replica(s): "
        f"{result['closed']} filed, offered, accepted, answered and dispositioned in "
        f"{result['seconds']:.1f} s = {rate:.2f} mails/s sustained"
        + ("" if result["finished"] else f" (stopped at the {args.seconds:.0f} s limit)")
    )
    print(support.latency_line("SMTP 250 -> offer on the agent's stream", result["to_offer"]))
    print(support.latency_line("SMTP 250 -> reply at the SMTP sink", result["to_reply"]))
    memory = result["memory"]
    print(
        "resident memory after the run: "
        + ", ".join(f"{s} {mib:.0f} MB" for s, mib in sorted(memory.items()))
    )
    closed = max(result["closed"], 1)
    print(
        "CPU per mail (user + system, while the mails went through): "
        + ", ".join(f"{s} {sec / closed * 1000:.0f} ms" for s, sec in sorted(result["cpu"].items()))
    )
    print(f"floor = {result['floor']:.1f} msg/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=200)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=300.0, help="give up after this")
    parser.add_argument(
        "--replicas",
        default="1",
        help="threading and routing at each of these replica counts, e.g. 1,2,3 (a run each)",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    print(f"command: {support.command_line()}")
    curve: list[tuple[int, float, float]] = []
    for replicas in counts:
        with support.servers() as found, tempfile.TemporaryDirectory() as folder:
            result = asyncio.run(run(found, args, Path(folder), replicas))
        print(f"servers: {found.origin}; the services' logs: {result['log']}")
        curve.append((replicas, report(args, result), result["floor"]))
    if len(curve) > 1:
        print("scaling (threading and routing replicas -> mails/s, x/floor):")
        for replicas, rate, floor in curve:
            share = rate / floor if floor else float("nan")
            print(f"  {replicas}: {rate:.2f} mails/s  {share:.2f}")
    _, rate, floor = curve[0]
    print(f"pipeline/floor = {rate / floor if floor else float('nan'):.2f}")


if __name__ == "__main__":
    main()

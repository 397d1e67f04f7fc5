"""The whole system as separate OS processes, the way `make run` starts it, plus an SMTP sink.

Used by the end-to-end test and by `make demo`. Every service is its own process under the
`switchboard run` supervisor, on free loopback ports, against real RabbitMQ and MongoDB.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from switchboard.app.cli import DEMO_DIR, DEMO_SETTINGS
from switchboard.app.supervisor import installed_services

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpSink:
    """A real SMTP server standing in for the outside world: it keeps what it is sent."""

    port: int = field(default_factory=free_port)
    received: list[EmailMessage] = field(default_factory=list)
    _controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append(message)  # type: ignore[arg-type]
        return "250 OK kept"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()

    async def wait_for(self, count: int, seconds: float = 60.0) -> list[EmailMessage]:
        deadline = time.monotonic() + seconds
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the SMTP sink got {len(self.received)} of {count} mails")
            await asyncio.sleep(0.2)
        return self.received


@dataclass
class Stack:
    """`switchboard run` in a subprocess, with its own ports and database prefix."""

    amqp_url: str
    mongodb_url: str
    database_prefix: str
    relay_port: int
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    smtp_port: int = field(default_factory=free_port)
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    only: list[str] | None = None
    """These services alone (``switchboard run --only``); every installed one by default."""
    replicas: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """Extra processes of a service beside the supervisor's (:meth:`start_replica`)."""

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def environment(self) -> dict[str, str]:
        """What every process of this stack is started with (after :meth:`start`)."""
        return {
            **os.environ,
            "SB_AMQP_URL": self.amqp_url,
            "SB_MONGODB_URL": self.mongodb_url,
            "SB_DATABASE_PREFIX": self.database_prefix,
            "SB_SMTP_PORT": str(self.smtp_port),
            "SB_RELAY_HOST": "127.0.0.1",
            "SB_RELAY_PORT": str(self.relay_port),
            "SB_RELAY_STARTTLS": "false",
            "SB_LOG_FORMAT": "json",
            **{f"SB_{s.upper()}_HTTP_PORT": str(p) for s, p in self.ports.items()},
            **self.extra_env,
        }

    def start(self, timeout: float = 120.0) -> None:
        self.ports = {service: free_port() for service in self.only or installed_services()}
        env = self.environment()
        only = ["--only", ",".join(self.only)] if self.only else []
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switchboard.app.cli", "run", *only],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        waiting = set(self.ports)
        while waiting:
            if self.process.poll() is not None:
                raise RuntimeError(f"switchboard run exited early; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()  # not left running behind the caller's back
                raise RuntimeError(f"not ready in {timeout:.0f} s: {sorted(waiting)}")
            for service in list(waiting):
                try:
                    with urllib.request.urlopen(self.url(service, "/health/ready"), timeout=2):
                        waiting.discard(service)
                except OSError:
                    pass
            time.sleep(0.5)

    def service_pid(self, service: str) -> int | None:
        """The process the supervisor runs for ``service`` now (None between restarts)."""
        if self.process is None:
            return None
        wanted = f"switchboard.{service}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text(errors="replace")
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and wanted in cmdline:
                return int(entry.name)
        return None

    def start_replica(self, service: str, timeout: float = 120.0) -> int:
        """One more process of ``service`` on a port of its own, sharing the stack's queues and
        databases (to measure scaling); stopped with the stack. Its process id."""
        port = free_port()
        env = {
            **self.environment(),
            **{k: str(DEMO_DIR / name) for k, name in DEMO_SETTINGS.items() if k not in os.environ},
            "SB_DEVELOPMENT": os.environ.get("SB_DEVELOPMENT", "true"),  # as `switchboard run`
            **self.extra_env,
            f"SB_{service.upper()}_HTTP_PORT": str(port),
            "SB_HTTP_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path.open("ab") as log:
            replica = subprocess.Popen(
                [sys.executable, "-m", f"switchboard.{service}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.replicas.append(replica)
        deadline = time.monotonic() + timeout
        while True:
            if replica.poll() is not None:
                raise RuntimeError(f"a {service} replica exited early; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2):
                    return replica.pid
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{service} replica not ready in {timeout:.0f} s") from None
                time.sleep(0.5)

    def kill_service(self, service: str) -> int:
        """kill -9 the service's process, as a crash would; the supervisor starts a new one."""
        pid = self.service_pid(service)
        if pid is None:
            raise RuntimeError(f"{service} has no process right now")
        os.kill(pid, signal.SIGKILL)
        return pid

    def ready(self, service: str) -> bool:
        try:
            with urllib.request.urlopen(self.url(service, "/health/ready"), timeout=2):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl-C, as a person would; returns the supervisor's exit code."""
        for replica in self.replicas:
            if replica.poll() is None:
                replica.send_signal(signal.SIGINT)
        for replica in self.replicas:
            try:
                replica.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(replica.pid, signal.SIGKILL)
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return -9

"""Run every service as its own process, restart the ones that die, stop all on Ctrl-C.

This is the embedded default behind ``make run``: one terminal, real RabbitMQ and a real
MongoDB-protocol server, every service a separate OS process exactly as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("switchboard.supervisor")

SERVICE_ORDER = (
    "agent_state",
    "routing",
    "threading",
    "ingestion",
    "dialer",
    "reporting",
    "gateway",
)
"""Start order: who others talk to comes first. Only installed services are started."""

FIRST_HTTP_PORT = 8101


def installed_services() -> list[str]:
    return [s for s in SERVICE_ORDER if importlib.util.find_spec(f"switchboard.{s}.app")]


@dataclass
class Child:
    service: str
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    starts: list[float] = field(default_factory=list)


class Supervisor:
    """Keeps one process per service alive until told to stop."""

    def __init__(self, children: list[Child], *, stop_timeout: float = 30.0) -> None:
        self.children = children
        self._stop_timeout = stop_timeout
        self._stopping = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        watchers = [asyncio.create_task(self._keep_alive(c)) for c in self.children]
        await self._stopping.wait()
        log.info("stopping every service")
        await self._stop_all()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        return 0

    async def _keep_alive(self, child: Child) -> None:
        while not self._stopping.is_set():
            recent = [t for t in child.starts if time.monotonic() - t < 60]
            if len(recent) >= 5:
                log.error(
                    "service keeps dying; waiting before the next start", service=child.service
                )
                await asyncio.sleep(30)
            child.starts = [*recent, time.monotonic()]
            child.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"switchboard.{child.service}", env=child.env
            )
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            log.warning("service exited; restarting", service=child.service, code=code)
            await asyncio.sleep(1)

    async def _stop_all(self) -> None:
        running = [c.process for c in self.children if c.process and c.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(p.wait() for p in running)), timeout=self._stop_timeout
            )
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    log.warning("service did not stop in time; killing", pid=process.pid)
                    process.kill()


def child_env(
    base: dict[str, str], service: str, index: int, extra: dict[str, str]
) -> dict[str, str]:
    env = dict(base)
    env.update(extra)
    env.setdefault(f"SB_{service.upper()}_HTTP_PORT", str(FIRST_HTTP_PORT + index))
    env["SB_HTTP_PORT"] = env[f"SB_{service.upper()}_HTTP_PORT"]
    env.setdefault("SB_LOG_FORMAT", "console")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def supervise(services: list[str], base_env: dict[str, str]) -> int:
    children = [
        Child(service, child_env(dict(os.environ), service, i, base_env))
        for i, service in enumerate(services)
    ]
    return asyncio.run(Supervisor(children).run())

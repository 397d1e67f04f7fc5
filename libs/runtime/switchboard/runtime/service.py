"""The one way to build and run a service: broker, MongoDB, metrics, health, timers.

A service module builds a :class:`Runtime`, registers its consumers and start hooks on it, and
hands :meth:`Runtime.app` to :func:`serve`. Tests start the same app in-process with
``async with runtime.app:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
import uvicorn
from faststream.asgi import AsgiFastStream
from faststream.specification import AsyncAPI

from switchboard.runtime.bus import Bus, make_broker
from switchboard.runtime.health import live_endpoint, ready_endpoint
from switchboard.runtime.jobs import DURATION, LAST_RUN, PeriodicJob
from switchboard.runtime.logs import configure_logging
from switchboard.runtime.metrics import DEPENDENCY_UP, metrics_app
from switchboard.runtime.mongo import ProcessedLedger, make_mongo_client
from switchboard.runtime.service_token import (
    check_service_token,
    require_service_token,
    service_token,
)
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.storage.retired import drop_retired
from switchboard.runtime.tracing import stop_tracing, tracer_provider
from switchboard.runtime.types import ASGIApp

log = structlog.get_logger("switchboard.service")

Hook = Callable[[], Awaitable[None]]


class Runtime:
    """Everything one service process shares: settings, bus, database, hooks and timers."""

    def __init__(self, service: str, settings: ServiceSettings, *, version: str = "0.1.0") -> None:
        configure_logging(service, log_format=settings.log_format, level=settings.log_level)
        self.service = service
        self.settings = settings
        self.tracer_provider = tracer_provider(service, settings.otlp_endpoint)
        self.broker = make_broker(settings, app_name=service, tracer_provider=self.tracer_provider)
        self.mongo = make_mongo_client(settings, app_name=service)
        self.db = self.mongo[settings.database_name(service)]
        self.ledger = ProcessedLedger(
            self.db,
            keep=timedelta(days=settings.processed_ttl_days),
            lease=timedelta(seconds=settings.handling_lease_seconds),
        )
        self.bus = Bus(self.broker, settings, self.ledger, service=service)
        self._start_hooks: list[Hook] = [self.ledger.ensure_indexes, self._drop_retired]
        self._stop_hooks: list[Hook] = []
        self._periodic: list[PeriodicJob] = [
            PeriodicJob("purge processed-message ledger", 3600.0, self._purge_ledger),
            PeriodicJob("dependency gauges", 10.0, self._report_dependencies),
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._routes: list[tuple[str, ASGIApp]] = []
        self._dying = False
        self._version = version
        self._app: AsgiFastStream | None = None
        self.give_up: Callable[[], None] = self._exit
        """What the watchdogs do when the broker or the database stays lost: stop this process."""
        self.watch_interval = 2.0
        self._mongo_lost_since: float | None = None

    def _exit(self) -> None:
        """Stop gracefully, and for certain: a shutdown can itself wait for ever on the lost
        dependency (seen with a database client whose pool stayed paused), so the process ends
        regardless once the graceful timeout and a margin have passed."""
        deadline = threading.Timer(self.settings.graceful_timeout_seconds + 10.0, os._exit, (70,))
        deadline.daemon = True
        deadline.start()
        os.kill(os.getpid(), signal.SIGTERM)

    def on_start(self, hook: Hook) -> Hook:
        """Run after the broker is connected and topology declared, before consuming."""
        self._start_hooks.append(hook)
        return hook

    def on_stop(self, hook: Hook) -> Hook:
        """Run when the service stops, before the broker closes."""
        self._stop_hooks.append(hook)
        return hook

    def every(self, seconds: float, name: str) -> Callable[[Hook], Hook]:
        """Run a hook periodically while the service is up (timers kept in MongoDB use this)."""

        def register(hook: Hook) -> Hook:
            self._periodic.append(PeriodicJob(name, seconds, hook))
            return hook

        return register

    def jobs(self, table: list[PeriodicJob]) -> None:
        """Run the service's periodic jobs (its one table of them) while it is up."""
        self._periodic.extend(table)

    def mount(self, path: str, app: ASGIApp) -> None:
        """Serve an extra HTTP endpoint (an upload, an API) beside /metrics and /health, behind
        the service token (:mod:`switchboard.runtime.service_token`)."""
        self._routes.append((path, require_service_token(app, service_token(self.settings))))

    @property
    def app(self) -> AsgiFastStream:
        if self._app is None:
            self._app = AsgiFastStream(
                self.broker,
                asgi_routes=[
                    ("/metrics", metrics_app()),
                    ("/health/live", live_endpoint(lambda: not self._dying)),
                    (
                        "/health/ready",
                        ready_endpoint({"broker": self._broker_ok, "mongodb": self._mongo_ok}),
                    ),
                    *self._routes,
                ],
                on_startup=[self._start],
                after_startup=[self._start_timers],
                on_shutdown=[self._stop],
                after_shutdown=[self._close],
                specification=AsyncAPI(title=f"Switchboard {self.service}", version=self._version),
            )
        return self._app

    async def _broker_ok(self) -> bool:
        return await self.broker.ping(timeout=2.0)

    async def _mongo_ok(self) -> bool:
        await self.mongo.admin.command("ping")
        return True

    async def _report_dependencies(self) -> None:
        """Whether RabbitMQ and MongoDB answer, as gauges: the 'unreachable' alerts read them.
        A database lost for too long stops the process, as a lost broker does: after a
        MongoDB-protocol server restart a client's pool was seen paused for good, every
        operation waiting, while a fresh process reached the server at once."""
        up: dict[str, bool] = {}
        for name, check in (("rabbitmq", self._broker_ok), ("mongodb", self._mongo_ok)):
            try:
                up[name] = await asyncio.wait_for(check(), timeout=5.0)
            except Exception:
                up[name] = False
            DEPENDENCY_UP.labels(name).set(1 if up[name] else 0)
        if up["mongodb"]:
            self._mongo_lost_since = None
            return
        self._mongo_lost_since = self._mongo_lost_since or time.monotonic()
        down = time.monotonic() - self._mongo_lost_since
        if down >= self.settings.mongo_lost_exit_seconds and not self._dying:
            self._dying = True
            log.error("database lost for too long: exiting so the supervisor restarts us")
            self.give_up()

    async def _start(self) -> None:
        if self._routes:
            check_service_token(self.settings, self.service)
        await self.broker.connect()
        await self.bus.declare_topology()
        await self.bus.requester.start()
        for hook in self._start_hooks:
            await hook()
        log.info("service starting", http_port=self.settings.http_port)

    async def _start_timers(self) -> None:
        self._stopping.clear()
        self._tasks.append(asyncio.create_task(self._watch_broker(), name="broker watchdog"))
        for job in self._periodic:
            self._tasks.append(asyncio.create_task(self._repeat(job), name=job.name))

    async def _stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for hook in self._stop_hooks:
            await hook()
        await self.bus.requester.stop()

    async def _close(self) -> None:
        await self.mongo.close()
        if self.tracer_provider is not None:
            stop_tracing(self.tracer_provider)
        log.info("service stopped")

    async def _repeat(self, job: PeriodicJob) -> None:
        """Run ``job`` every ``job.seconds`` until the service stops. The stop is also checked
        between runs: a cancellation that lands inside a driver call may surface as an ordinary
        error, and must not leave shutdown waiting a whole period."""
        while not self._stopping.is_set():
            started = time.perf_counter()
            outcome = "ok"
            try:
                await job.run()
            except Exception:
                if self._stopping.is_set():
                    return
                outcome = "failed"
                log.exception("periodic task failed", task=job.name)
            DURATION.labels(job.name).set(time.perf_counter() - started)
            LAST_RUN.labels(job.name, outcome).set(time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), job.seconds)

    async def _drop_retired(self) -> None:
        await drop_retired(self.db)

    async def _purge_ledger(self) -> None:
        await self.ledger.purge()

    async def _watch_broker(self) -> None:
        """Exit when the broker stays unreachable, so the supervisor starts a fresh process."""
        lost_since: float | None = None
        while True:
            await asyncio.sleep(self.watch_interval)
            if await self.broker.ping(timeout=self.watch_interval):
                if lost_since is not None:
                    log.info("broker connection back")
                lost_since = None
                continue
            lost_since = lost_since or time.monotonic()
            down = time.monotonic() - lost_since
            log.warning("broker unreachable", seconds=round(down, 1))
            if down >= self.settings.broker_lost_exit_seconds:
                self._dying = True
                log.error("broker lost for too long: exiting so the supervisor restarts us")
                self.give_up()
                return


def serve(runtime: Runtime) -> None:
    """Run a service until SIGINT/SIGTERM; in-flight handlers finish (graceful timeout)."""
    config = uvicorn.Config(
        runtime.app,
        host=runtime.settings.http_host,
        port=runtime.settings.http_port,
        log_config=None,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=int(runtime.settings.graceful_timeout_seconds),
    )
    uvicorn.Server(config).run()

"""Gateway service: settings, wiring, entry point.

The FastAPI app (``runtime.api``) is the process's ASGI app: it serves the API and hands
``/metrics`` and ``/health/*`` to the runtime's app, whose lifespan it runs.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import structlog
import uvicorn
from fastapi import FastAPI
from pydantic import Field, IPvAnyNetwork

from switchboard.contracts.queues import gateway as queues
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    InteractionTransferred,
)
from switchboard.gateway.api import build_api
from switchboard.gateway.auth import Authenticator
from switchboard.gateway.files import MailStore
from switchboard.gateway.forward import Forwarder
from switchboard.gateway.journal import LiveJournal
from switchboard.gateway.push import HoldingsProjection, PushHub
from switchboard.gateway.store import GatewayStore
from switchboard.runtime.service import Runtime
from switchboard.runtime.service_token import service_token
from switchboard.runtime.settings import ServiceSettings

log = structlog.get_logger("switchboard.gateway")

# services/gateway/switchboard/gateway/app.py -> the checkout's web/dist (`make install` builds it)
WEB_DIST = Path(__file__).resolve().parents[4] / "web" / "dist"


class GatewaySettings(ServiceSettings):
    gateway_users_file: Path | None = Field(
        default=None,
        description="JSON of people ({'people': [{id, name, role, password}]}), seeded when empty",
    )
    command_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="how long a command waits for its owner's answer"
    )
    token_ttl_seconds: int = Field(default=12 * 3600, ge=60, description="a session's lifetime")
    login_window_seconds: int = Field(default=900, ge=1, description="rate-limit window")
    login_account_limit: int = Field(
        default=5, ge=1, description="failed logins of an account from one client before delays"
    )
    login_address_limit: int = Field(default=30, ge=1, description="attempts per address/window")
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="proxies (addresses or networks, JSON list) whose X-Forwarded-For is believed",
    )
    login_delay_seconds: int = Field(
        default=30, ge=1, le=3600, description="first wait after a client's free failures"
    )
    login_delay_max_seconds: int = Field(
        default=900, ge=1, le=86400, description="longest wait between failed logins of one client"
    )
    login_account_hard_limit: int = Field(
        default=100, ge=1, le=100, description="failures of an account before failing clients stop"
    )
    heartbeat_seconds: float = Field(
        default=10.0, gt=0, description="agent heartbeat interval while the live stream is open"
    )
    push_outbox_size: int = Field(default=1000, ge=10, description="events queued per socket")
    live_replay_seconds: int = Field(
        default=3600, ge=10, description="how long an agent's live frames are kept for replay"
    )
    live_replay_frames: int = Field(
        default=500, ge=10, description="how many live frames are kept per agent for replay"
    )
    live_snapshot_seconds: float = Field(
        default=5.0, gt=0, le=120, description="how long the connect snapshot waits for owners"
    )
    password_time_cost: int = Field(default=3, ge=1, description="argon2id iterations")
    password_memory_kib: int = Field(default=65536, ge=8, description="argon2id memory (KiB)")
    password_parallelism: int = Field(default=4, ge=1, description="argon2id lanes")
    ingestion_url: str | None = Field(
        default=None,
        description="the mail edge's HTTP API (attachments, sanitised HTML, uploads); "
        "default http://127.0.0.1:<SB_INGESTION_HTTP_PORT>",
    )
    ingestion_http_port: int = Field(
        default=8104, ge=1, le=65535, description="the mail edge's port (as `make run` gives it)"
    )
    purge_seconds: float = Field(default=300.0, gt=0, description="expired sessions cleanup")
    web_dist: Path | None = Field(
        default=WEB_DIST,
        description="the built desktop app (web/dist) served at /; none: the API alone",
    )


class GatewayRuntime(Runtime):
    """A runtime that also carries the FastAPI app serving people."""

    api: FastAPI
    auth: Authenticator
    hub: PushHub
    forwarder: Forwarder


def build(
    settings: GatewaySettings, *, mail_transport: httpx.AsyncBaseTransport | None = None
) -> GatewayRuntime:
    """Wire the gateway; ``mail_transport`` replaces the network to the mail edge (tests)."""
    runtime = GatewayRuntime("gateway", settings)
    store = GatewayStore(runtime.db)
    auth = Authenticator(
        store,
        token_ttl=timedelta(seconds=settings.token_ttl_seconds),
        window=timedelta(seconds=settings.login_window_seconds),
        account_limit=settings.login_account_limit,
        address_limit=settings.login_address_limit,
        first_delay=timedelta(seconds=settings.login_delay_seconds),
        max_delay=timedelta(seconds=settings.login_delay_max_seconds),
        account_hard_limit=settings.login_account_hard_limit,
        time_cost=settings.password_time_cost,
        memory_kib=settings.password_memory_kib,
        parallelism=settings.password_parallelism,
    )
    journal = LiveJournal(
        runtime.db,
        max_age=timedelta(seconds=settings.live_replay_seconds),
        max_frames=settings.live_replay_frames,
    )
    hub = PushHub(runtime, store, journal, outbox_size=settings.push_outbox_size)
    projection = HoldingsProjection(store)
    runtime.bus.consume(queues.ASSIGNMENTS, InteractionAssigned, projection.on_assigned)
    runtime.bus.consume(queues.ENDED, InteractionEnded, projection.on_ended)
    runtime.bus.consume(queues.TRANSFERRED, InteractionTransferred, projection.on_transferred)

    async def seed() -> None:
        seeded = await auth.seed(settings.gateway_users_file)
        if seeded:
            # Where the passwords are, never their values: the users file may be a real one.
            where = settings.gateway_users_file
            print(f"Gateway people seeded now (their passwords are in {where}):", flush=True)
            for person in seeded:
                print(f"  {person.role:<10} {person.id}", flush=True)

    runtime.on_start(store.ensure_indexes)
    runtime.on_start(journal.ensure_indexes)
    runtime.on_start(seed)
    runtime.on_start(hub.start)
    runtime.on_stop(hub.stop)
    runtime.every(settings.purge_seconds, "purge expired sessions")(auth.purge)
    runtime.every(settings.purge_seconds, "purge old live frames")(journal.purge)

    mail_store = MailStore(
        settings.ingestion_url or f"http://127.0.0.1:{settings.ingestion_http_port}",
        service_token(settings),
        timeout=settings.command_timeout_seconds,
        transport=mail_transport,
    )
    runtime.on_stop(mail_store.close)
    runtime.auth = auth
    runtime.hub = hub
    runtime.forwarder = Forwarder(runtime.bus, settings.command_timeout_seconds)
    runtime.api = build_api(
        runtime,
        auth,
        runtime.forwarder,
        hub,
        mail_store,
        heartbeat_seconds=settings.heartbeat_seconds,
        trusted_proxies=list(settings.trusted_proxies),
        snapshot_seconds=settings.live_snapshot_seconds,
        web_dist=settings.web_dist,
    )
    return runtime


def serve_api(runtime: GatewayRuntime) -> None:
    """Like ``runtime.serve`` but with the FastAPI app in front (it runs the runtime's lifespan)."""
    config = uvicorn.Config(
        runtime.api,
        host=runtime.settings.http_host,
        port=runtime.settings.http_port,
        log_config=None,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=int(runtime.settings.graceful_timeout_seconds),
        ws="websockets-sansio",
    )
    uvicorn.Server(config).run()


def main() -> None:
    serve_api(build(GatewaySettings()))

"""A real gateway (RabbitMQ + MongoDB) and stand-ins for the services it forwards to.

The stand-ins are consumers registered on a second ``Runtime`` that answer the real contract
commands on the real queues: enough to test forwarding, authorisation and error mapping without
the owning services.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp
from websockets.asyncio.client import ClientConnection

from switchboard.contracts import ConsumerQueue, Message, routing
from switchboard.gateway.app import GatewayRuntime, GatewaySettings, build
from switchboard.runtime.service import Runtime

PEOPLE = {
    "agent-1": ("agent", "first-password-1"),
    "agent-2": ("agent", "second-password-2"),
    "supervisor-1": ("supervisor", "boss-password-1"),
}


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.json"
    people = [
        {"id": pid, "name": pid.title(), "role": role, "password": password}
        for pid, (role, password) in PEOPLE.items()
    ]
    path.write_text(json.dumps({"people": people}), encoding="utf-8")
    return path


@pytest.fixture
def gateway_settings(make_settings: Callable[..., Any], users_file: Path) -> GatewaySettings:
    settings: GatewaySettings = make_settings(
        GatewaySettings,
        gateway_users_file=users_file,
        password_time_cost=1,
        password_memory_kib=64,
        password_parallelism=1,
        command_timeout_seconds=3.0,
        heartbeat_seconds=0.3,
        live_snapshot_seconds=2.0,
        login_account_limit=3,
        login_address_limit=8,
    )
    return settings


DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo"


@pytest.fixture
def demo_gateway(make_settings: Callable[..., Any]) -> Callable[..., GatewayRuntime]:
    """Build a gateway for tests with the real services: the demo people (ids match the demo
    agents of agent-state, e.g. ``alice``, and ``supervisor-1``), cheap hashing, and a command
    timeout long enough for services starting on a busy machine."""

    def make(**overrides: Any) -> GatewayRuntime:
        settings: GatewaySettings = make_settings(
            GatewaySettings,
            **{
                "gateway_users_file": DEMO / "gateway.json",
                "password_time_cost": 1,
                "password_memory_kib": 64,
                "password_parallelism": 1,
                "command_timeout_seconds": 15.0,
                **overrides,
            },
        )
        return build(settings)

    return make


async def demo_login(http: httpx.AsyncClient, person: str) -> dict[str, str]:
    """Log a demo person in with their password from deploy/demo/gateway.json."""
    people = json.loads((DEMO / "gateway.json").read_text(encoding="utf-8"))["people"]
    password = next(p["password"] for p in people if p["id"] == person)
    return await login(http, person, str(password))


@pytest.fixture
async def gateway(gateway_settings: GatewaySettings) -> AsyncIterator[GatewayRuntime]:
    runtime = build(gateway_settings)
    async with runtime.app:
        yield runtime


@pytest.fixture
async def client(gateway: GatewayRuntime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway.api, client=("10.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


@pytest.fixture
async def served(gateway_settings: GatewaySettings) -> AsyncIterator[tuple[GatewayRuntime, str]]:
    """The gateway behind a real uvicorn server (live streams need a real socket)."""
    runtime = build(gateway_settings)
    async with serving(runtime.api) as address:
        yield runtime, address


def offer_to(agent_id: str, seconds: float = 30.0) -> routing.OfferMade:
    """An offer of case 7 to ``agent_id``, open for ``seconds``."""
    return routing.OfferMade(
        offer_id=f"offer-{uuid.uuid4().hex[:6]}",
        interaction_id="case-7",
        agent_id=agent_id,
        channel="email",
        service="billing",
        expires_at=datetime.now(UTC) + timedelta(seconds=seconds),
        summary={"subject": "Where is my parcel?"},
    )


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """An ASGI app (the gateway's ``runtime.api``, a service's ``runtime.app``) behind a real
    uvicorn server on a free port, lifespan included; yields ``host:port``."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_config=None,
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
            if task.done():
                task.result()
        yield f"127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def next_event(socket: ClientConnection, name: str, seconds: float = 10.0) -> dict[str, Any]:
    """The data of the next frame called ``name`` (frames before it are passed over)."""
    return dict((await next_frame(socket, name, seconds))["data"])


async def next_frame(socket: ClientConnection, name: str, seconds: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            frame: dict[str, Any] = json.loads(await socket.recv())
            if frame["event"] == name:
                return frame


async def login(
    http: httpx.AsyncClient, person: str, password: str | None = None
) -> dict[str, str]:
    """Log ``person`` in (password from :data:`PEOPLE` unless given); the auth header."""
    answer = await http.post(
        "/auth/login", json={"login": person, "password": password or PEOPLE[person][1]}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


StandInHandler = Callable[[Any], Awaitable[dict[str, Any] | None]]


class StandIns:
    """A second runtime answering commands in place of the owning services."""

    def __init__(self, make_settings: Callable[..., Any]) -> None:
        self.runtime = Runtime("standin", make_settings())
        self.seen: list[Message] = []

    def answer(self, queue: ConsumerQueue, model: type[Message], handler: StandInHandler) -> None:
        async def recorded(message: Message) -> dict[str, Any] | None:
            self.seen.append(message)
            return await handler(message)

        recorded.__name__ = getattr(handler, "__name__", "standin")
        self.runtime.bus.consume(queue, model, recorded)

    def of(self, model: type[Message]) -> list[Any]:
        return [m for m in self.seen if isinstance(m, model)]


@pytest.fixture
def stand_ins(make_settings: Callable[..., Any]) -> StandIns:
    return StandIns(make_settings)


@pytest.fixture
def running() -> Callable[[StandIns], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def run(stand_ins: StandIns) -> AsyncIterator[None]:
        async with stand_ins.runtime.app:
            yield

    return run

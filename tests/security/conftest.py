"""The real stack for the security tests: every service behind the gateway, in this process.

Ingestion (the mail edge, over real HTTP with its bearer token, relaying to a local SMTP sink),
threading, routing, agent-state and the dialer run on real RabbitMQ and a real MongoDB-protocol
server, each with its own databases; the gateway is the only door people use. The demo people
(``deploy/demo``) are the cast: alice and bruno are in the support team, dmitri in sales.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from testkit import eventually

from switchboard.gateway.app import GatewayRuntime, GatewaySettings, build
from tests.gateway.conftest import DEMO, demo_login, serving

ingestion_app = pytest.importorskip("switchboard.ingestion.app")
threading_app = pytest.importorskip("switchboard.threading.app")
routing_app = pytest.importorskip("switchboard.routing.app")
agent_state_app = pytest.importorskip("switchboard.agent_state.app")
dialer_app = pytest.importorskip("switchboard.dialer.app")

EDGE_TOKEN = "security-mail-edge-token"
SUPPORT = "support@switchboard.local"


class Sink:
    """A local SMTP relay that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        self.messages.append(content if isinstance(content, bytes) else content.encode())
        return "250 OK"

    def parsed(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for raw in self.messages
        ]


@dataclass
class Stack:
    http: httpx.AsyncClient
    edge: httpx.AsyncClient
    sink: Sink
    gateway: GatewayRuntime
    runtimes: dict[str, Any]
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    async def login(self, *people: str) -> None:
        for person in people:
            self.headers[person] = await demo_login(self.http, person)

    async def deliver(self, mail: bytes, mailbox: str = SUPPORT) -> None:
        """A customer's mail, stored and published by the real mail edge."""
        stored = await self.edge.post("/mail/messages", params={"mailbox": mailbox}, content=mail)
        assert stored.status_code == 202, stored.text

    async def take_case(self, agent: str, subject: str) -> int:
        """The agent logs in to work and pulls the email of this subject from their team
        queue (routing assigns it, threading learns it); answers the case number."""
        logged = await self.http.post(
            "/me/log-in",
            json={"initial_state": "not_ready", "reason": "Meeting"},
            headers=self.headers[agent],
        )
        assert logged.status_code in (200, 409), logged.text

        async def listed() -> httpx.Response:
            return await self.http.get("/queues/team", headers=self.headers[agent])

        async def waiting() -> str | None:
            answer = await listed()
            if answer.status_code != 200:
                return None
            for item in answer.json().get("items", []):
                if (item.get("summary") or {}).get("subject", "").endswith(subject):
                    return str(item["interaction_id"])
            return None

        interaction = await until(waiting)
        pulled = await self.http.post(
            "/queues/team/pull",
            json={"interaction_id": interaction},
            headers=self.headers[agent],
        )
        assert pulled.status_code == 200, pulled.text
        number = int(interaction.removeprefix("case-").split(".")[0])
        view = await until_ok(
            lambda: self.http.get(f"/cases/{number}", headers=self.headers[agent])
        )
        assert view.json()["case"]["interaction_state"] == "assigned", view.text
        return number


async def until(attempt: Callable[[], Any], seconds: float = 40.0) -> Any:
    """The first truthy answer of ``attempt``: testkit's ``eventually`` at this stack's pace."""
    return await eventually(attempt, seconds, every=0.3)


async def until_ok(attempt: Callable[[], Any], seconds: float = 40.0) -> httpx.Response:
    last: list[httpx.Response] = []

    async def once() -> httpx.Response | None:
        answer: httpx.Response = await attempt()
        last[:] = [answer]
        return answer if answer.is_success else None

    try:
        result: httpx.Response = await until(once, seconds)
    except AssertionError:
        raise AssertionError(f"never 2xx; last: {last[0].status_code} {last[0].text}") from None
    return result


def customer_mail(
    subject: str,
    text: str,
    *,
    sender: str = "Ann Customer <ann@example.com>",
    html: str | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> bytes:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = SUPPORT
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="example.com")
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    if attachment is not None:
        name, body = attachment
        mail.add_attachment(body, maintype="application", subtype="pdf", filename=name)
    return mail.as_bytes()


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Sink, int]]:
    handler = Sink()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    yield handler, server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def stack(
    make_settings: Callable[..., Any], sink: tuple[Sink, int], tmp_path: Path
) -> AsyncIterator[Stack]:
    relay, relay_port = sink
    ingestion = ingestion_app.build(
        make_settings(
            ingestion_app.IngestionSettings,
            mailboxes=[{"address": SUPPORT, "service": "support"}],
            smtp_enabled=False,
            service_token=EDGE_TOKEN,
            relay_port=relay_port,
        )
    )
    runtimes: dict[str, Any] = {
        "ingestion": ingestion,
        "threading": threading_app.build(
            make_settings(
                threading_app.ThreadingSettings, threading_config_file=DEMO / "threading.json"
            )
        ),
        "routing": routing_app.build(
            make_settings(routing_app.RoutingSettings, routing_config_file=DEMO / "routing.json")
        ),
        "agent_state": agent_state_app.build(
            make_settings(agent_state_app.AgentStateSettings, agents_file=DEMO / "agent_state.json")
        ),
        "dialer": dialer_app.build(
            make_settings(dialer_app.DialerSettings, campaigns_file=DEMO / "dialer.json")
        ),
    }
    async with serving(ingestion.app) as mail_edge:
        settings: GatewaySettings = make_settings(
            GatewaySettings,
            gateway_users_file=DEMO / "gateway.json",
            password_time_cost=1,
            password_memory_kib=64,
            password_parallelism=1,
            command_timeout_seconds=15.0,
            ingestion_url=f"http://{mail_edge}",
            service_token=EDGE_TOKEN,
        )
        gateway = build(settings)
        runtimes["gateway"] = gateway
        async with contextlib.AsyncExitStack() as running:
            for name in ("agent_state", "routing", "threading", "dialer"):
                await running.enter_async_context(runtimes[name].app)
            await running.enter_async_context(gateway.app)
            http = await running.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=gateway.api),
                    base_url="http://gw",
                    timeout=30,
                )
            )
            edge = await running.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://{mail_edge}",
                    headers={"Authorization": f"Bearer {EDGE_TOKEN}"},
                    timeout=30,
                )
            )
            yield Stack(http=http, edge=edge, sink=relay, gateway=gateway, runtimes=runtimes)


# The deployed stack (every service its own process) for the tests of the edge.
from tests.security.deployed import deployed  # noqa: E402, F401

"""The deployed stack as an attacker meets it: `switchboard run` (every service its own process),
mail by SMTP to the mail edge, people through the gateway, a real SMTP sink as the world.

One stack serves a whole test module (starting six processes costs tens of seconds); each
module gets its own RabbitMQ virtual host and database prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import smtplib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from switchboard.app.localstack import Backends, management_call
from switchboard.app.supervisor import SERVICE_ORDER

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from stack import REPO, SmtpSink, Stack

SUPPORT = "support@switchboard.local"
TRUSTED_PROXY = "127.0.0.3"
"""The stack believes X-Forwarded-For only from this address (SB_TRUSTED_PROXIES)."""
MAX_RECIPIENTS = 5


def demo_password(person_id: str) -> str:
    people = json.loads((REPO / "deploy" / "demo" / "gateway.json").read_text())["people"]
    return str(next(p["password"] for p in people if p["id"] == person_id))


def demo_passwords() -> list[str]:
    people = json.loads((REPO / "deploy" / "demo" / "gateway.json").read_text())["people"]
    return [str(p["password"]) for p in people]


class Deployed:
    """The running stack and the ways in an outsider has."""

    def __init__(self, stack: Stack, sink: SmtpSink) -> None:
        self.stack = stack
        self.sink = sink

    def url(self, service: str, path: str = "") -> str:
        return self.stack.url(service, path)

    def output(self) -> str:
        return self.stack.log_path.read_text(encoding="utf-8", errors="replace")

    def send_mail(
        self,
        subject: str,
        text: str,
        *,
        sender: str = "grace@example.org",
        to: str = SUPPORT,
        **headers: str,
    ) -> str:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
        for name, value in headers.items():
            message[name.replace("_", "-")] = value
        message.set_content(text)
        with smtplib.SMTP("127.0.0.1", self.stack.smtp_port, timeout=30) as smtp:
            smtp.send_message(message)
        return str(message["Message-ID"])

    @contextlib.asynccontextmanager
    async def session(
        self, person_id: str, *, local_address: str = "127.0.0.1"
    ) -> AsyncIterator[httpx.AsyncClient]:
        """A logged-in API client of a demo person, calling from ``local_address``."""
        async with client(self.url("gateway"), local_address) as http:
            answer = await http.post(
                "/auth/login", json={"login": person_id, "password": demo_password(person_id)}
            )
            answer.raise_for_status()
            http.headers["authorization"] = f"Bearer {answer.json()['token']}"
            yield http

    async def find_case(
        self, boss: httpx.AsyncClient, subject: str, seconds: float = 60.0
    ) -> dict[str, Any]:
        """The thread view of the newest case whose first email has ``subject``."""
        deadline = time.monotonic() + seconds
        number = 14355
        while True:
            answer = await boss.get(f"/cases/{number}")
            if answer.status_code == 200:
                view: dict[str, Any] = answer.json()
                if any(e.get("subject") == subject for e in view.get("emails", [])[:1]):
                    return view
                number += 1
                continue
            if time.monotonic() > deadline:
                raise AssertionError(f"no case with subject {subject!r} (last tried {number})")
            await _pause()
            number = 14355


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.3)


def client(base_url: str, local_address: str = "127.0.0.1") -> httpx.AsyncClient:
    """An HTTP client whose requests come from ``local_address`` (any 127.x is loopback)."""
    transport = httpx.AsyncHTTPTransport(local_address=local_address)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=30)


@pytest.fixture(scope="module")
def deployed(
    real_servers: Backends, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """`switchboard run` with the demo files, no service token configured (it makes one)."""
    assert "SB_SERVICE_TOKEN" not in os.environ, "the stack must make its own service token"
    vhost = f"sec-{uuid.uuid4().hex[:8]}"
    amqp_url = real_servers.amqp_url
    if real_servers.management_url is not None:
        user = real_servers.amqp_url.split("://", 1)[1].split(":", 1)[0]
        management_call(real_servers.management_url, "PUT", f"/api/vhosts/{vhost}")
        management_call(
            real_servers.management_url,
            "PUT",
            f"/api/permissions/{vhost}/{user}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        amqp_url = real_servers.vhost_url(vhost)
    sink = SmtpSink()
    sink.start()
    prefix = f"sec{uuid.uuid4().hex[:6]}"
    stack = Stack(
        amqp_url=amqp_url,
        mongodb_url=real_servers.mongodb_url,
        database_prefix=prefix,
        relay_port=sink.port,
        log_path=tmp_path_factory.mktemp("stack") / "stack.log",
        extra_env={
            "SB_TRUSTED_PROXIES": json.dumps([TRUSTED_PROXY]),
            "SB_SMTP_MAX_RECIPIENTS": str(MAX_RECIPIENTS),
        },
    )
    try:
        stack.start()
        yield Deployed(stack, sink)
    finally:
        stack.stop()
        sink.stop()
        mongo: MongoClient[dict[str, Any]] = MongoClient(real_servers.mongodb_url)
        for service in SERVICE_ORDER:
            mongo.drop_database(f"{prefix}_{service}")
        mongo.close()
        if real_servers.management_url is not None:
            management_call(real_servers.management_url, "DELETE", f"/api/vhosts/{vhost}")

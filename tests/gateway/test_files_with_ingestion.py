"""Attachments, sanitised HTML and uploads through the gateway, against the real mail edge.

Every service runs in-process on real RabbitMQ and MongoDB: ingestion (over real HTTP, with its
bearer token) stores a customer's mail in GridFS, threading files it under a case, routing
queues it, agent-state knows the agents; the agent takes the case from the team queue. Then, all
through the gateway: the attachment's bytes, refused to an agent of another service, the HTML
without its script, an upload that lands in ingestion's store and leaves in the reply (at an SMTP
sink).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from testkit import eventually

from switchboard.gateway.app import GatewayRuntime

from .conftest import DEMO, demo_login, serving

ingestion_app = pytest.importorskip("switchboard.ingestion.app")
threading_app = pytest.importorskip("switchboard.threading.app")
routing_app = pytest.importorskip("switchboard.routing.app")
agent_state_app = pytest.importorskip("switchboard.agent_state.app")

TOKEN = "mail-edge-token"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


class Sink:
    """A local SMTP relay that keeps what it is given (aiosmtpd handler)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        self.messages.append(content if isinstance(content, bytes) else content.encode())
        return "250 OK"


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Sink, int]]:
    handler = Sink()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    yield handler, server.sockets[0].getsockname()[1]
    server.close()


def customer_mail() -> bytes:
    mail = EmailMessage()
    mail["From"] = "Ann Customer <ann@example.com>"
    mail["To"] = "support@switchboard.local"
    mail["Subject"] = "My invoice"
    mail["Message-ID"] = make_msgid(domain="example.com")
    mail.set_content("Hello, my invoice is attached.")
    mail.add_alternative(
        "<html><body><p>Hello, my <b>invoice</b> is attached.</p>"
        "<script>alert('gotcha')</script>"
        '<img src="x" onerror="alert(1)"></body></html>',
        subtype="html",
    )
    mail.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    return mail.as_bytes()


def succeeded(attempt: Callable[[], Any]) -> Callable[[], Any]:
    """``attempt`` (an HTTP call) as a check for ``eventually``: its answer once 2xx."""

    async def check() -> httpx.Response | None:
        answer: httpx.Response = await attempt()
        return answer if answer.is_success else None

    return check


async def test_attachment_html_and_upload_through_the_gateway_against_real_ingestion(
    make_settings: Callable[..., Any],
    demo_gateway: Callable[..., GatewayRuntime],
    sink: tuple[Sink, int],
) -> None:
    relay, relay_port = sink
    ingestion = ingestion_app.build(
        make_settings(
            ingestion_app.IngestionSettings,
            mailboxes=[{"address": "support@switchboard.local", "service": "support"}],
            smtp_enabled=False,
            service_token=TOKEN,
            relay_port=relay_port,
            retry_delay_seconds=0.2,
        )
    )
    threading = threading_app.build(
        make_settings(
            threading_app.ThreadingSettings, threading_config_file=DEMO / "threading.json"
        )
    )
    routing = routing_app.build(
        make_settings(routing_app.RoutingSettings, routing_config_file=DEMO / "routing.json")
    )
    agent_state = agent_state_app.build(
        make_settings(agent_state_app.AgentStateSettings, agents_file=DEMO / "agent_state.json")
    )
    async with serving(ingestion.app) as mail_edge:
        gateway = demo_gateway(ingestion_url=f"http://{mail_edge}", service_token=TOKEN)
        transport = httpx.ASGITransport(app=gateway.api)
        async with (
            agent_state.app,
            routing.app,
            threading.app,
            gateway.app,
            httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=30) as http,
            httpx.AsyncClient(
                base_url=f"http://{mail_edge}", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as edge,
        ):
            alice = await demo_login(http, "alice")
            dmitri = await demo_login(http, "dmitri")  # sales only: not a support case's reader
            logged_in = await http.post(
                "/me/log-in",
                json={"initial_state": "not_ready", "reason": "Meeting"},
                headers=alice,
            )
            assert logged_in.status_code == 200, logged_in.text

            # the customer's mail, stored by the real mail edge (GridFS) and filed by threading
            stored = await edge.post(
                "/mail/messages",
                params={"mailbox": "support@switchboard.local"},
                content=customer_mail(),
            )
            assert stored.status_code == 202, stored.text

            # alice takes it from her team queue: routing assigns it, threading learns it
            pulled = await eventually(
                succeeded(lambda: http.post("/queues/team/pull", json={}, headers=alice)),
                every=0.3,
            )
            assert pulled.status_code == 200, pulled.text
            case_number = int(pulled.json()["interaction_id"].removeprefix("case-"))

            view = await eventually(
                succeeded(lambda: http.get(f"/cases/{case_number}", headers=alice)), every=0.3
            )
            assert view.status_code == 200, view.text
            inbound = next(e for e in view.json()["emails"] if e["direction"] == "inbound")
            (attachment,) = inbound["attachments"]
            assert attachment["filename"] == "invoice.pdf"

            # the attachment: the stored bytes, to the agent who holds the case ...
            got = await http.get(
                f"/cases/{case_number}/attachments/{attachment['attachment_id']}", headers=alice
            )
            assert got.status_code == 200, got.text
            assert got.content == PDF
            assert got.headers["content-type"] == "application/pdf"
            assert 'filename="invoice.pdf"' in got.headers["content-disposition"]
            # ... and to nobody outside the case's service (threading decides, nothing is
            # fetched)
            foreign = await http.get(
                f"/cases/{case_number}/attachments/{attachment['attachment_id']}", headers=dmitri
            )
            assert foreign.status_code == 404, foreign.text  # as if there were no such case
            assert foreign.json()["code"] == "no_such_case"
            assert (
                await http.get(f"/cases/{case_number}/attachments/not-in-this-case", headers=alice)
            ).status_code == 404

            # the HTML, sanitised by the mail edge, served under a sandbox policy
            assert inbound["html_ref"]
            html = await http.get(
                f"/cases/{case_number}/html",
                params={"email_id": inbound["email_id"]},
                headers=alice,
            )
            assert html.status_code == 200, html.text
            assert html.headers["content-type"].startswith("text/html")
            assert "sandbox" in html.headers["content-security-policy"]
            assert "invoice" in html.text
            lowered = html.text.lower()
            assert "<script" not in lowered and "gotcha" not in lowered
            assert "onerror" not in lowered
            assert (
                await http.get(
                    f"/cases/{case_number}/html",
                    params={"email_id": inbound["email_id"]},
                    headers=dmitri,
                )
            ).status_code == 404  # outside the case's service: as if there were no case

            # an upload lands in the mail edge's store ...
            notes = b"Your refund is on its way.\n" * 3
            uploaded = await http.post(
                "/attachments",
                params={"filename": "refund.txt"},
                content=notes,
                headers={**alice, "Content-Type": "text/plain"},
            )
            assert uploaded.status_code == 201, uploaded.text
            ref = uploaded.json()
            assert ref["size"] == len(notes) and ref["content_type"] == "text/plain"
            blob = await edge.get("/mail/blobs", params={"id": ref["attachment_id"]})
            assert blob.status_code == 200 and blob.content == notes
            # (without a type, the mail edge guesses it from the name)
            guessed = await http.post(
                "/attachments", params={"filename": "scan.pdf"}, content=PDF, headers=alice
            )
            assert guessed.status_code == 201, guessed.text
            assert guessed.json()["content_type"] == "application/pdf"

            # ... and leaves with the reply
            reply = await http.post(
                f"/cases/{case_number}/reply",
                json={
                    "text": "Hello Ann, see the note attached.",
                    "attachments": [ref, guessed.json()],
                },
                headers=alice,
            )
            assert reply.status_code == 200, reply.text
            sent = await wait_for_mail(relay, "ann@example.com", "refund.txt")
            parts = {
                part.get_filename(): part.get_payload(decode=True)
                for part in sent.walk()
                if part.get_filename()
            }
            assert set(parts) == {"refund.txt", "scan.pdf"}
            assert parts["scan.pdf"] == PDF
            # a text part travels in MIME's canonical form (CRLF line ends)
            assert parts["refund.txt"].replace(b"\r\n", b"\n") == notes


async def wait_for_mail(relay: Sink, to: str, filename: str) -> email.message.Message:
    for _ in range(200):
        for raw in relay.messages:
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            names = {p.get_filename() for p in parsed.walk()}
            if to in str(parsed["To"]) and filename in names:
                return parsed
        await asyncio.sleep(0.1)
    raise AssertionError(f"no mail to {to} with {filename} reached the relay")

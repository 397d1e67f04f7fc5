"""A threading service started in-process against real RabbitMQ and FerretDB, with sinks.

The sinks are queues bound to what threading sends elsewhere (route requests, outbound mail,
interaction endings, case events), standing in for routing, ingestion and the gateway.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from testkit import eventually

from switchboard.contracts import EXCHANGE, Message, Outcome
from switchboard.contracts.mail import Address, EmailReceived
from switchboard.contracts.routing import InteractionAssigned
from switchboard.runtime.errors import Refused
from switchboard.runtime.service import Runtime
from switchboard.threading.app import ThreadingSettings, build
from switchboard.threading.handlers import ThreadingHandlers
from switchboard.threading.store import ThreadingStore

THREAD_KEY = "test-thread-key-for-the-threading-suite"
REPO = Path(__file__).resolve().parents[2]

SINKS = {
    "route": ("interaction.route_requested",),
    "outbound": ("email.outbound.requested",),
    "ended": ("interaction.ended",),
    "withdrawn": ("interaction.route_withdrawn",),
    "events": ("case.#",),
}

TEST_CONFIG = {
    "services": [
        {
            "name": "support",
            "sender": {"name": "Acme Support", "address": "support@acme.example"},
            "dispositions": [
                {"name": "Resolved", "final": True},
                {"name": "Awaiting customer", "final": False},
            ],
            "closed_case": {"mode": "reopen", "reopen_within_days": 7},
            "auto_ack": {"enabled": False},
            "follow_up_to_previous_agent": True,
        },
        {
            "name": "sales",
            "sender": {"name": "Acme Sales", "address": "sales@acme.example"},
            "dispositions": [{"name": "Order placed", "final": True}],
            "closed_case": {"mode": "new_linked"},
            "thread_id_placement": "header",
            "follow_up_to_previous_agent": False,
        },
        {
            "name": "billing",
            "sender": {"name": "Acme Billing", "address": "billing@acme.example"},
            "dispositions": [{"name": "Paid", "final": True}],
            "closed_case": {"mode": "reject"},
            "auto_ack": {"enabled": True, "per_recipient_limit": 2, "window_minutes": 60},
        },
    ],
    "templates": [
        {
            "template_id": "greeting",
            "name": "Greeting and signature",
            "subject": "About your case {{ case_number }}",
            "text": 'Dear {{ customer_name }},\n\nabout "{{ subject }}": your case number is '
            "{{ case_number }} (reference {{ thread_id }}).\n\nKind regards,\n{{ agent_name }}",
            "html": "<p>Dear {{ customer_name }},</p><p>Case {{ case_number }} "
            "({{ thread_id }}): {{ subject }}</p><p>{{ agent_name }}</p>",
        },
        {
            "template_id": "sales-offer",
            "name": "Offer",
            "services": ["sales"],
            "text": "Our offer for you, {{ customer_name }}.",
        },
    ],
}


HANDLERS: dict[str, Callable[[ThreadingHandlers], Callable[[Any], Awaitable[Any]]]] = {
    "case.reply": lambda h: h.on_reply,
    "case.forward": lambda h: h.on_forward,
    "case.follow_up": lambda h: h.on_follow_up,
    "case.new_outbound": lambda h: h.on_new_outbound,
    "case.draft.save": lambda h: h.on_save_draft,
    "case.draft.update": lambda h: h.on_update_draft,
    "case.draft.discard": lambda h: h.on_discard_draft,
    "case.close": lambda h: h.on_close,
    "case.transfer": lambda h: h.on_transfer,
    "case.change_service": lambda h: h.on_change_service,
    "case.mask": lambda h: h.on_mask,
    "case.note.add": lambda h: h.on_add_note,
    "case.disposition.set": lambda h: h.on_set_disposition,
    "case.thread.get": lambda h: h.on_get_thread,
    "case.lookup": lambda h: h.on_lookup,
    "case.template.save": lambda h: h.on_save_template,
    "case.template.delete": lambda h: h.on_delete_template,
    "case.template.list": lambda h: h.on_list_templates,
}


class Sinks:
    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection, prefix: str) -> None:
        self.connection = connection
        self.prefix = prefix
        self.seen: dict[str, list[dict[str, Any]]] = {name: [] for name in SINKS}

    async def declare(self) -> None:
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for name, keys in SINKS.items():
            queue = await channel.declare_queue(f"{self.prefix}.{name}", durable=True)
            for key in keys:
                await queue.bind(exchange, routing_key=key)
        await channel.close()

    async def drain(self, name: str) -> list[dict[str, Any]]:
        channel = await self.connection.channel()
        queue = await channel.declare_queue(f"{self.prefix}.{name}", passive=True)
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            body = json.loads(message.body)
            body["_name"] = message.type or (message.headers or {}).get("x-sb-name")
            self.seen[name].append(body)
        await channel.close()
        return self.seen[name]


class Threading:
    """One running threading service and helpers to talk to it."""

    def __init__(self, runtime: Runtime, sinks: Sinks) -> None:
        self.runtime = runtime
        self.sinks = sinks
        self.store: ThreadingStore = runtime.store  # type: ignore[attr-defined]
        self.handlers: ThreadingHandlers = runtime.handlers  # type: ignore[attr-defined]

    @staticmethod
    def mail(**fields: Any) -> EmailReceived:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "email_id": uuid.uuid4().hex + uuid.uuid4().hex,
            "channel": "smtp",
            "mailbox": "support@acme.example",
            "service": "support",
            "received_at": now,
            "size": 1000,
            "internet_message_id": f"<{uuid.uuid4().hex}@customer.example>",
            "sender": Address(name="Ann Customer", address="ann@customer.example"),
            "to": [Address(name="Acme Support", address="support@acme.example")],
            "subject": "Printer broken",
            "sent_at": now,
            "text": "Hello, my printer is broken.",
        }
        values.update(fields)
        return EmailReceived(**values)

    async def send(self, message: Message) -> None:
        await self.runtime.bus.publish(message)

    async def file(self, mail: EmailReceived) -> dict[str, Any]:
        """Publish an inbound mail and wait until it is filed; returns the email document."""
        await self.send(mail)
        key = mail.internet_message_id.strip("<>")

        async def filed() -> dict[str, Any] | None:
            doc = await self.store.get_email(key)
            if doc is None:
                return None
            case = await self.store.get_case(doc["case_number"])
            if case is None or key not in case.get("email_keys", []):
                return None
            handled = doc["source"] in case.get("handled", {})
            waiting = any(m.get("command") == doc["source"] for m in case.get("outbox", []))
            return doc if handled and not waiting else None

        result: dict[str, Any] = await eventually(filed)
        return result

    async def assign(self, case_number: int, agent_id: str, service: str = "support") -> None:
        case = await self.store.get_case(case_number)
        assert case is not None
        interaction = case["interaction"]["id"]
        await self.send(
            InteractionAssigned(
                interaction_id=interaction, agent_id=agent_id, channel="email", service=service
            )
        )

        async def assigned() -> bool:
            now = await self.store.get_case(case_number)
            return bool(
                now
                and now["interaction"].get("state") == "assigned"
                and now["interaction"].get("agent_id") == agent_id
            )

        await eventually(assigned)

    async def held_case(self, agent_id: str = "a1", **mail: Any) -> dict[str, Any]:
        """File a new mail and assign its case to ``agent_id``; returns the email document."""
        first = await self.file(self.mail(**mail))
        await self.assign(first["case_number"], agent_id, service=first["service"])
        return first

    async def request(self, command: Message) -> Outcome:
        """Through RabbitMQ, as the gateway does (Bus.request, direct reply-to)."""
        return await self.runtime.bus.request(command, timeout=15.0)

    async def command(self, command: Message) -> Outcome:
        """Straight into the handler (real MongoDB and RabbitMQ for its effects), quicker than
        a broker round trip; refusals are answered as the runtime answers them."""
        handler = HANDLERS[command.NAME](self.handlers)
        try:
            result = await handler(command)
        except Refused as refused:
            return Outcome(ok=False, error=refused.refusal)
        return Outcome(ok=True, result=result or {})

    async def case(self, number: int) -> dict[str, Any]:
        case = await self.store.get_case(number)
        assert case is not None
        return case

    async def drain(self, sink: str) -> list[dict[str, Any]]:
        return await self.sinks.drain(sink)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "threading.json"
    path.write_text(json.dumps(TEST_CONFIG), encoding="utf-8")
    return path


@pytest.fixture
def threading_settings(
    make_settings: Callable[..., Any], config_file: Path
) -> Callable[..., ThreadingSettings]:
    def settings(**overrides: Any) -> ThreadingSettings:
        values: dict[str, Any] = {
            "thread_key": THREAD_KEY,
            "threading_config_file": config_file,
            "case_number_start": 14355,
            "outbox_sweep_seconds": 1.0,
            "log_level": "WARNING",
            "log_format": "json",
            **overrides,
        }
        result: ThreadingSettings = make_settings(ThreadingSettings, **values)
        return result

    return settings


@pytest.fixture
async def sinks(amqp_url: str) -> AsyncIterator[Sinks]:
    connection = await aio_pika.connect_robust(amqp_url)
    found = Sinks(connection, f"test-sink-{uuid.uuid4().hex[:6]}")
    await found.declare()
    try:
        yield found
    finally:
        await connection.close()


@pytest.fixture
async def threading(
    threading_settings: Callable[..., ThreadingSettings], sinks: Sinks
) -> AsyncIterator[Threading]:
    runtime = build(threading_settings())
    async with runtime.app:
        yield Threading(runtime, sinks)

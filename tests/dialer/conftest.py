"""Fixtures of the dialer tests: a dialer runtime with fast timers, and a stand-in for routing."""

from __future__ import annotations

import sys
from pathlib import Path

# The workspace venv may predate the dialer package (its editable install then has no path
# entry until the next `uv sync`): make it importable either way.
_SERVICE = Path(__file__).resolve().parents[2] / "services" / "dialer"
if str(_SERVICE) not in sys.path:
    sys.path.insert(0, str(_SERVICE))

import asyncio  # noqa: E402
import json  # noqa: E402
import uuid  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import aio_pika  # noqa: E402
import pytest  # noqa: E402
from testkit import eventually as eventually  # noqa: E402 (the tests take it from here)

from switchboard.contracts import EXCHANGE, ConsumerQueue, Message, Outcome  # noqa: E402
from switchboard.contracts.campaigns import CreateCampaign, ImportRecords  # noqa: E402
from switchboard.contracts.routing import (  # noqa: E402
    InteractionAssigned,
    InteractionEnded,
    OfferAnswer,
    OfferMade,
    RouteRequested,
    RouteWithdrawn,
)
from switchboard.dialer.app import DialerSettings, build  # noqa: E402
from switchboard.runtime.service import Runtime  # noqa: E402

ROUTES = ConsumerQueue("fake-routing.route_requested", (RouteRequested.NAME,))
WITHDRAWALS = ConsumerQueue("fake-routing.route_withdrawn", (RouteWithdrawn.NAME,))
ENDINGS = ConsumerQueue("fake-routing.interaction_ended", (InteractionEnded.NAME,))
ANSWERS = ConsumerQueue("fake-routing.offer_answer", (OfferAnswer.NAME,))

FULL_DAY = {"start": "00:00", "end": "24:00"}


class FakeRouting:
    """Stands in for routing: offers each preview to a free agent, in order, one at a time."""

    def __init__(self, runtime: Runtime, agents: list[str], *, auto_accept: bool = True) -> None:
        self.bus = runtime.bus
        self.free = list(agents)
        self.auto_accept = auto_accept
        self.waiting: list[RouteRequested] = []
        self.live: dict[str, str] = {}
        self.offers: dict[str, tuple[str, str, str]] = {}
        self.requests: list[RouteRequested] = []
        self.ended: list[InteractionEnded] = []
        self.withdrawn: list[RouteWithdrawn] = []
        self.assigned: list[tuple[str, str]] = []
        self._lock = asyncio.Lock()
        runtime.bus.consume(ROUTES, RouteRequested, self.on_route)
        runtime.bus.consume(WITHDRAWALS, RouteWithdrawn, self.on_withdrawn)
        runtime.bus.consume(ENDINGS, InteractionEnded, self.on_ended)
        runtime.bus.consume(ANSWERS, OfferAnswer, self.on_answer)

    async def on_route(self, request: RouteRequested) -> None:
        async with self._lock:
            self.requests.append(request)
            known = request.interaction_id in self.live or any(
                w.interaction_id == request.interaction_id for w in self.waiting
            )
            if not known:
                self.waiting.append(request)
            await self._match()

    async def _match(self) -> None:
        for request in list(self.waiting):
            wanted = request.personal_agent_id
            if wanted is not None:
                agent = wanted if wanted in self.free else None
            else:
                agent = self.free[0] if self.free else None
            if agent is None:
                continue
            self.free.remove(agent)
            self.waiting.remove(request)
            self.live[request.interaction_id] = agent
            offer_id = uuid.uuid4().hex
            self.offers[offer_id] = (request.interaction_id, agent, request.service)
            await self.bus.publish(
                OfferMade(
                    offer_id=offer_id,
                    interaction_id=request.interaction_id,
                    agent_id=agent,
                    channel="preview",
                    service=request.service,
                    expires_at=datetime.now(UTC) + timedelta(seconds=30),
                    auto_accept=self.auto_accept,
                    summary=request.summary,
                )
            )
            if self.auto_accept:
                await self._assign(offer_id, "auto_accepted")

    async def _assign(self, offer_id: str, how: str) -> None:
        interaction, agent, service = self.offers[offer_id]
        self.assigned.append((interaction, agent))
        await self.bus.publish(
            InteractionAssigned(
                interaction_id=interaction,
                agent_id=agent,
                channel="preview",
                service=service,
                offer_id=offer_id,
                how=how,  # type: ignore[arg-type]
            )
        )

    async def on_answer(self, answer: OfferAnswer) -> None:
        async with self._lock:
            if answer.accept:
                await self._assign(answer.offer_id, "accepted")

    async def on_ended(self, ended: InteractionEnded) -> None:
        async with self._lock:
            self.ended.append(ended)
            if self.live.get(ended.interaction_id) == ended.agent_id:
                del self.live[ended.interaction_id]
                self.free.append(ended.agent_id)
            await self._match()

    async def on_withdrawn(self, withdrawn: RouteWithdrawn) -> None:
        async with self._lock:
            self.withdrawn.append(withdrawn)
            self.waiting = [w for w in self.waiting if w.interaction_id != withdrawn.interaction_id]


@pytest.fixture
def dialer_settings(make_settings: Callable[..., Any]) -> Callable[..., DialerSettings]:
    def settings(**overrides: Any) -> DialerSettings:
        values: dict[str, Any] = {
            "dispatch_interval_seconds": 0.2,
            "timers_interval_seconds": 0.2,
            "simulator_ring_seconds": 0.05,
            "simulator_talk_seconds": 0.1,
            "route_refresh_seconds": 30.0,
            "review_lease_seconds": 3.0,
            "log_format": "json",
            **overrides,
        }
        return make_settings(DialerSettings, **values)  # type: ignore[no-any-return]

    return settings


@pytest.fixture
async def routing(make_settings: Callable[..., Any]) -> AsyncIterator[FakeRouting]:
    runtime = Runtime("fakerouting", make_settings())
    fake = FakeRouting(runtime, ["agent-1"])
    async with runtime.app:
        yield fake


@pytest.fixture
async def dialer(
    dialer_settings: Callable[..., DialerSettings], routing: FakeRouting
) -> AsyncIterator[Runtime]:
    runtime = build(dialer_settings())
    async with runtime.app:
        yield runtime


async def ask(runtime: Runtime, command: Message, timeout: float = 30.0) -> Outcome:
    """Send a command and wait for the answer, like ``Bus.request`` but through a reply queue
    of our own: with RabbitMQ's direct reply-to the runtime's answer is followed by a failed
    second reply that requeues the command again and again (see the dialer report), which
    would slow every later step of a test to a crawl."""
    url = runtime.settings.amqp_url.get_secret_value()
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        replies = await channel.declare_queue("", exclusive=True, auto_delete=True)
        exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                command.model_dump_json().encode(),
                message_id=str(command.message_id),
                correlation_id=str(command.correlation_id),
                content_type="application/json",
                reply_to=replies.name,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={"x-sb-name": command.NAME},
            ),
            routing_key=command.NAME,
            mandatory=True,
        )
        async with replies.iterator(timeout=timeout) as incoming:
            async for message in incoming:
                await message.ack()
                return Outcome.model_validate_json(message.body)
    raise AssertionError("no answer")


async def ok(runtime: Runtime, command: Message) -> dict[str, Any]:
    outcome = await ask(runtime, command)
    assert outcome.ok, outcome.error
    return outcome.result


async def make_campaign(
    runtime: Runtime, records: list[dict[str, Any]], campaign_id: str = "spring", **spec: Any
) -> dict[str, Any]:
    campaign = {
        "name": "Spring renewals",
        "service": "outbound-preview",
        "calling_hours": FULL_DAY,
        **spec,
    }
    await ok(
        runtime, CreateCampaign.model_validate({"campaign_id": campaign_id, "campaign": campaign})
    )
    content = "\n".join(json.dumps(r) for r in records)
    return await ok(
        runtime, ImportRecords(campaign_id=campaign_id, format="jsonl", content=content)
    )


async def record_doc(db: Any, record_id: str) -> dict[str, Any] | None:
    """A record as the dialer sees it: its live copy (in routing or held) unless the stored
    one is newer."""
    live = await db["live"].find_one({"_id": record_id})
    stored = await db["records"].find_one({"_id": record_id})
    if live is not None and (stored is None or live["version"] >= stored["version"]):
        return dict(live)
    return None if stored is None else dict(stored)


async def records_now(db: Any) -> list[dict[str, Any]]:
    """Every record, each in its current copy."""
    out: dict[str, dict[str, Any]] = {d["_id"]: d async for d in db["records"].find({})}
    async for doc in db["live"].find({}):
        if doc["_id"] not in out or doc["version"] >= out[doc["_id"]]["version"]:
            out[doc["_id"]] = doc
    return list(out.values())


async def find_record(db: Any, **fields: Any) -> dict[str, Any] | None:
    """The first record (current copy) whose fields equal ``fields``."""
    for doc in await records_now(db):
        if all(doc.get(k) == v for k, v in fields.items()):
            return doc
    return None

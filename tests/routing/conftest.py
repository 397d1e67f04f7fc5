"""Routing runs in-process against the real RabbitMQ and MongoDB-protocol server.

``RoutingHarness`` starts one or more routing replicas on this test's vhost and databases, and
an observer queue that records every event routing publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from testkit import eventually

from switchboard.contracts import EXCHANGE, Message, Outcome
from switchboard.contracts.agents import AgentProfileChanged, AgentStateChanged, Skill
from switchboard.contracts.routing import ServiceConfigured, ServiceDefinition
from switchboard.routing.app import RoutingSettings, wire
from switchboard.routing.router import Router
from switchboard.runtime.service import Runtime

OBSERVED = (
    "offer.#",
    "interaction.assigned",
    "interaction.queued",
    "interaction.transferred",
)


class Observer:
    """Every event routing published, in arrival order, by name."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.changed = asyncio.Event()
        self.callbacks: list[Callable[[str, dict[str, Any]], Any]] = []

    def record(self, name: str, body: dict[str, Any]) -> None:
        body["_name"] = name
        self.events.append(body)
        self.by_name[name].append(body)
        self.changed.set()
        for callback in self.callbacks:
            callback(name, body)

    def named(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.by_name[name] if all(e.get(k) == v for k, v in match.items())]

    async def wait_for(
        self, name: str, *, count: int = 1, seconds: float = 10.0, **match: Any
    ) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            found = self.named(name, **match)
            if len(found) >= count:
                return found
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"{count} x {name} {match} not seen within {seconds} s; saw {found}"
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.2))


class RoutingHarness:
    def __init__(self, make_settings: Callable[..., Any], amqp_url: str) -> None:
        self.make_settings = make_settings
        self.amqp_url = amqp_url
        self.observer = Observer()
        self.replicas: list[tuple[Runtime, Router]] = []
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.sequence: dict[str, int] = defaultdict(int)
        self._waiting: dict[str, asyncio.Future[Outcome]] = {}
        self._reply_queue = ""
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    def settings(self, **overrides: Any) -> RoutingSettings:
        values: dict[str, Any] = {
            "timer_poll_seconds": 0.1,
            "sweep_seconds": 0.5,
            "metrics_seconds": 1.0,
            "stale_hold_seconds": 30.0,
            **overrides,
        }
        settings: RoutingSettings = self.make_settings(RoutingSettings, **values)
        return settings

    async def observe(self) -> None:
        self._connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=500)
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue("test.routing-observer", exclusive=True)
        for key in OBSERVED:
            await queue.bind(exchange, routing_key=key)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                self.observer.record(message.routing_key or "", json.loads(message.body))

        await queue.consume(on_message)

        # Commands are sent with a reply queue of our own, as the runtime's requester does.
        replies = await channel.declare_queue("", exclusive=True, auto_delete=True)
        self._reply_queue = replies.name
        self._exchange = exchange

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                waiter = self._waiting.pop(message.correlation_id or "", None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(Outcome.model_validate_json(message.body))

        await replies.consume(on_reply)

    async def purge_queue(self, name: str) -> None:
        """Drop what waits in a queue (an event lost, as if the queue had not existed)."""
        assert self._connection is not None
        channel = await self._connection.channel()
        await (await channel.get_queue(name)).purge()
        await channel.close()

    async def start(self, **overrides: Any) -> Router:
        runtime, router = wire(self.settings(**overrides))
        await runtime.app.start()
        self.replicas.append((runtime, router))
        return router

    async def stop(self, router: Router) -> None:
        for runtime, candidate in list(self.replicas):
            if candidate is router:
                await runtime.app.stop()
                self.replicas.remove((runtime, candidate))

    async def close(self) -> None:
        for runtime, _ in reversed(self.replicas):
            with contextlib.suppress(Exception):
                await runtime.app.stop()
        self.replicas.clear()
        if self._connection is not None:
            await self._connection.close()

    @property
    def runtime(self) -> Runtime:
        return self.replicas[0][0]

    @property
    def router(self) -> Router:
        return self.replicas[0][1]

    async def publish(self, message: Message) -> None:
        await self.runtime.bus.publish(message)

    async def request(self, message: Message, timeout: float = 20.0) -> Outcome:
        assert self._exchange is not None
        key = str(message.correlation_id)
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[key] = waiter
        await self._exchange.publish(
            aio_pika.Message(
                message.model_dump_json().encode(),
                message_id=str(message.message_id),
                correlation_id=key,
                reply_to=self._reply_queue,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={"x-sb-name": message.NAME},
            ),
            routing_key=message.NAME,
        )
        return await asyncio.wait_for(waiter, timeout)

    async def configure(self, **fields: Any) -> ServiceDefinition:
        service = ServiceDefinition(**fields)
        outcome = await self.request(ServiceConfigured(service=service))
        assert outcome.ok, outcome
        return service

    async def agent(
        self,
        agent_id: str,
        *,
        teams: tuple[str, ...] = ("support",),
        skills: dict[str, int] | None = None,
        capacity: dict[str, int] | None = None,
        state: str | None = "ready",
    ) -> None:
        """Register an agent (profile) and optionally move them to a state."""
        await self.router.profile_changed(
            AgentProfileChanged(
                agent_id=agent_id,
                name=agent_id,
                teams=list(teams),
                skills=[Skill(name=k, level=v) for k, v in (skills or {}).items()],
                capacity=capacity or {"email": 1, "preview": 1},  # type: ignore[arg-type]
            )
        )
        if state is not None:
            await self.set_state(agent_id, state, via_bus=False)

    def state_message(
        self, agent_id: str, state: str, *, not_ready_pending: bool = False
    ) -> AgentStateChanged:
        self.sequence[agent_id] += 1
        return AgentStateChanged(
            agent_id=agent_id,
            previous="logged_out",
            state=state,  # type: ignore[arg-type]
            actor=agent_id,
            sequence=self.sequence[agent_id],
            changed_at=datetime.now(UTC),
            not_ready_pending=not_ready_pending,
        )

    eventually = staticmethod(eventually)

    async def set_state(self, agent_id: str, state: str, *, via_bus: bool = True) -> None:
        message = self.state_message(agent_id, state)
        if via_bus:
            await self.publish(message)
        else:
            await self.router.state_changed(message)


@pytest.fixture
async def harness(
    make_settings: Callable[..., Any], amqp_url: str
) -> AsyncIterator[RoutingHarness]:
    found = RoutingHarness(make_settings, amqp_url)
    await found.observe()
    try:
        yield found
    finally:
        await found.close()

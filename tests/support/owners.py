"""The services reporting's ``rebuild --from-services`` asks (agent-state, threading, routing,
the dialer), started on a test's vhost and databases: the rebuild needs every owner to answer,
so a test of one owner's history starts the others too (holding nothing, they tell nothing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from switchboard.agent_state.app import AgentStateSettings
from switchboard.agent_state.app import build as build_agent_state
from switchboard.dialer.app import DialerSettings
from switchboard.dialer.app import build as build_dialer
from switchboard.routing.app import RoutingSettings
from switchboard.routing.app import build as build_routing
from switchboard.runtime.service import Runtime
from switchboard.threading.app import ThreadingSettings
from switchboard.threading.app import build as build_threading

OWNERS = ("agent_state", "threading", "routing", "dialer")


def build_owner(name: str, make_settings: Callable[..., Any]) -> Runtime:
    if name == "agent_state":
        return build_agent_state(make_settings(AgentStateSettings))
    if name == "threading":
        return build_threading(make_settings(ThreadingSettings, thread_key="rebuild-test-key"))
    if name == "routing":
        return build_routing(make_settings(RoutingSettings))
    if name == "dialer":
        return build_dialer(make_settings(DialerSettings))
    raise ValueError(f"no owner {name!r}")


@asynccontextmanager
async def other_owners(
    make_settings: Callable[..., Any], *running: str
) -> AsyncIterator[list[Runtime]]:
    """Every owner but those the test runs itself (``running``), started; stopped after."""
    async with AsyncExitStack() as stack:
        started = []
        for name in OWNERS:
            if name not in running:
                runtime = build_owner(name, make_settings)
                await stack.enter_async_context(runtime.app)
                started.append(runtime)
        yield started

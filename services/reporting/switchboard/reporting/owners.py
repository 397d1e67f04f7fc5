"""What the owning services still hold, asked over the bus for a rebuild (services never read
each other's collections), page by page, as the events they were published as: agent-state's
recorded state changes, threading's cases and emails."""

from __future__ import annotations

from collections.abc import AsyncIterator

from switchboard.contracts import Message, message_class
from switchboard.contracts.agents import (
    AgentStateChanged,
    StateHistoryPage,
    StateHistoryRequested,
)
from switchboard.contracts.cases import CaseHistoryPage, CaseHistoryRequested
from switchboard.runtime.bus import Bus

PAGE_SIZE = 500
ANSWER_SECONDS = 30.0


class OwnerRefused(RuntimeError):
    """An owner answered a history query with a refusal (the message says which and why)."""


async def agent_state_changes(
    bus: Bus, *, page_size: int = PAGE_SIZE
) -> AsyncIterator[AgentStateChanged]:
    """Every state change agent-state recorded, by agent then sequence."""
    after = ""
    while True:
        query = StateHistoryRequested(
            actor_id="reporting", actor_role="supervisor", after=after, limit=page_size
        )
        outcome = await bus.request(query, timeout=ANSWER_SECONDS)
        if not outcome.ok:
            raise OwnerRefused(f"agent-state refused its state history: {outcome.error}")
        page = StateHistoryPage.model_validate(outcome.result)
        for change in page.changes:
            yield change
        if page.next_after is None:
            return
        after = page.next_after


async def threading_case_events(bus: Bus, *, page_size: int = 200) -> AsyncIterator[Message]:
    """The events of every case threading keeps, case by case, each case's in time order."""
    after = 0
    while True:
        query = CaseHistoryRequested(
            actor_id="reporting",
            actor_role="supervisor",
            after_case_number=after,
            limit=page_size,
        )
        outcome = await bus.request(query, timeout=ANSWER_SECONDS)
        if not outcome.ok:
            raise OwnerRefused(f"threading refused its case history: {outcome.error}")
        page = CaseHistoryPage.model_validate(outcome.result)
        for recorded in page.events:
            yield message_class(recorded.name).model_validate(recorded.body)
        if page.next_after is None:
            return
        after = page.next_after


async def everything_held(bus: Bus) -> AsyncIterator[Message]:
    """What every owner asked holds: agent-state's changes, then threading's cases."""
    async for change in agent_state_changes(bus):
        yield change
    async for event in threading_case_events(bus):
        yield event

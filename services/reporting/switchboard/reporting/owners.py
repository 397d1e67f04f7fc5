"""What the owning services still hold, asked over the bus for a rebuild (services never read
each other's collections): agent-state's recorded state changes, page by page, as the
``agent.state_changed`` events they were published as."""

from __future__ import annotations

from collections.abc import AsyncIterator

from switchboard.contracts.agents import (
    AgentStateChanged,
    StateHistoryPage,
    StateHistoryRequested,
)
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

"""What the owning services still hold, asked over the bus for a rebuild (services never read
each other's collections), page by page, as the events they were published as: agent-state's
recorded state changes, threading's cases and emails, routing's interactions, the dialer's
records and journal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, cast

from pydantic import BaseModel

from switchboard.contracts import Message, message_class
from switchboard.contracts.agents import (
    AgentStateChanged,
    StateHistoryPage,
    StateHistoryRequested,
)
from switchboard.contracts.campaigns import CampaignHistoryPage, CampaignHistoryRequested
from switchboard.contracts.cases import CaseHistoryPage, CaseHistoryRequested, RecordedEvent
from switchboard.contracts.routing import InteractionHistoryPage, InteractionHistoryRequested
from switchboard.runtime.bus import Bus

PAGE_SIZE = 500
ANSWER_SECONDS = 30.0


class OwnerRefused(RuntimeError):
    """An owner answered a history query with a refusal, or not in time (the message says
    which and why)."""


async def _ask(bus: Bus, query: Message, owner: str, what: str) -> Any:
    """The owner's answer to one page's query (its ``result``)."""
    try:
        outcome = await bus.request(query, timeout=ANSWER_SECONDS)
    except TimeoutError:
        raise OwnerRefused(
            f"{owner} did not answer for {what} within {ANSWER_SECONDS:.0f} s: is it running?"
        ) from None
    if not outcome.ok:
        raise OwnerRefused(f"{owner} refused {what}: {outcome.error}")
    return outcome.result


async def agent_state_changes(
    bus: Bus, *, page_size: int = PAGE_SIZE
) -> AsyncIterator[AgentStateChanged]:
    """Every state change agent-state recorded, by agent then sequence."""
    after = ""
    while True:
        query = StateHistoryRequested(
            actor_id="reporting", actor_role="supervisor", after=after, limit=page_size
        )
        answer = await _ask(bus, query, "agent-state", "its state history")
        page = StateHistoryPage.model_validate(answer)
        for change in page.changes:
            yield change
        if page.next_after is None:
            return
        after = page.next_after


class _EventPage(Protocol):
    events: list[RecordedEvent]
    next_after: Any


async def _recorded_events(
    bus: Bus,
    owner: str,
    what: str,
    query_after: Callable[[Any], Message],
    page_model: type[BaseModel],
    after: Any,
) -> AsyncIterator[Message]:
    """An owner's recorded events, page after page until it says there is no next page."""
    while True:
        answer = await _ask(bus, query_after(after), owner, what)
        page = cast(_EventPage, page_model.model_validate(answer))
        for event in _events(page.events):
            yield event
        if page.next_after is None:
            return
        after = page.next_after


def threading_case_events(bus: Bus, *, page_size: int = 200) -> AsyncIterator[Message]:
    """The events of every case threading keeps, case by case, each case's in time order."""
    return _recorded_events(
        bus,
        "threading",
        "its case history",
        lambda after: CaseHistoryRequested(
            actor_id="reporting",
            actor_role="supervisor",
            after_case_number=after,
            limit=page_size,
        ),
        CaseHistoryPage,
        0,
    )


def routing_interaction_events(bus: Bus, *, page_size: int = 200) -> AsyncIterator[Message]:
    """Routing's assignments, ends, transfers and unanswered offers, interaction by
    interaction."""
    return _recorded_events(
        bus,
        "routing",
        "its interaction history",
        lambda after: InteractionHistoryRequested(
            actor_id="reporting",
            actor_role="supervisor",
            after_interaction_id=after,
            limit=page_size,
        ),
        InteractionHistoryPage,
        "",
    )


def dialer_campaign_events(bus: Bus, *, page_size: int = 200) -> AsyncIterator[Message]:
    """The calls and record events of every record the dialer keeps, record by record."""
    return _recorded_events(
        bus,
        "the dialer",
        "its campaign history",
        lambda after: CampaignHistoryRequested(
            actor_id="reporting",
            actor_role="supervisor",
            after_record_id=after,
            limit=page_size,
        ),
        CampaignHistoryPage,
        "",
    )


def _events(recorded: list[RecordedEvent]) -> list[Message]:
    return [message_class(r.name).model_validate(r.body) for r in recorded]


async def everything_held(bus: Bus) -> AsyncIterator[Message]:
    """What every owner asked holds: agent-state's changes, threading's cases, routing's
    interactions, the dialer's records."""
    async for change in agent_state_changes(bus):
        yield change
    async for event in threading_case_events(bus):
        yield event
    async for event in routing_interaction_events(bus):
        yield event
    async for event in dialer_campaign_events(bus):
        yield event

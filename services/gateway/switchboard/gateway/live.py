"""What an agent's live stream sends on connect: the frames missed since a number, and a
snapshot of the agent's state, assignments and open offers.

The snapshot asks the owners (agent-state for the state, routing for the interactions held)
with a short wait; an owner that does not answer leaves its part ``null`` and names it under
``unavailable``. Routing answers no query for an agent's live offers, so ``offers`` are the
``offer.made`` frames of the agent's journal that no later frame of the journal closed
(``offer.cancelled`` / ``offer.timed_out`` / ``offer.rejected``, or ``interaction.assigned``
naming the offer) and whose ``expires_at`` has not passed: what the stream already said, replayed
as one list, not a decision of the gateway's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from switchboard.contracts import Message
from switchboard.contracts.agents import AgentStatesRequested
from switchboard.contracts.routing import LiveAssignmentsRequested
from switchboard.gateway.errors import ApiError
from switchboard.gateway.forward import Forwarder
from switchboard.gateway.journal import Frame, LiveJournal

OFFER_EVENTS = (
    "offer.made",
    "offer.cancelled",
    "offer.timed_out",
    "offer.rejected",
    "interaction.assigned",
)


@dataclass(frozen=True)
class Replay:
    frames: list[Frame]
    last_seq: int
    complete: bool

    def summary(self, since: int) -> dict[str, Any]:
        return {
            "event": "replayed",
            "data": {
                "since": since,
                "count": len(self.frames),
                "last_seq": self.last_seq,
                "complete": self.complete,
            },
        }


async def replay(journal: LiveJournal, agent_id: str, since: int) -> Replay:
    """The agent's frames after ``since``; ``complete`` is false when some were purged (or
    ``since`` is not a number this journal handed out): the desktop then reloads its views."""
    frames: list[Frame] = []
    while True:
        batch = await journal.after(agent_id, frames[-1].seq if frames else since)
        if not batch:
            break
        frames.extend(batch)
    if frames:
        return Replay(frames, frames[-1].seq, frames[0].prev == since)
    last = await journal.last_seq(agent_id)
    return Replay([], last, last == since)


def open_offers(frames: list[Frame], now: datetime) -> list[dict[str, Any]]:
    offers: dict[str, dict[str, Any]] = {}
    for frame in frames:
        offer_id = frame.data.get("offer_id")
        if not isinstance(offer_id, str):
            continue
        if frame.event == "offer.made":
            offers[offer_id] = {**frame.data, "seq": frame.seq}
        else:
            offers.pop(offer_id, None)
    return [offer for offer in offers.values() if not _expired(offer.get("expires_at"), now)]


def _expired(value: Any, now: datetime) -> bool:
    try:
        expires = datetime.fromisoformat(str(value))
    except ValueError:
        return False
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return expires <= now


async def snapshot(
    forwarder: Forwarder, journal: LiveJournal, agent_id: str, *, timeout: float
) -> dict[str, Any]:
    unavailable: dict[str, str] = {}

    async def ask(part: str, command: Message, owner: str) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(forwarder.send(command, owner=owner), timeout)
        except ApiError as exc:
            unavailable[part] = exc.code
        except TimeoutError:
            unavailable[part] = "timeout"
        return None

    states, held, frames = await asyncio.gather(
        ask(
            "state",
            AgentStatesRequested(actor_id=agent_id, actor_role="agent"),
            "agent-state",
        ),
        ask("assignments", LiveAssignmentsRequested(agent_ids=[agent_id]), "routing"),
        journal.recent(agent_id, OFFER_EVENTS),
    )
    state = None
    if states is not None:
        mine = [a for a in states.get("agents", []) if a.get("agent_id") == agent_id]
        state = mine[0] if mine else None
    assignments = None
    if held is not None:
        assignments = list(held.get("assignments", {}).get(agent_id, []))
    return {
        "event": "snapshot",
        "data": {
            "agent_id": agent_id,
            "state": state,
            "assignments": assignments,
            "offers": open_offers(frames, datetime.now(UTC)),
            "unavailable": unavailable,
        },
    }

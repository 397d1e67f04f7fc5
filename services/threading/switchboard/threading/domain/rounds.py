"""A case's routing rounds: start one (``RouteRequested``) or end the current one
(``InteractionEnded`` to the agent's side, ``RouteWithdrawn`` while it still waits).

Each function changes the case document in place and returns the messages the change causes;
no I/O (the handlers store and publish them).
"""

from __future__ import annotations

from typing import Any

from switchboard.contracts import Message
from switchboard.contracts.routing import (
    InteractionEnded,
    RouteReason,
    RouteRequested,
    RouteWithdrawn,
)
from switchboard.threading import rules
from switchboard.threading.config import ServiceConfig
from switchboard.threading.domain.common import Document
from switchboard.threading.domain.common import now as _now


def end_interaction(
    case: Document, cause: Message, outcome: str, cfg: ServiceConfig
) -> list[Message]:
    """Messages that end the case's current routing round (and mark it ended)."""
    interaction = case.setdefault("interaction", {"round": 0, "state": "idle"})
    state = interaction.get("state")
    iid = interaction.get("id")
    messages: list[Message] = []
    if state == "assigned" and iid:
        messages.append(
            InteractionEnded.caused_by(
                cause,
                key=f"end:{iid}",
                interaction_id=iid,
                agent_id=interaction["agent_id"],
                channel="email",
                wrap_up=cfg.wrap_up,
                outcome=outcome,
            )
        )
    elif state == "routing" and iid:
        messages.append(
            RouteWithdrawn.caused_by(
                cause, key=f"withdraw:{iid}", interaction_id=iid, reason=outcome
            )
        )
    if state in ("assigned", "routing"):
        interaction.update(state="ended", ended_at=_now())
    return messages


def start_round(
    case: Document,
    cause: Message,
    *,
    reason: RouteReason,
    preferred_agent_id: str | None = None,
    personal_agent_id: str | None = None,
    summary: dict[str, Any] | None = None,
) -> list[Message]:
    """Start a new routing round unless one is under way (queued, offered or assigned)."""
    interaction = case.setdefault("interaction", {"round": 0, "state": "idle"})
    if interaction.get("state") in ("routing", "assigned"):
        return []
    round_ = int(interaction.get("round", 0)) + 1
    iid = rules.interaction_id(case["_id"], round_)
    interaction.update(
        id=iid, round=round_, state="routing", agent_id=None, since=_now(), reason=reason
    )
    contact = case.get("contact") or {}
    return [
        RouteRequested.caused_by(
            cause,
            key=f"route:{iid}",
            interaction_id=iid,
            channel="email",
            service=case["service"],
            reason=reason,
            preferred_agent_id=preferred_agent_id,
            personal_agent_id=personal_agent_id,
            summary={
                "case_number": case["_id"],
                "subject": case.get("subject", ""),
                "customer": contact.get("name") or contact.get("address", ""),
                "customer_address": contact.get("address", ""),
                **(summary or {}),
            },
            requested_at=_now(),
        )
    ]

"""An interaction's stored document and its transitions that several concerns share. No I/O.

A round starts with a route request (``new_round``); an offer that was not accepted puts the
interaction back at the head of its queue with its age kept (``requeued``); each document keeps
its last offers and how they ended (``past_offers``) so a late answer gets a clear refusal, and
its next timer (``work_due``).
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from switchboard.contracts.routing import RouteRequested, ServiceDefinition
from switchboard.routing.domain.matching import next_due

WorkDocument = dict[str, Any]
PAST_OFFERS_KEPT = 20


class Offer(BaseModel):
    """An interaction's live offer (kept inside its document while it rings): to whom, made
    when, until when, and whether it was accepted for the agent."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    agent_id: str
    made_at: datetime | None = None
    expires_at: datetime
    auto_accept: bool = False

    def stored(self) -> WorkDocument:
        return self.model_dump()


class PastOffer(BaseModel):
    """One of an interaction's last offers and how it ended (a late answer gets a clear
    refusal from it)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    agent_id: str
    outcome: str


def live_offer(doc: WorkDocument) -> Offer | None:
    """The interaction's offer now ringing, if any."""
    found = doc.get("offer")
    return None if found is None else Offer.model_validate(found)


def past_offer(doc: WorkDocument, offer_id: str) -> PastOffer | None:
    """How the interaction's offer ``offer_id`` ended, if it is among the last ones kept."""
    for entry in doc.get("past_offers", []):
        if entry["id"] == offer_id:
            return PastOffer.model_validate(entry)
    return None


def work_due(doc: WorkDocument, now: datetime) -> datetime | None:
    """The interaction's next timer: offer expiry, end of the preferred wait, overflow."""
    offer = live_offer(doc)
    return next_due(
        doc["status"],
        offer_expires_at=offer.expires_at if offer else None,
        preferred_until=doc.get("preferred_until"),
        personal_until=doc.get("personal_until"),
        now=now,
    )


def past_offers(doc: WorkDocument, offer: Offer, outcome: str) -> list[WorkDocument]:
    """The interaction's last offers and how they ended (kept inside its document)."""
    entry = PastOffer(id=offer.id, agent_id=offer.agent_id, outcome=outcome)
    return [*doc.get("past_offers", [])[-(PAST_OFFERS_KEPT - 1) :], entry.model_dump()]


def requeued(
    doc: WorkDocument,
    offer: Offer,
    outcome: str,
    now: datetime,
    *,
    decline_for: timedelta | None,
) -> WorkDocument:
    """The interaction back in its queue after an offer that was not accepted, with its age
    kept (so at the head); ``decline_for`` keeps it from that agent for the cooldown."""
    updated = copy.deepcopy(doc)
    updated.update(
        status="waiting",
        offer=None,
        offer_id=None,
        agent_id=None,
        past_offers=past_offers(doc, offer, outcome),
        version=doc["version"] + 1,
    )
    if decline_for is not None:
        agent_id = offer.agent_id
        updated["declined"] = [
            *[d for d in doc.get("declined", []) if d["a"] != agent_id],
            {"a": agent_id, "until": now + decline_for},
        ]
    updated["due"] = work_due(updated, now)
    return updated


def new_round(
    msg: RouteRequested,
    previous: WorkDocument | None,
    service: ServiceDefinition | None,
    now: datetime,
) -> WorkDocument:
    """A route request opens a round: the interaction waits, its history and (over rounds)
    its round number and version carried on from the previous one."""
    queued_at = msg.requested_at or msg.occurred_at
    preferred_wait = service.preferred_agent_wait_seconds if service else 0.0
    overflow = service.personal_overflow_seconds if service else None
    preferred_until = (
        now + timedelta(seconds=preferred_wait)
        if msg.preferred_agent_id and preferred_wait > 0
        else None
    )
    personal_until = (
        now + timedelta(seconds=overflow) if msg.personal_agent_id and overflow else None
    )
    priority = msg.priority if msg.priority is not None else (service.priority if service else 0)
    doc: WorkDocument = {
        "_id": msg.interaction_id,
        "status": "waiting",
        "channel": msg.channel,
        "service": msg.service,
        "priority": priority,
        "reason": msg.reason,
        "queued_at": queued_at,
        "requested_at": queued_at,
        "round": int(previous["round"]) + 1 if previous else 1,
        "offers_in_round": 0,
        "request_id": str(msg.message_id),
        "preferred_agent_id": msg.preferred_agent_id,
        "preferred_until": preferred_until,
        "personal_agent_id": msg.personal_agent_id,
        "personal_until": personal_until,
        "declined": [],
        "summary": msg.summary,
        "offer_id": None,
        "offer": None,
        "agent_id": None,
        "withdrawn_at": previous.get("withdrawn_at") if previous else None,
        "ended_at": None,
        "history": list(previous.get("history", [])) if previous else [],
        "version": int(previous["version"]) + 1 if previous else 1,
    }
    doc["due"] = work_due(doc, now)
    return doc

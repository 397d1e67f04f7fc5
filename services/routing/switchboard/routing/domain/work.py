"""An interaction routing holds (:class:`WorkItem`) and how it changes. No I/O.

A round starts with a route request (:func:`new_round`); an offer moves it to ``offered`` (or
straight to ``assigned`` when accepted for the agent, :func:`offered`); an offer that was not
accepted puts it back at the head of its queue with its age kept (:func:`requeued`). Each item
keeps its last offers and how they ended (``past_offers``), so a late answer gets a clear
refusal, and its next timer (``due``). Every transition returns the new item (its ``version``
is moved on by the store's guarded write) or ``None`` when there is nothing to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from switchboard.contracts.routing import RouteRequested, ServiceDefinition
from switchboard.routing.domain.matching import Work, next_due

PAST_OFFERS_KEPT = 20
OFFER_IDS_KEPT = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LIVE = ("waiting", "offered", "assigned")

Status = Literal["waiting", "offered", "assigned", "ended", "withdrawn"]


class Offer(BaseModel):
    """An interaction's live offer (kept inside its item while it rings): to whom, made
    when, until when, and whether it was accepted for the agent."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    agent_id: str
    made_at: datetime | None = None
    expires_at: datetime
    auto_accept: bool = False


class PastOffer(BaseModel):
    """One of an interaction's last offers and how it ended (a late answer gets a clear
    refusal from it)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    agent_id: str
    outcome: str


class Declined(BaseModel):
    """An agent who rejected or missed this interaction is not offered it until ``until``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    agent_id: str = Field(alias="a")
    until: datetime


class Happened(BaseModel):
    """A line of the interaction's history (transferred, overflowed), with what it names."""

    model_config = ConfigDict(frozen=True, extra="allow")

    at: datetime
    what: str


class WorkItem(BaseModel):
    """One interaction routing holds, from its route request to its end (or withdrawal).

    ``version`` grows with every write (the store guards each write with it)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(alias="_id")
    version: int = 0

    status: Status = "waiting"
    channel: str = "email"
    service: str = ""
    priority: int = 0
    reason: str = "new"
    queued_at: datetime = EPOCH
    requested_at: datetime | None = None
    round: int = 0
    offers_in_round: int = 0
    request_id: str | None = None
    preferred_agent_id: str | None = None
    preferred_until: datetime | None = None
    personal_agent_id: str | None = None
    personal_until: datetime | None = None
    declined: list[Declined] = Field(default_factory=list)
    summary: dict[str, Any] | None = None
    offer_id: str | None = None
    offer: Offer | None = None
    offer_ids: list[str] = Field(default_factory=list)
    agent_id: str | None = None
    assigned_at: datetime | None = None
    withdrawn_at: datetime | None = None
    ended_at: datetime | None = None
    past_offers: list[PastOffer] = Field(default_factory=list)
    history: list[Happened] = Field(default_factory=list)
    due: datetime | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def waiting_since(self) -> datetime:
        """When the customer started waiting for this round (what a desktop shows)."""
        return self.requested_at or self.queued_at

    def past_offer(self, offer_id: str) -> PastOffer | None:
        """How the offer ``offer_id`` ended, if it is among the last ones kept."""
        return next((p for p in self.past_offers if p.id == offer_id), None)

    def as_work(self) -> Work:
        """The item as the matching rules see it."""
        return Work(
            interaction_id=self.id,
            channel=self.channel,
            service=self.service,
            priority=self.priority,
            queued_at=self.queued_at,
            preferred_agent_id=self.preferred_agent_id,
            preferred_until=self.preferred_until,
            personal_agent_id=self.personal_agent_id,
            declined={d.agent_id: d.until for d in self.declined},
            version=self.version,
        )


def work_due(item: WorkItem, now: datetime) -> datetime | None:
    """The interaction's next timer: offer expiry, end of the preferred wait, overflow."""
    return next_due(
        item.status,
        offer_expires_at=item.offer.expires_at if item.offer else None,
        preferred_until=item.preferred_until,
        personal_until=item.personal_until,
        now=now,
    )


def _with_due(item: WorkItem, now: datetime) -> WorkItem:
    return item.model_copy(update={"due": work_due(item, now)})


def past_offers(item: WorkItem, offer: Offer, outcome: str) -> list[PastOffer]:
    """The interaction's last offers and how they ended, with this one."""
    entry = PastOffer(id=offer.id, agent_id=offer.agent_id, outcome=outcome)
    return [*item.past_offers[-(PAST_OFFERS_KEPT - 1) :], entry]


def happened(at: datetime, what: str, **names: Any) -> Happened:
    """A history line (kept over rounds): transfers and overflows, and what reports count
    (assignments, ends, offers not answered in time), so routing can tell them again."""
    return Happened.model_validate({"at": at, "what": what, **names})


def new_round(
    msg: RouteRequested,
    previous: WorkItem | None,
    service: ServiceDefinition | None,
    now: datetime,
) -> WorkItem:
    """A route request opens a round: the interaction waits, its history and (over rounds)
    its round number and version carried on from the previous one."""
    queued_at = msg.requested_at or msg.occurred_at
    preferred_wait = service.preferred_agent_wait_seconds if service else 0.0
    overflow = service.personal_overflow_seconds if service else None
    priority = msg.priority if msg.priority is not None else (service.priority if service else 0)
    item = WorkItem(
        id=msg.interaction_id,
        status="waiting",
        channel=msg.channel,
        service=msg.service,
        priority=priority,
        reason=msg.reason,
        queued_at=queued_at,
        requested_at=queued_at,
        round=previous.round + 1 if previous else 1,
        request_id=str(msg.message_id),
        preferred_agent_id=msg.preferred_agent_id,
        preferred_until=(
            now + timedelta(seconds=preferred_wait)
            if msg.preferred_agent_id and preferred_wait > 0
            else None
        ),
        personal_agent_id=msg.personal_agent_id,
        personal_until=(
            now + timedelta(seconds=overflow) if msg.personal_agent_id and overflow else None
        ),
        summary=msg.summary,
        withdrawn_at=previous.withdrawn_at if previous else None,
        history=list(previous.history) if previous else [],
        version=previous.version + 1 if previous else 1,
    )
    return _with_due(item, now)


def offered(item: WorkItem, offer: Offer, *, pulled: bool, now: datetime) -> WorkItem | None:
    """The interaction offered (or, accepted for the agent, assigned); None when it no longer
    waits (another offer came first)."""
    if item.status != "waiting":
        return None
    auto = offer.auto_accept
    changed = item.model_copy(
        update={
            "status": "assigned" if auto else "offered",
            "assigned_at": now if auto else None,
            "offer": None if auto else offer,
            "offer_id": offer.id,
            "agent_id": offer.agent_id if auto else None,
            "offers_in_round": item.offers_in_round + 1,
            "offer_ids": [*item.offer_ids[-(OFFER_IDS_KEPT - 1) :], offer.id],
        }
    )
    if auto:
        how = "pulled" if pulled else "auto_accepted"
        assignment = happened(
            now,
            "assigned",
            agent_id=offer.agent_id,
            offer_id=offer.id,
            how=how,
            service=item.service,
        )
        changed = changed.model_copy(
            update={
                "past_offers": past_offers(item, offer, how),
                "history": [*item.history, assignment],
            }
        )
    return _with_due(changed, now)


def accepted(item: WorkItem, offer: Offer, now: datetime) -> WorkItem:
    """The agent accepted the live offer: the interaction is theirs."""
    return item.model_copy(
        update={
            "status": "assigned",
            "assigned_at": now,
            "offer": None,
            "agent_id": offer.agent_id,
            "due": None,
            "past_offers": past_offers(item, offer, "accepted"),
            "history": [
                *item.history,
                happened(
                    now,
                    "assigned",
                    agent_id=offer.agent_id,
                    offer_id=offer.id,
                    service=item.service,
                ),
            ],
        }
    )


def requeued(
    item: WorkItem,
    offer: Offer,
    outcome: str,
    now: datetime,
    *,
    decline_for: timedelta | None,
) -> WorkItem:
    """The interaction back in its queue after an offer that was not accepted, with its age
    kept (so at the head); ``decline_for`` keeps it from that agent for the cooldown."""
    declined = item.declined
    if decline_for is not None:
        declined = [
            *[d for d in item.declined if d.agent_id != offer.agent_id],
            Declined(agent_id=offer.agent_id, until=now + decline_for),
        ]
    back = item.model_copy(
        update={
            "status": "waiting",
            "offer": None,
            "offer_id": None,
            "agent_id": None,
            "past_offers": past_offers(item, offer, outcome),
            "declined": declined,
        }
    )
    if outcome == "timed_out":
        missed = happened(
            now,
            "offer_timed_out",
            offer_id=offer.id,
            agent_id=offer.agent_id,
            service=item.service,
            expires_at=offer.expires_at,
        )
        back = back.model_copy(update={"history": [*item.history, missed]})
    return _with_due(back, now)


def withdrawn(item: WorkItem, at: datetime) -> WorkItem | None:
    """Routing stops for a waiting or offered interaction; None for one in another state."""
    if item.status not in ("waiting", "offered"):
        return None
    update: dict[str, Any] = {
        "status": "withdrawn",
        "withdrawn_at": at,
        "offer": None,
        "offer_id": None,
        "due": None,
    }
    if item.offer is not None:
        update["past_offers"] = past_offers(item, item.offer, "cancelled")
    return item.model_copy(update=update)


def tombstone(interaction_id: str, at: datetime, archived: WorkItem | None) -> WorkItem:
    """A withdrawal heard before (or after the end of) any round: a later, older route request
    is then recognised as stale."""
    return WorkItem(
        id=interaction_id,
        status="withdrawn",
        round=archived.round if archived else 0,
        withdrawn_at=at,
        history=list(archived.history) if archived else [],
        version=archived.version + 1 if archived else 1,
    )


def ended(item: WorkItem, now: datetime) -> WorkItem | None:
    """The interaction ended (a live offer is cancelled by it); None when it is not live."""
    if not item.live:
        return None
    offer = item.offer if item.status == "offered" else None
    update: dict[str, Any] = {
        "status": "ended",
        "ended_at": now,
        "offer": None,
        "offer_id": None if offer else item.offer_id,
        "due": None,
    }
    if offer is not None:
        update["past_offers"] = past_offers(item, offer, "cancelled")
    if item.status == "assigned" and item.agent_id:
        update["history"] = [*item.history, happened(now, "ended", agent_id=item.agent_id)]
    return item.model_copy(update=update)


def transferred(
    item: WorkItem,
    *,
    by_agent: str,
    to: ServiceDefinition,
    to_agent: str | None,
    reason: str,
    request_id: str,
    now: datetime,
) -> WorkItem:
    """An assigned interaction handed to a service's queue or an agent's personal queue: a
    new round, waiting, with the transfer in its history."""
    overflow = to.personal_overflow_seconds
    entry = Happened.model_validate(
        {
            "at": now,
            "what": "transferred",
            "from_agent": by_agent,
            "from_service": item.service,
            "to_service": to.name,
            "to_agent": to_agent,
            "reason": reason,
        }
    )
    moved = item.model_copy(
        update={
            "status": "waiting",
            "service": to.name,
            "reason": "transfer",
            "priority": to.priority,
            "round": item.round + 1,
            "offers_in_round": 0,
            "requested_at": now,
            "request_id": request_id,
            "preferred_agent_id": None,
            "preferred_until": None,
            "personal_agent_id": to_agent,
            "personal_until": now + timedelta(seconds=overflow) if to_agent and overflow else None,
            "declined": [],
            "offer": None,
            "offer_id": None,
            "agent_id": None,
            "history": [*item.history, entry],
        }
    )
    return _with_due(moved, now)


def timer_fired(
    item: WorkItem, now: datetime, overflow_to: str | None
) -> tuple[WorkItem, str] | None:
    """What a due timer does to a waiting interaction: the end of the preferred wait only moves
    the timer on; the end of a personal wait sends it to ``overflow_to`` (the service's overflow,
    else its own team queue). Returns the item and ``"overflowed"`` or ``"moved"``; None for an
    interaction not waiting (an offer's expiry is :func:`requeued`)."""
    if item.status != "waiting":
        return None
    if item.personal_until is not None and item.personal_until <= now:
        entry = Happened.model_validate(
            {"at": now, "what": "overflowed", "from": item.personal_agent_id}
        )
        moved = item.model_copy(
            update={
                "personal_agent_id": None,
                "personal_until": None,
                "service": overflow_to or item.service,
                "history": [*item.history, entry],
            }
        )
        return _with_due(moved, now), "overflowed"
    return _with_due(item, now), "moved"


@dataclass(frozen=True)
class Refusal:
    """Why an agent's answer changes nothing, in words the agent's desktop shows."""

    code: str
    text: str
    field: str


def answered(
    item: WorkItem,
    offer_id: str,
    agent_id: str,
    *,
    accept: bool,
    now: datetime,
    decline_for: timedelta,
) -> WorkItem | Refusal | None:
    """An agent's answer to the offer ``offer_id``: the item accepted (assigned) or rejected
    (back in its queue, away from that agent for ``decline_for``); a refusal for an offer that
    is not this agent's or no longer live; None for an accept of an offer accepted already
    (a repeated answer)."""
    offer = item.offer
    if offer is None or offer.id != offer_id:
        past = item.past_offer(offer_id)
        assigned = item.status == "assigned" and item.offer_id == offer_id
        owner = past.agent_id if past else (item.agent_id if assigned else None)
        if owner is not None and owner != agent_id:
            return Refusal("not_yours", "this offer was made to another agent", "agent_id")
        if assigned and accept:
            return None
        outcome = past.outcome if past else "closed"
        return Refusal("offer_closed", f"the offer is no longer live ({outcome})", "offer_id")
    if offer.agent_id != agent_id:
        return Refusal("not_yours", "this offer was made to another agent", "agent_id")
    if accept:
        return accepted(item, offer, now)
    return requeued(item, offer, "rejected", now, decline_for=decline_for)

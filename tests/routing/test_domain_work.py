"""An interaction's transitions, tested directly (no I/O): rounds, requeue, past offers,
answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switchboard.contracts.routing import RouteRequested, ServiceDefinition
from switchboard.routing.domain import (
    Declined,
    Happened,
    Offer,
    Refusal,
    WorkItem,
    answered,
    new_round,
    past_offers,
    requeued,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SUPPORT = ServiceDefinition(
    name="support", channel="email", team="support", priority=3, offer_timeout_seconds=30
)


def request(**fields: object) -> RouteRequested:
    return RouteRequested.model_validate(
        {"interaction_id": "case-1", "channel": "email", "service": "support", **fields}
    )


def offered(item: WorkItem, agent_id: str, offer_id: str) -> WorkItem:
    offer = Offer(id=offer_id, agent_id=agent_id, expires_at=NOW + timedelta(seconds=30))
    return item.model_copy(update={"status": "offered", "offer": offer, "offer_id": offer_id})


def test_a_new_round_carries_on_round_version_and_history_of_the_previous_one() -> None:
    first = new_round(request(), None, SUPPORT, NOW)
    assert (first.round, first.version, first.status) == (1, 1, "waiting")
    assert first.priority == 3  # the service's priority unless the request names one
    history = [Happened(at=NOW, what="transferred")]
    ended = first.model_copy(update={"status": "ended", "version": 4, "history": history})
    second = new_round(request(priority=9), ended, SUPPORT, NOW)
    assert (second.round, second.version, second.priority) == (2, 5, 9)
    assert second.history == history


def test_a_declined_offer_puts_the_work_back_at_the_head_and_away_from_that_agent() -> None:
    waiting = new_round(request(), None, SUPPORT, NOW - timedelta(minutes=5))
    before = [Declined(agent_id="ann", until=NOW)]
    item = offered(waiting.model_copy(update={"declined": before}), "ann", "o-2")
    offer = item.offer
    assert offer is not None and offer.agent_id == "ann"
    back = requeued(item, offer, "rejected", NOW, decline_for=timedelta(seconds=60))
    assert back.status == "waiting" and back.offer is None and back.agent_id is None
    assert back.queued_at == waiting.queued_at  # its age kept
    assert back.declined == [Declined(agent_id="ann", until=NOW + timedelta(seconds=60))]
    assert [p.model_dump() for p in back.past_offers] == [
        {"id": "o-2", "agent_id": "ann", "outcome": "rejected"}
    ]
    assert back.version == item.version  # the store moves it on when it writes
    cancelled = requeued(item, offer, "cancelled", NOW, decline_for=None)
    assert cancelled.declined == item.declined


def test_a_late_answer_finds_how_its_offer_ended() -> None:
    item = offered(new_round(request(), None, SUPPORT, NOW), "ann", "o-1")
    assert item.offer is not None
    back = requeued(item, item.offer, "timed_out", NOW, decline_for=None)
    assert back.offer is None
    late = back.past_offer("o-1")
    assert late is not None and (late.agent_id, late.outcome) == ("ann", "timed_out")
    assert back.past_offer("o-unknown") is None
    refused = answered(back, "o-1", "ann", accept=True, now=NOW, decline_for=timedelta(0))
    assert refused == Refusal("offer_closed", "the offer is no longer live (timed_out)", "offer_id")
    theirs = answered(back, "o-1", "bob", accept=True, now=NOW, decline_for=timedelta(0))
    assert isinstance(theirs, Refusal) and theirs.code == "not_yours"


def test_an_accepted_offer_is_the_agents_and_the_same_accept_again_changes_nothing() -> None:
    item = offered(new_round(request(), None, SUPPORT, NOW), "ann", "o-1")
    taken = answered(item, "o-1", "ann", accept=True, now=NOW, decline_for=timedelta(0))
    assert isinstance(taken, WorkItem)
    assert (taken.status, taken.agent_id, taken.due, taken.offer) == ("assigned", "ann", None, None)
    again = answered(taken, "o-1", "ann", accept=True, now=NOW, decline_for=timedelta(0))
    assert again is None


def test_only_the_last_twenty_offers_are_kept() -> None:
    item = new_round(request(), None, SUPPORT, NOW)
    for n in range(25):
        offer = Offer(id=f"o-{n}", agent_id="ann", expires_at=NOW)
        item = item.model_copy(update={"past_offers": past_offers(item, offer, "timed_out")})
    assert len(item.past_offers) == 20 and item.past_offers[-1].id == "o-24"

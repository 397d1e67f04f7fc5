"""An interaction's transitions, tested directly (no I/O): rounds, requeue, past offers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switchboard.contracts.routing import RouteRequested, ServiceDefinition
from switchboard.routing.domain import (
    Offer,
    live_offer,
    new_round,
    past_offer,
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


def offered(doc: dict[str, object], agent_id: str, offer_id: str) -> dict[str, object]:
    offer = {"id": offer_id, "agent_id": agent_id, "expires_at": NOW + timedelta(seconds=30)}
    return {**doc, "status": "offered", "offer": offer, "offer_id": offer_id, "agent_id": agent_id}


def test_a_new_round_carries_on_round_version_and_history_of_the_previous_one() -> None:
    first = new_round(request(), None, SUPPORT, NOW)
    assert (first["round"], first["version"], first["status"]) == (1, 1, "waiting")
    assert first["priority"] == 3  # the service's priority unless the request names one
    ended = {**first, "status": "ended", "version": 4, "history": [{"what": "transferred"}]}
    second = new_round(request(priority=9), ended, SUPPORT, NOW)
    assert (second["round"], second["version"], second["priority"]) == (2, 5, 9)
    assert second["history"] == [{"what": "transferred"}]


def test_a_declined_offer_puts_the_work_back_at_the_head_and_away_from_that_agent() -> None:
    waiting = new_round(request(), None, SUPPORT, NOW - timedelta(minutes=5))
    doc = offered({**waiting, "declined": [{"a": "ann", "until": NOW}]}, "ann", "o-2")
    offer = live_offer(doc)
    assert offer is not None and offer.agent_id == "ann"
    back = requeued(doc, offer, "rejected", NOW, decline_for=timedelta(seconds=60))
    assert back["status"] == "waiting" and back["offer"] is None and back["agent_id"] is None
    assert back["queued_at"] == waiting["queued_at"]  # its age kept
    assert back["declined"] == [{"a": "ann", "until": NOW + timedelta(seconds=60)}]
    assert back["past_offers"] == [{"id": "o-2", "agent_id": "ann", "outcome": "rejected"}]
    assert back["version"] == doc["version"] + 1  # type: ignore[operator]
    cancelled = requeued(doc, offer, "cancelled", NOW, decline_for=None)
    assert cancelled["declined"] == doc["declined"]


def test_a_late_answer_finds_how_its_offer_ended() -> None:
    doc = offered(new_round(request(), None, SUPPORT, NOW), "ann", "o-1")
    offer = live_offer(doc)
    assert offer is not None
    back = requeued(doc, offer, "timed_out", NOW, decline_for=None)
    assert live_offer(back) is None
    late = past_offer(back, "o-1")
    assert late is not None and (late.agent_id, late.outcome) == ("ann", "timed_out")
    assert past_offer(back, "o-unknown") is None


def test_only_the_last_twenty_offers_are_kept() -> None:
    doc: dict[str, object] = {"past_offers": []}
    for n in range(25):
        doc["past_offers"] = past_offers(
            doc, Offer(id=f"o-{n}", agent_id="ann", expires_at=NOW), "timed_out"
        )
    kept = doc["past_offers"]
    assert isinstance(kept, list) and len(kept) == 20 and kept[-1]["id"] == "o-24"

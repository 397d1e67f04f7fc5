"""A replica's offers in the making: its concurrent dispatches plan around them."""

from __future__ import annotations

from datetime import UTC, datetime

from switchboard.routing.domain import Agent, Work
from switchboard.routing.offers_in_hand import RECENT_SECONDS, OffersInHand

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def work(interaction_id: str, channel: str = "email") -> Work:
    return Work(
        interaction_id=interaction_id, channel=channel, service="support", priority=0, queued_at=T0
    )


def agent(agent_id: str, email: int = 1) -> Agent:
    return Agent(agent_id=agent_id, state="ready", capacity={"email": email, "preview": 0})


def test_work_being_offered_is_left_to_that_offer_until_the_plan_is_let_go() -> None:
    hand = OffersInHand()
    plan = [(work("case-1"), agent("ann"))]

    with hand.holding(plan):
        assert [w.interaction_id for w in hand.free([work("case-1"), work("case-2")])] == ["case-2"]
        assert hand.offering("case-1")

    assert not hand.offering("case-1")
    assert len(hand.free([work("case-1")])) == 1


def test_the_room_an_offer_in_the_making_takes_is_counted_on_its_channel() -> None:
    hand = OffersInHand()
    read_at = hand.now()

    with hand.holding([(work("case-1"), agent("ann", email=2))]):
        [ann] = hand.with_room_taken([agent("ann", email=2)], read_at)
        [ben] = hand.with_room_taken([agent("ben")], read_at)

    assert ann.room("email") == 1 and ann.room("preview") == 0
    assert ben.room("email") == 1


def test_an_offer_made_after_the_agents_were_read_still_counts_one_made_before_does_not() -> None:
    clock = Clock()
    hand = OffersInHand(clock)
    before = hand.now()
    clock.now += 1
    with hand.holding([(work("case-1"), agent("ann"))]):
        hand.made("ann", "email")
    clock.now += 1
    after = hand.now()

    [stale_view] = hand.with_room_taken([agent("ann")], before)
    [fresh_view] = hand.with_room_taken([agent("ann")], after)

    assert not stale_view.can_take("email")  # the read may not show the offer: assume it took
    assert fresh_view.can_take("email")  # read after it: the agent's own holds show it


def test_offers_made_long_ago_are_forgotten() -> None:
    clock = Clock()
    hand = OffersInHand(clock)
    with hand.holding([(work("case-1"), agent("ann"))]):
        hand.made("ann", "email")
    clock.now += RECENT_SECONDS + 1
    hand.made("ben", "email")

    [ann] = hand.with_room_taken([agent("ann")], 0.0)

    assert ann.can_take("email")

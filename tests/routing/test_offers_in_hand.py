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


def test_work_being_offered_is_left_to_that_offer_until_it_is_made_or_lost() -> None:
    hand = OffersInHand()

    with hand.holding([(work("case-1"), agent("ann")), (work("case-2"), agent("ben"))]) as settle:
        assert hand.free([work("case-1"), work("case-2"), work("case-3")]) == [work("case-3")]
        settle(work("case-1"), made=False)  # lost: free for the others at once
        assert [w.interaction_id for w in hand.free([work("case-1"), work("case-2")])] == ["case-1"]

    assert not hand.offering("case-2")


def test_the_room_an_offer_in_the_making_takes_is_counted_on_its_channel() -> None:
    hand = OffersInHand()
    read_at = hand.now()

    with hand.holding([(work("case-1"), agent("ann", email=2))]):
        [ann] = hand.with_room_taken([agent("ann", email=2)], read_at)
        [ben] = hand.with_room_taken([agent("ben")], read_at)

    assert ann.room("email") == 1 and ann.room("preview") == 0
    assert ben.room("email") == 1


def test_an_offer_made_while_the_agents_were_read_counts_once_one_made_before_not_at_all() -> None:
    clock = Clock()
    hand = OffersInHand(clock)
    read_before = hand.now()
    clock.now += 1
    with hand.holding([(work("case-1"), agent("ann", email=2))]) as settle:
        settle(work("case-1"), made=True)
        [during] = hand.with_room_taken([agent("ann", email=2)], read_before)
    clock.now += 1
    read_after = hand.now()

    [stale_view] = hand.with_room_taken([agent("ann", email=2)], read_before)
    [fresh_view] = hand.with_room_taken([agent("ann", email=2)], read_after)

    assert during.room("email") == 1  # made, no longer in the making: counted once
    assert stale_view.room("email") == 1  # the read may not show the offer: assume it took
    assert fresh_view.room("email") == 2  # read after it: the agent's own holds show it


def test_a_lost_offer_gives_its_room_back_at_once() -> None:
    hand = OffersInHand()
    read_at = hand.now()

    with hand.holding([(work("case-1"), agent("ann")), (work("case-2"), agent("ben"))]) as settle:
        settle(work("case-1"), made=False)
        [ann] = hand.with_room_taken([agent("ann")], read_at)

    assert ann.can_take("email")


def test_offers_made_long_ago_are_forgotten() -> None:
    clock = Clock()
    hand = OffersInHand(clock)
    with hand.holding([(work("case-1"), agent("ann"))]) as settle:
        settle(work("case-1"), made=True)
    clock.now += RECENT_SECONDS + 1
    with hand.holding([(work("case-2"), agent("ben"))]) as settle:
        settle(work("case-2"), made=True)

    [ann] = hand.with_room_taken([agent("ann")], float("-inf"))

    assert ann.can_take("email")

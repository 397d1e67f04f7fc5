"""The selection rules, tested directly (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from switchboard.contracts.routing import ServiceDefinition
from switchboard.routing import domain
from switchboard.routing.domain import Agent, Work

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SUPPORT = ServiceDefinition(
    name="support", channel="email", team="support", required_skills={"german": 3}
)
SERVICES = {"support": SUPPORT}


def agent(agent_id: str, **fields: Any) -> Agent:
    values: dict[str, Any] = {
        "teams": frozenset({"support"}),
        "skills": {"german": 5},
        "capacity": {"email": 1, "preview": 1},
        "state": "ready",
        "idle_since": NOW - timedelta(minutes=1),
        **fields,
    }
    return Agent(agent_id=agent_id, **values)


def work(interaction_id: str, *, age: float = 60.0, **fields: Any) -> Work:
    values: dict[str, Any] = {
        "channel": "email",
        "service": "support",
        "priority": 0,
        "queued_at": NOW - timedelta(seconds=age),
        **fields,
    }
    return Work(interaction_id=interaction_id, **values)


def choose(item: Work, agents: list[Agent], logged_in: dict[str, bool] | None = None) -> str | None:
    found = domain.choose_agent(item, SUPPORT, agents, NOW, logged_in or {})
    return found.agent_id if found else None


def test_higher_skill_level_wins_then_longest_idle() -> None:
    novice = agent("novice", skills={"german": 3}, idle_since=NOW - timedelta(hours=1))
    expert = agent("expert", skills={"german": 9})
    assert choose(work("w"), [novice, expert]) == "expert"
    long_idle = agent("long", idle_since=NOW - timedelta(minutes=30))
    short_idle = agent("short", idle_since=NOW - timedelta(minutes=1))
    assert choose(work("w"), [short_idle, long_idle]) == "long"


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"skills": {"german": 2}}, "skill below the required level"),
        ({"skills": {}}, "skill missing"),
        ({"teams": frozenset({"sales"})}, "other team"),
        ({"state": "not_ready"}, "not ready"),
        ({"state": "rona"}, "rona"),
        ({"state": "wrap_up"}, "wrap-up"),
        ({"state": "logged_out"}, "logged out"),
        ({"not_ready_pending": True}, "not ready pending"),
        ({"active": False}, "deactivated"),
        ({"load": {"email": 1}}, "no free email capacity"),
        ({"capacity": {"email": 0}}, "takes no email"),
    ],
)
def test_ineligible_agents_are_never_chosen(fields: dict[str, Any], why: str) -> None:
    assert choose(work("w"), [agent("a", **fields)]) is None, why


def test_busy_agent_with_free_capacity_on_the_channel_still_gets_work() -> None:
    busy = agent("busy", state="busy", capacity={"email": 3}, load={"email": 2})
    assert choose(work("w"), [busy]) == "busy"
    assert (
        choose(work("w"), [agent("full", state="busy", capacity={"email": 2}, load={"email": 2})])
        is None
    )


def test_capacity_is_per_channel() -> None:
    on_preview = agent("a", capacity={"email": 1, "preview": 1}, load={"preview": 1})
    assert choose(work("w"), [on_preview]) == "a"


def test_preferred_agent_first_within_the_wait_then_anyone() -> None:
    preferred = agent("pref", skills={"german": 3}, idle_since=NOW)
    other = agent("other", skills={"german": 9}, idle_since=NOW - timedelta(hours=1))
    item = work("w", preferred_agent_id="pref", preferred_until=NOW + timedelta(seconds=30))
    assert choose(item, [other, preferred], {"pref": True}) == "pref"
    # preferred but busy (no room): within the wait, nobody else gets it
    busy = agent("pref", load={"email": 1})
    assert choose(item, [other, busy], {"pref": True}) is None
    # the wait is over: anyone (best first)
    late = work("w", preferred_agent_id="pref", preferred_until=NOW - timedelta(seconds=1))
    assert choose(late, [other, busy], {"pref": True}) == "other"


def test_an_offline_preferred_agent_is_not_waited_for() -> None:
    other = agent("other")
    item = work("w", preferred_agent_id="pref", preferred_until=NOW + timedelta(seconds=30))
    assert choose(item, [other], {"pref": False}) == "other"
    assert choose(item, [other], {}) == "other"


def test_personal_work_only_goes_to_its_agent_even_outside_the_team() -> None:
    mine = agent("mine", teams=frozenset({"sales"}), skills={})
    other = agent("other", skills={"german": 9})
    item = work("w", personal_agent_id="mine")
    assert choose(item, [other, mine]) == "mine"
    assert choose(item, [other]) is None


def test_an_agent_who_declined_is_skipped_until_the_cooldown_ends() -> None:
    a, b = agent("a", idle_since=NOW - timedelta(hours=1)), agent("b")
    declined = work("w", declined={"a": NOW + timedelta(seconds=10)})
    assert choose(declined, [a, b]) == "b"
    assert choose(declined, [a]) is None
    over = work("w", declined={"a": NOW - timedelta(seconds=1)})
    assert choose(over, [a, b]) == "a"


def test_queue_order_is_priority_then_age() -> None:
    items = [
        work("young-high", age=5, priority=5),
        work("old-low", age=500, priority=0),
        work("old-high", age=50, priority=5),
        work("young-low", age=1, priority=0),
    ]
    assert [w.interaction_id for w in domain.order_queue(items)] == [
        "old-high",
        "young-high",
        "old-low",
        "young-low",
    ]


def test_plan_serves_the_head_of_the_queue_first_with_the_best_agent() -> None:
    items = [work("new", age=1), work("old", age=100), work("urgent", age=1, priority=9)]
    agents = [
        agent("expert", skills={"german": 9}),
        agent("novice", skills={"german": 3}),
    ]
    plan = domain.plan_offers(items, agents, SERVICES, NOW, {})
    assert [(w.interaction_id, a.agent_id) for w, a in plan] == [
        ("urgent", "expert"),
        ("old", "novice"),
    ]


def test_plan_never_exceeds_capacity_and_spreads_work_by_idle_time() -> None:
    agents = [
        agent("three", capacity={"email": 3}, idle_since=NOW - timedelta(minutes=10)),
        agent("one", capacity={"email": 1}, idle_since=NOW - timedelta(minutes=5)),
    ]
    items = [work(f"w{i}", age=100 - i) for i in range(10)]
    plan = domain.plan_offers(items, agents, SERVICES, NOW, {})
    given = [a.agent_id for _, a in plan]
    assert given == ["three", "one", "three", "three"]
    assert given.count("three") == 3 and given.count("one") == 1


def test_plan_puts_work_meant_for_someone_only_with_them() -> None:
    agents = [agent("a", idle_since=NOW - timedelta(hours=1)), agent("b")]
    items = [work("for-b", age=100, personal_agent_id="b"), work("any", age=50)]
    plan = domain.plan_offers(items, agents, SERVICES, NOW, {})
    assert {(w.interaction_id, a.agent_id) for w, a in plan} == {("for-b", "b"), ("any", "a")}


def test_plan_skips_work_of_unknown_services_and_other_channels() -> None:
    items = [work("lost", service="nowhere"), work("preview", channel="preview")]
    assert domain.plan_offers(items, [agent("a")], SERVICES, NOW, {}) == []


def test_a_large_plan_is_quick_and_respects_every_rule() -> None:
    import random
    import time

    rnd = random.Random(7)
    agents = [
        agent(
            f"a{i}",
            skills={"german": rnd.randint(1, 10)},
            capacity={"email": rnd.randint(1, 3)},
            load={"email": rnd.randint(0, 1)},
            idle_since=NOW - timedelta(seconds=rnd.randint(0, 3600)),
            state=rnd.choice(["ready", "ready", "busy", "not_ready"]),
        )
        for i in range(1000)
    ]
    items = [
        work(f"w{i}", age=rnd.random() * 1000, priority=rnd.randint(0, 2)) for i in range(5000)
    ]
    started = time.perf_counter()
    plan = domain.plan_offers(items, agents, SERVICES, NOW, {})
    assert time.perf_counter() - started < 2.0
    given: dict[str, int] = {}
    for w, a in plan:
        assert domain.may_offer(a, w, SUPPORT, NOW, {})
        given[a.agent_id] = given.get(a.agent_id, 0) + 1
    by_id = {a.agent_id: a for a in agents}
    for agent_id, count in given.items():
        assert count <= by_id[agent_id].room("email")
    free_room = sum(
        a.room("email") for a in agents if a.can_take("email") and domain.serves(a, SUPPORT)
    )
    assert len(plan) == min(free_room, len(items))
    ordered = domain.order_queue(items)
    assert [w.interaction_id for w, _ in plan] == [w.interaction_id for w in ordered[: len(plan)]]


def test_offer_ids_are_deterministic_per_round_and_attempt() -> None:
    assert domain.offer_id("case-1", 1, 1) == domain.offer_id("case-1", 1, 1)
    assert len({domain.offer_id("case-1", r, n) for r in (1, 2) for n in (1, 2)}) == 4
    made = domain.offer_id("case:1.x", 1, 1)
    assert domain.interaction_of_offer(made) == "case:1.x"
    assert domain.interaction_of_offer("someone-elses-id") is None


def test_next_due_picks_the_timer_that_matters() -> None:
    soon, later = NOW + timedelta(seconds=5), NOW + timedelta(seconds=50)
    assert (
        domain.next_due(
            "offered", offer_expires_at=soon, preferred_until=later, personal_until=None, now=NOW
        )
        == soon
    )
    assert (
        domain.next_due(
            "waiting", offer_expires_at=None, preferred_until=later, personal_until=soon, now=NOW
        )
        == soon
    )
    assert (
        domain.next_due(
            "waiting", offer_expires_at=None, preferred_until=NOW, personal_until=None, now=NOW
        )
        is None
    )
    assert (
        domain.next_due(
            "assigned", offer_expires_at=soon, preferred_until=None, personal_until=None, now=NOW
        )
        is None
    )

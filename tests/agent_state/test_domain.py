"""The agent state machine, pure: rules, refusals, and a property test over command sequences."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.agent_state import domain
from switchboard.agent_state.domain import Actor, Agent, Decision, Policy, TransitionRefused

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
POLICY = Policy(
    not_ready_reasons=("Break", "Lunch"),
    wrap_up_max=timedelta(seconds=60),
    heartbeat_timeout=timedelta(seconds=30),
    presence_logout_after=timedelta(seconds=120),
)
ANN = Actor("ann", "agent")
BOSS = Actor("sue", "supervisor")


def ready_agent(at: datetime = T0) -> Agent:
    return domain.log_in(Agent("ann"), ANN, at, POLICY, initial="ready").agent


def busy_agent(*ids: str) -> Agent:
    agent = ready_agent()
    for interaction_id in ids or ("case-1",):
        agent = domain.interaction_assigned(agent, interaction_id, "email", T0, POLICY).agent
    return agent


def test_log_in_starts_not_ready_and_arms_presence() -> None:
    decision = domain.log_in(Agent("ann"), ANN, T0, POLICY)
    assert decision.agent.state == "not_ready" and decision.agent.reason == "logged in"
    assert decision.agent.presence_due == T0 + POLICY.heartbeat_timeout
    assert decision.change is not None
    assert (decision.change.previous, decision.change.state, decision.change.sequence) == (
        "logged_out",
        "not_ready",
        1,
    )


def test_accepting_work_moves_ready_to_busy_and_finishing_back_to_ready() -> None:
    agent = busy_agent("case-1")
    assert agent.state == "busy" and agent.live_counts() == {"email": 1}
    done = domain.interaction_ended(agent, "case-1", False, T0, POLICY)
    assert done.agent.state == "ready" and done.change is not None


def test_per_channel_capacity_keeps_busy_until_the_last_work_ends() -> None:
    agent = busy_agent("case-1", "case-2")
    assert agent.live_counts() == {"email": 2}
    first = domain.interaction_ended(agent, "case-1", True, T0, POLICY)
    assert first.change is None and first.agent.state == "busy" and first.agent.wrap_up_owed
    last = domain.interaction_ended(first.agent, "case-2", False, T0, POLICY)
    assert last.agent.state == "wrap_up", "a wrap-up asked by earlier work is owed at the end"
    assert last.agent.wrap_up_due == T0 + timedelta(seconds=60)


def test_not_ready_while_busy_is_pending_and_applies_when_work_ends() -> None:
    agent = busy_agent()
    pending = domain.set_not_ready(agent, ANN, T0, POLICY, reason="Lunch")
    assert pending.agent.state == "busy" and pending.agent.pending == "not_ready"
    assert pending.change is not None and pending.change.pending == "not_ready"
    ended = domain.interaction_ended(pending.agent, "case-1", False, T0, POLICY)
    assert (ended.agent.state, ended.agent.reason, ended.agent.pending) == (
        "not_ready",
        "Lunch",
        None,
    )


def test_pending_not_ready_waits_for_wrap_up_and_its_timer() -> None:
    agent = domain.set_not_ready(busy_agent(), ANN, T0, POLICY, reason="Break").agent
    wrap = domain.interaction_ended(agent, "case-1", True, T0, POLICY).agent
    assert wrap.state == "wrap_up" and wrap.pending == "not_ready"
    early = domain.wrap_up_expired(wrap, T0 + timedelta(seconds=59), POLICY)
    assert early.change is None
    late = domain.wrap_up_expired(wrap, T0 + timedelta(seconds=61), POLICY)
    assert late.agent.state == "not_ready" and late.agent.reason == "Break"


def test_wrap_up_limit_goes_to_the_configured_state() -> None:
    policy = replace(POLICY, wrap_up_timeout_state="not_ready", wrap_up_timeout_reason="ACW over")
    wrap = domain.interaction_ended(busy_agent(), "case-1", True, T0, policy).agent
    fired = domain.wrap_up_expired(wrap, T0 + timedelta(minutes=5), policy)
    assert (fired.agent.state, fired.agent.reason) == ("not_ready", "ACW over")


def test_not_ready_asked_while_an_offer_is_out_then_assigned_keeps_it_pending() -> None:
    agent = domain.set_not_ready(ready_agent(), ANN, T0, POLICY, reason="Break").agent
    assigned = domain.interaction_assigned(agent, "record-7", "preview", T0, POLICY)
    assert assigned.agent.state == "busy" and assigned.agent.pending == "not_ready"
    ended = domain.interaction_ended(assigned.agent, "record-7", False, T0, POLICY)
    assert (ended.agent.state, ended.agent.reason) == ("not_ready", "Break")


def test_not_ready_asked_while_an_offer_is_out_then_timed_out_stays_not_ready() -> None:
    agent = domain.set_not_ready(ready_agent(), ANN, T0, POLICY, reason="Break").agent
    assert domain.offer_timed_out(agent, T0, POLICY).change is None


def test_rona_is_left_only_by_the_agent_or_a_supervisor() -> None:
    rona = domain.offer_timed_out(ready_agent(), T0, POLICY).agent
    assert rona.state == "rona"
    assert domain.interaction_ended(rona, "x", False, T0, POLICY).agent.state == "rona"
    assert domain.wrap_up_expired(rona, T0 + timedelta(hours=1), POLICY).agent.state == "rona"
    assert domain.set_ready(rona, ANN, T0, POLICY).agent.state == "ready"
    forced = domain.force_state(rona, BOSS, T0, POLICY, state="ready", reason="back")
    assert forced.agent.state == "ready" and forced.change and forced.change.actor == "sue"


def test_rona_while_busy_follows_the_work() -> None:
    agent = domain.offer_timed_out(busy_agent(), T0, POLICY).agent
    assert agent.state == "busy" and agent.pending == "rona"
    assert domain.interaction_ended(agent, "case-1", False, T0, POLICY).agent.state == "rona"


@pytest.mark.parametrize(
    ("make", "operation", "code"),
    [
        (lambda: Agent("ann"), lambda a: domain.set_ready(a, ANN, T0, POLICY), "logged_out"),
        (ready_agent, lambda a: domain.set_ready(a, ANN, T0, POLICY), "already_ready"),
        (busy_agent, lambda a: domain.set_ready(a, ANN, T0, POLICY), "busy"),
        (busy_agent, lambda a: domain.log_out(a, ANN, T0, POLICY), "busy"),
        (ready_agent, lambda a: domain.log_in(a, ANN, T0, POLICY), "already_logged_in"),
        (
            ready_agent,
            lambda a: domain.set_not_ready(a, ANN, T0, POLICY, reason="Nap"),
            "unknown_reason",
        ),
        (
            ready_agent,
            lambda a: domain.force_state(a, ANN, T0, POLICY, state="ready", reason="x"),
            "forbidden",
        ),
        (
            lambda: Agent("ann"),
            lambda a: domain.force_state(a, BOSS, T0, POLICY, state="ready", reason="x"),
            "logged_out",
        ),
    ],
)
def test_illegal_transitions_are_refused_with_a_clear_error(make, operation, code) -> None:  # type: ignore[no-untyped-def]
    agent = make()
    with pytest.raises(TransitionRefused) as refused:
        operation(agent)
    assert refused.value.code == code
    assert refused.value.message


def test_unknown_reason_names_the_field_and_lists_the_allowed_ones() -> None:
    with pytest.raises(TransitionRefused) as refused:
        domain.set_not_ready(ready_agent(), ANN, T0, POLICY, reason="Nap")
    assert refused.value.field == "reason"
    assert "Break" in refused.value.message and "Lunch" in refused.value.message


def test_supervisor_can_log_out_a_busy_agent_and_the_work_is_dropped() -> None:
    out = domain.force_state(busy_agent(), BOSS, T0, POLICY, state="logged_out", reason="shift")
    assert out.agent.state == "logged_out" and out.agent.live == ()
    late_end = domain.interaction_ended(out.agent, "case-1", False, T0, POLICY)
    assert late_end.change is None and late_end.agent.state == "logged_out"


def test_a_late_assignment_of_ended_work_is_ignored() -> None:
    agent = domain.interaction_ended(ready_agent(), "case-9", False, T0, POLICY).agent
    late = domain.interaction_assigned(agent, "case-9", "email", T0, POLICY)
    assert late.change is None and late.agent.state == "ready"


def test_presence_loss_goes_not_ready_then_logged_out() -> None:
    agent = ready_agent()
    assert domain.presence_check(agent, T0 + timedelta(seconds=10), POLICY).change is None
    lost = domain.presence_check(agent, T0 + timedelta(seconds=31), POLICY)
    assert (lost.agent.state, lost.agent.reason) == ("not_ready", "connection lost")
    assert lost.agent.presence_due == T0 + timedelta(seconds=120)
    again = domain.presence_check(lost.agent, T0 + timedelta(seconds=60), POLICY)
    assert again.change is None
    gone = domain.presence_check(lost.agent, T0 + timedelta(seconds=121), POLICY)
    assert gone.agent.state == "logged_out" and gone.change is not None


def test_silence_while_agent_state_could_not_hear_is_not_a_lost_connection() -> None:
    """The broker (or agent-state itself) was down: heartbeats could not arrive, so the
    desktop's silence counts only from the moment agent-state could hear again."""
    agent = ready_agent()
    heard_again = T0 + timedelta(seconds=25)
    kept = domain.presence_check(agent, T0 + timedelta(seconds=40), POLICY, heard_since=heard_again)
    assert kept.change is None and kept.agent.state == "ready"
    assert kept.agent.presence_due == heard_again + timedelta(seconds=30)
    lost = domain.presence_check(agent, T0 + timedelta(seconds=56), POLICY, heard_since=heard_again)
    assert (lost.agent.state, lost.agent.reason) == ("not_ready", "connection lost")


def test_a_heartbeat_keeps_the_agent_and_clears_connection_lost() -> None:
    agent = ready_agent()
    alive = domain.heartbeat(agent, T0 + timedelta(seconds=25), POLICY).agent
    assert domain.presence_check(alive, T0 + timedelta(seconds=40), POLICY).change is None
    assert alive.presence_due == T0 + timedelta(seconds=55)


def test_presence_loss_while_busy_is_a_pending_not_ready() -> None:
    lost = domain.presence_check(busy_agent(), T0 + timedelta(seconds=31), POLICY).agent
    assert lost.state == "busy" and lost.pending == "not_ready" and lost.connection_lost


def test_reconcile_drops_only_work_known_before_routing_was_asked() -> None:
    agent = busy_agent("case-1")
    later = domain.interaction_assigned(
        agent, "case-2", "email", T0 + timedelta(seconds=5), POLICY
    ).agent
    kept = domain.reconcile(later, [], T0 + timedelta(seconds=1), T0, POLICY)
    assert kept.agent.state == "busy" and [w.interaction_id for w in kept.agent.live] == ["case-2"]
    freed = domain.reconcile(busy_agent("case-1"), [], T0 + timedelta(seconds=1), T0, POLICY)
    assert freed.agent.state == "ready" and freed.change is not None


# --- property: no sequence of commands reaches an invalid state --------------------------------

REASONS = st.sampled_from(["Break", "Lunch", "Nap"])
IDS = st.sampled_from(["i1", "i2", "i3"])
CHANNELS = st.sampled_from(["email", "preview"])
ACTORS = st.sampled_from([ANN, BOSS])  # who may act on whom is checked by the handlers
PERSON_ACTIONS = ("log_out", "set_ready", "set_not_ready", "force")

OPERATIONS = st.one_of(
    st.tuples(st.just("log_in"), st.sampled_from(["ready", "not_ready"]), REASONS | st.just("")),
    st.tuples(st.just("log_out"), ACTORS),
    st.tuples(st.just("set_ready"), ACTORS),
    st.tuples(st.just("set_not_ready"), ACTORS, REASONS),
    st.tuples(
        st.just("force"), ACTORS, st.sampled_from(["ready", "not_ready", "logged_out"]), REASONS
    ),
    st.tuples(st.just("timed_out")),
    st.tuples(st.just("assigned"), IDS, CHANNELS),
    st.tuples(st.just("ended"), IDS, st.booleans()),
    st.tuples(st.just("heartbeat")),
    st.tuples(st.just("presence")),
    st.tuples(st.just("wrap_up_timer")),
    st.tuples(st.just("reconcile"), st.lists(IDS, max_size=3)),
)


def _run(agent: Agent, op: tuple, now: datetime) -> Decision:  # type: ignore[type-arg]
    name = op[0]
    if name == "log_in":
        return domain.log_in(agent, ANN, now, POLICY, initial=op[1], reason=op[2])
    if name == "log_out":
        return domain.log_out(agent, op[1], now, POLICY)
    if name == "set_ready":
        return domain.set_ready(agent, op[1], now, POLICY)
    if name == "set_not_ready":
        return domain.set_not_ready(agent, op[1], now, POLICY, reason=op[2])
    if name == "force":
        return domain.force_state(agent, op[1], now, POLICY, state=op[2], reason=op[3])
    if name == "timed_out":
        return domain.offer_timed_out(agent, now, POLICY)
    if name == "assigned":
        return domain.interaction_assigned(agent, op[1], op[2], now, POLICY)
    if name == "ended":
        return domain.interaction_ended(agent, op[1], op[2], now, POLICY)
    if name == "heartbeat":
        return domain.heartbeat(agent, now, POLICY)
    if name == "presence":
        return domain.presence_check(agent, now, POLICY)
    if name == "wrap_up_timer":
        return domain.wrap_up_expired(agent, now, POLICY)
    return domain.reconcile(agent, op[1], now, now, POLICY)


@settings(max_examples=400, deadline=None)
@given(
    steps=st.lists(
        st.tuples(OPERATIONS, st.integers(min_value=0, max_value=90)), min_size=1, max_size=40
    )
)
def test_no_sequence_of_commands_reaches_an_invalid_state(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    agent = Agent("ann")
    now = T0
    for op, seconds in steps:
        now += timedelta(seconds=seconds)
        before = agent
        try:
            decision = _run(agent, op, now)
        except TransitionRefused as refused:
            assert refused.code and refused.message
            continue  # a refusal is raised before anything is built: nothing changed
        agent = decision.agent
        assert domain.invariant_violations(agent) == [], (op, agent)
        change = decision.change
        if change is None:
            assert agent.sequence == before.sequence and agent.state == before.state, op
        else:
            assert change.sequence == before.sequence + 1 == agent.sequence
            assert (change.previous, change.state) == (before.state, agent.state)
            assert change.reason, op
        if before.state == "rona" and agent.state not in ("rona", "logged_out"):
            assert op[0] in PERSON_ACTIONS or (agent.state == "busy" and agent.pending == "rona")
        if before.state == "rona" and agent.state == "logged_out":
            assert op[0] in (*PERSON_ACTIONS, "presence")


def test_an_interaction_that_comes_back_for_a_new_round_makes_the_agent_busy_again() -> None:
    """A skipped record is offered again under the same interaction id."""
    from datetime import UTC, datetime

    from switchboard.agent_state import domain as d

    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    policy = d.Policy()
    agent = d.Agent(agent_id="alice", state="ready")
    busy = d.interaction_assigned(agent, "record-1", "preview", now, policy).agent
    ready = d.interaction_ended(busy, "record-1", False, now, policy).agent
    late_copy = d.interaction_assigned(ready, "record-1", "preview", now, policy).agent
    again = d.interaction_assigned(ready, "record-1", "preview", now, policy, new_round=True).agent
    assert (busy.state, ready.state, late_copy.state, again.state) == (
        "busy",
        "ready",
        "ready",
        "busy",
    )

"""The pure rules of the read model: what each event adds, whatever order they are folded in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from switchboard.reporting import domain
from switchboard.reporting.figures import percentile
from switchboard.reporting.pauses import Pause

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
POLICY = domain.Policy({"support": 3600.0, "billing": 7200.0})


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([30.0], 90) == 30.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([float(v) for v in range(1, 11)], 90) == 9.0
    assert percentile([1.0, 2.0], 50) == 1.0


def test_time_in_state_is_cut_at_each_hour() -> None:
    ready = domain.AgentCursor("alice", "ready", "", T0, 1)
    busy = domain.AgentCursor("alice", "busy", "", T0 + timedelta(minutes=75), 2)
    bumps = domain.time_in_state(ready, busy)
    assert [(b.hour.hour if b.hour else None, dict(b.seconds)) for b in bumps] == [
        (9, {"ready": 1800.0}),
        (10, {"ready": 2700.0}),
    ]
    assert domain.time_in_state(ready, domain.AgentCursor("alice", "busy", "", T0, 3)) == ()


def test_not_ready_reasons_become_safe_field_names() -> None:
    name = domain.state_field("not_ready", "Lunch.break $1")
    assert "." not in name and "$" not in name
    assert domain.state_name(name) == "not_ready:Lunch.break $1"


def _opened() -> domain.CaseFacts:
    step = domain.case_opened(None, 2, "support", T0, POLICY)
    assert step.facts is not None and step.timer is not None
    assert step.timer.due == T0 + timedelta(hours=1)
    return step.facts


@pytest.mark.parametrize("close_first", [False, True])
def test_a_transfer_moves_the_backlog_whether_or_not_the_close_was_folded_first(
    close_first: bool,
) -> None:
    transfer_at, close_at = T0 + timedelta(minutes=45), T0 + timedelta(minutes=95)
    facts = _opened()
    backlog: dict[str, int] = {"support": 1}

    def count(step: domain.CaseStep) -> domain.CaseFacts:
        for bump in step.bumps:
            backlog[bump.subject] = backlog.get(bump.subject, 0) + bump.counts.get("backlog", 0)
        assert step.facts is not None
        return step.facts

    def transfer(f: domain.CaseFacts) -> domain.CaseFacts:
        step = domain.case_transferred(f, 2, "support", "billing", transfer_at, "t1", POLICY)
        return count(step)

    def close(f: domain.CaseFacts) -> domain.CaseFacts:
        return count(domain.case_closed(f, 2, "billing", close_at, POLICY))

    facts = transfer(close(facts)) if close_first else close(transfer(facts))
    assert backlog == {"support": 0, "billing": 0}
    assert facts.status == "closed"


def test_a_late_first_response_is_overdue_and_out_of_target() -> None:
    facts = _opened()
    step = domain.first_response(facts, 2, "support", T0 + timedelta(minutes=90), POLICY)
    first, overdue = step.bumps
    assert first.counts == {"first_responses": 1, "answered_within_target": 0}
    assert first.samples == {"first_response": 5400.0}
    assert overdue.counts == {"overdue": 1} and overdue.hour == T0.replace(minute=0) + timedelta(
        hours=1
    )
    assert step.timer is not None and step.timer.due is None


def test_a_reopening_that_overtook_its_closing_waits_for_it() -> None:
    facts = _opened()
    with pytest.raises(domain.NotYetKnown):
        domain.case_reopened(facts, 2, T0 + timedelta(hours=3), POLICY)
    with pytest.raises(domain.NotYetKnown):
        domain.case_closed(None, 9, "support", T0, POLICY)


def test_the_timer_marks_an_unanswered_round_once() -> None:
    facts = _opened()
    due = T0 + timedelta(hours=1)
    step = domain.sla_passed(facts, 1, due, POLICY)
    assert step.facts is not None and step.facts.overdue
    assert [b.key for b in step.bumps] == ["overdue:2:1"]
    assert domain.sla_passed(step.facts, 1, due, POLICY).facts is None
    assert domain.sla_passed(facts, 2, due, POLICY).facts is None  # a timer of an older round


def _minutes(m: int) -> datetime:
    return T0 + timedelta(minutes=m)


def _status(facts: domain.CaseFacts, pending: bool, m: int) -> domain.CaseStep:
    return domain.status_changed(facts, 2, pending, _minutes(m), POLICY)


def test_a_pending_status_stops_the_clock_and_pushes_the_timer_back() -> None:
    paused = _status(_opened(), True, 10)
    assert paused.facts is not None and paused.timer is not None
    assert paused.timer.due is None  # while pending the clock stands still: no timer
    resumed = _status(paused.facts, False, 50)
    assert resumed.facts is not None and resumed.timer is not None
    assert resumed.timer.due == _minutes(100)  # 60 min target + 40 min pending
    # 80 minutes after the opening, 40 of them pending: answered in 40, within the hour.
    answer = domain.first_response(resumed.facts, 2, "support", _minutes(80), POLICY)
    [first] = answer.bumps
    assert first.samples == {"first_response": 2400.0}
    assert first.counts == {"first_responses": 1, "answered_within_target": 1}
    # The timer, armed before the pause at 10:30, finds the clock pushed back and does nothing.
    assert domain.sla_passed(resumed.facts, 1, _minutes(60), POLICY).facts is None
    late = domain.sla_passed(resumed.facts, 1, _minutes(100), POLICY)
    assert [b.hour for b in late.bumps] == [_minutes(100).replace(minute=0)]


def test_pauses_are_the_same_whatever_order_the_changes_are_folded_in() -> None:
    facts = _opened()
    in_order = _status(_status(facts, True, 10).facts or facts, False, 50).facts
    backwards = _status(_status(facts, False, 50).facts or facts, True, 10).facts
    assert in_order is not None and backwards is not None
    assert in_order.pauses == backwards.pauses == (Pause(_minutes(10), _minutes(50)),)


def test_closing_a_pending_case_ends_its_pause_and_a_reopening_starts_unpaused() -> None:
    paused = _status(_opened(), True, 10).facts
    assert paused is not None
    closed = domain.case_closed(paused, 2, "support", _minutes(100), POLICY)
    assert closed.facts is not None
    assert closed.facts.pauses == (Pause(_minutes(10), _minutes(100)),)
    assert [b.key for b in closed.bumps] == ["closed:2:1"]  # 10 min of clock: not overdue
    reopened = domain.case_reopened(closed.facts, 2, _minutes(120), POLICY)
    assert reopened.facts is not None and reopened.facts.pauses == ()
    assert reopened.timer is not None and reopened.timer.due == _minutes(180)


def test_a_change_of_the_next_round_folded_before_the_closing_moves_to_that_round() -> None:
    early = _status(_opened(), True, 70).facts  # pending at 10:40, in the round after 10:30
    assert early is not None
    closed = domain.case_closed(early, 2, "support", _minutes(30), POLICY)
    assert closed.facts is not None and closed.facts.pauses == ()
    reopened = domain.case_reopened(closed.facts, 2, _minutes(60), POLICY)
    assert reopened.facts is not None
    assert reopened.facts.pauses == (Pause(_minutes(70)),)
    assert reopened.timer is not None and reopened.timer.due is None  # pending: no timer

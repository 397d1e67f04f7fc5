"""The dialer's rules, at fixed instants: windows across DST and zones, numbers, dispositions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.contracts.campaigns import CallingHours, CampaignSpec, NumberRule, SkipPolicy
from switchboard.dialer import domain
from switchboard.dialer.domain import Attempt, Phone, Problem, Record, holding, numbers, picking

TCPA = CallingHours()
NY, LA, HNL, LON, BER = (
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Europe/London",
    "Europe/Berlin",
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def campaign(**changes: object) -> CampaignSpec:
    return CampaignSpec(name="Renewals", service="outbound-preview").model_copy(update=changes)


def record(*phones: Phone, time_zone: str | None = None, **changes: object) -> Record:
    base = Record(
        _id="r1",
        campaign_id="c1",
        external_id="e1",
        name="Ada Lovelace",
        phones=list(phones),
        time_zone=time_zone,
        next_at=at("2026-01-01T00:00:00+00:00"),
    )
    return base.model_copy(update=changes)


def phone(number: str, kind: str = "mobile") -> Phone:
    return Phone(number=number, type=kind, zones=domain.number_zones(number))


# -- windows -----------------------------------------------------------------------------------


def test_the_window_is_local_time_of_the_called_party() -> None:
    # 12:59 UTC is 07:59 in New York (EST): too early; 13:00 is 08:00: fine.
    assert not domain.in_window(at("2026-01-15T12:59:00+00:00"), (NY,), TCPA)
    assert domain.in_window(at("2026-01-15T13:00:00+00:00"), (NY,), TCPA)
    assert domain.in_window(at("2026-01-16T01:59:00+00:00"), (NY,), TCPA)  # 20:59 EST
    assert not domain.in_window(at("2026-01-16T02:00:00+00:00"), (NY,), TCPA)  # 21:00 EST


def test_the_window_follows_dst_in_new_york() -> None:
    # DST starts 2026-03-08 in the US: 08:00 local is 13:00 UTC before, 12:00 UTC after.
    assert not domain.in_window(at("2026-03-07T12:30:00+00:00"), (NY,), TCPA)
    assert domain.in_window(at("2026-03-09T12:30:00+00:00"), (NY,), TCPA)
    # the opening seen from the night of the change is 08:00 EDT = 12:00 UTC
    opens = domain.next_window_open(at("2026-03-08T06:00:00+00:00"), (NY,), TCPA)
    assert opens == at("2026-03-08T08:00:00-04:00")
    # and back in November: 08:00 EST = 13:00 UTC
    opens = domain.next_window_open(at("2026-11-01T05:30:00+00:00"), (NY,), TCPA)
    assert opens == at("2026-11-01T08:00:00-05:00")


def test_the_window_follows_dst_in_europe_which_changes_on_another_day() -> None:
    # 2026-03-08..28 New York is already on EDT, London still on GMT: the gap is 4 hours.
    zones = (NY, LON)
    # 12:30 UTC on 2026-03-20: 08:30 in New York, 12:30 in London -> both open
    assert domain.in_window(at("2026-03-20T12:30:00+00:00"), zones, TCPA)
    # 21:00 London = 21:00 UTC (GMT) closes London; New York is at 17:00
    assert not domain.in_window(at("2026-03-20T21:00:00+00:00"), zones, TCPA)
    # after 2026-03-29 London is on BST: 21:00 local = 20:00 UTC
    assert domain.in_window(at("2026-03-27T20:30:00+00:00"), zones, TCPA)
    assert not domain.in_window(at("2026-03-30T20:30:00+00:00"), zones, TCPA)


def test_a_number_in_several_zones_must_be_inside_the_window_in_all() -> None:
    zones = (NY, LA, HNL)
    # 14:00 UTC: 09:00 NY but 06:00 LA and 04:00 Honolulu -> not yet
    now = at("2026-07-01T14:00:00+00:00")
    assert domain.in_window(now, (NY,), TCPA)
    assert not domain.in_window(now, zones, TCPA)
    # the common window opens at 08:00 in Honolulu (HST, no DST) = 18:00 UTC
    assert domain.next_window_open(now, zones, TCPA) == at("2026-07-01T08:00:00-10:00")
    # and closes at 21:00 in New York (EDT) = 01:00 UTC
    assert domain.in_window(at("2026-07-02T00:59:00+00:00"), zones, TCPA)
    assert not domain.in_window(at("2026-07-02T01:00:00+00:00"), zones, TCPA)


def test_zones_without_any_common_window() -> None:
    narrow = CallingHours(start="09:00", end="10:00")
    assert domain.next_window_open(at("2026-07-01T00:00:00+00:00"), (NY, BER), narrow) is None


def test_a_window_across_midnight() -> None:
    night = CallingHours(start="22:00", end="02:00")
    assert domain.in_window(at("2026-07-01T23:30:00+00:00"), ("UTC",), night)
    assert domain.in_window(at("2026-07-01T01:30:00+00:00"), ("UTC",), night)
    assert not domain.in_window(at("2026-07-01T12:00:00+00:00"), ("UTC",), night)


ZONES = st.lists(
    st.sampled_from([NY, LA, HNL, LON, BER, "Asia/Kolkata", "Australia/Sydney"]),
    min_size=1,
    max_size=3,
    unique=True,
)
INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(now=INSTANTS, zones=ZONES)
def test_the_next_opening_is_inside_and_no_earlier_minute_is(
    now: datetime, zones: list[str]
) -> None:
    opens = domain.next_window_open(now, tuple(zones), TCPA)
    if opens is None:
        return
    assert opens >= now
    assert domain.in_window(opens, tuple(zones), TCPA)
    if opens > now:
        earlier = opens - timedelta(minutes=1)
        assert earlier < now or not domain.in_window(earlier, tuple(zones), TCPA)


# -- zones of a record -------------------------------------------------------------------------


def test_zone_comes_from_the_record_then_the_number_then_the_campaign() -> None:
    spec = campaign(default_time_zone="Europe/Paris")
    ny = phone("+12125550123")
    assert ny.zones == (NY,)
    assert record(ny).zones_of(ny, spec) == (NY,)
    assert record(ny, time_zone=LA).zones_of(ny, spec) == (LA,)


def test_a_number_with_an_unknown_zone_falls_back_to_the_campaign_default() -> None:
    # +1 555 numbers are not assigned: phonenumbers knows no zone for them
    unknown = Phone(number="+15555550100", type="mobile", zones=domain.number_zones("+15555550100"))
    assert unknown.zones == ()
    spec = campaign(default_time_zone=BER)
    assert record(unknown).zones_of(unknown, spec) == (BER,)
    # 07:30 UTC = 08:30 Berlin (CET): inside for the default zone
    decision = domain.decide_routing(record(unknown), spec, set(), at("2026-01-15T07:30:00+00:00"))
    assert decision.action == "route"


def test_toll_free_numbers_map_to_many_zones() -> None:
    zones = domain.number_zones("+18005550199")
    assert NY in zones and HNL in zones and len(zones) > 10


def test_normalisation_to_e164_with_a_default_region() -> None:
    assert domain.normalise_number("(212) 555-0123", "US") == "+12125550123"
    assert domain.normalise_number("020 7946 0958", "GB") == "+442079460958"
    assert domain.normalise_number("+49 30 901820", "US") == "+4930901820"
    with pytest.raises(ValueError, match="not a valid number"):
        domain.normalise_number("12", "US")
    with pytest.raises(ValueError, match="not a phone number"):
        domain.normalise_number("call me", "US")


def test_an_imported_number_gets_the_same_e164_and_zones_as_each_rule_apart() -> None:
    """The importer's one-parse path agrees with normalise_number + number_zones, for fixed
    lines, mobiles, toll-free and numbers abroad; and refuses what normalise_number refuses."""
    samples = [
        ("(212) 555-0123", "US"),
        ("415 555 0100", "US"),
        ("+1 800 555 0199", "US"),
        ("020 7946 0958", "GB"),
        ("07400 123456", "GB"),
        ("+91 81234 56789", "US"),
        ("+55 11 96123 4567", "US"),
        ("+49 30 901820", "US"),
        ("+49 151 23456789", "US"),
        ("+61 2 9374 4000", "US"),
    ]
    for raw, region in samples:
        e164 = domain.normalise_number(raw, region)
        assert numbers.phone_number(raw, region) == (e164, domain.number_zones(e164)), raw
    for bad in ("12", "call me", " "):
        with pytest.raises(ValueError):
            domain.normalise_number(bad, "US")
        with pytest.raises(ValueError):
            numbers.phone_number(bad, "US")


# -- which number, may it be called ------------------------------------------------------------


def test_the_recommended_number_follows_type_and_local_time() -> None:
    work, mobile, home = (
        phone("+12125550123", "work"),
        phone("+12025550143", "mobile"),
        phone("+14155552671", "home"),
    )
    spec = campaign(
        number_rules=[
            NumberRule(number_type="work", start="09:00", end="17:00"),
            NumberRule(number_type="home", start="17:00", end="21:00"),
            NumberRule(number_type="mobile"),
        ]
    )
    rec = record(home, mobile, work, time_zone=NY)
    assert (
        domain.recommended_number(rec, spec, set(), at("2026-07-01T10:00:00-04:00")) == work.number
    )
    assert (
        domain.recommended_number(rec, spec, set(), at("2026-07-01T18:00:00-04:00")) == home.number
    )
    assert (
        domain.recommended_number(rec, spec, set(), at("2026-07-01T08:30:00-04:00"))
        == mobile.number
    )
    # bad and DNC numbers are never recommended
    bad = rec.model_copy(update={"bad_numbers": [work.number]})
    assert domain.recommended_number(
        bad, spec, {mobile.number}, at("2026-07-01T10:00:00-04:00")
    ) == (home.number)
    # outside the window nothing is recommended
    assert domain.recommended_number(rec, spec, set(), at("2026-07-01T22:00:00-04:00")) is None


def test_a_call_is_refused_with_a_reason() -> None:
    ny = phone("+12125550123")
    spec = campaign(max_attempts_per_number=1)
    rec = record(ny, phone("+12025550143"))
    noon = at("2026-07-01T12:00:00-04:00")
    with pytest.raises(Problem) as dnc:
        domain.check_call(rec, spec, {ny.number}, ny.number, noon)
    assert dnc.value.code == "do_not_call" and "do-not-call" in dnc.value.message
    with pytest.raises(Problem) as late:
        domain.check_call(rec, spec, set(), ny.number, at("2026-07-01T21:30:00-04:00"))
    assert late.value.code == "outside_calling_hours"
    assert "21:30 in America/New_York" in late.value.message and "opens at" in late.value.message
    called = rec.model_copy(
        update={
            "attempts": [Attempt(call_id="c", at=noon, number=ny.number, agent_id="a")],
            "attempt_count": 1,
        }
    )
    with pytest.raises(Problem) as used:
        domain.check_call(called, spec, set(), ny.number, noon)
    assert used.value.code == "number_attempts_exhausted"
    with pytest.raises(Problem) as foreign:
        domain.check_call(rec, spec, set(), "+4930901820", noon)
    assert foreign.value.code == "unknown_number"
    domain.check_call(called, spec, set(), "+12025550143", noon)  # the other number is fine


def test_routing_decisions() -> None:
    ny = phone("+12125550123")
    spec = campaign(max_attempts=2)
    noon = at("2026-07-01T12:00:00-04:00")
    assert domain.decide_routing(record(ny), spec, set(), noon).action == "route"
    night = domain.decide_routing(record(ny), spec, set(), at("2026-07-01T23:00:00-04:00"))
    assert night.action == "wait" and night.at == at("2026-07-02T08:00:00-04:00")
    assert domain.decide_routing(record(ny), spec, {ny.number}, noon).reason == "do_not_call"
    spent = record(ny, attempt_count=2)
    assert domain.decide_routing(spent, spec, set(), noon).reason == "attempts_exhausted"
    bad = record(ny, bad_numbers=[ny.number])
    assert domain.decide_routing(bad, spec, set(), noon).reason == "no_callable_number"


def test_dispositions_decide_what_comes_next() -> None:
    ny = phone("+12125550123")
    spec = campaign(max_attempts=3, retry_delay_seconds=100)
    noon = at("2026-07-01T12:00:00-04:00")
    rec = record(ny, attempt_count=1)

    def after(name: str, r: Record = rec) -> domain.Next:
        return domain.after_disposition(r, spec, domain.find_disposition(spec, name), set(), noon)

    assert after("Success") == domain.Next("closed", result="success")
    assert after("Not Interested").result == "final_failure"
    assert after("bad record").result == "bad_record"
    assert after("Busy") == domain.Next("pending", at=noon + timedelta(seconds=600))
    assert after("Call Back").at == noon + timedelta(seconds=3600)
    assert after("Busy", rec.model_copy(update={"attempt_count": 3})).result == (
        "attempts_exhausted"
    )
    with pytest.raises(Problem) as unknown:
        domain.find_disposition(spec, "Maybe")
    assert unknown.value.field == "disposition" and "Bad Record" in unknown.value.message


def test_skips_come_back_later_until_the_limit() -> None:
    spec = campaign(skip_policy=SkipPolicy(delay_seconds=60, max_skips=2))
    noon = at("2026-07-01T12:00:00-04:00")
    once = record(phone("+12125550123"), skips=1)
    assert domain.skip_outcome(once, spec, noon) == domain.Next(
        "pending", at=noon + timedelta(seconds=60)
    )
    twice = once.model_copy(update={"skips": 2})
    assert domain.skip_outcome(twice, spec, noon).result == "max_skips"


def test_a_campaign_that_cannot_work_is_refused() -> None:
    with pytest.raises(Problem) as zone:
        domain.validate_campaign(campaign(default_time_zone="Mars/Olympus"))
    assert zone.value.field == "campaign.default_time_zone"
    with pytest.raises(Problem) as default:
        domain.validate_campaign(campaign(default_disposition="Nope"))
    assert default.value.field == "campaign.default_disposition"
    spec = domain.validate_campaign(campaign(do_not_call=["(212) 555-0123"]))
    assert spec.do_not_call == ["+12125550123"]


# -- a held record and its calls ----------------------------------------------------------------


def test_call_reports_out_of_order_count_the_answer_once_and_keep_the_final_status() -> None:
    noon = at("2026-03-10T16:00:00+00:00")
    ny = phone("+12125550100")
    held = record(
        ny,
        state="held",
        agent_id="a",
        attempts=[Attempt(call_id="c", at=noon, number=ny.number, agent_id="a")],
    )
    ended = holding.call_progressed(held, "c", "ended", noon)
    assert ended is not None and ended.attempts[0].status == "ended"
    assert ended.attempts[0].ended_at == noon and ended.answered_count == 0
    late = holding.call_progressed(ended, "c", "ringing", noon)  # overtaken: nothing changes
    assert late is None
    answered = holding.call_progressed(ended, "c", "answered", noon)
    assert answered is not None and answered.answered_count == 1
    assert answered.attempts[0].answered and answered.attempts[0].status == "ended"
    assert holding.call_progressed(answered, "c", "answered", noon) is None  # counted once
    assert holding.call_progressed(answered, "other", "answered", noon) is None


def test_a_record_handed_back_leaves_its_agent_with_the_history_entry() -> None:
    now = at("2026-03-10T16:00:00+00:00")
    later = now + timedelta(hours=1)
    held = record(phone("+12125550100"), state="held", agent_id="a", offer_id="o")
    entry = domain.HistoryEntry(at=now, kind="skip", agent_id="a")
    back, answer = holding.handed_back(held, domain.Next("pending", later), entry, now)
    assert (back.state, back.agent_id, back.offer_id, back.next_at) == (
        "pending",
        None,
        None,
        later,
    )
    assert back.history[-1] == entry
    assert answer == {"state": "pending", "result": None, "next_at": later.isoformat()}


def test_an_assigned_record_is_held_with_its_review_timer_and_released_on_logout() -> None:
    now = at("2026-03-10T16:00:00+00:00")
    ready = record(phone("+12125550100"), state="ready", personal_agent_id="a")
    offer = holding.offered(ready, "a", "o1")
    assert (offer.state, offer.agent_id, offer.offer_id) == ("offered", "a", "o1")
    lost = holding.offer_lost(offer)
    assert (lost.state, lost.agent_id, lost.offer_id, lost.routed_at) == ("ready", None, None, None)
    held = holding.assigned(offer, "a", "o1", now, 20)
    assert (held.state, held.held_since, held.review_due) == (
        "held",
        now,
        now + timedelta(seconds=20),
    )
    assert held.personal_agent_id is None and not held.needs_disposition
    assert holding.assigned(offer, "a", "o1", now, None).review_due is None
    back = holding.logged_out(held, "a", now)
    assert (back.state, back.next_at, back.agent_id, back.review_due) == (
        "pending",
        now,
        None,
        None,
    )
    assert back.history[-1].kind == "released" and back.skips == held.skips


def test_a_record_routed_withdrawn_postponed_or_closed_keeps_its_history() -> None:
    now = at("2026-03-10T16:00:00+00:00")
    later = now + timedelta(hours=2)
    pending = record(phone("+12125550100"), agent_id="stale", offer_id="stale")
    ready = picking.routed(pending, now)
    assert (ready.state, ready.routed_at, ready.agent_id, ready.offer_id) == (
        "ready",
        now,
        None,
        None,
    )
    assert picking.route_reasserted(ready, later).routed_at == later
    back = picking.withdrawn(ready, later)
    assert (back.state, back.next_at, back.agent_id) == ("pending", later, None)
    assert picking.postponed(pending, later).next_at == later
    closed = picking.closed(ready, "do_not_call", now)
    assert (closed.state, closed.result, closed.agent_id) == ("closed", "do_not_call", None)
    assert closed.history[-1].kind == "closed" and closed.history[-1].detail == "do_not_call"
    held = record(phone("+12125550100"), state="held", agent_id="a", review_due=now)
    refused = picking.auto_call_refused(held, "no number may be called now", now)
    assert refused.review_due is None and refused.agent_id == "a"
    assert refused.history[-1].kind == "auto_call_refused"


def test_a_dialled_record_needs_a_disposition_and_a_rescheduled_one_is_released() -> None:
    now = at("2026-03-10T16:00:00+00:00")
    ny = phone("+12125550100")
    held = record(ny, state="held", agent_id="a", offer_id="o", review_due=now)
    call = Attempt(call_id="c1", at=now, number=ny.number, agent_id="a")
    dialled = holding.dialled(held, call)
    assert dialled.attempts == [call] and dialled.attempt_count == 1 and dialled.call_id == "c1"
    assert dialled.needs_disposition and dialled.review_due is None
    later = now + timedelta(days=1)
    entry = domain.HistoryEntry(at=now, kind="reschedule", agent_id="a")
    back = holding.rescheduled(dialled, later, "a", "Call Back", entry)
    assert (back.state, back.next_at, back.personal_agent_id, back.disposition) == (
        "pending",
        later,
        "a",
        "Call Back",
    )
    assert back.agent_id is None and back.offer_id is None and not back.needs_disposition
    assert back.history[-1] == entry

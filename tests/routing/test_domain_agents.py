"""Routing's record of an agent, tested directly (no I/O): event order, RONA, capacity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switchboard.routing.domain import (
    AgentRecord,
    Hold,
    Profile,
    agent_from,
    missed_offer,
    profile_change,
    release,
    reservation,
    state_change,
    with_room,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def ready_agent(**fields: object) -> AgentRecord:
    record = AgentRecord.model_validate(
        {
            "_id": "ann",
            "state": "ready",
            "state_seq": 3,
            "capacity": {"email": 2, "preview": 1},
            **fields,
        }
    )
    return with_room(record, default_capacity=1)


def test_an_older_state_never_overwrites_a_newer_one() -> None:
    agent = ready_agent()
    assert state_change("not_ready", 2, False, NOW)(agent) is None
    changed = state_change("not_ready", 4, False, NOW)(agent)
    assert changed is not None and (changed.state, changed.state_seq) == ("not_ready", 4)


def test_becoming_ready_starts_the_idle_time_and_ends_the_rona_hold_off() -> None:
    agent = ready_agent(state="not_ready", hold_off_until=NOW + timedelta(seconds=30))
    ready = state_change("ready", 4, False, NOW)(agent)
    assert ready is not None and ready.idle_since == NOW and ready.hold_off_until is None
    still = state_change("ready", 5, False, NOW + timedelta(minutes=1))(ready)
    assert still is not None and still.idle_since == NOW  # still Ready: still idle since then


def test_a_profile_at_least_as_old_as_the_one_applied_is_ignored() -> None:
    agent = AgentRecord.model_validate({"_id": "ann"})
    sales = profile_change(Profile(teams=["sales"]), (2, NOW))(agent)
    assert sales is not None
    assert profile_change(Profile(teams=["support"]), (2, NOW))(sales) is None
    later = NOW + timedelta(hours=1)
    assert profile_change(Profile(teams=["support"]), (1, later))(sales) is None
    assert sales.teams == ["sales"]
    support = profile_change(Profile(teams=["support"]), (3, NOW))(sales)
    assert support is not None and support.teams == ["support"]


def test_an_agent_within_the_rona_hold_off_takes_no_offers_until_it_ends() -> None:
    agent = ready_agent(hold_off_until=NOW + timedelta(seconds=30))
    held = agent_from(agent, 1, NOW)
    assert held.state == "rona" and not held.takes_offers
    later = agent_from(agent, 1, NOW + timedelta(seconds=31))
    assert later.state == "ready" and later.can_take("email")


def hold(offer: str, interaction: str, token: str = "t", channel: str = "email") -> Hold:
    return Hold(offer_id=offer, interaction_id=interaction, channel=channel, at=NOW, token=token)


def test_capacity_is_what_the_profile_allows_less_what_is_held() -> None:
    agent = ready_agent(holds=[hold("o1", "i1"), hold("o2", "i2", channel="preview")])
    assert agent.load == {"email": 1, "preview": 1}
    assert agent.avail == ["email"] and agent.room_total == 1
    view = agent_from(agent, 1, NOW)
    assert view.room("email") == 1 and not view.can_take("preview")
    # a pending Not Ready: no new work at all
    pending = with_room(agent.model_copy(update={"not_ready_pending": True}), default_capacity=1)
    assert pending.avail == [] and pending.room_total == 0


def test_an_offer_is_charged_to_free_room_once_per_interaction() -> None:
    agent = ready_agent(capacity={"email": 1, "preview": 0})
    later = NOW + timedelta(seconds=5)
    reserved = reservation("o1", "i1", "email", "t1", later, default_capacity=1)(agent)
    assert reserved is not None
    assert reserved.holds == [hold("o1", "i1", "t1").model_copy(update={"at": later})]
    assert reserved.idle_since == later
    full = with_room(reserved, default_capacity=1)
    assert reservation("o2", "i2", "email", "t2", later, default_capacity=1)(full) is None
    roomy = ready_agent(holds=[hold("o1", "i1")])
    assert reservation("o3", "i1", "email", "t3", later, default_capacity=1)(roomy) is None


def test_only_an_offerable_agent_is_reserved_but_a_pull_needs_only_a_login() -> None:
    agent = ready_agent(state="not_ready")
    assert reservation("o1", "i1", "email", "t", NOW, default_capacity=1)(agent) is None
    pulled = reservation("o1", "i1", "email", "t", NOW, default_capacity=1, pulled=True)
    assert pulled(agent) is not None
    assert pulled(ready_agent(state="logged_out")) is None


def test_a_release_gives_back_only_the_holds_it_names() -> None:
    agent = ready_agent(holds=[hold("o1", "i1", "a"), hold("o2", "i2", "b")])
    assert release(NOW, offer_id="o9")(agent) is None
    one = release(NOW, token="b")(agent)
    assert one is not None and [h.offer_id for h in one.holds] == ["o1"]
    none = release(NOW, interaction_id="i1")(one)
    assert none is not None and none.holds == [] and none.idle_since == NOW


def test_a_missed_offer_frees_its_hold_and_holds_the_agent_off_until_agent_state_speaks() -> None:
    agent = ready_agent(holds=[hold("o1", "i1"), hold("o2", "i2")])
    missed = missed_offer("o1", NOW + timedelta(seconds=30))(agent)
    assert missed is not None and [h.offer_id for h in missed.holds] == ["o2"]
    missed = with_room(missed, default_capacity=1)
    assert agent_from(missed, 1, NOW).state == "rona"
    assert agent_from(missed, 1, NOW + timedelta(seconds=31)).state == "ready"
    rona = state_change("rona", 4, False, NOW)(missed)
    assert rona is not None and rona.hold_off_until is None


def test_a_record_reads_as_it_is_stored() -> None:
    stored = {"_id": "ann", "holds": [{"o": "o1", "i": "i1", "c": "email", "at": NOW, "t": "x"}]}
    agent = AgentRecord.model_validate(stored)
    assert agent.holds == [hold("o1", "i1", "x")]
    assert agent.model_dump(by_alias=True)["holds"] == stored["holds"]

"""Routing's projection of an agent, tested directly (no I/O): event order, RONA, capacity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switchboard.routing.domain import (
    agent_from,
    derive_agent_fields,
    missed_offer,
    new_agent_document,
    profile_change,
    release,
    reservation,
    state_change,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def ready_agent(**fields: object) -> dict[str, object]:
    doc = new_agent_document("ann")
    doc.update({"state": "ready", "state_seq": 3, "capacity": {"email": 2, "preview": 1}})
    doc.update(fields)
    derive_agent_fields(doc, default_capacity=1)
    return doc


def test_an_older_state_never_overwrites_a_newer_one() -> None:
    doc = ready_agent()
    assert not state_change("not_ready", 2, False, NOW)(doc)
    assert doc["state"] == "ready"
    assert state_change("not_ready", 4, False, NOW)(doc)
    assert doc["state"] == "not_ready" and doc["state_seq"] == 4


def test_becoming_ready_starts_the_idle_time_and_ends_the_rona_hold_off() -> None:
    doc = ready_agent(state="not_ready", hold_off_until=NOW + timedelta(seconds=30))
    assert state_change("ready", 4, False, NOW)(doc)
    assert doc["idle_since"] == NOW and doc["hold_off_until"] is None
    assert state_change("ready", 5, False, NOW + timedelta(minutes=1))(doc)
    assert doc["idle_since"] == NOW  # still Ready: still idle since then


def test_a_profile_at_least_as_old_as_the_one_applied_is_ignored() -> None:
    doc = new_agent_document("ann")
    assert profile_change({"teams": ["sales"]}, [2, NOW])(doc)
    assert not profile_change({"teams": ["support"]}, [2, NOW])(doc)
    assert not profile_change({"teams": ["support"]}, [1, NOW + timedelta(hours=1)])(doc)
    assert doc["teams"] == ["sales"]
    assert profile_change({"teams": ["support"]}, [3, NOW])(doc)
    assert doc["teams"] == ["support"]


def test_an_agent_within_the_rona_hold_off_takes_no_offers_until_it_ends() -> None:
    doc = ready_agent(hold_off_until=NOW + timedelta(seconds=30))
    held = agent_from(doc, 1, NOW)
    assert held.state == "rona" and not held.takes_offers
    later = agent_from(doc, 1, NOW + timedelta(seconds=31))
    assert later.state == "ready" and later.can_take("email")


def test_capacity_is_what_the_profile_allows_less_what_is_held() -> None:
    doc = ready_agent(holds=[{"c": "email"}, {"c": "preview"}])
    derive_agent_fields(doc, default_capacity=1)
    assert doc["load"] == {"email": 1, "preview": 1}
    assert doc["avail"] == ["email"] and doc["room_total"] == 1
    agent = agent_from(doc, 1, NOW)
    assert agent.room("email") == 1 and not agent.can_take("preview")
    doc["not_ready_pending"] = True  # a pending Not Ready: no new work at all
    derive_agent_fields(doc, default_capacity=1)
    assert doc["avail"] == [] and doc["room_total"] == 0


def hold(offer: str, interaction: str, token: str = "t") -> dict[str, object]:
    return {"o": offer, "i": interaction, "c": "email", "at": NOW, "t": token}


def test_an_offer_is_charged_to_free_room_once_per_interaction() -> None:
    doc = ready_agent(capacity={"email": 1, "preview": 0})
    later = NOW + timedelta(seconds=5)
    reserve = reservation("o1", "i1", "email", "t1", later, default_capacity=1)
    assert reserve(doc)
    assert doc["holds"] == [hold("o1", "i1", "t1") | {"at": later}]
    assert doc["idle_since"] == later
    derive_agent_fields(doc, default_capacity=1)
    assert not reservation("o2", "i2", "email", "t2", later, default_capacity=1)(doc)  # full
    roomy = ready_agent(holds=[hold("o1", "i1")])
    assert not reservation("o3", "i1", "email", "t3", later, default_capacity=1)(roomy)


def test_only_an_offerable_agent_is_reserved_but_a_pull_needs_only_a_login() -> None:
    doc = ready_agent(state="not_ready")
    assert not reservation("o1", "i1", "email", "t", NOW, default_capacity=1)(doc)
    assert reservation("o1", "i1", "email", "t", NOW, default_capacity=1, pulled=True)(doc)
    gone = ready_agent(state="logged_out")
    assert not reservation("o1", "i1", "email", "t", NOW, default_capacity=1, pulled=True)(gone)


def test_a_release_gives_back_only_the_holds_it_names() -> None:
    doc = ready_agent(holds=[hold("o1", "i1", "a"), hold("o2", "i2", "b")])
    assert not release(NOW, offer_id="o9")(doc)
    assert release(NOW, token="b")(doc)
    assert [h["o"] for h in doc["holds"]] == ["o1"]
    assert release(NOW, interaction_id="i1")(doc)
    assert doc["holds"] == [] and doc["idle_since"] == NOW


def test_a_missed_offer_frees_its_hold_and_holds_the_agent_off_until_agent_state_speaks() -> None:
    doc = ready_agent(holds=[hold("o1", "i1"), hold("o2", "i2")])
    assert missed_offer("o1", NOW + timedelta(seconds=30))(doc)
    assert [h["o"] for h in doc["holds"]] == ["o2"]
    derive_agent_fields(doc, default_capacity=1)
    assert agent_from(doc, 1, NOW).state == "rona"
    assert agent_from(doc, 1, NOW + timedelta(seconds=31)).state == "ready"
    assert state_change("rona", 4, False, NOW)(doc)
    assert doc["hold_off_until"] is None

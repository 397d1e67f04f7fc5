"""Routing's projection of an agent: how events change it and when it takes offers. No I/O.

The stored projection (``agents`` collection) is the agent's profile (teams, skills, capacity)
and state as agent-state last reported them, plus the *holds*: the live offers and assignments
charged to its capacity. Profiles are ordered by agent-state's ``profile_version`` (then the
event's time), states by its ``sequence``: an older event never overwrites a newer one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from switchboard.routing.domain.matching import CHANNELS, Agent

AgentDocument = dict[str, Any]

SNAPSHOT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""The time part of a profile key taken from agent-state's answer: any event of the same
version (same content) may still replace it."""


def new_agent_document(agent_id: str) -> AgentDocument:
    """An agent routing has heard nothing of yet: logged out, no team, nothing held."""
    return {
        "_id": agent_id,
        "teams": [],
        "skills": [],
        "capacity": {},
        "active": True,
        "state": "logged_out",
        "state_seq": 0,
        "not_ready_pending": False,
        "profile_key": None,
        "holds": [],
        "idle_since": None,
        "hold_off_until": None,
        "version": 0,
    }


def derive_agent_fields(doc: AgentDocument, default_capacity: int) -> None:
    """Fields kept only so queries can find free agents quickly (``avail``, ``room_total``)."""
    load = {ch: 0 for ch in CHANNELS}
    for hold in doc["holds"]:
        load[hold["c"]] = load.get(hold["c"], 0) + 1
    doc["load"] = load
    offerable = doc["active"] and doc["state"] in ("ready", "busy") and not doc["not_ready_pending"]
    room = {ch: int(doc["capacity"].get(ch, default_capacity)) - load[ch] for ch in CHANNELS}
    doc["avail"] = [ch for ch in CHANNELS if offerable and room[ch] > 0]
    doc["room_total"] = sum(max(r, 0) for r in room.values()) if offerable else 0


def agent_from(doc: AgentDocument, default_capacity: int, now: datetime) -> Agent:
    """The agent as the matching rules see it; within the RONA hold-off after a missed offer
    (until agent-state reports a newer state) it counts as ``rona`` and takes no offers."""
    held_off = doc.get("hold_off_until") is not None and doc["hold_off_until"] > now
    return Agent(
        agent_id=doc["_id"],
        teams=frozenset(doc.get("teams", [])),
        skills={s["name"]: int(s["level"]) for s in doc.get("skills", [])},
        capacity=dict(doc.get("capacity", {})),
        active=bool(doc.get("active", True)),
        state="rona" if held_off else doc.get("state", "logged_out"),
        not_ready_pending=bool(doc.get("not_ready_pending", False)),
        load=dict(doc.get("load") or {}),
        idle_since=doc.get("idle_since"),
        version=int(doc.get("version", 0)),
        default_capacity=default_capacity,
    )


def profile_change(profile: AgentDocument, key: list[Any]) -> Callable[[AgentDocument], bool]:
    """Apply a profile unless one at least as new (``[version, occurred_at]``) is there."""

    def change(agent: AgentDocument) -> bool:
        if agent.get("profile_key") is not None and key <= agent["profile_key"]:
            return False
        agent.update(profile, profile_key=key)
        return True

    return change


def state_change(
    state: str, sequence: int, not_ready_pending: bool, changed_at: datetime
) -> Callable[[AgentDocument], bool]:
    """Apply a state unless a newer one (by agent-state's sequence) is there; becoming Ready
    starts the idle time (longest idle is offered first) and ends any RONA hold-off."""

    def change(agent: AgentDocument) -> bool:
        if sequence <= int(agent.get("state_seq", 0)):
            return False
        was = agent.get("state")
        agent.update(
            state=state,
            state_seq=sequence,
            not_ready_pending=not_ready_pending,
            hold_off_until=None,
        )
        if state == "ready" and was != "ready":
            agent["idle_since"] = changed_at
        return True

    return change


def reservation(
    offer_id: str,
    interaction_id: str,
    channel: str,
    token: str,
    now: datetime,
    *,
    default_capacity: int,
    pulled: bool = False,
) -> Callable[[AgentDocument], bool]:
    """Charge an offer to the agent's capacity (a *hold*), if the agent may take it now: free
    room on the channel and offerable (a pull only needs the agent logged in with room), and
    no hold for this interaction already. The agent's idle time starts over."""

    def change(agent: AgentDocument) -> bool:
        view = agent_from(agent, default_capacity, now)
        if pulled:
            if not view.logged_in or view.room(channel) <= 0:
                return False
        elif not view.can_take(channel):
            return False
        if any(h["i"] == interaction_id for h in agent["holds"]):
            return False
        hold = {"o": offer_id, "i": interaction_id, "c": channel, "at": now, "t": token}
        agent["holds"] = [*agent["holds"], hold]
        agent["idle_since"] = now
        return True

    return change


def release(
    now: datetime,
    *,
    offer_id: str | None = None,
    interaction_id: str | None = None,
    token: str | None = None,
) -> Callable[[AgentDocument], bool]:
    """Give back the holds of this offer, interaction or reservation; nothing to write when
    there is none. The agent's idle time starts over."""

    def change(agent: AgentDocument) -> bool:
        kept = [
            h
            for h in agent["holds"]
            if not (
                (offer_id is not None and h["o"] == offer_id)
                or (interaction_id is not None and h["i"] == interaction_id)
                or (token is not None and h.get("t") == token)
            )
        ]
        if len(kept) == len(agent["holds"]):
            return False
        agent["holds"] = kept
        agent["idle_since"] = now
        return True

    return change


def missed_offer(offer_id: str, hold_off_until: datetime) -> Callable[[AgentDocument], bool]:
    """An offer not answered in time (RONA): its hold is given back and the agent takes no
    offers until ``hold_off_until`` or agent-state's next state, in the same write, so no other
    replica sees the agent free in between."""

    def change(agent: AgentDocument) -> bool:
        agent["holds"] = [h for h in agent["holds"] if h["o"] != offer_id]
        agent["hold_off_until"] = hold_off_until
        return True

    return change

"""Routing's record of an agent: how events change it and when it takes offers. No I/O.

The record (:class:`AgentRecord`, ``agents`` collection) is the agent's profile (teams, skills,
capacity) and state as agent-state last reported them, plus the *holds*: the live offers and
assignments charged to its capacity. Profiles are ordered by agent-state's ``profile_version``
(then the event's time), states by its ``sequence``: an older event never overwrites a newer
one. Each change returns the new record, or ``None`` when there is nothing to write.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from switchboard.routing.domain.matching import CHANNELS, Agent

SNAPSHOT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""The time part of a profile key taken from agent-state's answer: any event of the same
version (same content) may still replace it."""

ProfileKey = tuple[int, datetime]
"""Orders profiles: agent-state's ``profile_version``, then the event's time."""


class SkillLevel(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    level: int = 1


class Hold(BaseModel):
    """An offer or assignment charged to the agent's capacity; ``token`` marks the
    reservation that wrote it (a reservation that lost gives back only its own)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    offer_id: str = Field(alias="o")
    interaction_id: str = Field(alias="i")
    channel: str = Field(alias="c")
    at: datetime
    token: str | None = Field(default=None, alias="t")


class Profile(BaseModel):
    """What agent-state's profile says that routing needs."""

    model_config = ConfigDict(frozen=True)

    teams: list[str] = Field(default_factory=list)
    skills: list[SkillLevel] = Field(default_factory=list)
    capacity: dict[str, int] = Field(default_factory=dict)
    active: bool = True


class AgentRecord(BaseModel):
    """Routing's record of one agent: profile, state, holds, and the fields kept so free
    agents are found by query (``load``, ``avail``, ``room_total``, see :func:`with_room`)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(alias="_id")
    version: int = 0
    teams: list[str] = Field(default_factory=list)
    skills: list[SkillLevel] = Field(default_factory=list)
    capacity: dict[str, int] = Field(default_factory=dict)
    active: bool = True
    state: str = "logged_out"
    state_seq: int = 0
    not_ready_pending: bool = False
    profile_key: ProfileKey | None = None
    holds: list[Hold] = Field(default_factory=list)
    idle_since: datetime | None = None
    hold_off_until: datetime | None = None
    load: dict[str, int] = Field(default_factory=dict)
    avail: list[str] = Field(default_factory=list)
    room_total: int = 0


AgentChange = Callable[[AgentRecord], AgentRecord | None]


def with_room(agent: AgentRecord, default_capacity: int) -> AgentRecord:
    """The record with its load and free room worked out again from its holds."""
    load = {ch: 0 for ch in CHANNELS}
    for hold in agent.holds:
        load[hold.channel] = load.get(hold.channel, 0) + 1
    offerable = agent.active and agent.state in ("ready", "busy") and not agent.not_ready_pending
    room = {ch: int(agent.capacity.get(ch, default_capacity)) - load[ch] for ch in CHANNELS}
    return agent.model_copy(
        update={
            "load": load,
            "avail": [ch for ch in CHANNELS if offerable and room[ch] > 0],
            "room_total": sum(max(r, 0) for r in room.values()) if offerable else 0,
        }
    )


def agent_from(record: AgentRecord, default_capacity: int, now: datetime) -> Agent:
    """The agent as the matching rules see it; within the RONA hold-off after a missed offer
    (until agent-state reports a newer state) it counts as ``rona`` and takes no offers."""
    held_off = record.hold_off_until is not None and record.hold_off_until > now
    return Agent(
        agent_id=record.id,
        teams=frozenset(record.teams),
        skills={s.name: s.level for s in record.skills},
        capacity=dict(record.capacity),
        active=record.active,
        state="rona" if held_off else record.state,
        not_ready_pending=record.not_ready_pending,
        load=dict(record.load),
        idle_since=record.idle_since,
        version=record.version,
        default_capacity=default_capacity,
    )


def profile_change(profile: Profile, key: ProfileKey) -> AgentChange:
    """Apply a profile unless one at least as new is there."""

    def change(agent: AgentRecord) -> AgentRecord | None:
        if agent.profile_key is not None and key <= agent.profile_key:
            return None
        return agent.model_copy(update={**dict(profile), "profile_key": key})

    return change


def state_change(
    state: str, sequence: int, not_ready_pending: bool, changed_at: datetime
) -> AgentChange:
    """Apply a state unless a newer one (by agent-state's sequence) is there; becoming Ready
    starts the idle time (longest idle is offered first) and ends any RONA hold-off."""

    def change(agent: AgentRecord) -> AgentRecord | None:
        if sequence <= agent.state_seq:
            return None
        idle_since = changed_at if state == "ready" and agent.state != "ready" else agent.idle_since
        return agent.model_copy(
            update={
                "state": state,
                "state_seq": sequence,
                "not_ready_pending": not_ready_pending,
                "hold_off_until": None,
                "idle_since": idle_since,
            }
        )

    return change


def both(first: AgentChange, second: AgentChange) -> AgentChange:
    """Both changes, each on what the other left; None only when neither changes anything."""

    def change(agent: AgentRecord) -> AgentRecord | None:
        once = first(agent)
        twice = second(once or agent)
        return twice or once

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
) -> AgentChange:
    """Charge an offer to the agent's capacity (a *hold*), if the agent may take it now: free
    room on the channel and offerable (a pull only needs the agent logged in with room), and
    no hold for this interaction already. The agent's idle time starts over."""

    def change(agent: AgentRecord) -> AgentRecord | None:
        view = agent_from(agent, default_capacity, now)
        if pulled:
            if not view.logged_in or view.room(channel) <= 0:
                return None
        elif not view.can_take(channel):
            return None
        if any(h.interaction_id == interaction_id for h in agent.holds):
            return None
        hold = Hold(
            offer_id=offer_id, interaction_id=interaction_id, channel=channel, at=now, token=token
        )
        return agent.model_copy(update={"holds": [*agent.holds, hold], "idle_since": now})

    return change


def release(
    now: datetime,
    *,
    offer_id: str | None = None,
    interaction_id: str | None = None,
    token: str | None = None,
) -> AgentChange:
    """Give back the holds of this offer, interaction or reservation; nothing to write when
    there is none. The agent's idle time starts over."""

    def change(agent: AgentRecord) -> AgentRecord | None:
        kept = [
            h
            for h in agent.holds
            if not (
                (offer_id is not None and h.offer_id == offer_id)
                or (interaction_id is not None and h.interaction_id == interaction_id)
                or (token is not None and h.token == token)
            )
        ]
        if len(kept) == len(agent.holds):
            return None
        return agent.model_copy(update={"holds": kept, "idle_since": now})

    return change


def missed_offer(offer_id: str, hold_off_until: datetime) -> AgentChange:
    """An offer not answered in time (RONA): its hold is given back and the agent takes no
    offers until ``hold_off_until`` or agent-state's next state, in the same write, so no other
    replica sees the agent free in between."""

    def change(agent: AgentRecord) -> AgentRecord | None:
        kept = [h for h in agent.holds if h.offer_id != offer_id]
        return agent.model_copy(update={"holds": kept, "hold_off_until": hold_off_until})

    return change

"""The routing rules: who may take which work, in what order. Plain code, no I/O.

Queue order: priority (higher first), then age (older first). Agent choice for one item: the
agent the item is meant for (personal queue, or the preferred agent within the preferred-agent
wait while that agent is logged in), otherwise the best eligible agent: highest skill level for
the service's skills, then longest idle.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from switchboard.contracts.routing import ServiceDefinition

Service = ServiceDefinition

CHANNELS = ("email", "preview")

OFFERABLE_STATES = frozenset({"ready", "busy"})
"""Agent-state keeps an agent "busy" while working: busy with room on a channel still takes work."""

_OFFER_NAMESPACE = uuid.UUID("6c0b7f1e-0f43-4c35-9d55-2f3f6a1c9e10")


@dataclass
class Agent:
    """Routing's projection of one agent, with its live work (offers and assignments)."""

    agent_id: str
    teams: frozenset[str] = frozenset()
    skills: Mapping[str, int] = field(default_factory=dict)
    capacity: Mapping[str, int] = field(default_factory=dict)
    active: bool = True
    state: str = "logged_out"
    not_ready_pending: bool = False
    load: Mapping[str, int] = field(default_factory=dict)
    idle_since: datetime | None = None
    version: int = 0
    default_capacity: int = 1

    def capacity_for(self, channel: str) -> int:
        return int(self.capacity.get(channel, self.default_capacity))

    def room(self, channel: str) -> int:
        return max(self.capacity_for(channel) - int(self.load.get(channel, 0)), 0)

    @property
    def logged_in(self) -> bool:
        return self.active and self.state != "logged_out"

    @property
    def takes_offers(self) -> bool:
        """Logged in and Ready (or Busy with room elsewhere), and no Not Ready pending."""
        return self.active and self.state in OFFERABLE_STATES and not self.not_ready_pending

    def can_take(self, channel: str) -> bool:
        return self.takes_offers and self.room(channel) > 0


@dataclass
class Work:
    """One waiting interaction, as the rules need it."""

    interaction_id: str
    channel: str
    service: str
    priority: int
    queued_at: datetime
    preferred_agent_id: str | None = None
    preferred_until: datetime | None = None
    personal_agent_id: str | None = None
    declined: Mapping[str, datetime] = field(default_factory=dict)
    version: int = 0

    def queue_key(self) -> tuple[int, datetime, str]:
        return (-self.priority, self.queued_at, self.interaction_id)


def in_team(agent: Agent, service: Service) -> bool:
    return service.team is None or service.team in agent.teams


def has_skills(agent: Agent, service: Service) -> bool:
    return all(
        agent.skills.get(name, 0) >= level for name, level in service.required_skills.items()
    )


def serves(agent: Agent, service: Service) -> bool:
    """The agent belongs to the service: its team and its skills."""
    return in_team(agent, service) and has_skills(agent, service)


def skill_score(agent: Agent, service: Service) -> int:
    """Higher is better: the agent's levels in the service's skills (all skills if none)."""
    names = service.required_skills or agent.skills
    return sum(int(agent.skills.get(name, 0)) for name in names)


def declined_by(work: Work, agent_id: str, now: datetime) -> bool:
    until = work.declined.get(agent_id)
    return until is not None and until > now


def meant_for(work: Work, now: datetime, logged_in: Mapping[str, bool]) -> str | None:
    """The one agent this item waits for now, if any.

    Personal-queue work waits for its agent (until it overflows). Work with a preferred agent
    waits for them within the preferred-agent wait, but only while they are logged in: routing
    never waits for an offline agent.
    """
    if work.personal_agent_id:
        return work.personal_agent_id
    if (
        work.preferred_agent_id
        and work.preferred_until is not None
        and now < work.preferred_until
        and logged_in.get(work.preferred_agent_id, False)
    ):
        return work.preferred_agent_id
    return None


def may_offer(
    agent: Agent,
    work: Work,
    service: Service | None,
    now: datetime,
    logged_in: Mapping[str, bool],
) -> bool:
    """May this item be offered to this agent now (ignoring other candidates)?"""
    if not agent.can_take(work.channel) or declined_by(work, agent.agent_id, now):
        return False
    target = meant_for(work, now, logged_in)
    if target is not None:
        return target == agent.agent_id
    return service is not None and serves(agent, service)


def _idle_ts(idle: datetime | None) -> float:
    return idle.timestamp() if idle is not None else float("-inf")


RankKey = tuple[int, float, str]


def rank_key(agent: Agent, service: Service) -> RankKey:
    """Sort key, best first: skill level, then longest idle."""
    return (-skill_score(agent, service), _idle_ts(agent.idle_since), agent.agent_id)


def choose_agent(
    work: Work,
    service: Service | None,
    agents: Iterable[Agent],
    now: datetime,
    logged_in: Mapping[str, bool],
) -> Agent | None:
    """The best agent for one item, or None."""
    candidates = [a for a in agents if may_offer(a, work, service, now, logged_in)]
    if not candidates:
        return None
    if service is None:
        return candidates[0]
    return min(candidates, key=lambda a: rank_key(a, service))


def order_queue(works: Iterable[Work]) -> list[Work]:
    return sorted(works, key=Work.queue_key)


@dataclass
class _Plan:
    room: dict[tuple[str, str], int]
    idle: dict[str, datetime | None]


def plan_offers(
    works: Iterable[Work],
    agents: Iterable[Agent],
    services: Mapping[str, Service],
    now: datetime,
    logged_in: Mapping[str, bool],
) -> list[tuple[Work, Agent]]:
    """Match waiting work to free agents: queue order first, best agent for each item.

    Greedy and fair: an agent who gets an item counts as busy from ``now`` on, so the next item
    of equal rank goes to someone who has waited longer. Runs in about O((W + A) log A).
    """
    by_id = {a.agent_id: a for a in agents}
    state = _Plan(
        room={(a.agent_id, ch): a.room(ch) for a in by_id.values() for ch in CHANNELS},
        idle={a.agent_id: a.idle_since for a in by_id.values()},
    )
    heaps: dict[str, list[tuple[RankKey, datetime | None]]] = {}

    def heap_for(service: Service) -> list[tuple[RankKey, datetime | None]]:
        heap = heaps.get(service.name)
        if heap is None:
            heap = [
                (rank_key(a, service), a.idle_since)
                for a in by_id.values()
                if a.can_take(service.channel) and serves(a, service)
            ]
            heapq.heapify(heap)
            heaps[service.name] = heap
        return heap

    def current(agent: Agent) -> Agent:
        channel_load = {
            ch: agent.capacity_for(ch) - state.room[(agent.agent_id, ch)] for ch in CHANNELS
        }
        return Agent(
            agent_id=agent.agent_id,
            teams=agent.teams,
            skills=agent.skills,
            capacity=agent.capacity,
            active=agent.active,
            state=agent.state,
            not_ready_pending=agent.not_ready_pending,
            load=channel_load,
            idle_since=state.idle[agent.agent_id],
            version=agent.version,
            default_capacity=agent.default_capacity,
        )

    plan: list[tuple[Work, Agent]] = []
    for work in order_queue(works):
        service = services.get(work.service)
        chosen: Agent | None = None
        target = meant_for(work, now, logged_in)
        if target is not None:
            agent = by_id.get(target)
            if agent is not None and may_offer(current(agent), work, service, now, logged_in):
                chosen = agent
        elif service is not None and service.channel == work.channel:
            heap = heap_for(service)
            skipped: list[tuple[RankKey, datetime | None]] = []
            while heap:
                key, idle = heapq.heappop(heap)
                agent = by_id[key[2]]
                if state.room[(agent.agent_id, work.channel)] <= 0:
                    continue  # full: drop from this service's heap
                if idle != state.idle[agent.agent_id]:
                    heapq.heappush(
                        heap, (rank_key(current(agent), service), state.idle[agent.agent_id])
                    )
                    continue
                if declined_by(work, agent.agent_id, now):
                    skipped.append((key, idle))
                    continue
                chosen = agent
                break
            for entry in skipped:
                heapq.heappush(heap, entry)
        if chosen is None:
            continue
        state.room[(chosen.agent_id, work.channel)] -= 1
        state.idle[chosen.agent_id] = now
        if service is not None and target is None and state.room[(chosen.agent_id, work.channel)]:
            heapq.heappush(
                heap_for(service), (rank_key(current(chosen), service), state.idle[chosen.agent_id])
            )
        plan.append((work, chosen))
    return plan


def offer_id(interaction_id: str, round_no: int, offer_no: int, *, kind: str = "") -> str:
    """Deterministic: two replicas offering from the same state would produce the same id.

    ``<32 hex>:<interaction id>``: an answer finds its interaction without a search.
    """
    key = f"{kind}{interaction_id}/{round_no}/{offer_no}"
    return f"{uuid.uuid5(_OFFER_NAMESPACE, key).hex}:{interaction_id}"


def interaction_of_offer(offer_id: str) -> str | None:
    """The interaction an offer id names (None for an id not made by :func:`offer_id`)."""
    if len(offer_id) > 33 and offer_id[32] == ":":
        return offer_id[33:]
    return None


def next_due(
    status: str,
    *,
    offer_expires_at: datetime | None,
    preferred_until: datetime | None,
    personal_until: datetime | None,
    now: datetime,
) -> datetime | None:
    """When the timer of an interaction fires next (none: nothing to do by itself)."""
    if status == "offered":
        return offer_expires_at
    if status != "waiting":
        return None
    dues = [d for d in (preferred_until, personal_until) if d is not None and d > now]
    return min(dues) if dues else None

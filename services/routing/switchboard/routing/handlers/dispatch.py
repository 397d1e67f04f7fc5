"""Matching waiting work with free agents, and making the plan's offers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import structlog

from switchboard.routing import domain
from switchboard.routing.handlers.core import (
    RETAKES,
    RouterCore,
)
from switchboard.routing.store import utcnow

log = structlog.get_logger("switchboard.routing")


class Dispatch(RouterCore):
    """Offer work to agents: for one interaction, for agents freed, the sweep."""

    # --- offers ---------------------------------------------------------------------------

    async def dispatch_work(self, interaction_id: str, known: domain.WorkItem | None = None) -> int:
        """Offer one waiting interaction to the best free agent, if there is one now."""
        item = known if known is not None else await self.store.get_work(interaction_id)
        if item is None or item.status != "waiting":
            return 0
        now = utcnow()
        services = await self.catalog.all()
        service = services.get(item.service)
        work = item.as_work()
        logged_in = await self._logged_in([work])
        target = domain.meant_for(work, now, logged_in)
        if target is None and (service is None or service.channel != work.channel):
            return 0
        lost: set[str] = set()
        for _ in range(RETAKES):
            if target is not None:
                read_at = self.hints.read_mark()
                records = list((await self.store.agents_by_id([target])).values())
            else:
                assert service is not None
                read_at, records = await self._free_agents(work.channel, service.team)
            agents = [
                domain.agent_from(r, self.store.default_capacity, now)
                for r in records
                if r.id not in lost
            ]
            plan = self._plan([work], agents, services, now, logged_in, read_at)
            if not plan:
                return 0
            if made := await self._carry_out(plan, {item.id: item}, {r.id: r for r in records}):
                return len(made)
            # Lost a race: another replica's offer took that agent, or this interaction. The
            # next agent, if it still waits: as the agents are now (someone may have become
            # free meanwhile, and been left to this dispatch by their own).
            lost.add(plan[0][1].agent_id)
            current = await self.store.get_work(item.id)
            if current is None or current.status != "waiting":
                return 0
            item, work = current, current.as_work()
        return 0

    async def dispatch_agent(self, agent_id: str, known: domain.AgentRecord | None = None) -> int:
        """Offer waiting work to an agent who may have become free (Ready, capacity freed);
        ``known``: the agent as just written, so it need not be read again."""
        return (await self._dispatch_agents([agent_id], known))[agent_id]

    async def _dispatch_agents(
        self, agent_ids: list[str], known: domain.AgentRecord | None = None
    ) -> Counter[str]:
        """Match these agents with the head of their queues in one plan (each gets different
        work); after a lost race, again with the agents as they are now."""
        made: Counter[str] = Counter()
        now = utcnow()
        services = await self.catalog.all()
        read_at = self.hints.read_mark()
        found: dict[str, domain.AgentRecord]
        if known is not None and [known.id] == agent_ids:
            found = {known.id: known}
        else:
            found = await self.store.agents_by_id(agent_ids)
        limit = 0
        for _ in range(RETAKES):
            agents = [
                a
                for a in (
                    domain.agent_from(d, self.store.default_capacity, now) for d in found.values()
                )
                if any(a.can_take(ch) for ch in domain.CHANNELS)
            ]
            names = {
                s.name
                for s in services.values()
                for a in agents
                if a.can_take(s.channel) and domain.serves(a, s)
            }
            room = sum(a.room(ch) for a in agents for ch in domain.CHANNELS if a.can_take(ch))
            if not agents:
                break
            limit = max(limit, room + 10)  # the head is almost always enough
            items = await self.waiting(
                services=names, personal_agent_ids=[a.agent_id for a in agents], limit=limit
            )
            works = [i.as_work() for i in items]
            logged_in = await self._logged_in(works)
            plan = self._plan(works, agents, services, now, logged_in, read_at)
            if not plan:
                if any(self.hints.offering(w.interaction_id) for w in works):
                    continue  # taken meanwhile by this replica's other dispatches: the next ones
                if len(items) < limit or limit > 100:
                    break
                limit += 100  # declined or kept for someone else: look deeper
                continue
            done = await self._carry_out(plan, {i.id: i for i in items}, found)
            made.update(agent.agent_id for _, agent in done)
            if len(done) == len(plan):
                break
            # Lost a race for some work (another replica's offer): again, with the agents as
            # they are now.
            read_at = self.hints.read_mark()
            found = await self.store.agents_by_id(agent_ids)
        return made

    async def sweep(self) -> int:
        """Match everything waiting with every free agent (the backstop behind the events)."""
        if not self.hints.sweep_due():
            return 0
        async with self.hints.sweeping():
            return await self._sweep()

    async def _sweep(self) -> int:
        read_at = self.hints.read_mark()
        free = await self.store.free_agents()
        if not free:
            return 0
        now = utcnow()
        agents = [domain.agent_from(r, self.store.default_capacity, now) for r in free]
        services = await self.catalog.all()
        # Only work someone free could take: a deep queue nobody serves now must not hide it.
        names = {
            s.name
            for s in services.values()
            for a in agents
            if a.can_take(s.channel) and domain.serves(a, s)
        }
        items = await self.store.waiting_for(
            [a.agent_id for a in agents], names, limit=self.sweep_batch
        )
        # Work requested a moment ago is being dispatched by its own request: racing it for
        # the same agents would only make both slower.
        grace_from = now - self.sweep_grace
        items = [i for i in items if i.waiting_since <= grace_from]
        if not items:
            return 0
        works = [i.as_work() for i in items]
        logged_in = await self._logged_in(works)
        plan = self._plan(works, agents, services, now, logged_in, read_at)
        known = {r.id: r for r in free}
        return len(await self._carry_out(plan, {i.id: i for i in items}, known))

    async def _logged_in(self, works: Iterable[domain.Work]) -> dict[str, bool]:
        wanted = [w.preferred_agent_id for w in works if w.preferred_agent_id]
        found = await self.store.agents_by_id(wanted)
        now = utcnow()
        return {
            agent_id: domain.agent_from(record, self.store.default_capacity, now).logged_in
            for agent_id, record in found.items()
        }

    async def _carry_out(
        self,
        plan: list[tuple[domain.Work, domain.Agent]],
        items: dict[str, domain.WorkItem],
        records: dict[str, domain.AgentRecord],
    ) -> list[tuple[domain.Work, domain.Agent]]:
        """Make the plan's offers; the pairs whose offer was made (the others lost a race).
        ``records``: the agents as the plan read them (each reservation starts from it)."""
        made = []
        unused = dict(records)  # once an agent is written, its read is stale
        with self.hints.holding(plan) as settle:
            for work, agent in plan:
                offered = await self.offer(
                    items[work.interaction_id],
                    agent.agent_id,
                    agent=unused.pop(agent.agent_id, None),
                )
                settle(work, offered)
                if offered:
                    made.append((work, agent))
        return made

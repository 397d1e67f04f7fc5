"""Team and personal queues: list, pull, transfer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from switchboard.contracts.routing import (
    InteractionQueued,
    InteractionTransferred,
    TransferRequested,
)
from switchboard.routing import domain
from switchboard.routing.handlers.core import (
    RouterCore,
)
from switchboard.routing.store import utcnow
from switchboard.runtime.errors import Refused
from switchboard.runtime.storage import NotFound

log = structlog.get_logger("switchboard.routing")


class Queues(RouterCore):
    """What an agent may see and pull, and transfers."""

    # --- queues ---------------------------------------------------------------------------

    async def _acting_agent(self, agent_id: str) -> domain.Agent:
        record = await self.store.get_agent(agent_id)
        if record is None:
            raise Refused("unknown_agent", f"routing knows no agent {agent_id}", field="agent_id")
        agent = domain.agent_from(record, self.store.default_capacity, utcnow())
        if not agent.logged_in:
            raise Refused("not_logged_in", f"agent {agent_id} is not logged in", field="agent_id")
        return agent

    async def team_services(self, agent: domain.Agent, only: str | None) -> list[str]:
        """The services whose team queue the agent may see and pull from: their team's, and
        only those whose required skills they have (the same rule as offers)."""
        services = await self.catalog.all(fresh=True)
        if only is not None:
            service = services.get(only)
            if service is None or not domain.in_team(agent, service):
                raise Refused(
                    "not_your_service", f"{only} is not a service of your team", field="service"
                )
            if not domain.has_skills(agent, service):
                missing = ", ".join(
                    f"{name} {level}"
                    for name, level in sorted(service.required_skills.items())
                    if agent.skills.get(name, 0) < level
                )
                raise Refused(
                    "missing_skills", f"{only} needs skills you lack: {missing}", field="service"
                )
            return [only]
        return [s.name for s in services.values() if domain.serves(agent, s)]

    @staticmethod
    def _item(item: domain.WorkItem, now: datetime) -> dict[str, Any]:
        return {
            "interaction_id": item.id,
            "service": item.service,
            "channel": item.channel,
            "priority": item.priority,
            "queued_at": item.queued_at.isoformat(),
            "waited_seconds": round((now - item.queued_at).total_seconds(), 3),
            "reason": item.reason,
            "summary": item.summary or {},
        }

    async def team_queue(self, agent_id: str, service: str | None, limit: int) -> dict[str, Any]:
        agent = await self._acting_agent(agent_id)
        names = await self.team_services(agent, service)
        items = await self.waiting(services=names, limit=limit) if names else []
        now = utcnow()
        return {"items": [self._item(i, now) for i in items]}

    async def personal_queue(self, agent_id: str, limit: int) -> dict[str, Any]:
        await self._acting_agent(agent_id)
        items = await self.waiting(personal_agent_ids=[agent_id], limit=limit)
        now = utcnow()
        return {"items": [self._item(i, now) for i in items]}

    async def pull(
        self,
        agent_id: str,
        interaction_id: str | None,
        *,
        personal: bool,
        service: str | None = None,
    ) -> dict[str, Any]:
        """An atomic claim: the CAS on the interaction lets exactly one puller win."""
        agent = await self._acting_agent(agent_id)
        names = [] if personal else await self.team_services(agent, service)
        for _ in range(10):
            if interaction_id is not None:
                item = await self.store.get_work(interaction_id)
                mine = item is not None and (
                    item.personal_agent_id == agent_id
                    if personal
                    else item.personal_agent_id is None and item.service in names
                )
                if item is None or not mine or item.status != "waiting":
                    raise Refused(
                        "not_available",
                        f"{interaction_id} is not waiting in your "
                        + ("personal queue" if personal else "team queue"),
                        field="interaction_id",
                    )
                candidates = [item]
            elif personal:
                candidates = await self.waiting(personal_agent_ids=[agent_id], limit=20)
            else:
                candidates = await self.waiting(services=names, limit=20) if names else []
            if not candidates:
                raise Refused("queue_empty", "nothing is waiting in that queue")
            fresh = await self._acting_agent(agent_id)
            for candidate in candidates:
                if fresh.room(candidate.channel) <= 0:
                    raise Refused(
                        "at_capacity",
                        f"no free {candidate.channel} capacity: finish some work first",
                        field="agent_id",
                    )
                if await self.offer(candidate, agent_id, pulled=True):
                    return {
                        "interaction_id": candidate.id,
                        "service": candidate.service,
                        "channel": candidate.channel,
                        "summary": candidate.summary or {},
                    }
        raise Refused(
            "not_available", "someone else took it first: try again", field="interaction_id"
        )

    async def transfer(self, msg: TransferRequested) -> dict[str, Any]:
        if not msg.to_service and not msg.to_agent_id:
            raise Refused("missing_target", "name a service or an agent", field="to_service")
        if msg.to_agent_id == msg.agent_id:
            raise Refused("same_agent", "you cannot transfer to yourself", field="to_agent_id")
        if msg.to_agent_id is not None and await self.store.get_agent(msg.to_agent_id) is None:
            raise Refused("unknown_agent", f"no agent {msg.to_agent_id}", field="to_agent_id")
        now = utcnow()
        services = await self.catalog.all(fresh=True)

        def transfer(current: domain.WorkItem) -> tuple[domain.WorkItem, domain.WorkItem]:
            if current.status != "assigned" or current.agent_id != msg.agent_id:
                raise Refused(
                    "not_yours",
                    "only the agent holding an interaction can transfer it (accept it first)",
                    field="agent_id",
                )
            target_name = msg.to_service or current.service
            target = services.get(target_name)
            if target is None:
                raise Refused("unknown_service", f"no service {target_name}", field="to_service")
            if target.channel != current.channel:
                raise Refused(
                    "channel_mismatch",
                    f"{target_name} takes {target.channel}, this is {current.channel}",
                    field="to_service",
                )
            moved = domain.transferred(
                current,
                by_agent=msg.agent_id,
                to=target,
                to_agent=msg.to_agent_id,
                reason=msg.reason,
                request_id=str(msg.message_id),
                now=now,
            )
            return moved, current

        try:
            done = await self._change_work(msg.interaction_id, transfer)
        except NotFound:
            raise Refused(
                "unknown_interaction",
                f"no interaction {msg.interaction_id}",
                field="interaction_id",
            ) from None
        before, after = done.result, done.aggregate
        await self.release_hold(msg.agent_id, interaction_id=after.id)
        await self.emit(
            InteractionTransferred.caused_by(
                msg,
                interaction_id=after.id,
                from_agent_id=msg.agent_id,
                channel=after.channel,
                from_service=before.service,
                to_service=after.service,
                to_agent_id=msg.to_agent_id,
                reason=msg.reason,
            )
        )
        await self.emit(
            InteractionQueued.caused_by(
                msg,
                interaction_id=after.id,
                channel=after.channel,
                service=after.service,
                personal_agent_id=msg.to_agent_id,
            )
        )
        await self.dispatch_work(after.id)
        await self.dispatch_agent(msg.agent_id)
        return {
            "interaction_id": after.id,
            "service": after.service,
            "to_agent_id": msg.to_agent_id,
        }

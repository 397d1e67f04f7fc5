"""Team and personal queues: list, pull, transfer."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import structlog

from switchboard.contracts.routing import (
    InteractionQueued,
    InteractionTransferred,
    TransferRequested,
)
from switchboard.routing import domain, metrics
from switchboard.routing.handlers.core import (
    RouterCore,
)
from switchboard.routing.store import (
    Document,
    utcnow,
)
from switchboard.runtime.errors import Refused

log = structlog.get_logger("switchboard.routing")


class Queues(RouterCore):
    """What an agent may see and pull, and transfers."""

    # --- queues ---------------------------------------------------------------------------

    async def _acting_agent(self, agent_id: str) -> domain.Agent:
        doc = await self.store.get_agent(agent_id)
        if doc is None:
            raise Refused("unknown_agent", f"routing knows no agent {agent_id}", field="agent_id")
        agent = domain.agent_from(doc, self.store.default_capacity, utcnow())
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
    def _item(doc: Document, now: datetime) -> dict[str, Any]:
        return {
            "interaction_id": doc["_id"],
            "service": doc["service"],
            "channel": doc["channel"],
            "priority": doc.get("priority", 0),
            "queued_at": doc["queued_at"].isoformat(),
            "waited_seconds": round((now - doc["queued_at"]).total_seconds(), 3),
            "reason": doc.get("reason", "new"),
            "summary": doc.get("summary") or {},
        }

    async def team_queue(self, agent_id: str, service: str | None, limit: int) -> dict[str, Any]:
        agent = await self._acting_agent(agent_id)
        names = await self.team_services(agent, service)
        docs = await self.waiting(services=names, limit=limit) if names else []
        now = utcnow()
        return {"items": [self._item(d, now) for d in docs]}

    async def personal_queue(self, agent_id: str, limit: int) -> dict[str, Any]:
        await self._acting_agent(agent_id)
        docs = await self.waiting(personal_agent_ids=[agent_id], limit=limit)
        now = utcnow()
        return {"items": [self._item(d, now) for d in docs]}

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
                doc = await self.store.get_work(interaction_id)
                mine = doc is not None and (
                    doc.get("personal_agent_id") == agent_id
                    if personal
                    else doc.get("personal_agent_id") is None and doc["service"] in names
                )
                if doc is None or not mine or doc["status"] != "waiting":
                    raise Refused(
                        "not_available",
                        f"{interaction_id} is not waiting in your "
                        + ("personal queue" if personal else "team queue"),
                        field="interaction_id",
                    )
                candidates = [doc]
            elif personal:
                candidates = await self.waiting(personal_agent_ids=[agent_id], limit=20)
            else:
                candidates = await self.waiting(services=names, limit=20) if names else []
            if not candidates:
                raise Refused("queue_empty", "nothing is waiting in that queue")
            fresh = await self._acting_agent(agent_id)
            for doc in candidates:
                if fresh.room(doc["channel"]) <= 0:
                    raise Refused(
                        "at_capacity",
                        f"no free {doc['channel']} capacity: finish some work first",
                        field="agent_id",
                    )
                if await self.offer(doc, agent_id, pulled=True):
                    return {
                        "interaction_id": doc["_id"],
                        "service": doc["service"],
                        "channel": doc["channel"],
                        "summary": doc.get("summary") or {},
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
        for _ in range(20):
            now = utcnow()
            doc = await self.store.get_work(msg.interaction_id)
            if doc is None:
                raise Refused(
                    "unknown_interaction",
                    f"no interaction {msg.interaction_id}",
                    field="interaction_id",
                )
            if doc["status"] != "assigned" or doc.get("agent_id") != msg.agent_id:
                raise Refused(
                    "not_yours",
                    "only the agent holding an interaction can transfer it (accept it first)",
                    field="agent_id",
                )
            target_name = msg.to_service or doc["service"]
            target = await self.catalog.get(target_name, fresh=True)
            if target is None:
                raise Refused("unknown_service", f"no service {target_name}", field="to_service")
            if target.channel != doc["channel"]:
                raise Refused(
                    "channel_mismatch",
                    f"{target_name} takes {target.channel}, this is {doc['channel']}",
                    field="to_service",
                )
            overflow = target.personal_overflow_seconds
            updated = copy.deepcopy(doc)
            updated.update(
                status="waiting",
                service=target_name,
                reason="transfer",
                priority=target.priority,
                round=int(doc["round"]) + 1,
                offers_in_round=0,
                requested_at=now,
                request_id=str(msg.message_id),
                preferred_agent_id=None,
                preferred_until=None,
                personal_agent_id=msg.to_agent_id,
                personal_until=(
                    now + timedelta(seconds=overflow) if msg.to_agent_id and overflow else None
                ),
                declined=[],
                offer=None,
                offer_id=None,
                agent_id=None,
                history=[
                    *doc.get("history", []),
                    {
                        "at": now,
                        "what": "transferred",
                        "from_agent": msg.agent_id,
                        "from_service": doc["service"],
                        "to_service": target_name,
                        "to_agent": msg.to_agent_id,
                        "reason": msg.reason,
                    },
                ],
                version=doc["version"] + 1,
            )
            updated["due"] = domain.work_due(updated, now)
            if not await self._replace_work(doc["version"], updated):
                metrics.CAS_CONFLICTS.labels("transfer").inc()
                continue
            await self.release_hold(msg.agent_id, interaction_id=doc["_id"])
            await self.emit(
                InteractionTransferred.caused_by(
                    msg,
                    interaction_id=doc["_id"],
                    from_agent_id=msg.agent_id,
                    channel=doc["channel"],
                    from_service=doc["service"],
                    to_service=target_name,
                    to_agent_id=msg.to_agent_id,
                    reason=msg.reason,
                )
            )
            await self.emit(
                InteractionQueued.caused_by(
                    msg,
                    interaction_id=doc["_id"],
                    channel=doc["channel"],
                    service=target_name,
                    personal_agent_id=msg.to_agent_id,
                )
            )
            await self.dispatch_work(doc["_id"])
            await self.dispatch_agent(msg.agent_id)
            return {
                "interaction_id": doc["_id"],
                "service": target_name,
                "to_agent_id": msg.to_agent_id,
            }
        raise RuntimeError(f"{msg.interaction_id} kept changing while transferring: retry")

"""Supervisor views: queue depth and waits, live assignments, queue gauges."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from switchboard.routing import domain, metrics
from switchboard.routing.handlers.core import (
    RouterCore,
)
from switchboard.routing.store import (
    utcnow,
)

log = structlog.get_logger("switchboard.routing")


class Views(RouterCore):
    """Read-only views of the live work."""

    # --- views ----------------------------------------------------------------------------

    async def queue_view(self, only: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
        now = utcnow()
        wanted = set(only)
        services = await self.catalog.all(fresh=True)
        view: dict[str, dict[str, Any]] = {
            name: {
                "depth": 0,
                "oldest_wait_seconds": 0.0,
                "offered": 0,
                "assigned": 0,
                "personal": 0,
            }
            for name in services
            if not wanted or name in wanted
        }
        for item in await self.store.live_work_summary():
            name = item.service
            if wanted and name not in wanted:
                continue
            row = view.setdefault(
                name,
                {
                    "depth": 0,
                    "oldest_wait_seconds": 0.0,
                    "offered": 0,
                    "assigned": 0,
                    "personal": 0,
                },
            )
            if item.status == "waiting":
                if item.personal_agent_id:
                    row["personal"] += 1
                else:
                    row["depth"] += 1
                waited = round((now - item.queued_at).total_seconds(), 3)
                row["oldest_wait_seconds"] = max(row["oldest_wait_seconds"], waited)
            else:
                row[item.status] += 1
        return view

    async def update_gauges(self) -> None:
        if not self.hints.gauges_due():
            return
        async with self.hints.refreshing_gauges():
            view = await self.queue_view()
        metrics.report_queues(view)

    async def agent_services(self, agent_id: str) -> list[str]:
        """The services whose team the agent is in (logged in or not); none if unknown."""
        record = await self.store.get_agent(agent_id)
        if record is None:
            return []
        agent = domain.agent_from(record, self.store.default_capacity, utcnow())
        services = await self.catalog.all()
        return sorted(s.name for s in services.values() if domain.in_team(agent, s))

    async def live_assignments(self, agent_ids: list[str]) -> dict[str, Any]:
        found: dict[str, list[str]] = {a: [] for a in agent_ids}
        for interaction_id, agent_id in await self.store.assigned(agent_ids or None):
            found.setdefault(agent_id, []).append(interaction_id)
        return {"assignments": found}

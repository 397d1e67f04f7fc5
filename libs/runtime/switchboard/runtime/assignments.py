"""Ask routing, the owner of assignments, whether an agent holds an interaction now (and which
services an agent belongs to).

Services that own work (threading, the dialer) and agent-state learn of assignments from
``interaction.assigned``, which travels on its own queue; when a person acts before that event
arrives, or a copy of it arrives late, routing's answer settles it.
"""

from __future__ import annotations

import structlog

from switchboard.contracts.routing import AgentServicesRequested, LiveAssignmentsRequested
from switchboard.runtime.bus import Bus

log = structlog.get_logger("switchboard.assignments")


async def routing_holds(
    bus: Bus, agent_id: str, interaction_id: str, *, timeout: float = 5.0
) -> bool | None:
    """True or False as routing says; None when routing did not answer (the caller decides)."""
    try:
        outcome = await bus.request(LiveAssignmentsRequested(agent_ids=[agent_id]), timeout=timeout)
    except Exception as exc:
        log.warning("routing did not answer the assignment check", error=repr(exc))
        return None
    if not outcome.ok:
        return None
    return interaction_id in (outcome.result.get("assignments") or {}).get(agent_id, [])


async def agent_services(bus: Bus, agent_id: str, *, timeout: float = 5.0) -> list[str] | None:
    """The services the agent belongs to, as routing says; None when routing did not answer
    (the caller refuses what needed them)."""
    try:
        outcome = await bus.request(AgentServicesRequested(agent_id=agent_id), timeout=timeout)
    except Exception as exc:
        log.warning("routing did not answer the agent's services", error=repr(exc))
        return None
    if not outcome.ok:
        return None
    return [str(s) for s in outcome.result.get("services") or []]

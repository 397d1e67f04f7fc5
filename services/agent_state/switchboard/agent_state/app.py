"""Agent-state service: settings, wiring, entry point."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import Field

from switchboard.agent_state import domain
from switchboard.agent_state.handlers import AgentStateHandlers
from switchboard.agent_state.store import AgentStore
from switchboard.contracts.agents import (
    AgentHeartbeat,
    AgentProfileChanged,
    AgentStateChanged,
    AgentStatesRequested,
    ForceAgentState,
    LogIn,
    LogOut,
    RegisterAgent,
    SetNotReady,
    SetReady,
    Skill,
    StateHistoryRequested,
    StateReportRequested,
)
from switchboard.contracts.queues import agent_state as queues
from switchboard.contracts.routing import InteractionAssigned, InteractionEnded, OfferTimedOut
from switchboard.runtime.jobs import PeriodicJob
from switchboard.runtime.service import Runtime, serve
from switchboard.runtime.settings import ServiceSettings

log = structlog.get_logger("switchboard.agent_state")

DEFAULT_REASONS = ("Break", "Lunch", "Meeting", "Training", "Coaching", "Personal")


class AgentStateSettings(ServiceSettings):
    agents_file: Path | None = Field(
        default=None, description="JSON of demo agents (+ Not Ready reasons), seeded when empty"
    )
    not_ready_reasons: list[str] | None = Field(
        default=None,
        description="allowed Not Ready reasons (JSON list); else the agents file's, else defaults",
    )
    wrap_up_max_seconds: float = Field(
        default=120.0, ge=0, description="wrap-up limit; 0 = no limit"
    )
    wrap_up_timeout_state: Literal["ready", "not_ready"] = "ready"
    wrap_up_timeout_reason: str = "wrap-up time exceeded"
    heartbeat_timeout_seconds: float = Field(
        default=30.0, gt=0, description="no heartbeat this long: Not Ready (connection lost)"
    )
    presence_logout_seconds: float = Field(
        default=300.0, gt=0, description="no heartbeat this long: Logged out"
    )
    connection_lost_reason: str = "connection lost"
    timer_poll_seconds: float = Field(default=1.0, gt=0)
    presence_poll_seconds: float = Field(default=2.0, gt=0)
    outbox_relay_seconds: float = Field(
        default=2.0, gt=0, description="retry of this replica's failed publishes"
    )
    outbox_sweep_seconds: float = Field(
        default=30.0, gt=0, description="full scan for events any replica left unpublished"
    )
    timer_repair_seconds: float = Field(default=300.0, gt=0)
    reconcile_interval_seconds: float = Field(default=60.0, gt=0)
    reconcile_timeout_seconds: float = Field(default=5.0, gt=0)
    gauges_seconds: float = Field(default=30.0, gt=0)


def load_agents_file(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Profiles and Not Ready reasons from the demo file (validated like a RegisterAgent)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    profiles: list[tuple[str, dict[str, Any]]] = []
    for item in data.get("agents", []):
        skills = [Skill.model_validate(s).model_dump() for s in item.get("skills", [])]
        profiles.append(
            (
                str(item["agent_id"]),
                {
                    "name": str(item["name"]),
                    "teams": sorted(set(item.get("teams", []))),
                    "skills": skills,
                    "capacity": dict(sorted(item.get("capacity", {}).items())),
                    "active": bool(item.get("active", True)),
                },
            )
        )
    return profiles, [str(r) for r in data.get("not_ready_reasons", [])]


def make_policy(settings: AgentStateSettings, file_reasons: list[str]) -> domain.Policy:
    reasons = settings.not_ready_reasons or file_reasons or list(DEFAULT_REASONS)
    return domain.Policy(
        not_ready_reasons=tuple(reasons),
        wrap_up_max=(
            timedelta(seconds=settings.wrap_up_max_seconds)
            if settings.wrap_up_max_seconds > 0
            else None
        ),
        wrap_up_timeout_state=settings.wrap_up_timeout_state,
        wrap_up_timeout_reason=settings.wrap_up_timeout_reason,
        heartbeat_timeout=timedelta(seconds=settings.heartbeat_timeout_seconds),
        presence_logout_after=timedelta(
            seconds=max(settings.presence_logout_seconds, settings.heartbeat_timeout_seconds)
        ),
        connection_lost_reason=settings.connection_lost_reason,
    )


def build(settings: AgentStateSettings) -> Runtime:
    runtime = Runtime("agent_state", settings)
    store = AgentStore(runtime.db)
    seed: list[tuple[str, dict[str, Any]]] = []
    file_reasons: list[str] = []
    if settings.agents_file is not None:
        seed, file_reasons = load_agents_file(settings.agents_file)
    policy = make_policy(settings, file_reasons)
    handlers = AgentStateHandlers(
        store,
        runtime.bus,
        policy,
        reconcile_timeout=settings.reconcile_timeout_seconds,
    )
    runtime.on_start(store.ensure_indexes)

    @runtime.on_start
    async def seed_demo_agents() -> None:
        if seed and await store.is_empty():
            added = await store.seed(seed)
            log.info("demo agents seeded", count=added, file=str(settings.agents_file))

    bus = runtime.bus
    bus.publishes(AgentStateChanged, AgentProfileChanged)
    bus.consume(queues.REGISTER, RegisterAgent, handlers.on_register)
    # A state command's id is remembered in the agent's own write (a repeat changes nothing),
    # a heartbeat repeated says only again that the desktop is alive, and a query changes
    # nothing: none needs the processed-message ledger's two writes per message.
    bus.consume(queues.LOG_IN, LogIn, handlers.on_log_in, ledger=False)
    bus.consume(queues.LOG_OUT, LogOut, handlers.on_log_out, ledger=False)
    bus.consume(queues.SET_READY, SetReady, handlers.on_set_ready, ledger=False)
    bus.consume(queues.SET_NOT_READY, SetNotReady, handlers.on_set_not_ready, ledger=False)
    bus.consume(queues.HEARTBEATS, AgentHeartbeat, handlers.on_heartbeat, ledger=False)
    bus.consume(queues.FORCE_STATE, ForceAgentState, handlers.on_force_state, ledger=False)
    bus.consume(queues.STATES, AgentStatesRequested, handlers.on_states_requested, ledger=False)
    bus.consume(queues.STATE_REPORT, StateReportRequested, handlers.on_state_report, ledger=False)
    bus.consume(
        queues.STATE_HISTORY, StateHistoryRequested, handlers.on_state_history, ledger=False
    )
    bus.consume(queues.OFFER_TIMED_OUT, OfferTimedOut, handlers.on_offer_timed_out)
    bus.consume(queues.ASSIGNED, InteractionAssigned, handlers.on_assigned)
    bus.consume(queues.ENDED, InteractionEnded, handlers.on_ended)

    runtime.jobs(
        [
            PeriodicJob(
                "wrap-up timers", settings.timer_poll_seconds, handlers.fire_wrap_up_timers
            ),
            PeriodicJob(
                "presence timers", settings.presence_poll_seconds, handlers.fire_presence_timers
            ),
            PeriodicJob("timer repair", settings.timer_repair_seconds, handlers.repair_timers),
            PeriodicJob("outbox retry", settings.outbox_relay_seconds, handlers.relay_outbox),
            PeriodicJob("outbox sweep", settings.outbox_sweep_seconds, handlers.sweep_outbox),
            PeriodicJob(
                "reconcile with routing", settings.reconcile_interval_seconds, handlers.reconcile
            ),
            PeriodicJob("agent gauges", settings.gauges_seconds, handlers.refresh_gauges),
        ]
    )
    return runtime


def main() -> None:
    serve(build(AgentStateSettings()))

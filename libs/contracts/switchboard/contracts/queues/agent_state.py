"""The queues the agent-state service consumes: one per message, so each carries one schema."""

from __future__ import annotations

from switchboard.contracts.agents import (
    AgentHeartbeat,
    AgentStatesRequested,
    ForceAgentState,
    LogIn,
    LogOut,
    RegisterAgent,
    SetNotReady,
    SetReady,
    StateHistoryRequested,
    StateReportRequested,
)
from switchboard.contracts.base import Message
from switchboard.contracts.routing import InteractionAssigned, InteractionEnded, OfferTimedOut
from switchboard.contracts.topology import ConsumerQueue


def _queue(message: type[Message]) -> ConsumerQueue:
    return ConsumerQueue(f"agent_state.{message.NAME}", (message.NAME,))


REGISTER = _queue(RegisterAgent)
LOG_IN = _queue(LogIn)
LOG_OUT = _queue(LogOut)
SET_READY = _queue(SetReady)
SET_NOT_READY = _queue(SetNotReady)
HEARTBEATS = _queue(AgentHeartbeat)
FORCE_STATE = _queue(ForceAgentState)
STATES = _queue(AgentStatesRequested)
STATE_REPORT = _queue(StateReportRequested)
STATE_HISTORY = _queue(StateHistoryRequested)
OFFER_TIMED_OUT = _queue(OfferTimedOut)
ASSIGNED = _queue(InteractionAssigned)
ENDED = _queue(InteractionEnded)

ALL = (
    REGISTER,
    LOG_IN,
    LOG_OUT,
    SET_READY,
    SET_NOT_READY,
    HEARTBEATS,
    FORCE_STATE,
    STATES,
    STATE_REPORT,
    STATE_HISTORY,
    OFFER_TIMED_OUT,
    ASSIGNED,
    ENDED,
)

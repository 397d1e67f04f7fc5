"""The queues the reporting read model consumes: one per message, so each carries one schema."""

from __future__ import annotations

from switchboard.contracts.agents import AgentStateChanged
from switchboard.contracts.base import Message
from switchboard.contracts.campaigns import (
    CallProgressed,
    DialRequested,
    RecordClosed,
    RecordCompleted,
    RecordDispositioned,
    RecordRescheduled,
    RecordSkipped,
)
from switchboard.contracts.cases import (
    CaseClosed,
    CaseCreated,
    CaseEmailAttached,
    CaseOutboundRequested,
    CaseReopened,
    CaseServiceChanged,
    CaseStatusChanged,
    CaseTransferred,
)
from switchboard.contracts.reports import (
    AgentReportRequested,
    CampaignReportRequested,
    ServiceReportRequested,
)
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    InteractionTransferred,
    OfferMade,
    OfferTimedOut,
)
from switchboard.contracts.topology import ConsumerQueue


def _queue(message: type[Message]) -> ConsumerQueue:
    return ConsumerQueue(f"reporting.{message.NAME}", (message.NAME,))


EVENTS: tuple[type[Message], ...] = (
    CaseCreated,
    CaseEmailAttached,
    CaseClosed,
    CaseReopened,
    CaseTransferred,
    CaseServiceChanged,
    CaseStatusChanged,
    CaseOutboundRequested,
    OfferMade,
    OfferTimedOut,
    InteractionAssigned,
    InteractionEnded,
    InteractionTransferred,
    AgentStateChanged,
    DialRequested,
    CallProgressed,
    RecordCompleted,
    RecordSkipped,
    RecordRescheduled,
    RecordDispositioned,
    RecordClosed,
)
"""Every event the read model folds, each on its own queue."""

EVENT_QUEUES = {message: _queue(message) for message in EVENTS}
SERVICE_REPORT = _queue(ServiceReportRequested)
AGENT_REPORT = _queue(AgentReportRequested)
CAMPAIGN_REPORT = _queue(CampaignReportRequested)

ALL = (*EVENT_QUEUES.values(), SERVICE_REPORT, AGENT_REPORT, CAMPAIGN_REPORT)

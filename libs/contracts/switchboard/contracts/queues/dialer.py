"""The queues the campaign dialer consumes: one per message type it validates.

The telephony simulator (``TELEPHONY``) runs inside the dialer when ``SB_TELEPHONY=simulator``; a
real PBX adapter consumes the same queue from its own process instead.
"""

from __future__ import annotations

from switchboard.contracts import campaigns as c
from switchboard.contracts import routing as r
from switchboard.contracts.agents import AgentStateChanged
from switchboard.contracts.base import Message
from switchboard.contracts.topology import ConsumerQueue


def _one(message: type[Message]) -> ConsumerQueue:
    return ConsumerQueue(f"dialer.{message.NAME}", (message.NAME,))


CREATE_CAMPAIGN = _one(c.CreateCampaign)
UPDATE_CAMPAIGN = _one(c.UpdateCampaign)
CHANGE_DNC = _one(c.ChangeDoNotCall)
IMPORT_RECORDS = _one(c.ImportRecords)
GET_IMPORT = _one(c.GetImport)
GET_REPORT = _one(c.GetCampaignReport)
LIST_CAMPAIGNS = _one(c.ListCampaigns)
CAMPAIGN_HISTORY = _one(c.CampaignHistoryRequested)

ACCEPT_RECORD = _one(c.AcceptRecord)
REJECT_RECORD = _one(c.RejectRecord)
GET_RECORD = _one(c.GetRecord)
COMPLETE_RECORD = _one(c.CompleteRecord)
SKIP_RECORD = _one(c.SkipRecord)
CALL_NUMBER = _one(c.CallNumber)
SET_DISPOSITION = _one(c.SetCallDisposition)
RESCHEDULE_RECORD = _one(c.RescheduleRecord)

OFFERS_MADE = _one(r.OfferMade)
OFFERS_REJECTED = _one(r.OfferRejected)
OFFERS_TIMED_OUT = _one(r.OfferTimedOut)
ASSIGNMENTS = _one(r.InteractionAssigned)
AGENT_STATES = _one(AgentStateChanged)

CALL_PROGRESS = _one(c.CallProgressed)
TELEPHONY = ConsumerQueue("telephony.dial_requests", (c.DialRequested.NAME,))

JOURNAL = ConsumerQueue(
    "dialer.record_journal",
    (
        c.RecordCompleted.NAME,
        c.RecordSkipped.NAME,
        c.RecordRescheduled.NAME,
        c.RecordDispositioned.NAME,
        c.RecordClosed.NAME,
    ),
)
"""The dialer keeps its own journal of record events (and so they always have a route)."""

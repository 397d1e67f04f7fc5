"""The queues the threading service consumes: one queue per message type.

``Bus.consume`` validates a queue's messages into one model (the body does not name its type),
so each command has a queue of its own. Inbound mail, agent commands, queries and signals from
other services are thereby also kept apart: a burst of mail never delays an agent's click.
"""

from __future__ import annotations

from switchboard.contracts import casebook, cases
from switchboard.contracts.base import Message
from switchboard.contracts.mail import EmailDeliveryFailed, EmailReceived, EmailSent
from switchboard.contracts.routing import InteractionAssigned
from switchboard.contracts.topology import ConsumerQueue


def _queue_for(message: type[Message]) -> ConsumerQueue:
    return ConsumerQueue(f"threading.{message.NAME}", (message.NAME,))


EMAILS_RECEIVED = _queue_for(EmailReceived)
"""Customer mail to file under a case."""

ASSIGNMENTS = _queue_for(InteractionAssigned)
"""Which agent holds which case interaction (authorises commands, records who worked a case)."""

EMAILS_SENT = _queue_for(EmailSent)
DELIVERY_FAILED = _queue_for(EmailDeliveryFailed)
"""What became of the outbound mail threading asked for."""

COMMAND_MESSAGES: tuple[type[Message], ...] = (
    cases.ReplyToCase,
    cases.ForwardEmail,
    cases.SendFollowUp,
    cases.SendNewOutbound,
    cases.SaveDraft,
    cases.UpdateDraft,
    cases.DiscardDraft,
    cases.CloseCase,
    cases.TransferCase,
    cases.ChangeCaseService,
    cases.MaskCaseData,
    cases.AddCaseNote,
    cases.SetDisposition,
    cases.SaveReplyTemplate,
    cases.DeleteReplyTemplate,
    cases.RecordUpload,
    casebook.OpenCaseByHand,
    casebook.SetCaseStatus,
)
QUERY_MESSAGES: tuple[type[Message], ...] = (
    cases.GetCaseThread,
    cases.LookUpCase,
    cases.ListReplyTemplates,
    cases.CaseHistoryRequested,
    casebook.ListMyCases,
    casebook.SearchCases,
    casebook.GetContactHistory,
)

COMMANDS: dict[str, ConsumerQueue] = {m.NAME: _queue_for(m) for m in COMMAND_MESSAGES}
"""Agent and supervisor commands on cases (sent with Bus.request by the gateway)."""

QUERIES: dict[str, ConsumerQueue] = {m.NAME: _queue_for(m) for m in QUERY_MESSAGES}
"""Read-only questions: the thread view and case lookup."""

ALL: tuple[ConsumerQueue, ...] = (
    EMAILS_RECEIVED,
    ASSIGNMENTS,
    EMAILS_SENT,
    DELIVERY_FAILED,
    *COMMANDS.values(),
    *QUERIES.values(),
)

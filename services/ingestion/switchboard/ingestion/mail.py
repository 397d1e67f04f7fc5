"""One received mail as stored: a typed aggregate with the events it still has to announce.

A mail is written once when it first arrives, after its events were published: its outbox is
empty then and every mailbox it is for is in ``published_for``. Only when a publish failed
(the sender is told to try again) are the events left in the outbox, for the sender's retry or
the outbox sweep to publish. Transitions here are pure; the store writes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, Field, model_validator

from switchboard.runtime.storage import WithOutbox

Document = dict[str, Any]


class Target(BaseModel):
    """A mailbox of ours the mail is for, and the service that owns it."""

    mailbox: str
    service: str


def pending_event(name: str, mailboxes: list[str], body: Document) -> Document:
    """An outbox entry: the event (by contract name, as JSON) and the mailboxes it serves."""
    return {"name": name, "mailboxes": mailboxes, "body": body}


class Mail(WithOutbox):
    """A distinct raw message (``_id`` = SHA-256 of its bytes) and what became of it."""

    size: int
    channel: str
    mailbox: str
    service: str
    targets: list[Target]
    received_at: datetime
    envelope_sender: str | None = None
    recipients: list[str] = Field(default_factory=list)
    source: str = ""
    cards_masked: int = 0
    state: str = "pending"
    published_for: list[str] = Field(default_factory=list)
    also: list[Document] = Field(default_factory=list)
    event: str | None = None
    reason: str | None = None
    internet_message_id: str | None = None
    classification: str | None = None
    defects: list[str] = Field(default_factory=list)
    html_ref: str | None = None
    text_ref: str | None = None
    published_at: datetime | None = None
    masked: Document | None = None

    @model_validator(mode="before")
    @classmethod
    def _older_documents(cls, data: Any) -> Any:
        """Documents written before ``targets``/``published_for`` name their one mailbox."""
        if isinstance(data, dict):
            if "targets" not in data and "mailbox" in data:
                data = {
                    **data,
                    "targets": [{"mailbox": data["mailbox"], "service": data["service"]}],
                }
            if "published_for" not in data and data.get("state") == "done":
                data = {**data, "published_for": [data["mailbox"]]}
        return data

    def missing(self, wanted: list[Target]) -> list[Target]:
        """Those of ``wanted`` whose event is not confirmed yet."""
        done = set(self.published_for)
        return [t for t in wanted if t.mailbox not in done]

    def unannounced(self, wanted: list[Target]) -> list[Target]:
        """Those of ``wanted`` with no confirmed event and none waiting in the outbox."""
        queued = {m for message in self.outbox for m in message["mailboxes"]}
        return [t for t in self.missing(wanted) if t.mailbox not in queued]

    def new_targets(self, wanted: list[Target]) -> list[Target]:
        known = {t.mailbox for t in self.targets}
        return [t for t in wanted if t.mailbox not in known]

    def after_publishing(
        self, targets: list[Target], sent: list[Document], unsent: list[Document]
    ) -> Self:
        """The mail once ``targets`` are added, ``sent`` confirmed and ``unsent`` left to do."""
        mailboxes = [m for message in sent for m in message["mailboxes"]]
        return self._settled(
            targets=[*self.targets, *self.new_targets(targets)],
            published_for=sorted({*self.published_for, *mailboxes}),
            outbox=[*self.outbox, *unsent],
        )

    def published(self, message: Document) -> Self | None:
        if message not in self.outbox:
            return None
        return self._settled(
            targets=self.targets,
            published_for=sorted({*self.published_for, *message["mailboxes"]}),
            outbox=[m for m in self.outbox if m != message],
        )

    def seen_again(self, source: Document) -> Self:
        """Remember another way the same bytes reached us (for operators); bounded list."""
        return self.model_copy(update={"also": [*self.also[-19:], source]})

    def _settled(
        self, *, targets: list[Target], published_for: list[str], outbox: list[Document]
    ) -> Self:
        complete = not outbox and {t.mailbox for t in targets} <= set(published_for)
        return self.model_copy(
            update={
                "targets": targets,
                "published_for": published_for,
                "outbox": outbox,
                "unpublished": bool(outbox),
                "state": "done" if complete else "pending",
            }
        )

"""The documents threading stores, typed: each is read into its model, changed as a model and
written back by the kernel's ``VersionedCollection`` (one version-guarded write).

Fields not modelled (older documents' extras) are kept through a load and a dump
(``extra="allow"``); emails, drafts and templates dump exactly the fields that were set, so a
document written through its model keeps the shape it had.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from switchboard.runtime.storage import HoldsOutbox, Versioned
from switchboard.threading.domain.case import Case
from switchboard.threading.domain.email import Email

Document = dict[str, Any]
HANDLED_KEEP = timedelta(hours=24)


class HandledMessage(BaseModel):
    """A message that changed the case, kept a day: its retry gets ``result`` and changes
    nothing again."""

    result: Any = None
    at: datetime


class CaseRecord(Case, HoldsOutbox):
    """A case as the kernel stores it (keyed by its number): the typed ``Case``, its outbox and
    the messages it was changed by."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    handled: dict[str, HandledMessage] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_keyed_outbox(cls, data: Any) -> Any:
        """A case stored before the kernel's outbox (``outbox`` a dict of entries keyed by
        the handled message, each with ``published``; ``outbox_pending``) is read in today's
        shape: its answers become ``handled``, its unpublished messages the outbox."""
        if not isinstance(data, dict) or not isinstance(data.get("outbox"), dict):
            return data
        data = dict(data)
        entries: dict[str, Document] = data.pop("outbox")
        data.pop("outbox_pending", None)
        handled = dict(data.get("handled") or {})
        waiting: list[Document] = []
        for key, entry in entries.items():
            handled.setdefault(key, {"result": entry.get("result") or {}, "at": _at(entry)})
            if not entry.get("published"):
                waiting += [{**m, "command": key} for m in entry.get("messages", [])]
        data.update(outbox=waiting, unpublished=bool(waiting), handled=handled)
        data.setdefault("changed_at", data.get("updated_at") or _now())
        return data

    def sent_by(self, key: str) -> list[Document]:
        """The messages of handled message ``key`` not published yet."""
        return [m for m in self.outbox if m.get("command") == key]


class Delivery(BaseModel):
    """What the mail edge last said of an outbound email."""

    model_config = ConfigDict(extra="allow")

    status: str
    detail: str | None = None
    at: datetime | None = None


class EmailRecord(Email, Versioned):
    """An email as stored, with the version its changes are guarded by (an email stored
    before it had one is at version 0)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    raw_email_ids: list[str] = Field(default_factory=list)
    mailboxes: list[str] = Field(default_factory=list)
    delivery: Delivery | None = None

    def document(self) -> Document:
        return self.model_dump(by_alias=True, exclude_unset=True)

    def with_copy(self, email_id: str, mailbox: str) -> EmailRecord | None:
        """The email also received as ``email_id`` in ``mailbox`` (None: known already)."""
        raw = [*self.raw_email_ids, *([email_id] if email_id not in self.raw_email_ids else [])]
        boxes = [*self.mailboxes, *([mailbox] if mailbox not in self.mailboxes else [])]
        if (raw, boxes) == (self.raw_email_ids, self.mailboxes):
            return None
        return self.model_copy(update={"raw_email_ids": raw, "mailboxes": boxes})


class DraftRecord(Versioned):
    """An agent's draft of a case (``drafts``), changed under its version."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    id: str = Field(alias="_id")
    case_number: int
    agent_id: str
    kind: str
    reply_to_email_id: str | None = None
    content: Document = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None
    last_update: str | None = None
    """The command that wrote this version (a retry of it changes nothing)."""

    def document(self) -> Document:
        return self.model_dump(by_alias=True, exclude_unset=True)


class TemplateRecord(Versioned):
    """A reply template as stored (``templates``); a deleted one stays, marked, so its
    versions go on if the id is used again."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    id: str = Field(alias="_id")
    name: str = ""
    services: list[str] = Field(default_factory=list)
    subject: str | None = None
    text: str = ""
    html: str | None = None
    deleted: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None
    last_change: str | None = None
    """The command that wrote this version (a retry of it changes nothing)."""

    def document(self) -> Document:
        return self.model_dump(by_alias=True, exclude_unset=True)


def with_outbox(
    draft: Document, waiting: list[Document], key: str, messages: list[Document], result: Any
) -> CaseRecord:
    """The changed case document with message ``key``'s messages queued after those waiting,
    its answer kept (and answers older than a day let go)."""
    now = _now()
    handled = {
        k: v
        for k, v in (draft.get("handled") or {}).items()
        if _aware(v.get("at") if isinstance(v, dict) else None) >= now - HANDLED_KEEP
    }
    handled[key] = {"result": result, "at": now}
    queued = [*waiting, *({**m, "command": key} for m in messages)]
    draft.update(
        outbox=queued, unpublished=bool(queued), handled=handled, changed_at=now, updated_at=now
    )
    return CaseRecord.model_validate(draft)


def _at(entry: Document) -> datetime:
    return _aware(entry.get("at"))


def _aware(value: Any) -> datetime:
    if not isinstance(value, datetime):
        return _now()
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)

"""The case aggregate, typed: mypy checks the fields code names (a misspelt one is an error).

A case is stored as one document (``cases``, ``_id`` = case number). Fields not modelled here
yet (``first_response_at``, ...) are kept as they are through a
load and a dump (``extra="allow"``), so reading a case through the model never loses anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from switchboard.threading.domain.common import Document

CaseStatus = Literal["open", "closed"]
InteractionState = Literal["idle", "routing", "assigned", "ended"]


class Interaction(BaseModel):
    """The case's current routing round (``case-<n>`` or ``case-<n>.<round>``)."""

    model_config = ConfigDict(extra="allow")

    round: int = 0
    state: InteractionState = "idle"
    id: str | None = None
    agent_id: str | None = None


class Case(BaseModel):
    """A case as stored."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    id: int = Field(alias="_id")
    number: int
    status: CaseStatus = "open"
    service: str
    contact: dict[str, str] | None = None
    subject: str = ""
    thread_id: str | None = None
    origin: str | None = None
    channel: str = "email"
    work_status: str | None = None
    """The service's own status (custom statuses, e.g. pending customer); None: ``status``."""
    sla_pauses: list[dict[str, Any]] = Field(default_factory=list)
    first_email: str | None = None
    agents: list[str] = Field(default_factory=list)
    dispositions: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[dict[str, Any]] = Field(default_factory=list)
    linked_cases: list[int] = Field(default_factory=list)
    participants: list[str] = Field(default_factory=list)
    email_keys: list[str] = Field(default_factory=list)
    history: list[dict[str, Any]] = Field(default_factory=list)
    interaction: Interaction = Field(default_factory=Interaction)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    closed_at: datetime | None = None
    reopened_at: datetime | None = None
    closed_by: str | None = None
    final_disposition: str | None = None
    last_inbound_at: datetime | None = None
    last_outbound_at: datetime | None = None
    filed_unrouted: str | None = None
    version: int = 0

    @classmethod
    def load(cls, document: Document) -> Case:
        return cls.model_validate(document)

    def document(self) -> Document:
        """The document to store (extra fields included, as loaded)."""
        return self.model_dump(by_alias=True)

    @property
    def assigned_agent_id(self) -> str | None:
        """The agent holding the case's current round, if one does."""
        return self.interaction.agent_id if self.interaction.state == "assigned" else None

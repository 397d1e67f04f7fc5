"""Per-service threading configuration (the demo file is deploy/demo/threading.json).

Stored in the ``service_config`` collection (one document per service), seeded from the file
named by ``SB_THREADING_CONFIG_FILE`` when the collection is empty, re-read periodically.
A mail for a service nobody configured gets the ``"*"`` entry, or built-in defaults.
The same file may hold reply templates (``"templates"``), seeded into the ``templates``
collection when that is empty.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from switchboard.contracts.mail import OutboundAddress
from switchboard.threading.subjects import DEFAULT_TAG_FORMAT, check_tag_format
from switchboard.threading.templates import ReplyTemplate

DEFAULT_SERVICE = "*"


class DispositionConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    final: bool = False


class WorkStatusConfig(BaseModel):
    """A work status of an open case; a ``pending`` one (waiting for the customer or a third
    party) pauses the service-level clock. "closed" is not one: a final disposition closes."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    pending: bool = False

    @field_validator("name")
    @classmethod
    def _not_closed(cls, value: str) -> str:
        if value.strip().casefold() == "closed":
            raise ValueError("'closed' is not a work status: a final disposition closes a case")
        return value.strip()


def _default_statuses() -> list[WorkStatusConfig]:
    return [
        WorkStatusConfig(name="open"),
        WorkStatusConfig(name="pending customer", pending=True),
        WorkStatusConfig(name="pending third party", pending=True),
    ]


class ClosedCasePolicy(BaseModel):
    """What a follow-up to a closed case does.

    ``reopen``: reopen it when it closed at most ``reopen_within_days`` ago, else open a new
    linked case; ``new_linked``: always a new case linked to the closed one; ``reject``: file the
    mail under the closed case without reopening it and answer automatically.
    """

    model_config = ConfigDict(frozen=True)

    mode: Literal["reopen", "new_linked", "reject"] = "reopen"
    reopen_within_days: float = Field(default=14, ge=0)
    reject_subject: str = "Your case {case_number} is closed"
    reject_text: str = (
        "Thank you for your message. Case {case_number} is closed, so this message was not "
        "passed on. Please write to us again without the reference in the subject to open a "
        "new request."
    )


class AutoAckConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    enabled: bool = False
    per_recipient_limit: int = Field(default=3, ge=1)
    window_minutes: int = Field(default=60, ge=1)
    subject: str = "We received your message (case {case_number})"
    text: str = (
        "Thank you for contacting us. Your case number is {case_number}; please keep the "
        "reference in the subject when you write about this request again."
    )


class ServiceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = DEFAULT_SERVICE
    sender: OutboundAddress = OutboundAddress(
        name="Customer Service", address="support@switchboard.example"
    )
    dispositions: list[DispositionConfig] = Field(
        default_factory=lambda: [
            DispositionConfig(name="Resolved", final=True),
            DispositionConfig(name="Awaiting customer", final=False),
        ]
    )
    closed_case: ClosedCasePolicy = ClosedCasePolicy()
    thread_id_placement: Literal["subject", "header", "both"] = "subject"
    subject_tag_format: str = DEFAULT_TAG_FORMAT
    auto_ack: AutoAckConfig = AutoAckConfig()
    follow_up_to_previous_agent: bool = True
    mask_card_numbers: bool = True
    wrap_up: bool = Field(default=False, description="agents go to After Call Work after email")
    statuses: list[WorkStatusConfig] = Field(
        default_factory=_default_statuses,
        description="work statuses of an open case; the first is the one a case opens with",
    )

    @field_validator("subject_tag_format")
    @classmethod
    def _tag_format(cls, value: str) -> str:
        return check_tag_format(value)

    def disposition(self, name: str) -> DispositionConfig | None:
        for item in self.dispositions:
            if item.name.casefold() == name.casefold():
                return item
        return None

    def status(self, name: str) -> WorkStatusConfig | None:
        for item in self.statuses:
            if item.name.casefold() == name.strip().casefold():
                return item
        return None

    @property
    def tag_in_subject(self) -> bool:
        return self.thread_id_placement in ("subject", "both")

    @property
    def tag_in_header(self) -> bool:
        return self.thread_id_placement in ("header", "both")


class ThreadingConfig(BaseModel):
    """All services' configuration, looked up by service name."""

    model_config = ConfigDict(frozen=True)

    services: dict[str, ServiceConfig] = Field(default_factory=dict)

    def for_service(self, service: str) -> ServiceConfig:
        found = self.services.get(service) or self.services.get(DEFAULT_SERVICE)
        if found is None:
            return ServiceConfig(name=service)
        return found if found.name == service else found.model_copy(update={"name": service})

    def known(self, service: str) -> bool:
        return service in self.services

    def own_addresses(self) -> frozenset[str]:
        """Every address we send from: an automatic answer never goes to one (a loop)."""
        return frozenset(cfg.sender.address for cfg in self.services.values())

    @classmethod
    def from_documents(
        cls, documents: list[dict[str, Any]], previous: ThreadingConfig | None = None
    ) -> tuple[ThreadingConfig, dict[str, str]]:
        """The configuration in these documents, and the problems of those that do not
        validate (by service name). An operator's typo in one service's document must not
        take every service's configuration down: a broken entry keeps the service's previous
        configuration (if there was one) until it is fixed."""
        services: dict[str, ServiceConfig] = {}
        problems: dict[str, str] = {}
        for doc in documents:
            body = {k: v for k, v in doc.items() if k != "_id"}
            body.setdefault("name", doc["_id"])
            name = str(body["name"])
            try:
                services[name] = ServiceConfig.model_validate(body)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ())) or "document"
                problems[name] = f"{where}: {first.get('msg', exc)}"
                if previous is not None and name in previous.services:
                    services[name] = previous.services[name]
        return cls(services=services), problems


def load_file(path: Path) -> list[ServiceConfig]:
    """Read a config file: ``{"services": [{...}, ...]}`` or ``{"services": {"name": {...}}}``."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(raw, dict) and "services" not in raw:
        raw = {k: v for k, v in raw.items() if k != "templates"}
    entries = raw.get("services", raw) if isinstance(raw, dict) else raw
    if isinstance(entries, dict):
        entries = [{"name": name, **body} for name, body in entries.items()]
    return [ServiceConfig.model_validate(entry) for entry in entries]


def load_templates(path: Path) -> list[ReplyTemplate]:
    """The reply templates of a config file: ``{"templates": [{"template_id": ..., ...}]}`` or
    ``{"templates": {"<template_id>": {...}}}``; none when the file has no ``templates``. A
    template that does not compile, or uses an unknown variable, stops the start with the
    reason (better than an agent finding out in front of a customer)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    entries = raw.get("templates", []) if isinstance(raw, dict) else []
    if isinstance(entries, dict):
        entries = [{"template_id": key, **body} for key, body in entries.items()]
    return [ReplyTemplate.model_validate(entry) for entry in entries]

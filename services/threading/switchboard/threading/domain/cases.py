"""The case document: a new case, the emails and notes it collects, dispositions and closing.

Functions change the case in place (and return the messages a change causes); no I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from switchboard.contracts import Message
from switchboard.contracts import cases as c
from switchboard.threading import rules, statuses
from switchboard.threading.config import DispositionConfig, ServiceConfig
from switchboard.threading.domain.case import Case, Interaction
from switchboard.threading.domain.common import NS as _NS
from switchboard.threading.domain.common import Document
from switchboard.threading.domain.common import now as _now
from switchboard.threading.domain.rounds import end_interaction

UNMATCHED_AUTOMATIC = "unmatched_automatic_mail"
"""Why an auto-reply or bounce matching no case is filed closed."""


@dataclass(frozen=True)
class Intake:
    """How a received email is filed: ``action`` on case ``case_number`` (None: a new one)."""

    action: str
    case_number: int | None
    matched_by: str = ""
    linked_to: int | None = None
    new_participant: bool = False
    """Joined by the thread identifier from an address on no earlier message of the case."""


def file_closed(case: Document, classification: str) -> None:
    """A new case opened by an auto-reply or bounce that matched no case: closed at once,
    never routed (see :func:`rules.files_without_routing`)."""
    now = _now()
    case.update(status="closed", closed_at=now, closed_by="system", filed_unrouted=classification)
    case["history"].append(
        {"what": "closed", "at": now, "agent_id": None, "reason": UNMATCHED_AUTOMATIC}
    )


def add_email_to_case(case: Document, email: Document) -> None:
    keys = case.setdefault("email_keys", [])
    if email["_id"] not in keys:
        keys.append(email["_id"])
    participants = case.setdefault("participants", [])
    people = [email.get("from") or {}, *email.get("to", []), *email.get("cc", [])]
    people += email.get("reply_to", []) + email.get("bcc", [])
    for person in people:
        address = rules.address_key(person.get("address"))
        if address and address not in participants:
            participants.append(address)


def new_case(
    number: int,
    *,
    service: str,
    subject: str,
    contact: dict[str, str],
    origin: str,
    linked_to: int | None,
    first_email: str,
    agent_id: str | None = None,
) -> Document:
    """A new open case, not yet routed (its ``interaction`` idle)."""
    now = _now()
    return Case(
        id=number,
        number=number,
        status="open",
        service=service,
        contact=contact,
        subject=subject,
        thread_id=None,
        origin=origin,
        first_email=first_email,
        agents=[agent_id] if agent_id else [],
        linked_cases=[linked_to] if linked_to else [],
        history=[{"what": "created", "at": now, "agent_id": agent_id}],
        interaction=Interaction(),
        created_at=now,
        updated_at=now,
    ).document()


def add_note(
    case: Document, command: c.CaseCommand, text: str, email_key: str | None
) -> list[Message]:
    note_id = str(uuid.uuid5(_NS, f"note:{command.message_id}"))
    case.setdefault("notes", []).append(
        {
            "note_id": note_id,
            "text": text,
            "email_id": email_key,
            "agent_id": command.agent_id,
            "at": _now(),
        }
    )
    return [
        c.CaseNoteAdded.caused_by(
            command,
            key="note",
            case_number=case["_id"],
            note_id=note_id,
            email_id=email_key,
            agent_id=command.agent_id,
        )
    ]


def apply_disposition(
    case: Document,
    command: c.CaseCommand,
    found: DispositionConfig,
    email_key: str | None,
    cfg: ServiceConfig,
) -> list[Message]:
    """Record a disposition (of the service's, ``found``); a final one closes an open case and
    ends its routing round."""
    case.setdefault("dispositions", []).append(
        {
            "name": found.name,
            "final": found.final,
            "email_id": email_key,
            "agent_id": command.agent_id,
            "at": _now(),
        }
    )
    messages: list[Message] = [
        c.CaseDispositionSet.caused_by(
            command,
            key="disposition",
            case_number=case["_id"],
            disposition=found.name,
            final=found.final,
            email_id=email_key,
            agent_id=command.agent_id,
        )
    ]
    if found.final and case["status"] != "closed":
        case.update(
            status="closed",
            closed_at=_now(),
            closed_by=command.agent_id,
            final_disposition=found.name,
        )
        statuses.on_closed(case, case["closed_at"])
        case.setdefault("history", []).append(
            {
                "what": "closed",
                "at": _now(),
                "agent_id": command.agent_id,
                "disposition": found.name,
            }
        )
        messages += end_interaction(case, command, "closed", cfg)
        messages.append(
            c.CaseClosed.caused_by(
                command,
                key="closed",
                case_number=case["_id"],
                service=case["service"],
                disposition=found.name,
                agent_id=command.agent_id,
            )
        )
    return messages

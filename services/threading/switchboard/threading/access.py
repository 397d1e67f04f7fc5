"""Who may see and who may act on a case: the one rule (docs/security.md, "Who may do what").

* A supervisor sees and acts on every case.
* An agent **acts** on the case they hold (its interaction is assigned to them).
* An agent **sees** the cases they hold or have worked (``case.agents``) and the cases of their
  services (the services of their teams, as routing's projection of their profile says).
* Nobody else sees a case, not even that it exists: they get the answer of a case that is not
  there (``handlers.base.hidden_case``, the 404 of an unknown case number), never "not yours".

Every query or command naming a case, a thread identifier or an email of a case goes through
:func:`case_access` (threading's handlers), and so do the gateway's file routes, which first ask
threading for the thread view on the person's behalf. Attachments an agent sends are held to
:func:`attachment_problems`: only the case's own attachments or the agent's own uploads leave.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from enum import IntEnum
from typing import Any

from switchboard.contracts.mail import AttachmentRef

Document = dict[str, Any]


class Access(IntEnum):
    NONE = 0
    SEE = 1
    ACT = 2


def case_access(
    case: Document, agent_id: str, acting_role: str, services: Collection[str] = ()
) -> Access:
    """What this person may do with the case (``services``: the agent's services, when known)."""
    if acting_role == "supervisor":
        return Access.ACT
    interaction = case.get("interaction") or {}
    if interaction.get("state") == "assigned" and interaction.get("agent_id") == agent_id:
        return Access.ACT
    if agent_id in case.get("agents", []) or case.get("service") in services:
        return Access.SEE
    return Access.NONE


def finding_filter(
    agent_id: str, acting_role: str, services: Collection[str] = ()
) -> Document | None:
    """:func:`case_access` as a query on the case index (``search_index``): what a person may
    find is what they may see. None: no restriction (a supervisor). The index's ``agents``
    holds everyone who held or worked the case (the holder too), as ``case.agents`` does."""
    if acting_role == "supervisor":
        return None
    return {"$or": [{"agents": agent_id}, {"service": {"$in": sorted(services)}}]}


def act_problem(case: Document, agent_id: str, acting_role: str) -> str | None:
    """Why this person may not act on the case (None when they may)."""
    if case_access(case, agent_id, acting_role) is Access.ACT:
        return None
    interaction = case.get("interaction") or {}
    holder = interaction.get("agent_id") if interaction.get("state") == "assigned" else None
    if holder:
        return f"case {case['_id']} is assigned to another agent"
    return f"case {case['_id']} is not assigned to agent {agent_id}"


def case_attachment_ids(emails: Iterable[Document]) -> set[str]:
    """The attachments of a case's emails: what an agent may send on again from this case."""
    return {
        str(a["attachment_id"])
        for e in emails
        for a in e.get("attachments") or []
        if isinstance(a, dict) and a.get("attachment_id")
    }


def attachment_problems(
    attachments: Iterable[AttachmentRef], of_case: Collection[str], uploaded: Collection[str]
) -> list[str]:
    """The attachments that may not leave: neither an attachment of the case's emails nor
    uploaded by the acting agent. A case's raw mail, its HTML and text copies (locked once
    masked) are never attachments of its emails, so they never leave this way."""
    return [
        f"{a.filename!r} ({a.attachment_id})"
        for a in attachments
        if a.attachment_id not in of_case and a.attachment_id not in uploaded
    ]

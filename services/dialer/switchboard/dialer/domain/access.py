"""Who may see and act on a calling record: the one rule (docs/security.md, "Who may do what").

* An agent sees a record, and acts on it (accept, reject, call, disposition, skip, reschedule,
  complete, notes), only while it is offered to or held by them.
* A supervisor sees every record; they act only on a record offered to or held by them.
* Nobody else: they get the answer of a record that is not there (``hidden_record`` in
  ``handlers.record_commands``), so a record id does not tell whether it exists or whose it is.

Every agent command and the preview go through :func:`record_access`
(``handlers.record_commands``), like threading's ``access.case_access`` for cases.
"""

from __future__ import annotations

from enum import IntEnum

from switchboard.dialer.domain import Record

WORKED_STATES = ("offered", "held")
"""The states in which a record is in an agent's hands."""


class Access(IntEnum):
    NONE = 0
    SEE = 1
    ACT = 2


def record_access(record: Record, agent_id: str, acting_role: str) -> Access:
    """What this person may do with the record now."""
    if record.state in WORKED_STATES and record.agent_id == agent_id:
        return Access.ACT
    if acting_role == "supervisor":
        return Access.SEE
    return Access.NONE

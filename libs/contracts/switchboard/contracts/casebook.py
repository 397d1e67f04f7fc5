"""An agent's book of cases: My Cases, search, a contact's history, cases opened by hand and
work statuses. Threading owns all of it; the gateway sends these with ``Bus.request``.

What a person may find follows what they may open (threading's ``access`` rule): a supervisor
finds every case; an agent the cases they hold or have worked and the cases of their services.

Query answers are pages: ``{"cases": [CaseRow...], "page", "page_size", "total"}``, newest
activity first. A page beyond the last is refused (``bad_page`` on ``page``); page 1 of nothing
is an empty page.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from switchboard.contracts.base import Command, SingleLine
from switchboard.contracts.cases import ActingRole, CaseCommand
from switchboard.contracts.mail import Address


class Paging(BaseModel):
    page: int = Field(default=1, ge=1, le=10_000, description="1 is the first page")
    page_size: int = Field(default=25, ge=1, le=100)


class ListMyCases(Command, Paging):
    """The cases I hold or have worked: open ones first, then closed, each by last activity."""

    NAME = "case.mine"

    agent_id: str = Field(min_length=1)
    acting_role: ActingRole = "agent"
    include_closed: bool = True


class SearchCases(Command, Paging):
    """Cases matching every criterion given (at least one), by last activity, newest first."""

    NAME = "case.search"

    agent_id: str = Field(min_length=1)
    acting_role: ActingRole = "agent"
    case_number: int | None = Field(default=None, ge=1)
    thread_id: str | None = Field(default=None, max_length=100)
    contact: str | None = Field(
        default=None, max_length=320, description="a contact's address, or words of their name"
    )
    subject: str | None = Field(default=None, max_length=500, description="words of the subject")
    text: str | None = Field(
        default=None, max_length=500, description="words anywhere: subject, bodies, notes"
    )
    status: str | None = Field(
        default=None, max_length=100, description="'open', 'closed' or a work status"
    )
    service: str | None = Field(default=None, max_length=100)
    disposition: str | None = Field(default=None, max_length=100)
    since: AwareDatetime | None = Field(default=None, description="last activity at or after")
    until: AwareDatetime | None = Field(default=None, description="last activity before")


class GetContactHistory(Command, Paging):
    """Every case of a contact, newest first: of ``address``, or of every participant of
    ``case_number`` (the contact and everyone in its emails)."""

    NAME = "case.contact_history"

    agent_id: str = Field(min_length=1)
    acting_role: ActingRole = "agent"
    address: str | None = Field(default=None, max_length=320)
    case_number: int | None = Field(default=None, ge=1)


class OpenCaseByHand(Command):
    """Open a case for a contact without sending mail (a phone call, a letter): it gets a
    number like any case, starts with the note, and is routed to the agent who opened it (who
    then works, replies, transfers or closes it like any case)."""

    NAME = "case.open_by_hand"

    agent_id: str = Field(min_length=1)
    acting_role: ActingRole = "agent"
    service: str = Field(min_length=1, max_length=100)
    contact: Address
    subject: SingleLine = Field(min_length=1, max_length=500)
    note: str = Field(min_length=1, max_length=20_000)
    channel: Literal["phone", "letter", "in_person", "other"] = "phone"


class SetCaseStatus(CaseCommand):
    """Set the case's work status to one of its service's statuses (closing stays a final
    disposition)."""

    NAME = "case.status.set"

    status: str = Field(min_length=1, max_length=100)


class CaseRow(BaseModel):
    """One case in a page of answers (documentation; answers are plain JSON)."""

    model_config = ConfigDict(frozen=True)

    case_number: int
    subject: str
    contact: Address | None = None
    service: str
    status: str = Field(description="'open' or 'closed'")
    work_status: str
    last_activity: AwareDatetime
    new_mail_waiting: bool
    thread_id: str | None = None
    final_disposition: str | None = None
    preview: str = Field(default="", description="the start of the last message")

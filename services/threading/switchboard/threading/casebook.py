"""My Cases, search and contact history: read-only queries over the case index
(``search_index``), each limited by the one access rule (``access.finding_filter``).

Answers are pages sorted by last activity (My Cases: open ones first); a page beyond the last is
refused naming ``page``. No count of every match is taken: a page is read with one entry more
than it shows, which says whether another page follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pymongo import DESCENDING

from switchboard.contracts import casebook as cb
from switchboard.runtime.assignments import agent_services
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import Refused
from switchboard.threading import access
from switchboard.threading.config import ThreadingConfig
from switchboard.threading.refusals import hidden_case
from switchboard.threading.search_index import (
    CaseIndex,
    Document,
    entry_key,
    fold,
    query_words,
)

Sort = list[tuple[str, int]]
BY_ACTIVITY: Sort = [("last_activity", DESCENDING), ("_id", DESCENDING)]
"""Newest activity first; equal times by case number (``_id`` keys sort as the numbers)."""


class Casebook:
    def __init__(
        self,
        index: CaseIndex,
        bus: Bus,
        config: Callable[[], ThreadingConfig] = ThreadingConfig,
    ) -> None:
        self.entries = index.entries
        self.by_agent = index.by_agent
        self.bus = bus
        self._config = config

    @property
    def config(self) -> ThreadingConfig:
        """The services' configuration as the handlers last loaded it."""
        return self._config()

    async def _visible(self, agent_id: str, acting_role: str) -> Document | None:
        """The access rule as a filter; an agent's services come from routing (the authority).
        Routing not answering narrows the agent to the cases they worked (never widens)."""
        if acting_role == "supervisor":
            return None
        services = await agent_services(self.bus, agent_id) or []
        return access.finding_filter(agent_id, acting_role, services)

    async def _may_see(self, entry: Document, agent_id: str, acting_role: str) -> bool:
        """``access.case_access`` itself, on the entry's copy of the fields it reads."""
        case = {
            "agents": entry.get("agents") or [],
            "service": entry.get("service"),
            "interaction": {"state": "assigned", "agent_id": entry["holder"]}
            if entry.get("holder")
            else {},
        }
        if access.case_access(case, agent_id, acting_role) is not access.Access.NONE:
            return True
        services = await agent_services(self.bus, agent_id) or []
        return access.case_access(case, agent_id, acting_role, services) is not access.Access.NONE

    async def _page(self, criteria: list[Document], sort: Sort, paging: cb.Paging) -> Document:
        query: Document = {"$and": criteria} if len(criteria) > 1 else (criteria or [{}])[0]
        skip = (paging.page - 1) * paging.page_size
        cursor = self.entries.find(query).sort(sort).skip(skip).limit(paging.page_size + 1)
        found = [doc async for doc in cursor]
        if not found and paging.page > 1:
            raise _beyond(paging.page)
        return {
            "cases": [_row(doc) for doc in found[: paging.page_size]],
            "page": paging.page,
            "page_size": paging.page_size,
            "has_more": len(found) > paging.page_size,
        }

    async def on_my_cases(self, query: cb.ListMyCases) -> dict[str, Any]:
        """The cases I hold or worked: open first, then closed, by last activity. Read by
        ``_id`` only: the agent's list, then the page's entries."""
        mine = await self.by_agent.find_one({"_id": query.agent_id}) or {}
        marks = [
            (bool(mark.get("open")), mark.get("at"), int(number))
            for number, mark in (mine.get("cases") or {}).items()
            if query.include_closed or mark.get("open")
        ]
        marks.sort(key=lambda m: (m[0], m[1].timestamp() if m[1] else 0.0, m[2]), reverse=True)
        start = (query.page - 1) * query.page_size
        numbers = [m[2] for m in marks[start : start + query.page_size]]
        if not numbers and query.page > 1:
            raise _beyond(query.page)
        entries = await asyncio.gather(
            *(self.entries.find_one({"_id": entry_key(n)}) for n in numbers)
        )
        return {
            "cases": [_row(e) for e in entries if e is not None],
            "page": query.page,
            "page_size": query.page_size,
            "has_more": len(marks) > start + query.page_size,
        }

    def _known_service(self, service: str, field: str = "service") -> None:
        if self.config.services and not self.config.known(service):
            raise Refused("unknown_service", f"there is no service {service!r}", field=field)

    async def on_search(self, query: cb.SearchCases) -> dict[str, Any]:
        """Every criterion given must hold; words must all be present (in any order)."""
        criteria: list[Document] = []
        if query.since and query.until and query.until <= query.since:
            raise Refused("bad_period", "'until' must be later than 'since'", field="until")
        if query.case_number is not None:
            criteria.append({"_id": entry_key(query.case_number)})
        if query.thread_id and query.thread_id.strip():
            criteria.append({"thread_id": query.thread_id.strip().upper()})
        if query.contact and query.contact.strip():
            contact = query.contact.strip()
            if "@" in contact:
                criteria.append({"addresses": contact.casefold()})
            else:
                criteria.append(_all_words("name_words", contact, "contact"))
        if query.subject and query.subject.strip():
            criteria.append(_all_words("subject_words", query.subject, "subject"))
        if query.text and query.text.strip():
            criteria.append(_all_words("words", query.text, "text"))
        if query.service:
            self._known_service(query.service)
            criteria.append({"service": query.service})
        if query.status:
            criteria.append(self._status_criterion(query.status, query.service))
        if query.disposition and query.disposition.strip():
            criteria.append({"dispositions": fold(query.disposition.strip())})
        period: Document = {}
        if query.since:
            period["$gte"] = query.since
        if query.until:
            period["$lt"] = query.until
        if period:
            criteria.append({"last_activity": period})
        visible = await self._visible(query.agent_id, query.acting_role)
        if visible is not None:
            criteria.append(visible)
        return await self._page(criteria, BY_ACTIVITY, query)

    def _status_criterion(self, status: str, service: str | None) -> Document:
        wanted = status.strip()
        if wanted.casefold() in ("open", "closed"):
            return {"status": wanted.casefold()}
        configs = [self.config.for_service(service)] if service else self.config.services.values()
        for cfg in configs:
            found = cfg.status(wanted)
            if found is not None:
                return {"work_status": found.name, "status": "open"}
        raise Refused(
            "unknown_status",
            f"no service{' ' + service if service else ''} has a status {wanted!r}",
            field="status",
        )

    async def on_contact_history(self, query: cb.GetContactHistory) -> dict[str, Any]:
        """Every case of the address, or of any participant of the case (newest first)."""
        if query.address and query.address.strip():
            addresses = [query.address.strip().casefold()]
        elif query.case_number is not None:
            entry = await self.entries.find_one({"_id": entry_key(query.case_number)})
            if entry is None or not await self._may_see(entry, query.agent_id, query.acting_role):
                raise hidden_case(query.case_number)  # a case not yours is a case not there
            addresses = list(entry.get("addresses") or [])
        else:
            raise Refused("missing", "give an address or a case number", field="address")
        criteria: list[Document] = [{"addresses": {"$in": addresses}}]
        visible = await self._visible(query.agent_id, query.acting_role)
        if visible is not None:
            criteria.append(visible)
        page = await self._page(criteria, [("created_at", DESCENDING), ("_id", DESCENDING)], query)
        return page | {"addresses": addresses}


def _beyond(page: int) -> Refused:
    return Refused(
        "bad_page", f"page {page} is beyond the last page of these results", field="page"
    )


def _all_words(field: str, text: str, asked_as: str) -> Document:
    found = query_words(text)
    if not found:
        raise Refused(
            "bad_words", f"{text!r} has no word to search for (too common)", field=asked_as
        )
    return {field: {"$all": found}}


def _row(entry: Document) -> Document:
    row = dict(entry.get("row") or {})
    row["last_activity"] = entry["last_activity"].isoformat()
    row["new_mail_waiting"] = bool(entry.get("new_mail_waiting"))
    row["holder"] = entry.get("holder")
    return row

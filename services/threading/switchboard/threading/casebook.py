"""My Cases, search and contact history: read-only queries over the case index
(``search_index``) and its postings (``search_plan``), each limited by the one access rule
(``access.case_access``: what an agent may find is what they may open; supervisors find all).

Every read is by ``_id``. Answers are pages sorted by last activity (My Cases: open ones first;
contact history: newest case first); a page beyond the last is refused naming ``page``. No count
of every match is taken: a page is read with one case more than it shows, which says whether
another page follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from switchboard.contracts import casebook as cb
from switchboard.runtime.assignments import agent_services
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import Refused
from switchboard.threading import access
from switchboard.threading.config import ThreadingConfig
from switchboard.threading.index_writes import row_of
from switchboard.threading.postings import ANY, my_order, seconds, terms_of, unpack_marks
from switchboard.threading.refusals import hidden_case
from switchboard.threading.search_index import (
    ROW_FIELDS,
    CaseIndex,
    Document,
    entry_key,
    fold,
    query_words,
)
from switchboard.threading.search_plan import Plan, Reach, find


class Casebook:
    def __init__(
        self,
        index: CaseIndex,
        bus: Bus,
        config: Callable[[], ThreadingConfig] = ThreadingConfig,
    ) -> None:
        self.entries = index.entries
        self.postings = index.postings
        self.thread_ids = index.thread_ids
        self.bus = bus
        self._config = config

    @property
    def config(self) -> ThreadingConfig:
        """The services' configuration as the handlers last loaded it."""
        return self._config()

    async def _services(self, agent_id: str) -> list[str]:
        """An agent's services come from routing (the authority). Routing not answering narrows
        the agent to the cases they worked (never widens)."""
        return await agent_services(self.bus, agent_id) or []

    async def _reach(self, agent_id: str, acting_role: str) -> Reach:
        """The access rule as what a search may return."""
        if acting_role == "supervisor":
            return Reach()
        services, marks = await asyncio.gather(
            self._services(agent_id), self.postings.marks(agent_id)
        )
        return Reach(frozenset(services), frozenset(marks))

    async def _may_see(self, entry: Document, agent_id: str, acting_role: str) -> bool:
        """``access.case_access`` on the entry's copy of the fields it reads, with the agent's
        own list of cases (written before the entry) as the cases they worked."""
        case = {
            "agents": entry.get("agents") or [],
            "service": entry.get("service"),
            "interaction": {"state": "assigned", "agent_id": entry["holder"]}
            if entry.get("holder")
            else {},
        }
        if access.case_access(case, agent_id, acting_role) is not access.Access.NONE:
            return True
        reach = await self._reach(agent_id, acting_role)
        return reach.allows(str(entry.get("service")), int(entry["number"]))

    async def _rows(self, numbers: Sequence[int], plan: Plan) -> list[Document]:
        """The page's entries by ``_id``, each checked against the plan once more (a case
        changed since the postings were read is left out rather than shown for words it no
        longer has)."""
        found = await asyncio.gather(
            *(self.entries.find_one({"_id": entry_key(n)}) for n in numbers)
        )
        return [row_of(e) for e in found if e is not None and _still_matches(e, plan)]

    async def _page(self, plan: Plan, paging: cb.Paging) -> Document:
        skip = (paging.page - 1) * paging.page_size
        numbers = await find(self.postings, plan, skip + paging.page_size + 1)
        if len(numbers) <= skip and paging.page > 1:
            raise _beyond(paging.page)
        return {
            "cases": await self._rows(numbers[skip : skip + paging.page_size], plan),
            "page": paging.page,
            "page_size": paging.page_size,
            "has_more": len(numbers) > skip + paging.page_size,
        }

    async def on_my_cases(self, query: cb.ListMyCases) -> dict[str, Any]:
        """The cases I hold or worked: open first, then closed, by last activity. One read by
        ``_id`` (the agent's document, holding the rows of the first pages); a later page reads
        its entries too."""
        mine = await self.postings.agent(query.agent_id)
        ordered = my_order(unpack_marks(mine.get("n")), query.include_closed)
        start = (query.page - 1) * query.page_size
        numbers = ordered[start : start + query.page_size]
        if not numbers and query.page > 1:
            raise _beyond(query.page)
        kept = mine.get("rows") or {}
        missing = [n for n in numbers if str(n) not in kept]
        entries = await asyncio.gather(
            *(self.entries.find_one({"_id": entry_key(n)}, ROW_FIELDS) for n in missing)
        )
        read = {n: row_of(e) for n, e in zip(missing, entries, strict=True) if e is not None}
        rows = [kept.get(str(n)) or read.get(n) for n in numbers]
        return {
            "cases": [r for r in rows if r is not None],
            "page": query.page,
            "page_size": query.page_size,
            "has_more": len(ordered) > start + query.page_size,
        }

    def _known_service(self, service: str, field: str = "service") -> None:
        if self.config.services and not self.config.known(service):
            raise Refused("unknown_service", f"there is no service {service!r}", field=field)

    async def on_search(self, query: cb.SearchCases) -> dict[str, Any]:
        """Every criterion given must hold; words must all be present (in any order)."""
        groups: list[list[str]] = []
        if query.since and query.until and query.until <= query.since:
            raise Refused("bad_period", "'until' must be later than 'since'", field="until")
        if query.contact and query.contact.strip():
            contact = query.contact.strip()
            if "@" in contact:
                groups.append([f"a:{contact.casefold()}"])
            else:
                groups += _all_words("n", contact, "contact")
        if query.subject and query.subject.strip():
            groups += _all_words("s", query.subject, "subject")
        if query.text and query.text.strip():
            groups += _all_words("w", query.text, "text")
        if query.service:
            self._known_service(query.service)
        if query.status:
            groups += self._status_terms(query.status, query.service)
        if query.disposition and query.disposition.strip():
            groups.append([f"d:{fold(query.disposition.strip())}"])
        plan = Plan(
            groups=groups or [[ANY]],
            reach=await self._reach(query.agent_id, query.acting_role),
            only_service=query.service,
            since=seconds(query.since) if query.since else None,
            until=seconds(query.until) if query.until else None,
        )
        numbers = [query.case_number] if query.case_number is not None else []
        if query.thread_id and query.thread_id.strip():
            mapped = await self.thread_ids.find_one({"_id": query.thread_id.strip().upper()})
            numbers = _one_case(numbers, int(mapped["case_number"]) if mapped else None)
        if query.case_number is not None or (query.thread_id and query.thread_id.strip()):
            return await self._named(numbers, plan, query)
        return await self._page(plan, query)

    async def _named(self, numbers: list[int], plan: Plan, paging: cb.Paging) -> Document:
        """A search naming its case (by number or thread identifier): that case, if it matches
        the rest and the person may find it."""
        entries = [await self.entries.find_one({"_id": entry_key(n)}) for n in numbers]
        rows = [
            row_of(e)
            for e in entries
            if e is not None
            and _still_matches(e, plan)
            and plan.reach.allows(e["service"], e["number"])
        ]
        if paging.page > 1:
            raise _beyond(paging.page)
        return {"cases": rows, "page": 1, "page_size": paging.page_size, "has_more": False}

    def _status_terms(self, status: str, service: str | None) -> list[list[str]]:
        wanted = status.strip()
        if wanted.casefold() in ("open", "closed"):
            return [[f"st:{wanted.casefold()}"]]
        configs = [self.config.for_service(service)] if service else self.config.services.values()
        for cfg in configs:
            found = cfg.status(wanted)
            if found is not None:
                return [[f"ws:{found.name}"], ["st:open"]]
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
        plan = Plan(
            groups=[[f"a:{a}" for a in addresses]],
            reach=await self._reach(query.agent_id, query.acting_role),
            by_activity=False,
        )
        page = await self._page(plan, query)
        return page | {"addresses": addresses}


def _one_case(numbers: list[int], mapped: int | None) -> list[int]:
    """The case both a number and a thread identifier name (none if they differ)."""
    if mapped is None or (numbers and numbers != [mapped]):
        return []
    return [mapped]


def _still_matches(entry: Document, plan: Plan) -> bool:
    terms = terms_of(entry)
    if not all(any(t in terms for t in group) for group in plan.groups):
        return False
    if plan.only_service is not None and entry.get("service") != plan.only_service:
        return False
    if not plan.by_activity:
        return True
    at = seconds(entry["last_activity"])
    return (plan.since is None or at >= plan.since) and (plan.until is None or at < plan.until)


def _beyond(page: int) -> Refused:
    return Refused(
        "bad_page", f"page {page} is beyond the last page of these results", field="page"
    )


def _all_words(kind: str, text: str, asked_as: str) -> list[list[str]]:
    found = query_words(text)
    if not found:
        raise Refused(
            "bad_words", f"{text!r} has no word to search for (too common)", field=asked_as
        )
    return [[f"{kind}:{word}"] for word in found]

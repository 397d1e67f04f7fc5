"""What people read: a case and its thread, a case looked up by number; what reporting reads
to rebuild: the events the stored cases imply."""

from __future__ import annotations

from typing import Any

from switchboard.contracts import cases as c
from switchboard.runtime.errors import Refused
from switchboard.threading.domain.case import Case
from switchboard.threading.domain.common import iso as _iso
from switchboard.threading.handlers.assignments import Assignments
from switchboard.threading.history import case_events
from switchboard.threading.store import Document


class Views(Assignments):
    """Cases and emails as the desktop shows them (to those who may see them)."""

    @staticmethod
    def case_view(case: Case) -> dict[str, Any]:
        view: dict[str, Any] = _iso(
            {
                "case_number": case.id,
                "status": case.status,
                "work_status": case.work_status or case.status,
                "sla_pauses": case.sla_pauses,
                "channel": case.channel,
                "service": case.service,
                "subject": case.subject,
                "contact": case.contact,
                "thread_id": case.thread_id,
                "agents": case.agents,
                "assigned_agent_id": case.assigned_agent_id,
                "interaction_id": case.interaction.id,
                "interaction_state": case.interaction.state,
                "dispositions": case.dispositions,
                "final_disposition": case.final_disposition,
                "notes": case.notes,
                "linked_cases": case.linked_cases,
                "origin": case.origin,
                "created_at": case.created_at,
                "updated_at": case.updated_at,
                "closed_at": case.closed_at,
                "reopened_at": case.reopened_at,
                "email_count": len(case.email_keys),
            }
        )
        return view

    @staticmethod
    def email_view(email: Document) -> dict[str, Any]:
        withheld = bool(email.get("html_withheld"))
        view: dict[str, Any] = _iso(
            {
                "email_id": email["_id"],
                "message_id": email.get("message_id"),
                "direction": email["direction"],
                "kind": email.get("kind"),
                "from": email.get("from"),
                "when": email.get("when"),
                "to": email.get("to", []),
                "cc": email.get("cc", []),
                "bcc": email.get("bcc", []) if email["direction"] == "outbound" else [],
                "subject": email.get("subject", ""),
                "text": email.get("text", ""),
                "text_truncated": email.get("text_truncated", False),
                "text_ref": None if withheld else email.get("text_ref"),
                "html_ref": None if withheld else email.get("html_ref"),
                "html": None if withheld else email.get("html"),
                "html_withheld": withheld,
                "attachments": email.get("attachments", []),
                "classification": email.get("classification"),
                "agent_id": email.get("agent_id"),
                "masked": bool(email.get("masked")),
                "intake": email.get("intake"),
                "defects": email.get("defects", []),
                "message_id_reused": bool(email.get("message_id_reused")),
                "delivery": email.get("delivery"),
                "mailboxes": email.get("mailboxes", []),
                "in_reply_to": email.get("in_reply_to"),
                "new_participant": bool(email.get("new_participant")),
            }
        )
        return view

    async def on_get_thread(self, query: c.GetCaseThread) -> dict[str, Any]:
        """The case and its thread view (every email, oldest first): for whoever may see the
        case (``access``: customer mail is not for everyone's eyes)."""
        case = await self._case(query.case_number)
        case = await self._may_see(case, query.agent_id, query.acting_role, query)
        emails = await self.store.emails_of_case(case["_id"])
        view = {
            "case": self.case_view(Case.load(case)),
            "emails": [self.email_view(e) for e in emails],
            # what the desktop offers in its disposition list (a final one closes the case)
            "service_dispositions": [
                d.model_dump() for d in self.service_config(case["service"]).dispositions
            ],
        }
        if query.include_drafts:
            view["drafts"] = [
                _iso({k: v for k, v in d.items() if k != "_id"} | {"draft_id": d["_id"]})
                for d in await self.store.drafts_of_case(case["_id"])
            ]
        return view

    async def on_lookup(self, query: c.LookUpCase) -> dict[str, Any]:
        """A case by number or thread identifier: summary only."""
        number = query.case_number
        hidden = None
        if number is None and query.thread_id:
            hidden = Refused(
                "no_such_case", "no case has this thread identifier", field="thread_id"
            )
            if not self.ids.verify(query.thread_id):
                raise Refused("no_such_case", "not a thread identifier of ours", field="thread_id")
            number = await self.store.case_for_thread(query.thread_id.strip().upper())
            if number is None:
                raise hidden
        if number is None:
            raise Refused(
                "missing", "give a case number or a thread identifier", field="case_number"
            )
        case = await self._may_see(
            await self._case(number), query.agent_id, query.acting_role, hidden=hidden
        )
        return {"case": self.case_view(Case.load(case))}

    async def on_case_history(self, query: c.CaseHistoryRequested) -> dict[str, Any]:
        """A page of cases as the events they imply (reporting's rebuild)."""
        page = await self.store.cases_after(query.after_case_number, query.limit)
        events = [
            c.RecordedEvent(name=event.NAME, body=event.model_dump(mode="json"))
            for case, emails in page
            for event in case_events(case, emails)
        ]
        last = page[-1][0]["_id"] if len(page) >= query.limit else None
        return c.CaseHistoryPage(events=events, next_after=last).model_dump(mode="json")

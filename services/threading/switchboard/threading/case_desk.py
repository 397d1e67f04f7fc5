"""Case commands beside mail: a case opened by hand (a phone call, a letter) and a case's work
status. They go through the handlers' one frame for changing a case (outbox, lock, routing), so
a case opened by hand is worked, replied to, transferred and closed like any other.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from switchboard.contracts import Message
from switchboard.contracts import casebook as cb
from switchboard.contracts import cases as c
from switchboard.runtime.errors import Refused
from switchboard.threading import metrics, statuses
from switchboard.threading.domain.cases import new_case
from switchboard.threading.domain.rounds import start_round
from switchboard.threading.store import OPENED_BY
from switchboard.threading.subjects import clean_subject

if TYPE_CHECKING:
    from switchboard.threading.handlers import ThreadingHandlers

Document = dict[str, Any]
_NOTES = uuid.UUID("6b0f3a52-2f0e-4c53-9d39-3c1f2e7a8b44")


class CaseDesk:
    def __init__(self, handlers: ThreadingHandlers) -> None:
        self.handlers = handlers

    async def on_open_by_hand(self, command: cb.OpenCaseByHand) -> dict[str, Any]:
        """A new case with its first note, routed to the person who opened it (their personal
        queue), so they hold it and work it like any case."""
        h = self.handlers
        if h.config.services and not h.config.known(command.service):
            raise Refused("unknown_service", f"no service {command.service!r}", field="service")
        cfg = h.service_config(command.service)
        key = f"by_hand/{command.message_id}"
        number = await h.store.case_opened_by(key) or await h.store.next_case_number()
        fresh = new_case(
            number,
            service=command.service,
            subject=clean_subject(command.subject, cfg.subject_tag_format),
            contact={"name": command.contact.name or "", "address": command.contact.address},
            origin="by_hand",
            linked_to=None,
            first_email="",
            agent_id=command.agent_id,
        )
        fresh["channel"] = command.channel
        fresh["work_status"] = cfg.statuses[0].name if cfg.statuses else "open"
        fresh["participants"] = [command.contact.address.casefold()]
        fresh[OPENED_BY] = key

        def build(case: Document) -> tuple[list[Message], dict[str, Any]]:
            note_id = str(uuid.uuid5(_NOTES, str(command.message_id)))
            case.setdefault("notes", []).append(
                {
                    "note_id": note_id,
                    "text": command.note,
                    "email_id": None,
                    "agent_id": command.agent_id,
                    "at": datetime.now(UTC),
                    "channel": command.channel,
                }
            )
            messages: list[Message] = [
                c.CaseCreated.caused_by(
                    command,
                    key="created",
                    case_number=number,
                    service=command.service,
                    subject=case["subject"],
                    contact=command.contact,
                    origin="by_hand",
                ),
                c.CaseNoteAdded.caused_by(
                    command,
                    key="note",
                    case_number=number,
                    note_id=note_id,
                    agent_id=command.agent_id,
                ),
            ]
            messages += start_round(case, command, reason="new", personal_agent_id=command.agent_id)
            return messages, {"case_number": number, "note_id": note_id}

        result = await h._commit_new(fresh, str(command.message_id), build)
        number = int(result["case_number"])  # a copy of the command may have opened it first
        thread_id = await h.store.ensure_thread_id(number, h.ids.mint)
        await h.refresh_index(number)  # the thread id is searchable too
        metrics.CASES_CREATED.labels(command.service, "by_hand").inc()
        metrics.COMMANDS.labels(command.NAME, "ok").inc()
        return dict(result) | {"thread_id": thread_id}

    async def on_set_status(self, command: cb.SetCaseStatus) -> dict[str, Any]:
        """Set the work status (the holder or a supervisor); a pending one pauses the clock."""
        h = self.handlers

        async def plan(case: Document) -> Any:
            cfg = h.service_config(case["service"])
            try:  # checked on a copy first: a refusal changes nothing
                statuses.change_status(copy.deepcopy(case), command.status, cfg, datetime.now(UTC))
            except statuses.StatusProblem as problem:
                code = "case_closed" if case.get("status") == "closed" else "unknown_status"
                raise Refused(code, str(problem), field="status") from None

            def build(current: Document) -> tuple[list[Message], dict[str, Any]]:
                now = datetime.now(UTC)
                change = statuses.change_status(current, command.status, cfg, now)
                messages: list[Message] = []
                if change is not None:
                    messages.append(
                        statuses.status_changed(command, current, change, command.agent_id, now)
                    )
                return messages, {
                    "case_number": current["_id"],
                    "work_status": statuses.current(current, cfg),
                    "paused": statuses.is_pending(current, cfg),
                }

            return build

        return await h._case_command(command, plan)

"""What an agent does to a case besides writing: dispositions and closing, notes, transfers,
service changes, masking data."""

from __future__ import annotations

from typing import Any

from switchboard.contracts import Message
from switchboard.contracts import cases as c
from switchboard.contracts.queues import threading as queues
from switchboard.runtime.errors import Refused
from switchboard.threading import rules
from switchboard.threading.domain.cases import (
    add_note,
)
from switchboard.threading.domain.common import now as _now
from switchboard.threading.domain.rounds import end_interaction, start_round
from switchboard.threading.handlers.assignments import Assignments
from switchboard.threading.handlers.base import (
    Build,
)
from switchboard.threading.masking import (
    Span,
    marked_text,
    mask_spans,
    propagation_pieces,
    redact_everywhere,
    span_problem,
)
from switchboard.threading.records import EmailRecord
from switchboard.threading.store import Document


class CaseCommands(Assignments):
    """An agent's commands on a case they hold, other than writing mail."""

    async def on_set_disposition(self, command: c.SetDisposition) -> dict[str, Any]:
        """Set a disposition on an email; a final one closes the case."""

        async def plan(case: Document) -> Build:
            cfg = self.service_config(case["service"])
            if not cfg.disposition(command.disposition):
                raise Refused(
                    "unknown_disposition",
                    f"service {case['service']} has no disposition {command.disposition!r}",
                    field="disposition",
                )
            key = self._email_of_case(case, command.email_id, "email_id")
            if key is None:
                latest = await self._latest_inbound(case)
                key = latest["_id"] if latest else None

            def build(current: Document) -> tuple[list[Message], dict[str, Any]]:
                messages = self._apply_disposition(current, command, command.disposition, key, cfg)
                if command.finish and current["status"] != "closed":
                    messages += end_interaction(current, command, "completed", cfg)
                return messages, {"case_number": current["_id"], "status": current["status"]}

            return build

        return await self._case_command(command, plan)

    async def on_close(self, command: c.CloseCase) -> dict[str, Any]:
        """Close without replying: needs a final disposition of the case's service."""

        async def plan(case: Document) -> Build:
            cfg = self.service_config(case["service"])
            found = cfg.disposition(command.disposition)
            if found is None:
                raise Refused(
                    "unknown_disposition",
                    f"service {case['service']} has no disposition {command.disposition!r}",
                    field="disposition",
                )
            if not found.final:
                raise Refused(
                    "not_final",
                    f"{found.name!r} does not close a case; choose a final disposition",
                    field="disposition",
                )
            if case["status"] == "closed":
                raise Refused(
                    "case_closed", f"case {case['_id']} is already closed", field="case_number"
                )
            key = self._email_of_case(case, command.email_id, "email_id")
            if key is None:
                latest = await self._latest_inbound(case)
                key = latest["_id"] if latest else None

            def build(current: Document) -> tuple[list[Message], dict[str, Any]]:
                messages: list[Message] = []
                if command.note.strip():
                    messages += add_note(current, command, command.note, key)
                messages += self._apply_disposition(current, command, found.name, key, cfg)
                return messages, {"case_number": current["_id"], "status": current["status"]}

            return build

        return await self._case_command(command, plan)

    async def on_add_note(self, command: c.AddCaseNote) -> dict[str, Any]:
        """A note on the case, or on one of its emails."""

        async def plan(case: Document) -> Build:
            key = self._email_of_case(case, command.email_id, "email_id")

            def build(current: Document) -> tuple[list[Message], dict[str, Any]]:
                messages = add_note(current, command, command.text, key)
                return messages, {
                    "case_number": current["_id"],
                    "note_id": current["notes"][-1]["note_id"],
                }

            return build

        return await self._case_command(command, plan)

    async def on_transfer(self, command: c.TransferCase) -> dict[str, Any]:
        """Hand the case to another service queue or to a named agent."""

        async def plan(case: Document) -> Build:
            if not command.to_service and not command.to_agent_id:
                raise Refused("no_target", "name a service or an agent", field="to_service")
            if (
                command.to_service
                and self.config.services
                and not self.config.known(command.to_service)
            ):
                raise Refused(
                    "unknown_service", f"no service {command.to_service!r}", field="to_service"
                )
            if command.to_agent_id and command.to_agent_id == command.agent_id:
                raise Refused("same_agent", "the case is yours already", field="to_agent_id")
            if case["status"] == "closed":
                raise Refused("case_closed", f"case {case['_id']} is closed", field="case_number")
            cfg = self.service_config(case["service"])
            target = command.to_service or case["service"]

            def build(current: Document) -> tuple[list[Message], dict[str, Any]]:
                source = current["service"]
                messages: list[Message] = []
                if command.note.strip():
                    messages += add_note(current, command, command.note, None)
                messages += end_interaction(current, command, "transferred", cfg)
                current["service"] = target
                current.setdefault("history", []).append(
                    {
                        "what": "transferred",
                        "at": _now(),
                        "agent_id": command.agent_id,
                        "from_service": source,
                        "to_service": target,
                        "to_agent_id": command.to_agent_id,
                    }
                )
                messages += start_round(
                    current,
                    command,
                    reason="transfer",
                    personal_agent_id=command.to_agent_id,
                    summary={"transferred_by": command.agent_id},
                )
                messages.append(
                    c.CaseTransferred.caused_by(
                        command,
                        key="transferred",
                        case_number=current["_id"],
                        from_service=source,
                        to_service=target,
                        to_agent_id=command.to_agent_id,
                        agent_id=command.agent_id,
                    )
                )
                return messages, {
                    "case_number": current["_id"],
                    "service": target,
                    "interaction_id": current["interaction"]["id"],
                }

            return build

        return await self._case_command(command, plan)

    async def on_change_service(self, command: c.ChangeCaseService) -> dict[str, Any]:
        """Reclassify the case into another service; the agent keeps working on it."""

        async def plan(case: Document) -> Build:
            if self.config.services and not self.config.known(command.service):
                raise Refused("unknown_service", f"no service {command.service!r}", field="service")

            def build(current: Document) -> tuple[list[Message], dict[str, Any]]:
                source = current["service"]
                current["service"] = command.service
                current.setdefault("history", []).append(
                    {
                        "what": "service_changed",
                        "at": _now(),
                        "agent_id": command.agent_id,
                        "from_service": source,
                        "to_service": command.service,
                    }
                )
                return [
                    c.CaseServiceChanged.caused_by(
                        command,
                        key="service",
                        case_number=current["_id"],
                        from_service=source,
                        to_service=command.service,
                        agent_id=command.agent_id,
                    )
                ], {"case_number": current["_id"], "service": command.service}

            return build

        return await self._case_command(command, plan)

    async def on_mask(self, command: c.MaskCaseData) -> dict[str, Any]:
        """Replace the marked spans irreversibly in every stored copy of the case's text."""

        async def plan(case: Document) -> Build:
            by_email: dict[str, list[c.MaskSpan]] = {}
            for index, span in enumerate(command.spans):
                key = self._email_of_case(case, span.email_id, f"spans.{index}.email_id")
                assert key is not None
                by_email.setdefault(key, []).append(span)
            emails = {e["_id"]: e for e in await self.store.find_emails(list(by_email))}
            for index, span in enumerate(command.spans):
                email = emails[rules.message_id_key(span.email_id)]
                problem = span_problem(email.get(span.field) or "", span.start, span.end)
                if problem:
                    raise Refused("bad_span", problem, field=f"spans.{index}")
            marked = [
                marked_text(emails[rules.message_id_key(s.email_id)], s) for s in command.spans
            ]
            await self.bus.scrub_masked_text(propagation_pieces(marked))  # dead letters, retries
            fragments: list[str] = []
            me = str(command.message_id)
            for key, spans in by_email.items():
                by_field = {
                    field: [Span(s.start, s.end) for s in spans if s.field == field]
                    for field in ("text", "subject")
                }
                for field, mine in by_field.items():
                    if mine:
                        fragments += mask_spans(emails[key].get(field) or "", mine)[1]

                def change(
                    email: EmailRecord, by_field: dict[str, list[Span]] = by_field
                ) -> EmailRecord | None:
                    # Applied to the email as it is when written (a delivery status recorded
                    # meanwhile stays); starring keeps lengths, so the offsets still hold.
                    if any(m.get("command") == me for m in email.masked):
                        return None  # this command ran already (retry after a crash)
                    starred = {
                        "text": mask_spans(email.text, by_field["text"])[0],
                        "subject": mask_spans(email.subject, by_field["subject"])[0],
                    }
                    mark = {
                        "by": command.agent_id,
                        "what": "spans",
                        "count": sum(len(m) for m in by_field.values()),
                        "at": _now(),
                        "command": me,
                    }
                    return email.model_copy(
                        update={
                            **{f: v for f, v in starred.items() if by_field[f]},
                            "html_withheld": True,
                            "masked": [*email.masked, mark],
                        }
                    )

                await self.store.update_email(key, change)
            pieces = propagation_pieces(fragments)
            await self.store.redact_case_copies(case["_id"], pieces)
            await self.store.forget_answers([q.name for q in queues.QUERIES.values()])

            def build(current: Document) -> tuple[list[Message], dict[str, Any]]:
                body = {k: v for k, v in current.items() if k != "_id"}
                new, _ = redact_everywhere(body, pieces)
                current.update(new)
                current.setdefault("history", []).append(
                    {
                        "what": "masked",
                        "at": _now(),
                        "agent_id": command.agent_id,
                        "emails": sorted(by_email),
                        "spans": len(command.spans),
                    }
                )
                return [
                    c.CaseMasked.caused_by(
                        command,
                        key="masked",
                        case_number=current["_id"],
                        email_ids=sorted(by_email),
                        spans=len(command.spans),
                        agent_id=command.agent_id,
                    )
                ], {"case_number": current["_id"], "masked_spans": len(command.spans)}

            return build

        result = await self._case_command(command, plan)
        # Once more, now that the case document is masked too: an answer stored meanwhile
        # may have quoted its notes.
        await self.store.forget_answers([q.name for q in queues.QUERIES.values()])
        return result

"""Agent commands on the record they hold: accept, reject, preview, call, disposition,
complete, skip, reschedule.

Agent commands follow one pattern: load the record, refuse unless this agent holds it, let the
domain decide, then :meth:`RecordCommands._commit` writes the record together with the messages
it will publish (its *outbox*) and the answer, publishes, and answers. A copy of the command that
runs again after a crash (between the write and the ledger) finds its own id on the record and
re-publishes the same messages (same ids: the next consumers drop them) instead of refusing."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from switchboard.contracts import Message
from switchboard.contracts.campaigns import (
    AcceptRecord,
    CallNumber,
    CampaignSpec,
    CompleteRecord,
    DialRequested,
    GetRecord,
    RecordCommand,
    RecordCompleted,
    RecordDispositioned,
    RecordEvent,
    RecordRescheduled,
    RecordSkipped,
    RejectRecord,
    RescheduleRecord,
    SetCallDisposition,
    SkipRecord,
)
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    OfferAnswer,
)
from switchboard.dialer import domain, metrics
from switchboard.dialer.domain import (
    Attempt,
    HistoryEntry,
    Problem,
    Record,
)
from switchboard.dialer.domain.access import Access, record_access
from switchboard.dialer.domain.holding import dialled, disposed, handed_back, rescheduled
from switchboard.dialer.handlers.base import (
    _json,
    _Replay,
    interaction_id,
    refused,
    stored_message,
)
from switchboard.dialer.handlers.routing_side import RoutingSide
from switchboard.dialer.store.records import StoredRecord
from switchboard.runtime.assignments import routing_holds
from switchboard.runtime.errors import Refused

log = structlog.get_logger("switchboard.dialer")


class RecordCommands(RoutingSide):
    async def _catch_up_assignment(
        self, record: StoredRecord, command: RecordCommand
    ) -> StoredRecord:
        """The agent may act before ``interaction.assigned`` reached us (it travels on another
        queue than their command). Routing owns assignments: ask it before refusing."""
        if not await routing_holds(self.bus, command.agent_id, interaction_id(record.id)):
            return record
        spec = await self.store.campaign(record.campaign_id)
        if spec is not None:
            await self.on_assigned(
                InteractionAssigned.caused_by(
                    command,
                    key="assignment-check",
                    interaction_id=interaction_id(record.id),
                    agent_id=command.agent_id,
                    channel="preview",
                    service=spec.service,
                )
            )
        return await self.store.record(record.id) or record

    async def _held(
        self, command: RecordCommand, states: tuple[str, ...] = ("held",)
    ) -> tuple[StoredRecord, CampaignSpec]:
        record = await self.store.record(command.record_id)
        if record is None:
            metrics.REFUSED.labels("unknown_record").inc()
            raise hidden_record(command.record_id)
        if record.last_command == str(command.message_id):
            raise _Replay(record)
        if "held" in states and record.state in ("ready", "offered"):
            record = await self._catch_up_assignment(record, command)
        if record_access(record, command.agent_id, command.acting_role) is Access.NONE:
            metrics.REFUSED.labels("unknown_record").inc()
            raise hidden_record(command.record_id)  # not theirs: not there, as far as they know
        if record.state not in states or record.agent_id != command.agent_id:
            metrics.REFUSED.labels("not_held").inc()
            what = "offered to" if states == ("offered",) else "held by"
            raise Refused(
                "not_held",
                f"record {record.id} is not {what} agent {command.agent_id}",
                field="agent_id",
            )
        spec = await self.store.campaign(record.campaign_id)
        if spec is None:
            raise Refused("unknown_campaign", f"campaign {record.campaign_id!r} is gone")
        return record, spec

    async def _commit(
        self,
        command: RecordCommand,
        record: Record,
        messages: list[Message],
        result: dict[str, Any],
        action: str,
    ) -> dict[str, Any]:
        saved = await self.store.save(
            record.model_copy(
                update={"last_command": str(command.message_id), "last_result": result}
            ),
            [stored_message(m) for m in messages],
            now=self.now(),
        )
        await self._after_commit(saved, command.agent_id)
        metrics.ACTIONS.labels(action).inc()
        return result

    async def _after_commit(self, record: StoredRecord, agent_id: str) -> None:
        """What follows the write: the skip for reports, the messages, the metric. A replayed
        command publishes what its first run left unpublished (nothing when it got that far)."""
        if record.last_result.get("skipped"):
            await self.store.add_skip(record, agent_id, record.history[-1].at)
        await self._flush(record)
        if record.state == "closed" and record.result:
            metrics.CLOSED.labels(record.result).inc()

    async def _agent_command(
        self,
        command: RecordCommand,
        act: Callable[[Record, CampaignSpec], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """What every agent command that changes a record goes through: the record must be
        held by this agent (else ``not_held``), a command seen before re-publishes its
        messages and answers as it did, and a rule's :class:`Problem` is the refusal."""
        try:
            record, spec = await self._held(command)
            return await act(record, spec)
        except _Replay as replay:
            log.info("command seen before: publishing its messages again")
            await self._after_commit(replay.record, command.agent_id)
            return replay.record.last_result
        except Problem as problem:
            raise refused(problem) from None

    async def accept(self, command: AcceptRecord) -> dict[str, Any]:
        return await self._answer_offer(command, accept=True, reason="")

    async def reject(self, command: RejectRecord) -> dict[str, Any]:
        return await self._answer_offer(command, accept=False, reason=command.reason)

    async def _answer_offer(
        self, command: AcceptRecord | RejectRecord, *, accept: bool, reason: str
    ) -> dict[str, Any]:
        record = await self.store.record(command.record_id)
        if accept and record and record.state == "held" and record.agent_id == command.agent_id:
            return {"state": "held", "record_id": record.id}
        try:
            record, _ = await self._held(command, ("offered",))
        except _Replay as replay:
            record = replay.record
        assert record.offer_id is not None
        await self.bus.publish(
            OfferAnswer.caused_by(
                command,
                offer_id=record.offer_id,
                agent_id=command.agent_id,
                accept=accept,
                reason=reason,
            )
        )
        metrics.ACTIONS.labels("accept" if accept else "reject").inc()
        return {"offer_id": record.offer_id, "accepted": accept}

    async def get_record(self, command: GetRecord) -> dict[str, Any]:
        """The preview: to the agent it is offered to or held by, and to supervisors
        (``domain.access``)."""
        if command.acting_role == "supervisor":
            record = await self.store.record(command.record_id)
            if record is None:
                raise hidden_record(command.record_id)
            campaign = await self.store.campaign(record.campaign_id)
            if campaign is None:
                raise Refused("unknown_campaign", f"campaign {record.campaign_id!r} is gone")
            return await self.preview(record, campaign)
        try:
            record, spec = await self._held(command, ("offered", "held"))
        except _Replay as replay:  # a get changes nothing, so it is never on the record
            record = replay.record
            found = await self.store.campaign(record.campaign_id)
            assert found is not None
            spec = found
        return await self.preview(record, spec)

    async def preview(self, record: Record, spec: CampaignSpec) -> dict[str, Any]:
        now = self.now()
        dnc = await self.store.dnc_hits(record.campaign_id, spec, [p.number for p in record.phones])
        recommended = domain.recommended_number(record, spec, dnc, now)
        numbers = []
        for status in domain.number_statuses(record, spec, dnc, now):
            first = status.zones[0]
            numbers.append(
                {
                    "number": status.phone.number,
                    "type": status.phone.type,
                    "recommended": status.phone.number == recommended,
                    "callable_now": status.blocked is None and status.in_window,
                    "why_not": status.blocked
                    or (None if status.in_window else "outside_calling_hours"),
                    "zones": list(status.zones),
                    "local_time": f"{now.astimezone(domain.zone(first)):%H:%M}",
                    "attempts": record.attempts_on(status.phone.number),
                }
            )
        active = record.active_call()
        return _json(
            {
                "record_id": record.id,
                "campaign_id": record.campaign_id,
                "campaign": spec.name,
                "customer": record.name,
                "external_id": record.external_id,
                "state": record.state,
                "fields": record.fields,
                "numbers": numbers,
                "recommended": recommended,
                "attempts": [a.model_dump() for a in record.attempts],
                "history": [h.model_dump() for h in record.history],
                "skips": record.skips,
                "review_due": record.review_due,
                "needs_disposition": record.needs_disposition,
                "active_call": active.model_dump() if active else None,
                "dispositions": [d.model_dump() for d in spec.dispositions],
            }
        )

    async def complete(self, command: CompleteRecord) -> dict[str, Any]:
        async def run(record: Record, spec: CampaignSpec) -> dict[str, Any]:
            now = self.now()
            current = record.current_attempts()
            if record.needs_disposition and command.disposition is None:
                raise Problem(
                    "disposition_required",
                    "the last call has no disposition: set it, or complete with one",
                    "disposition",
                )
            name = command.disposition or (current[-1].disposition if current else None)
            disposition = domain.find_disposition(spec, name or spec.default_disposition)
            if record.needs_disposition:
                record = disposed(record, disposition, command.note)
            dnc = await self._dnc(record, spec)
            following = domain.after_disposition(record, spec, disposition, dnc, now)
            entry = HistoryEntry(
                at=now,
                kind="complete",
                agent_id=command.agent_id,
                disposition=disposition.name,
                detail=command.note,
            )
            record, result = handed_back(
                record, following, entry, now, disposition=disposition.name
            )
            result.update(disposition=disposition.name, kind=disposition.kind)
            messages: list[Message] = [
                self._ended(command, "completed"),
                _record_event(
                    RecordCompleted,
                    command,
                    record,
                    disposition=disposition.name,
                    state=record.state,
                ),
            ]
            return await self._commit(command, record, messages, result, "complete")

        return await self._agent_command(command, run)

    async def skip(self, command: SkipRecord) -> dict[str, Any]:
        async def run(record: Record, spec: CampaignSpec) -> dict[str, Any]:
            if record.needs_disposition:
                raise Problem(
                    "disposition_required",
                    "set the disposition of the last call before skipping",
                    "disposition",
                )
            now = self.now()
            record = record.model_copy(update={"skips": record.skips + 1})
            following = domain.skip_outcome(record, spec, now)
            entry = HistoryEntry(
                at=now, kind="skip", agent_id=command.agent_id, detail=command.reason
            )
            record, result = handed_back(record, following, entry, now)
            result.update(skips=record.skips, skipped=True)
            messages: list[Message] = [
                self._ended(command, "skipped"),
                _record_event(RecordSkipped, command, record, state=record.state),
            ]
            return await self._commit(command, record, messages, result, "skip")

        return await self._agent_command(command, run)

    async def call(self, command: CallNumber) -> dict[str, Any]:
        async def run(record: Record, spec: CampaignSpec) -> dict[str, Any]:
            call_id = uuid.uuid5(command.message_id, "call").hex
            return await self._dial(record, spec, command.number, call_id, command)

        return await self._agent_command(command, run)

    async def _dial(
        self,
        record: Record,
        spec: CampaignSpec,
        wanted: str | None,
        call_id: str,
        command: CallNumber | None,
    ) -> dict[str, Any]:
        """Dial for the agent holding ``record`` (``command`` None: the review timer)."""
        now = self.now()
        agent_id = record.agent_id
        assert agent_id is not None
        if record.active_call() is not None:
            raise Problem("call_in_progress", "a call of this record is still in progress")
        if record.needs_disposition:
            raise Problem(
                "disposition_required",
                "set the disposition of the last call before calling again",
                "disposition",
            )
        dnc = await self._dnc(record, spec)
        if wanted is None:
            number = domain.recommended_number(record, spec, dnc, now)
            if number is None:
                raise Problem(
                    "no_callable_number", "no number of this record may be called now", "number"
                )
        else:
            try:
                number = domain.normalise_number(wanted, spec.default_region)
            except ValueError as exc:
                raise Problem("bad_number", str(exc), "number") from None
        domain.check_call(record, spec, dnc, number, now)
        attempt = Attempt(
            call_id=call_id, at=now, number=number, agent_id=agent_id, automatic=command is None
        )
        record = dialled(record, attempt)
        fields: dict[str, Any] = {
            "call_id": call_id,
            "record_id": record.id,
            "campaign_id": record.campaign_id,
            "agent_id": agent_id,
            "number": number,
            "automatic": command is None,
        }
        result = {"call_id": call_id, "number": number, "automatic": command is None}
        if command is not None:
            return await self._commit(
                command, record, [DialRequested.caused_by(command, **fields)], result, "call"
            )
        dial = DialRequested(message_id=uuid.uuid5(uuid.UUID(call_id), "dial"), **fields)
        saved = await self.store.save(
            record.model_copy(update={"last_command": None, "last_result": result}),
            [stored_message(dial)],
            now=now,
        )
        await self._flush(saved)
        metrics.ACTIONS.labels("auto_call").inc()
        log.info(
            "review time over: dialled the recommended number",
            record_id=saved.id,
            agent_id=agent_id,
            number=number,
        )
        return result

    async def set_disposition(self, command: SetCallDisposition) -> dict[str, Any]:
        async def run(record: Record, spec: CampaignSpec) -> dict[str, Any]:
            if not record.current_attempts():
                raise Problem(
                    "no_call",
                    "no call was made on this record: complete it with a disposition instead",
                    "disposition",
                )
            disposition = domain.find_disposition(spec, command.disposition)
            record = disposed(record, disposition, command.note)
            last = record.current_attempts()[-1]
            result = {
                "call_id": last.call_id,
                "disposition": disposition.name,
                "kind": disposition.kind,
                "number_marked_bad": disposition.marks_number_bad,
            }
            messages: list[Message] = [
                RecordDispositioned.caused_by(
                    command,
                    record_id=record.id,
                    campaign_id=record.campaign_id,
                    agent_id=command.agent_id,
                    disposition=disposition.name,
                    state=record.state,
                    call_id=last.call_id,
                )
            ]
            return await self._commit(command, record, messages, result, "disposition")

        return await self._agent_command(command, run)

    async def reschedule(self, command: RescheduleRecord) -> dict[str, Any]:
        async def run(record: Record, spec: CampaignSpec) -> dict[str, Any]:
            now = self.now()
            if command.at <= now:
                raise Problem("in_the_past", "the new time must be in the future", "at")
            if record.attempt_count >= spec.max_attempts:
                raise Problem(
                    "attempts_exhausted", "this record has no attempts left; complete it instead"
                )
            name = command.disposition
            if name is None:
                default = domain.first_of_kind(spec, "reschedule")
                name = default.name if default else None
            disposition = domain.find_disposition(spec, name) if name else None
            if record.needs_disposition and disposition is not None:
                record = disposed(record, disposition, command.note)
            entry = HistoryEntry(
                at=now,
                kind="reschedule",
                agent_id=command.agent_id,
                disposition=name,
                detail=f"{'personal ' if command.personal else ''}"
                f"{command.at.isoformat()} {command.note}".strip(),
            )
            personal = command.agent_id if command.personal else None
            record = rescheduled(record, command.at, personal, name, entry)
            result = {
                "state": "pending",
                "at": command.at.isoformat(),
                "personal": command.personal,
            }
            messages: list[Message] = [
                self._ended(command, "rescheduled"),
                _record_event(
                    RecordRescheduled,
                    command,
                    record,
                    disposition=name,
                    state="pending",
                    at=command.at,
                    personal=command.personal,
                ),
            ]
            return await self._commit(command, record, messages, result, "reschedule")

        return await self._agent_command(command, run)

    def _ended(self, command: RecordCommand, outcome: str) -> InteractionEnded:
        return InteractionEnded.caused_by(
            command,
            interaction_id=interaction_id(command.record_id),
            agent_id=command.agent_id,
            channel="preview",
            outcome=outcome,
        )


def hidden_record(record_id: str) -> Refused:
    """The one answer for a record that is not there and for one this person may not see
    (``domain.access``): same code, words and field."""
    return Refused("unknown_record", f"no record {record_id!r}", field="record_id")


def _record_event(
    cls: type[RecordEvent], command: RecordCommand, record: Record, **fields: Any
) -> RecordEvent:
    """The event an agent command publishes about its record."""
    return cls.caused_by(
        command,
        record_id=record.id,
        campaign_id=record.campaign_id,
        agent_id=command.agent_id,
        **fields,
    )

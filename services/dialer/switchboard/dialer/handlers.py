"""Thin handlers: validate -> domain -> store -> publish.

Agent commands follow one pattern: load the record, refuse unless this agent holds it, let the
domain decide, then :meth:`DialerHandlers._commit` writes the record together with the messages
it will publish (its *outbox*) and the answer, publishes, and answers. A copy of the command that
runs again after a crash (between the write and the ledger) finds its own id on the record and
re-publishes the same messages (same ids: the next consumers drop them) instead of refusing.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from switchboard.contracts import Message, message_class
from switchboard.contracts.agents import AgentStateChanged
from switchboard.contracts.campaigns import (
    AcceptRecord,
    CallNumber,
    CallProgressed,
    CampaignSpec,
    ChangeDoNotCall,
    CompleteRecord,
    CreateCampaign,
    DialRequested,
    Disposition,
    GetCampaignReport,
    GetImport,
    GetRecord,
    ImportRecords,
    RecordClosed,
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
    UpdateCampaign,
)
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    OfferAnswer,
    OfferMade,
    OfferRejected,
    OfferTimedOut,
    RouteRequested,
    RouteWithdrawn,
)
from switchboard.dialer import domain, metrics
from switchboard.dialer.domain import (
    LIVE_STATES,
    TERMINAL_CALL,
    Attempt,
    HistoryEntry,
    Problem,
    Record,
)
from switchboard.dialer.importer import BadRow, ParsedRow, parse_stream
from switchboard.dialer.store import GLOBAL, DialerStore
from switchboard.runtime.assignments import routing_holds
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import Refused

log = structlog.get_logger("switchboard.dialer")

PREFIX = "record-"
_STATUS_ORDER = {"requested": 0, "dialing": 1, "ringing": 2, "answered": 3}


def interaction_id(record_id: str) -> str:
    return f"{PREFIX}{record_id}"


def record_id_of(interaction: str) -> str | None:
    return interaction[len(PREFIX) :] if interaction.startswith(PREFIX) else None


def refused(problem: Problem) -> Refused:
    metrics.REFUSED.labels(problem.code).inc()
    return Refused(problem.code, problem.message, field=problem.field)


async def _chunks(text: str, size: int = 65536) -> AsyncIterator[bytes]:
    data = text.encode()
    for start in range(0, len(data), size):
        yield data[start : start + size]


class _Replay(Exception):
    def __init__(self, record: Record) -> None:
        self.record = record


class DialerHandlers:
    def __init__(
        self,
        store: DialerStore,
        bus: Bus,
        *,
        route_refresh_seconds: float = 60.0,
        hopper_size: int = 200,
        import_batch: int = 1000,
        review_lease_seconds: float = 30.0,
        default_region: str = "US",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.bus = bus
        self.route_refresh = timedelta(seconds=route_refresh_seconds)
        self.hopper_size = hopper_size
        self.backlog_grace = timedelta(seconds=30)
        self.import_batch = import_batch
        self.review_lease = timedelta(seconds=review_lease_seconds)
        self.default_region = default_region
        self.now = clock

    # -- operators -----------------------------------------------------------------------------

    async def create_campaign(self, command: CreateCampaign) -> dict[str, Any]:
        spec = self._valid_spec(command.campaign)
        if not await self.store.create_campaign(command.campaign_id, spec, self.now()):
            existing = await self.store.campaign(command.campaign_id)
            if existing == spec:
                return {"campaign_id": command.campaign_id, "created": False}
            raise Refused(
                "campaign_exists",
                f"campaign {command.campaign_id!r} exists; update it instead",
                field="campaign_id",
            )
        log.info("campaign created", campaign_id=command.campaign_id)
        return {"campaign_id": command.campaign_id, "created": True}

    async def update_campaign(self, command: UpdateCampaign) -> dict[str, Any]:
        spec = self._valid_spec(command.campaign)
        if not await self.store.update_campaign(command.campaign_id, spec, self.now()):
            raise _unknown_campaign(command.campaign_id)
        log.info("campaign updated", campaign_id=command.campaign_id, active=spec.active)
        return {"campaign_id": command.campaign_id, "active": spec.active}

    async def _campaign(self, campaign_id: str) -> CampaignSpec:
        """The preamble of operator commands naming a campaign: it must exist."""
        spec = await self.store.campaign(campaign_id)
        if spec is None:
            raise _unknown_campaign(campaign_id)
        return spec

    def _valid_spec(self, spec: CampaignSpec) -> CampaignSpec:
        try:
            return domain.validate_campaign(spec)
        except Problem as problem:
            raise refused(problem) from None

    async def change_dnc(self, command: ChangeDoNotCall) -> dict[str, Any]:
        scope = command.campaign_id or GLOBAL
        if command.campaign_id:
            await self._campaign(command.campaign_id)
        numbers: dict[str, list[str]] = {"add": [], "remove": []}
        for which in ("add", "remove"):
            for index, raw in enumerate(getattr(command, which)):
                try:
                    numbers[which].append(domain.normalise_number(raw, command.default_region))
                except ValueError as exc:
                    raise Refused("bad_number", str(exc), field=f"{which}.{index}") from None
        await self.store.change_dnc(scope, numbers["add"], numbers["remove"], self.now())
        return {"scope": scope, "added": numbers["add"], "removed": numbers["remove"]}

    async def import_records(self, command: ImportRecords) -> dict[str, Any]:
        spec = await self._campaign(command.campaign_id)
        return await self.run_import(
            command.campaign_id,
            _chunks(command.content),
            command.format,
            command.default_region or spec.default_region,
            import_id=uuid.uuid5(command.message_id, "import").hex,
        )

    async def run_import(
        self,
        campaign_id: str,
        chunks: AsyncIterator[bytes],
        file_format: str,
        region: str,
        *,
        import_id: str,
    ) -> dict[str, Any]:
        """Stream a file into the campaign: batched upserts, progress saved per batch."""
        started = time.monotonic()
        await self.store.start_import(import_id, campaign_id, file_format, self.now())
        counts = {"rows": 0, "imported": 0, "updated": 0, "bad": 0}
        good: list[ParsedRow] = []
        bad: list[BadRow] = []
        last_line = 0
        stats: dict[str, int] = {}

        async def flush() -> None:
            inserted, updated = await self.store.upsert_records(campaign_id, good, self.now())
            await self.store.add_import_errors(import_id, bad)
            counts["imported"] += inserted
            counts["updated"] += updated
            counts["bad"] += len(bad)
            metrics.IMPORTED.labels("inserted").inc(inserted)
            metrics.IMPORTED.labels("updated").inc(updated)
            metrics.IMPORTED.labels("bad").inc(len(bad))
            good.clear()
            bad.clear()
            await self.store.import_progress(
                import_id, {"lines": last_line, **{k: counts[k] for k in counts}}
            )

        try:
            async for row in parse_stream(chunks, file_format, region, stats):
                last_line = max(last_line, row.line)
                counts["rows"] += 1
                (bad if isinstance(row, BadRow) else good).append(row)  # type: ignore[arg-type]
                if len(good) + len(bad) >= self.import_batch:
                    await flush()
                    if counts["rows"] % (self.import_batch * 10) == 0:
                        log.info("import progressing", import_id=import_id, **counts)
            await flush()
        except Exception as exc:
            await self.store.import_progress(
                import_id, {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
            )
            raise
        seconds = round(time.monotonic() - started, 3)
        await self.store.import_progress(
            import_id,
            {"state": "done", "finished_at": self.now(), "seconds": seconds, **stats},
        )
        log.info("import done", import_id=import_id, seconds=seconds, **counts)
        summary = await self.store.get_import(import_id)
        assert summary is not None
        return _json(summary)

    async def get_import(self, command: GetImport) -> dict[str, Any]:
        found = await self.store.get_import(command.import_id, errors=1000)
        if found is None:
            raise Refused("unknown_import", f"no import {command.import_id!r}", field="import_id")
        return _json(found)

    async def report(self, command: GetCampaignReport) -> dict[str, Any]:
        spec = await self._campaign(command.campaign_id)
        return {"name": spec.name, **await self.store.report(command.campaign_id)}

    async def on_record_event(self, event: RecordEvent) -> None:
        await self.store.add_journal(
            {
                "_id": str(event.message_id),
                "change": event.change,
                "record_id": event.record_id,
                "campaign_id": event.campaign_id,
                "agent_id": event.agent_id,
                "disposition": event.disposition,
                "state": event.state,
                "at": event.occurred_at,
            }
        )

    # -- the routing side ----------------------------------------------------------------------

    async def on_offer_made(self, event: OfferMade) -> None:
        record, spec = await self._for_interaction(event.interaction_id)
        if record is None or spec is None:
            return
        if record.state == "offered" and record.offer_id == event.offer_id:
            pass  # a replay: answer again below, the answer's id is the same
        elif record.state in ("ready", "offered"):
            record = await self.store.save(
                record.model_copy(
                    update={
                        "state": "offered",
                        "agent_id": event.agent_id,
                        "offer_id": event.offer_id,
                    }
                )
            )
        else:
            log.info("offer for a record not in routing", record_id=record.id, state=record.state)
            return
        if spec.auto_accept and not event.auto_accept:
            await self.bus.publish(
                OfferAnswer.caused_by(
                    event,
                    offer_id=event.offer_id,
                    agent_id=event.agent_id,
                    accept=True,
                    reason="auto-accepted by the campaign",
                )
            )

    async def on_offer_lost(self, event: OfferRejected | OfferTimedOut) -> None:
        record, _ = await self._for_interaction(event.interaction_id)
        if record is None or record.state != "offered" or record.offer_id != event.offer_id:
            return
        await self.store.save(
            record.model_copy(
                update={"state": "ready", "agent_id": None, "offer_id": None, "routed_at": None}
            )
        )

    async def on_assigned(self, event: InteractionAssigned) -> None:
        record, spec = await self._for_interaction(event.interaction_id)
        if record is None or spec is None:
            return
        if record.state == "held" and record.agent_id == event.agent_id:
            return
        if record.state not in ("ready", "offered"):
            if await routing_holds(self.bus, event.agent_id, event.interaction_id) is False:
                log.info("late copy of an assignment already over", record_id=record.id)
                return
            log.warning(
                "assignment of a record no longer in routing: releasing the agent",
                record_id=record.id,
                state=record.state,
                agent_id=event.agent_id,
            )
            await self.bus.publish(
                InteractionEnded.caused_by(
                    event,
                    interaction_id=event.interaction_id,
                    agent_id=event.agent_id,
                    channel="preview",
                    outcome="withdrawn",
                )
            )
            return
        now = self.now()
        review = now + timedelta(seconds=spec.review_seconds) if spec.review_seconds else None
        await self.store.save(
            record.model_copy(
                update={
                    "state": "held",
                    "agent_id": event.agent_id,
                    "offer_id": event.offer_id,
                    "held_since": now,
                    "review_due": review,
                    "personal_agent_id": None,
                    "needs_disposition": False,
                }
            )
        )
        await self.store.release_backlog_of(record.id)  # held: no longer waiting in routing
        metrics.ACTIONS.labels(event.how).inc()

    async def on_agent_state(self, event: AgentStateChanged) -> None:
        """A logged-out agent's record goes back to the campaign (not counted as a skip)."""
        if event.state != "logged_out":
            return
        for record in await self.store.held_by(event.agent_id):
            if record.state != "held":
                continue
            entry = HistoryEntry(
                at=self.now(), kind="released", agent_id=event.agent_id, detail="agent logged out"
            )
            await self.store.save(
                record.model_copy(
                    update={
                        "state": "pending",
                        "next_at": self.now(),
                        "agent_id": None,
                        "offer_id": None,
                        "held_since": None,
                        "review_due": None,
                        "history": [*record.history, entry],
                    }
                )
            )
            await self.bus.publish(
                InteractionEnded.caused_by(
                    event,
                    key=record.id,
                    interaction_id=interaction_id(record.id),
                    agent_id=event.agent_id,
                    channel="preview",
                    outcome="released",
                )
            )

    async def _for_interaction(self, interaction: str) -> tuple[Record | None, CampaignSpec | None]:
        record_id = record_id_of(interaction)
        if record_id is None:
            return None, None
        record = await self.store.record(record_id)
        if record is None:
            log.warning("interaction of an unknown record", interaction_id=interaction)
            return None, None
        return record, await self.store.campaign(record.campaign_id)

    # -- agent commands ------------------------------------------------------------------------

    async def _catch_up_assignment(self, record: Record, command: RecordCommand) -> Record:
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
    ) -> tuple[Record, CampaignSpec]:
        record = await self.store.record(command.record_id)
        if record is None:
            metrics.REFUSED.labels("unknown_record").inc()
            raise Refused("unknown_record", f"no record {command.record_id!r}", field="record_id")
        if record.last_command == str(command.message_id):
            raise _Replay(record)
        if "held" in states and record.state in ("ready", "offered"):
            record = await self._catch_up_assignment(record, command)
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
                update={
                    "last_command": str(command.message_id),
                    "last_result": result,
                    "outbox": [{"name": m.NAME, "json": m.model_dump_json()} for m in messages],
                }
            )
        )
        await self._after_commit(saved, command.agent_id)
        metrics.ACTIONS.labels(action).inc()
        return result

    async def _after_commit(self, record: Record, agent_id: str) -> None:
        if record.last_result.get("skipped"):
            await self.store.add_skip(record, agent_id, record.history[-1].at)
        for item in record.outbox:
            await self.bus.publish(message_class(item["name"]).model_validate_json(item["json"]))
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
                record = _disposed(record, disposition, command.note)
            dnc = await self._dnc(record, spec)
            following = domain.after_disposition(record, spec, disposition, dnc, now)
            entry = HistoryEntry(
                at=now,
                kind="complete",
                agent_id=command.agent_id,
                disposition=disposition.name,
                detail=command.note,
            )
            record, result = _handed_back(
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
            record, result = _handed_back(record, following, entry, now)
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
        record = record.model_copy(
            update={
                "attempts": [*record.attempts, attempt],
                "attempt_count": record.attempt_count + 1,
                "call_id": call_id,
                "needs_disposition": True,
                "review_due": None,
            }
        )
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
            record.model_copy(
                update={
                    "outbox": [{"name": dial.NAME, "json": dial.model_dump_json()}],
                    "last_command": None,
                    "last_result": result,
                }
            )
        )
        await self.bus.publish(dial)
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
            record = _disposed(record, disposition, command.note)
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
                record = _disposed(record, disposition, command.note)
            entry = HistoryEntry(
                at=now,
                kind="reschedule",
                agent_id=command.agent_id,
                disposition=name,
                detail=f"{'personal ' if command.personal else ''}"
                f"{command.at.isoformat()} {command.note}".strip(),
            )
            record = _released(record).model_copy(
                update={
                    "state": "pending",
                    "next_at": command.at,
                    "personal_agent_id": command.agent_id if command.personal else None,
                    "disposition": name,
                    "needs_disposition": False,
                    "history": [*record.history, entry],
                }
            )
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

    async def _dnc(self, record: Record, spec: CampaignSpec) -> set[str]:
        return await self.store.dnc_hits(
            record.campaign_id, spec, [p.number for p in record.phones]
        )

    # -- telephony -----------------------------------------------------------------------------

    async def on_call_progress(self, event: CallProgressed) -> None:
        metrics.CALLS.labels(event.status).inc()
        record = await self.store.by_call(event.call_id)
        if record is None:
            log.warning("progress of an unknown call", call_id=event.call_id)
            return
        attempts = list(record.attempts)
        index = next((i for i, a in enumerate(attempts) if a.call_id == event.call_id), None)
        if index is None:
            return
        attempt = attempts[index]
        # Reports of one call may be handled out of order (parallel consumers, retries after a
        # conflict): "answered" counts whenever it comes; a terminal status is final.
        update: dict[str, Any] = {}
        answered = False
        if event.status == "answered":
            if attempt.answered:
                return
            answered = True
            update["answered"] = True
            if attempt.status not in TERMINAL_CALL:
                update["status"] = "answered"
        elif event.status in TERMINAL_CALL:
            if attempt.status in TERMINAL_CALL:
                return
            update["status"] = event.status
            update["ended_at"] = event.at or event.occurred_at
        elif attempt.status in TERMINAL_CALL or _STATUS_ORDER.get(
            event.status, 0
        ) <= _STATUS_ORDER.get(attempt.status, 0):
            return
        else:
            update["status"] = event.status
        attempts[index] = attempt.model_copy(update=update)
        await self.store.save(
            record.model_copy(
                update={
                    "attempts": attempts,
                    "answered_count": record.answered_count + (1 if answered else 0),
                }
            )
        )

    # -- timers --------------------------------------------------------------------------------

    async def dispatch(self) -> None:
        """Due pending records become previews (up to each campaign's backlog); records in
        routing that may no longer be called are withdrawn, the others re-asserted now and
        then (routing ignores a request for work it already has)."""
        now = self.now()
        for campaign_id, spec in await self.store.all_campaigns():
            in_routing = await self._refresh(campaign_id, spec, now)
            if spec.active:
                await self.pick(campaign_id, spec, spec.preview_backlog - in_routing, now)

    async def pick(self, campaign_id: str, spec: CampaignSpec, room: int, now: datetime) -> int:
        """Route up to ``room`` records taken from the campaign's hopper; how many were routed.

        Each record first takes a backlog slot (a unique insert: ``preview_backlog`` holds
        across replicas). Nothing here scans ``records``: the hopper is small, the record is
        read by ``_id`` and re-checked (DNC, window, attempts, still pending and due: the
        hopper entry may be stale), and the claim is the version-guarded write of
        :meth:`DialerStore.save`, so of two replicas on one entry exactly one routes it. A
        record that may not be routed any more is only dropped from the hopper; the refill
        deals with it."""
        if room <= 0:
            return 0
        entries = await self.store.hopper_entries(campaign_id, room + 20)
        random.shuffle(entries)  # replicas start on different entries
        routed = 0
        for record_id in entries:
            started = time.perf_counter()
            slot = await self.store.take_backlog_slot(
                campaign_id, spec.preview_backlog, record_id, now
            )
            if slot is None:
                break  # the campaign's backlog is full (counting every replica's records)
            saved = await self._claim(record_id, spec, now)
            metrics.PICK_SECONDS.observe(time.perf_counter() - started)
            if saved is None:
                await self.store.release_backlog_slot(slot)
                continue
            routed += 1
            if routed >= room:
                break
        return routed

    async def _claim(self, record_id: str, spec: CampaignSpec, now: datetime) -> Record | None:
        try:
            record = await self.store.record(record_id)
            if record is not None and record.state in LIVE_STATES:
                await self.store.derive_live(record)  # a crash between save's two writes
            if record is None or not domain.due_pending(record, now):
                return None
            dnc = await self._dnc(record, spec)
            if domain.decide_routing(record, spec, dnc, now).action != "route":
                return None
            saved = await self.store.try_save(
                record.model_copy(
                    update={"state": "ready", "routed_at": now, "agent_id": None, "offer_id": None}
                )
            )
        finally:
            await self.store.drop_from_hopper(record_id)
        if saved is not None:
            await self._route(saved, spec)
        return saved

    async def refill_hoppers(self) -> None:
        """Top up the hopper of every active campaign (a background task: the scan of
        ``records`` it needs never delays a pick)."""
        now = self.now()
        for campaign_id, spec in await self.store.all_campaigns():
            if spec.active:
                await self.refill(campaign_id, spec, now)

    async def refill(self, campaign_id: str, spec: CampaignSpec, now: datetime) -> int:
        """Below half full, add up to ``hopper_size`` records that are ready now; due records
        that are not (outside their window, every number DNC, attempts used up) are postponed
        or closed here. Returns how many entries were added."""
        if await self.store.hopper_count(campaign_id) >= max(self.hopper_size // 2, 1):
            return 0
        started = time.perf_counter()
        candidates = await self.store.hopper_candidates(campaign_id, now, self.hopper_size)
        numbers = {p.number for r in candidates for p in r.phones}
        dnc = await self.store.dnc_hits(campaign_id, spec, numbers) if numbers else set()
        ready = []
        for record in candidates:
            decision = domain.decide_routing(record, spec, dnc, now)
            if decision.action == "route":
                ready.append(record)
            elif decision.action == "wait":
                await self.store.try_save(record.model_copy(update={"next_at": decision.at}))
            else:
                await self._close(record, decision.reason, now)
        added = await self.store.add_to_hopper(campaign_id, ready, now)
        metrics.REFILL_SECONDS.observe(time.perf_counter() - started)
        return added

    async def _route(self, record: Record, spec: CampaignSpec) -> None:
        request = RouteRequested(
            interaction_id=interaction_id(record.id),
            channel="preview",
            service=spec.service,
            reason="preview",
            personal_agent_id=record.personal_agent_id,
            summary={
                "campaign": spec.name,
                "customer": record.name,
                "campaign_id": record.campaign_id,
                "record_id": record.id,
                "auto_accept": spec.auto_accept,
            },
            requested_at=self.now(),
        )
        try:
            await self.bus.publish(request)
        except Exception as exc:  # routing not up yet: re-asserted by the next refresh
            log.warning("route request not delivered", record_id=record.id, error=str(exc))
            return
        metrics.ROUTED.labels(record.campaign_id).inc()

    async def _close(self, record: Record, reason: str, now: datetime) -> Record | None:
        entry = HistoryEntry(at=now, kind="closed", detail=reason)
        saved = await self.store.try_save(
            record.model_copy(
                update={
                    "state": "closed",
                    "result": reason,
                    "agent_id": None,
                    "history": [*record.history, entry],
                }
            )
        )
        if saved is not None:
            metrics.CLOSED.labels(reason).inc()
            await self.bus.publish(
                RecordClosed(
                    record_id=record.id,
                    campaign_id=record.campaign_id,
                    reason=reason,
                    state="closed",
                    message_id=uuid.uuid5(uuid.UUID(record.id), f"closed:{saved.version}"),
                )
            )
        return saved

    async def _refresh(self, campaign_id: str, spec: CampaignSpec, now: datetime) -> int:
        kept = 0
        records = await self.store.in_routing(campaign_id)
        await self.store.reap_backlog(
            campaign_id, {r.id for r in records}, now - self.backlog_grace
        )
        for record in records:
            dnc = await self._dnc(record, spec)
            decision = domain.decide_routing(record, spec, dnc, now)
            if not spec.active or decision.action != "route":
                reason = "campaign inactive" if not spec.active else decision.reason
                await self._withdraw(record, decision, reason, now)
                continue
            kept += 1
            if record.state == "ready" and (
                record.routed_at is None or record.routed_at <= now - self.route_refresh
            ):
                saved = await self.store.try_save(record.model_copy(update={"routed_at": now}))
                if saved is not None:
                    await self._route(saved, spec)
        return kept

    async def _withdraw(
        self, record: Record, decision: domain.Routing, reason: str, now: datetime
    ) -> None:
        if decision.action == "close":
            saved = await self._close(record, decision.reason, now)
        else:
            saved = await self.store.try_save(
                record.model_copy(
                    update={
                        "state": "pending",
                        "next_at": decision.at or now,
                        "agent_id": None,
                        "offer_id": None,
                    }
                )
            )
        if saved is None:
            return
        await self.store.release_backlog_of(record.id)
        metrics.WITHDRAWN.labels(reason).inc()
        await self.bus.publish(
            RouteWithdrawn(
                interaction_id=interaction_id(record.id),
                reason=reason,
                message_id=uuid.uuid5(uuid.UUID(record.id), f"withdrawn:{saved.version}"),
            )
        )

    async def fire_reviews(self) -> None:
        """Review time over: dial the recommended number for the agent (claimed atomically)."""
        while (record := await self.store.claim_review(self.now(), self.review_lease)) is not None:
            spec = await self.store.campaign(record.campaign_id)
            if spec is None:
                continue
            call_id = uuid.uuid5(uuid.UUID(record.id), f"auto:{record.held_since}").hex
            try:
                await self._dial(record, spec, None, call_id, None)
            except Problem as problem:
                entry = HistoryEntry(
                    at=self.now(),
                    kind="auto_call_refused",
                    agent_id=record.agent_id,
                    detail=problem.message,
                )
                await self.store.try_save(
                    record.model_copy(
                        update={"review_due": None, "history": [*record.history, entry]}
                    )
                )
                log.info(
                    "review time over but no call possible",
                    record_id=record.id,
                    reason=problem.message,
                )

    async def resend_lost_dials(self) -> None:
        """A dial request written but never published (a crash in between) goes out again with
        its own id, so telephony never places it twice."""
        for record in await self.store.unanswered_dials(self.now() - timedelta(seconds=15)):
            for item in record.outbox:
                if item["name"] == DialRequested.NAME:
                    await self.bus.publish(DialRequested.model_validate_json(item["json"]))


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


def _unknown_campaign(campaign_id: str) -> Refused:
    return Refused("unknown_campaign", f"no campaign {campaign_id!r}", field="campaign_id")


def _disposed(record: Record, disposition: Disposition, note: str) -> Record:
    """The last call of the current holding gets its disposition."""
    attempts = list(record.attempts)
    current = record.current_attempts()
    if not current:
        return record
    index = attempts.index(current[-1])
    attempts[index] = attempts[index].model_copy(
        update={"disposition": disposition.name, "note": note}
    )
    bad = list(record.bad_numbers)
    if disposition.marks_number_bad and attempts[index].number not in bad:
        bad.append(attempts[index].number)
    return record.model_copy(
        update={"attempts": attempts, "needs_disposition": False, "bad_numbers": bad}
    )


def _handed_back(
    record: Record, following: domain.Next, entry: HistoryEntry, now: datetime, **update: Any
) -> tuple[Record, dict[str, Any]]:
    """The record leaves its agent for ``following`` (Complete, Skip): the record and the
    core of the answer."""
    record = _released(record).model_copy(
        update={
            "state": following.state,
            "next_at": following.at or now,
            "result": following.result,
            "history": [*record.history, entry],
            **update,
        }
    )
    answer = {
        "state": record.state,
        "result": following.result,
        "next_at": following.at.isoformat() if following.at else None,
    }
    return record, answer


def _released(record: Record) -> Record:
    return record.model_copy(
        update={
            "agent_id": None,
            "offer_id": None,
            "held_since": None,
            "review_due": None,
            "personal_agent_id": None,
        }
    )


def _json(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value

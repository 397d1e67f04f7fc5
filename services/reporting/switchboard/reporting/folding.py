"""Fold one event into the read model: load the facts it needs, decide, write.

The same code folds a live event and a journal entry during a rebuild. Each step writes its
bumps first (natural keys: a repeat is harmless), then the facts that move forward, so an
event cut off half-way and delivered again ends in the same figures.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from switchboard.contracts import Message, message_class
from switchboard.contracts.agents import AgentStateChanged
from switchboard.contracts.campaigns import (
    CallProgressed,
    DialRequested,
    RecordClosed,
    RecordCompleted,
    RecordDispositioned,
    RecordEvent,
    RecordRescheduled,
    RecordSkipped,
)
from switchboard.contracts.cases import (
    CaseClosed,
    CaseCreated,
    CaseEmailAttached,
    CaseOutboundRequested,
    CaseReopened,
    CaseServiceChanged,
    CaseStatusChanged,
    CaseTransferred,
)
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    InteractionTransferred,
    OfferMade,
    OfferTimedOut,
)
from switchboard.reporting import domain
from switchboard.reporting.domain import Bump, CaseFacts, CaseStep, NotYetKnown, Policy
from switchboard.reporting.store import Document, ReportStore

FIRST_AT_A_MOMENT = (CaseCreated, OfferMade, InteractionAssigned, DialRequested)
"""Events that others of the same instant follow (a rebuild folds them first)."""


async def fold_journal(folder: Folder, entries: AsyncIterable[Document]) -> list[str]:
    """Fold journal entries (oldest first; at one instant, the events others follow first);
    the message ids folded."""
    folded: list[str] = []
    moment: list[Message] = []

    async def fold_moment() -> None:
        moment.sort(key=lambda e: not isinstance(e, FIRST_AT_A_MOMENT))
        for event in moment:
            await folder.fold(event)
        moment.clear()

    async for entry in entries:
        event = message_class(str(entry["name"])).model_validate(entry["body"])
        if moment and moment[0].occurred_at != event.occurred_at:
            await fold_moment()
        moment.append(event)
        folded.append(str(entry["_id"]))
    await fold_moment()
    return folded


class Folder:
    def __init__(self, store: ReportStore, policy: Policy) -> None:
        self.store = store
        self.policy = policy
        self._folds: dict[type[Message], Callable[[Any], Awaitable[None]]] = {
            CaseCreated: self._case_created,
            CaseEmailAttached: self._email_attached,
            CaseClosed: self._case_closed,
            CaseReopened: self._case_reopened,
            CaseTransferred: self._case_transferred,
            CaseServiceChanged: self._case_transferred,
            CaseStatusChanged: self._status_changed,
            CaseOutboundRequested: self._outbound_requested,
            OfferMade: self._offer_made,
            OfferTimedOut: self._offer_timed_out,
            InteractionAssigned: self._assigned,
            InteractionEnded: self._ended,
            InteractionTransferred: self._interaction_transferred,
            AgentStateChanged: self._state_changed,
            DialRequested: self._dial_requested,
            CallProgressed: self._call_progressed,
            RecordCompleted: self._record_event,
            RecordSkipped: self._record_event,
            RecordRescheduled: self._record_event,
            RecordDispositioned: self._record_event,
            RecordClosed: self._record_event,
        }

    @property
    def folded(self) -> tuple[type[Message], ...]:
        return tuple(self._folds)

    async def fold(self, event: Message) -> None:
        await self._folds[type(event)](event)

    async def _change_case(
        self, number: int, event: Message, decide: Callable[[CaseFacts | None], CaseStep]
    ) -> None:
        """Decide on the case's current facts and write them with one version-guarded write
        carrying the bumps owed; events of one case travel on several queues and are folded
        concurrently, so a lost race decides again on the fresh facts."""
        event_id = str(event.message_id)
        while True:
            found = await self.store.case_with_version(number)
            if found is not None:
                await self.store.apply(found.owed)
                if event_id in found.seen:
                    return  # folded already (a case remembers the events it folded)
            step = decide(found.facts if found is not None else None)
            if step.facts is None:
                await self.store.apply(step.bumps)
                return
            version = found.version if found is not None else 0
            seen = {*found.seen, event_id} if found is not None else {event_id}
            if await self.store.save_case(step.facts, version, step.bumps, seen):
                break
        await self.store.apply(step.bumps)
        timer = step.timer
        if timer is not None:
            await self.store.timers.set(
                timer.key,
                timer.due,
                {
                    "case_number": number,
                    "service": timer.service,
                    "round": timer.round,
                    "opened_at": timer.opened_at,
                    "target_seconds": timer.target_seconds,
                },
            )

    # -- cases -----------------------------------------------------------------------------

    async def _case_created(self, event: CaseCreated) -> None:
        await self.store.saw_service(event.service)
        await self._change_case(
            event.case_number,
            event,
            lambda facts: domain.case_opened(
                facts, event.case_number, event.service, event.occurred_at, self.policy
            ),
        )

    async def _email_attached(self, event: CaseEmailAttached) -> None:
        facts = await self.store.case(event.case_number)
        if facts is None:
            raise NotYetKnown(f"case {event.case_number} is not known yet")
        service = event.service or facts.service
        await self.store.saw_service(service)
        name = "emails_in" if event.direction == "inbound" else "emails_out"
        at = event.occurred_at
        key = f"email:{event.direction}:{event.case_number}:{event.email_id}"
        await self.store.apply([Bump("service", service, domain.hour_of(at), key, {name: 1})])
        if event.direction == "outbound":
            await self._change_case(
                event.case_number,
                event,
                lambda facts: domain.first_response(
                    facts, event.case_number, service, at, self.policy
                ),
            )

    async def _case_closed(self, event: CaseClosed) -> None:
        await self._change_case(
            event.case_number,
            event,
            lambda facts: domain.case_closed(
                facts, event.case_number, event.service, event.occurred_at, self.policy
            ),
        )

    async def _case_reopened(self, event: CaseReopened) -> None:
        await self._change_case(
            event.case_number,
            event,
            lambda facts: domain.case_reopened(
                facts, event.case_number, event.occurred_at, self.policy
            ),
        )

    async def _case_transferred(self, event: CaseTransferred | CaseServiceChanged) -> None:
        """A transfer, or a case moved to another service by hand (``case.service_changed``):
        counted out of one service and into the other; its backlog and later figures move."""
        await self.store.saw_service(event.to_service)
        await self._change_case(
            event.case_number,
            event,
            lambda facts: domain.case_transferred(
                facts,
                event.case_number,
                event.from_service,
                event.to_service,
                event.occurred_at,
                str(event.message_id),
                self.policy,
            ),
        )

    async def _status_changed(self, event: CaseStatusChanged) -> None:
        await self._change_case(
            event.case_number,
            event,
            lambda facts: domain.status_changed(
                facts, event.case_number, event.pending, event.at, self.policy
            ),
        )

    async def _outbound_requested(self, event: CaseOutboundRequested) -> None:
        if event.agent_id and event.kind == "reply":
            await self.store.apply(
                [domain.reply(event.agent_id, event.occurred_at, event.email_id)]
            )

    # -- routing ---------------------------------------------------------------------------

    async def _offer_made(self, event: OfferMade) -> None:
        await self.store.put("offers", event.offer_id, {"service": event.service})

    async def _offer_timed_out(self, event: OfferTimedOut) -> None:
        offer = await self.store.get("offers", event.offer_id)
        if offer is None:
            raise NotYetKnown(f"offer {event.offer_id} timed out before it was seen made")
        service = str(offer["service"])
        await self.store.apply(
            domain.rona(event.agent_id, service, event.offer_id, event.occurred_at)
        )

    @staticmethod
    def _work_key(interaction_id: str, agent_id: str) -> str:
        return f"{interaction_id}|{agent_id}"

    async def _assigned(self, event: InteractionAssigned) -> None:
        if event.channel != "email":
            return
        key = self._work_key(event.interaction_id, event.agent_id)
        if await self.store.get("assignments", key) is None:
            await self.store.put("assignments", key, {"assigned_at": event.occurred_at})

    async def _work_done(self, interaction_id: str, agent_id: str, event: Message) -> None:
        """The first end of an assignment (ended, or transferred away) counts it as handled;
        a later one (a transfer is also ended) finds it done and adds nothing."""
        key = self._work_key(interaction_id, agent_id)
        found = await self.store.get("assignments", key)
        if found is None:
            raise NotYetKnown(f"{interaction_id} ended before its assignment to {agent_id}")
        ended_at = found.get("ended_at") or event.occurred_at
        bump = domain.handled(agent_id, interaction_id, found["assigned_at"], ended_at)
        await self.store.apply([bump])
        if "ended_at" not in found:
            await self.store.put("assignments", key, {"ended_at": ended_at})

    async def _ended(self, event: InteractionEnded) -> None:
        if event.channel == "email":
            await self._work_done(event.interaction_id, event.agent_id, event)

    async def _interaction_transferred(self, event: InteractionTransferred) -> None:
        if event.channel == "email":
            await self._work_done(event.interaction_id, event.from_agent_id, event)

    # -- agents ----------------------------------------------------------------------------

    async def _state_changed(self, event: AgentStateChanged) -> None:
        change = domain.AgentCursor(
            event.agent_id, event.state, event.reason, event.changed_at, event.sequence
        )
        await self.store.save_change(change)
        before = await self.store.change(event.agent_id, event.sequence - 1)
        after = await self.store.change(event.agent_id, event.sequence + 1)
        if before is not None:
            await self.store.apply(domain.time_in_state(before, change))
        if after is not None:
            await self.store.apply(domain.time_in_state(change, after))
        await self.store.save_cursor(change)

    # -- campaigns -------------------------------------------------------------------------

    async def _dial_requested(self, event: DialRequested) -> None:
        await self.store.put("calls", event.call_id, {"campaign_id": event.campaign_id})
        await self.store.apply(
            [domain.campaign_bump(event.campaign_id, f"dial:{event.call_id}", attempts=1)]
        )

    async def _call_progressed(self, event: CallProgressed) -> None:
        if event.status != "answered":
            return
        call = await self.store.get("calls", event.call_id)
        if call is None:
            raise NotYetKnown(f"call {event.call_id} progressed before it was seen dialled")
        campaign_id = str(call["campaign_id"])
        bump = domain.campaign_bump(campaign_id, f"contact:{event.call_id}", contacts=1)
        await self.store.apply([bump])

    async def _record_event(self, event: RecordEvent) -> None:
        key = f"{event.change}:{event.message_id}"
        counts: dict[str, int] = {}
        if isinstance(event, RecordSkipped):
            counts["skips"] = 1
        elif isinstance(event, RecordDispositioned) and event.disposition:
            counts[domain.disposition_field(event.disposition)] = 1
        elif isinstance(event, RecordCompleted):
            counts["completed"] = 1
            key = f"completed:{event.record_id}"
        elif isinstance(event, RecordClosed):
            counts["closed"] = 1
            key = f"closed:{event.record_id}"
        if counts:
            await self.store.apply([domain.campaign_bump(event.campaign_id, key, **counts)])
        state = event.state or event.change
        await self.store.set_record_state(
            event.record_id, event.campaign_id, state, event.occurred_at
        )

"""Who holds a case: routing's assignments, the catch-up that asks routing before refusing
"not assigned", and the preamble every agent command on a case goes through."""

from __future__ import annotations

from typing import Any

from switchboard.contracts import Message
from switchboard.contracts import cases as c
from switchboard.contracts.routing import (
    InteractionAssigned,
)
from switchboard.runtime.assignments import agent_services, routing_holds
from switchboard.runtime.errors import Refused
from switchboard.threading import access, metrics, rules
from switchboard.threading.domain.common import now as _now
from switchboard.threading.handlers.base import (
    HandlerBase,
    Plan,
    log,
)
from switchboard.threading.refusals import hidden_case
from switchboard.threading.store import CaseMissing, Document


class Assignments(HandlerBase):
    """Routing's assignments, and checking that an agent holds the case they act on."""

    async def on_interaction_assigned(self, event: InteractionAssigned) -> None:
        """Routing gave the case's current interaction to an agent."""
        parsed = rules.parse_interaction_id(event.interaction_id)
        if parsed is None:
            return  # not a case (a calling record)
        number, round_ = parsed

        def build(case: Document) -> tuple[list[Message], dict[str, Any]]:
            interaction = case.setdefault("interaction", {"round": 0, "state": "idle"})
            if int(interaction.get("round", 0)) != round_ or interaction.get("state") not in (
                "routing",
                "assigned",
            ):
                log.info("stale assignment ignored", interaction_id=event.interaction_id)
                return [], {"applied": False}
            interaction.update(state="assigned", agent_id=event.agent_id, since=_now())
            case["agents"] = rules.agents_last_first(case.get("agents", []), event.agent_id)
            case.setdefault("history", []).append(
                {
                    "what": "assigned",
                    "agent_id": event.agent_id,
                    "at": _now(),
                    "interaction_id": event.interaction_id,
                    "how": event.how,
                }
            )
            return [], {"applied": True}

        try:
            await self._commit(number, str(event.message_id), build)
        except CaseMissing:
            log.warning("assignment for an unknown case", interaction_id=event.interaction_id)

    async def _catch_up_assignment(
        self, case: Document, command: c.CaseCommand | c.GetCaseThread
    ) -> Document:
        """The agent may act before ``interaction.assigned`` reached us (it travels on another
        queue than their command). Routing owns assignments: ask it before refusing."""
        interaction = case.get("interaction") or {}
        if interaction.get("state") != "routing" or not interaction.get("id"):
            return case
        if not command.agent_id:
            return case
        if not await routing_holds(self.bus, command.agent_id, interaction["id"]):
            return case
        await self.on_interaction_assigned(
            InteractionAssigned.caused_by(
                command,
                key="assignment-check",
                interaction_id=interaction["id"],
                agent_id=command.agent_id,
                channel="email",
                service=case["service"],
            )
        )
        return await self._case(command.case_number)

    async def _may_see(
        self,
        case: Document,
        agent_id: str | None,
        acting_role: str,
        query: c.GetCaseThread | c.CaseCommand | None = None,
        hidden: Refused | None = None,
    ) -> Document:
        """The case if this person may see it (``access.case_access``), else the answer of a
        case that is not there (``hidden_case``).
        Routing is asked only when needed: whether the agent holds it already (``query``
        given), then which services the agent belongs to."""
        agent = agent_id or ""
        if access.case_access(case, agent, acting_role) is not access.Access.NONE:
            return case
        if query is not None:
            case = await self._catch_up_assignment(case, query)  # opened before the event came
            if access.case_access(case, agent, acting_role) is not access.Access.NONE:
                return case
        services = await agent_services(self.bus, agent) if agent else None
        if access.case_access(case, agent, acting_role, services or ()) is access.Access.NONE:
            raise hidden or hidden_case(case["_id"])
        return case

    async def _prepare(self, command: c.CaseCommand) -> tuple[Document, bool]:
        """Load and authorise; says whether this command already ran (retry after a crash)."""
        case = await self._case(command.case_number)
        if str(command.message_id) in (case.get("handled") or {}):
            return case, True
        if rules.holder_problem(case, command.agent_id, command.acting_role):
            case = await self._may_see(case, command.agent_id, command.acting_role, command)
        self._authorise(case, command.agent_id, command.acting_role)
        return case, False

    async def _case_command(self, command: c.CaseCommand, plan: Plan) -> dict[str, Any]:
        """The frame every agent command on a case shares.

        Load the case and check the agent holds it (asking routing first if the assignment
        may not have reached us); answer a command that already ran (a retry after a crash)
        from its ``handled`` answer; let ``plan`` check the command against the case (a refusal
        there changes nothing) and return the change; apply the change under the case lock,
        checking again that the agent still holds the case; count it.
        """
        case, done = await self._prepare(command)
        if done:
            return await self._replay(case, command)
        build = await plan(case)

        def authorised(current: Document) -> tuple[list[Message], dict[str, Any]]:
            self._authorise(current, command.agent_id, command.acting_role)
            return build(current)

        _, result = await self._commit(case["_id"], str(command.message_id), authorised)
        metrics.COMMANDS.labels(command.NAME, "ok").inc()
        return dict(result)

    async def _replay(self, case: Document, command: Message) -> dict[str, Any]:
        _, result = await self._commit(case["_id"], str(command.message_id), lambda _c: ([], {}))
        return dict(result)

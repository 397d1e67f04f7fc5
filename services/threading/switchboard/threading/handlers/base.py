"""What every threading handler shares: store, bus, thread ids and configuration, and the one
way a case changes.

Every change to a case goes through :meth:`HandlerBase._commit`: one version-guarded write of
the case document that also stores the messages it causes (the kernel's ``Outbox``) and, under
the handled message's id, the answer (``handled``). Then they are published and marked
published. A retried message finds its answer and publishes what of its messages is still
waiting (deterministic ids, so the consumers' ledgers drop any copy); messages left unpublished
by a crash are swept periodically.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiormq.exceptions import PublishError
from pydantic import ValidationError

from switchboard.contracts import Message, message_class
from switchboard.contracts import cases as c
from switchboard.contracts.mail import (
    AttachmentRef,
)
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import Refused
from switchboard.threading import access, metrics, rules
from switchboard.threading import templates as tpl
from switchboard.threading.config import ServiceConfig, ThreadingConfig
from switchboard.threading.domain.cases import (
    apply_disposition,
)
from switchboard.threading.records import CaseRecord
from switchboard.threading.refusals import hidden_case
from switchboard.threading.search_index import CaseIndex
from switchboard.threading.store import OPENED_BY, CaseMissing, Document, ThreadingStore
from switchboard.threading.threadids import ThreadIds

log = structlog.get_logger("switchboard.threading")

_SAMPLE_THREAD = str(tpl.SAMPLE_VALUES["thread_id"])

Build = Callable[[Document], tuple[list[Message], dict[str, Any]]]
Plan = Callable[[Document], Awaitable[Build]]


def _no_template(template_id: str, field: str) -> Refused:
    return Refused("unknown_template", f"there is no reply template {template_id!r}", field=field)


def _stale_template(template_id: str, version: int, expected: int) -> Refused:
    return Refused(
        "stale_template",
        f"template {template_id!r} is at version {version}, not {expected}"
        + (" (0: it does not exist)" if version == 0 else ""),
        field="expected_version",
    )


def _decided(build: Build) -> Callable[[Document], tuple[list[Document], Any]]:
    """``build``'s messages as the outbox stores them (name and JSON body)."""

    def decide(case: Document) -> tuple[list[Document], Any]:
        messages, result = build(case)
        return [{"name": m.NAME, "body": m.model_dump(mode="json")} for m in messages], result

    return decide


class HandlerBase:
    """Threading's dependencies and the plumbing every concern's handlers extend."""

    def __init__(
        self,
        store: ThreadingStore,
        bus: Bus,
        thread_ids: ThreadIds,
        *,
        config: ThreadingConfig | None = None,
        mask_cards_default: bool = True,
    ) -> None:
        self.store = store
        self.bus = bus
        self.ids = thread_ids
        self.config = config or ThreadingConfig()
        self.mask_cards_default = mask_cards_default
        self.index = CaseIndex(store.db)
        """My Cases and search read it; every committed change refreshes the case's entry."""
        self.outbox = store.outbox(lambda message: self._publish_entry(message))

    def service_config(self, service: str) -> ServiceConfig:
        return self.config.for_service(service)

    async def reload_config(self) -> None:
        """Re-read ``service_config`` (every ``SB_CONFIG_REFRESH_SECONDS``): operators edit the
        collection, every replica follows. An empty collection keeps what is loaded."""
        docs = await self.store.config_documents()
        if docs:
            self.config, problems = ThreadingConfig.from_documents(docs, previous=self.config)
            for service, problem in problems.items():
                log.error(
                    "service configuration not valid; the service keeps its previous one",
                    service=service,
                    problem=problem,
                )

    async def _publish(self, message: Message) -> None:
        try:
            await self.bus.publish(message)
        except PublishError:
            if message.KIND == "event" and message.NAME.startswith("case."):
                # Case events are facts for whoever listens; with no listener bound (no
                # gateway in this deployment) the broker returns them. Nothing is lost.
                log.debug("case event has no subscriber", name=message.NAME)
                return
            raise

    async def _publish_entry(self, entry: Document) -> None:
        """Publish one outbox message (stored as its name and JSON body)."""
        await self._publish(message_class(entry["name"]).model_validate(entry["body"]))

    async def refresh_index(self, case_number: int) -> None:
        """Bring the case's search entry up to date after each change."""
        await self.index.refresh(case_number)

    async def _commit(self, case_number: int, key: str, build: Build) -> tuple[Document, Any]:
        """Change the case and record the messages to publish, atomically; then publish."""
        case, result = await self.store.commit(case_number, key, _decided(build))
        await self._flush(case, key)
        return case.document(), result or {}

    async def _commit_new(self, fresh: Document, key: str, build: Build) -> Any:
        """Create a case with its first changes and messages in one insert (no lock needed:
        nobody knows the case yet); a case that exists already (a retry) goes through
        :meth:`_commit`."""
        created = await self.store.commit_new(fresh, key, _decided(build))
        if created is None:  # a retry; or a copy of the command that opened its case first
            opener = fresh.get(OPENED_BY)
            number = (await self.store.case_opened_by(opener) if opener else None) or fresh["_id"]
            _, again = await self._commit(number, key, build)
            return again
        case, result = created
        await self._flush(case, key)
        return result

    async def _flush(self, case: CaseRecord, key: str) -> None:
        """Publish handled message ``key``'s waiting messages, then bring the search entry up
        to date."""
        waiting = case.sent_by(key)
        if waiting:
            await self.outbox.flush(case.id, waiting, written=case)
        await self.refresh_index(case.id)

    async def sweep_outbox(self) -> None:
        """Publish what a crashed handler stored but did not publish (runs periodically)."""
        await self.outbox.sweep()

    async def _case(self, case_number: int, field: str = "case_number") -> Document:
        case = await self.store.get_case(case_number)
        if case is None:
            raise hidden_case(case_number, field)
        return case

    @staticmethod
    def _authorise(case: Document, agent_id: str, acting_role: str) -> None:
        problem = rules.holder_problem(case, agent_id, acting_role)
        if problem:
            raise Refused("not_assigned", problem, field="agent_id")

    async def _check_attachments(
        self,
        attachments: Sequence[AttachmentRef],
        agent_id: str,
        case: Document | None,
        field: str = "attachments",
    ) -> None:
        """Only the case's own attachments and the agent's own uploads may leave."""
        if not attachments:
            return
        of_case = (
            access.case_attachment_ids(await self.store.emails_of_case(case["_id"]))
            if case is not None
            else set()
        )
        uploaded = await self.store.uploaded_by(agent_id, [a.attachment_id for a in attachments])
        refused = access.attachment_problems(attachments, of_case, uploaded)
        if refused:
            raise Refused(
                "attachment_forbidden",
                "not an attachment of this case nor uploaded by you: " + ", ".join(refused),
                field=field,
            )

    async def _link(self, older: int, newer: int) -> None:
        def change(case: CaseRecord) -> CaseRecord | None:
            if newer in case.linked_cases:
                return None
            return case.model_copy(update={"linked_cases": [*case.linked_cases, newer]})

        with contextlib.suppress(CaseMissing):
            await self.store.update_case(older, change)

    def _email_of_case(self, case: Document, email_id: str | None, field: str) -> str | None:
        if email_id is None:
            return None
        key = rules.message_id_key(email_id)
        if key not in case.get("email_keys", []):
            raise Refused(
                "no_such_email", f"case {case['_id']} has no email {email_id}", field=field
            )
        return key

    async def _latest_inbound(self, case: Document) -> Document | None:
        emails = await self.store.emails_of_case(case["_id"])
        inbound = [e for e in emails if e["direction"] == "inbound"]
        return inbound[-1] if inbound else (emails[-1] if emails else None)

    async def _draft_for(self, case: Document, draft_id: str | None) -> Document | None:
        if draft_id is None:
            return None
        draft = await self.store.get_draft(draft_id)
        if draft is None or draft["case_number"] != case["_id"]:
            raise Refused("no_such_draft", f"no draft {draft_id} on this case", field="draft_id")
        return draft

    def _apply_disposition(
        self,
        case: Document,
        command: c.CaseCommand,
        name: str,
        email_key: str | None,
        cfg: ServiceConfig,
    ) -> list[Message]:
        found = cfg.disposition(name)
        if found is None:
            raise Refused(
                "unknown_disposition",
                f"service {case['service']} has no disposition {name!r}",
                field="disposition",
            )
        messages = apply_disposition(case, command, found, email_key, cfg)
        if any(isinstance(m, c.CaseClosed) for m in messages):
            metrics.CASES_CLOSED.labels(case["service"]).inc()
        return messages

    @staticmethod
    def _template_model(doc: Document) -> tpl.ReplyTemplate:
        return tpl.ReplyTemplate.model_validate(
            {
                "template_id": doc["_id"],
                **{k: doc.get(k) for k in ("name", "subject", "text", "html") if k in doc},
                "services": doc.get("services") or [],
            }
        )

    async def _template_for(
        self, template_id: str, service: str, field: str = "template_id"
    ) -> tpl.ReplyTemplate:
        """The template an agent named, usable in ``service`` (else a refusal naming it)."""
        doc = await self.store.get_template(template_id)
        if doc is None:
            raise _no_template(template_id, field)
        try:
            template = self._template_model(doc)
        except ValidationError as exc:
            raise Refused(
                "template_invalid",
                f"reply template {template_id!r} is stored broken: "
                f"{exc.errors()[0].get('msg', exc)}",
                field=field,
            ) from exc
        if not template.offered_in(service):
            raise Refused(
                "template_not_for_service",
                f"reply template {template_id!r} is not offered in service {service!r}",
                field=field,
            )
        return template

    @staticmethod
    def _render(
        template: tpl.ReplyTemplate, case: Document, agent_name: str | None, thread_id: str
    ) -> tpl.Rendered:
        values = tpl.case_values(case, agent_name=agent_name, thread_id=thread_id)
        try:
            return tpl.render(template, values)
        except tpl.TemplateProblem as problem:
            field = "agent_name" if problem.field == "agent_name" else "template_id"
            message = problem.message
            if not message.startswith("template "):
                message = f"template {template.template_id!r} ({problem.field}): {message}"
            raise Refused(problem.code, message, field=field) from problem

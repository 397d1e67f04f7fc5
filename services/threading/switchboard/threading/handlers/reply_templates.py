"""Reply templates: supervisors save and delete them, agents list the ones of a service."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from switchboard.contracts import cases as c
from switchboard.runtime.errors import Refused
from switchboard.threading import metrics
from switchboard.threading import templates as tpl
from switchboard.threading.domain.common import iso as _iso
from switchboard.threading.domain.common import now as _now
from switchboard.threading.handlers.base import (
    HandlerBase,
    _no_template,
    _stale_template,
    log,
)
from switchboard.threading.records import TemplateRecord


class ReplyTemplates(HandlerBase):
    """Reply templates, changed by supervisors only."""

    @staticmethod
    def _supervisor_only(command: c.SaveReplyTemplate | c.DeleteReplyTemplate) -> None:
        if command.acting_role != "supervisor":
            raise Refused(
                "forbidden", "only supervisors change reply templates", field="acting_role"
            )

    async def on_save_template(self, command: c.SaveReplyTemplate) -> dict[str, Any]:
        """Create or replace a reply template (checked: it compiles, uses known variables and
        renders in the sandbox)."""
        self._supervisor_only(command)
        for index, service in enumerate(command.services):
            if self.config.services and not self.config.known(service):
                raise Refused(
                    "unknown_service", f"no service {service!r}", field=f"services.{index}"
                )
        candidate = tpl.ReplyTemplate.model_construct(
            template_id=command.template_id,
            name=command.name,
            services=list(command.services),
            subject=command.subject,
            text=command.text,
            html=command.html,
        )
        problem = tpl.template_problem(candidate)
        if problem is not None:
            raise Refused(problem.code, problem.message, field=problem.field)
        fields = candidate.model_dump(exclude={"template_id"})
        changed = {
            **fields,
            "updated_at": _now(),
            "updated_by": command.agent_id,
            "last_change": str(command.message_id),
        }
        expected = command.expected_version
        me = str(command.message_id)
        if expected in (None, 0) and await self.store.insert_template(
            {"_id": command.template_id, **changed, "version": 1, "created_at": _now()}
        ):
            metrics.COMMANDS.labels(command.NAME, "ok").inc()
            return {"template_id": command.template_id, "version": 1, "created": True}

        def change(current: TemplateRecord) -> TemplateRecord | None:
            if current.last_change == me:
                return None  # this command ran already (retry after a crash)
            version = current.version if not current.deleted else 0
            if expected is not None and expected != version:
                raise _stale_template(command.template_id, version, expected)
            return current.model_copy(update={**changed, "deleted": False})

        saved = await self.store.update_template(command.template_id, change)
        assert saved is not None  # templates are never removed, only marked deleted
        metrics.COMMANDS.labels(command.NAME, "ok").inc()
        return {"template_id": command.template_id, "version": saved.version, "created": False}

    async def on_delete_template(self, command: c.DeleteReplyTemplate) -> dict[str, Any]:
        """Withdraw a reply template (drafts naming it are refused when sent). The document
        stays, marked ``deleted``, so its versions go on if the id is used again."""
        self._supervisor_only(command)
        me = str(command.message_id)

        def change(current: TemplateRecord) -> TemplateRecord | None:
            if current.last_change == me:
                return None  # this command ran already (retry after a crash)
            if current.deleted:
                raise _no_template(command.template_id, "template_id")
            if command.expected_version not in (None, current.version):
                raise _stale_template(
                    command.template_id, current.version, command.expected_version
                )
            return current.model_copy(
                update={
                    "deleted": True,
                    "updated_at": _now(),
                    "updated_by": command.agent_id,
                    "last_change": me,
                }
            )

        if await self.store.update_template(command.template_id, change) is None:
            raise _no_template(command.template_id, "template_id")
        metrics.COMMANDS.labels(command.NAME, "ok").inc()
        return {"template_id": command.template_id, "deleted": True}

    async def on_list_templates(self, query: c.ListReplyTemplates) -> dict[str, Any]:
        """The templates an agent may pick (those of one service when it is named)."""
        listed = []
        for doc in await self.store.all_templates():
            try:
                template = self._template_model(doc)
            except ValidationError:
                log.warning("stored reply template is broken; not offered", template_id=doc["_id"])
                continue
            if query.service and not template.offered_in(query.service):
                continue
            listed.append(
                _iso(
                    {
                        **template.model_dump(),
                        "variables": template.variables(),
                        "version": doc.get("version", 0),
                        "updated_at": doc.get("updated_at"),
                        "updated_by": doc.get("updated_by"),
                    }
                )
            )
        return {"templates": listed, "variables": dict(tpl.VARIABLES)}

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
from switchboard.threading.store import Document


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
        change = {
            **fields,
            "updated_at": _now(),
            "updated_by": command.agent_id,
            "last_change": str(command.message_id),
        }
        expected = command.expected_version
        me = str(command.message_id)
        if expected in (None, 0) and await self.store.insert_template(
            {"_id": command.template_id, **change, "version": 1, "created_at": _now()}
        ):
            metrics.COMMANDS.labels(command.NAME, "ok").inc()
            return {"template_id": command.template_id, "version": 1, "created": True}

        def mutate(current: Document) -> bool:
            if current.get("last_change") == me:
                return False  # this command ran already (retry after a crash)
            version = int(current.get("version", 0))
            exists = not current.get("deleted")
            if expected is not None and (expected != version if exists else expected != 0):
                raise _stale_template(command.template_id, version if exists else 0, expected)
            current.update(change, deleted=False)
            return True

        saved = await self.store.update_template(command.template_id, mutate)
        assert saved is not None  # templates are never removed, only marked deleted
        metrics.COMMANDS.labels(command.NAME, "ok").inc()
        return {"template_id": command.template_id, "version": saved["version"], "created": False}

    async def on_delete_template(self, command: c.DeleteReplyTemplate) -> dict[str, Any]:
        """Withdraw a reply template (drafts naming it are refused when sent). The document
        stays, marked ``deleted``, so its versions go on if the id is used again."""
        self._supervisor_only(command)
        me = str(command.message_id)

        def mutate(current: Document) -> bool:
            if current.get("last_change") == me:
                return False  # this command ran already (retry after a crash)
            if current.get("deleted"):
                raise _no_template(command.template_id, "template_id")
            version = int(current.get("version", 0))
            if command.expected_version is not None and command.expected_version != version:
                raise _stale_template(command.template_id, version, command.expected_version)
            current.update(deleted=True, updated_at=_now(), updated_by=command.agent_id)
            current["last_change"] = me
            return True

        if await self.store.update_template(command.template_id, mutate) is None:
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

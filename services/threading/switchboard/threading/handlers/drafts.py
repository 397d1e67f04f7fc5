"""An agent's drafts of a case: saved, updated under their version, discarded."""

from __future__ import annotations

import uuid
from typing import Any

from switchboard.contracts import cases as c
from switchboard.runtime.errors import Refused
from switchboard.threading.domain.common import NS as _NS
from switchboard.threading.domain.common import now as _now
from switchboard.threading.handlers.assignments import Assignments
from switchboard.threading.records import DraftRecord


class Drafts(Assignments):
    """Drafts: kept apart from the case document, each changed under its own version."""

    async def on_save_draft(self, command: c.SaveDraft) -> dict[str, Any]:
        """Save a new draft on the case."""
        case, _ = await self._prepare(command)
        self._email_of_case(case, command.reply_to_email_id, "reply_to_email_id")
        await self._check_attachments(
            command.content.attachments, command.agent_id, case, "content.attachments"
        )
        if command.content.template_id:
            await self._template_for(
                command.content.template_id, case["service"], "content.template_id"
            )
        draft_id = str(uuid.uuid5(_NS, f"draft:{command.message_id}"))
        await self.store.insert_draft(
            {
                "_id": draft_id,
                "case_number": case["_id"],
                "agent_id": command.agent_id,
                "kind": command.kind,
                "reply_to_email_id": command.reply_to_email_id,
                "content": command.content.model_dump(),
                "version": 1,
                "created_at": _now(),
                "updated_at": _now(),
            }
        )
        return {"draft_id": draft_id, "version": 1}

    async def on_update_draft(self, command: c.UpdateDraft) -> dict[str, Any]:
        """Replace a draft's content (optimistic: ``expected_version``).

        Two agents (or two tabs) saving one draft at once: each save becomes its own next
        version (the store's version tickets), so none is silently overwritten; with
        ``expected_version`` the slower one is refused as stale instead.
        """
        case, _ = await self._prepare(command)
        draft = await self._draft_for(case, command.draft_id)
        assert draft is not None
        await self._check_attachments(
            command.content.attachments, command.agent_id, case, "content.attachments"
        )
        if command.content.template_id:
            await self._template_for(
                command.content.template_id, case["service"], "content.template_id"
            )
        me = str(command.message_id)

        def change(current: DraftRecord) -> DraftRecord | None:
            if current.last_update == me:
                return None  # this command ran already (retry after a crash)
            if command.expected_version not in (None, current.version):
                raise Refused(
                    "stale_draft",
                    f"the draft is at version {current.version}, not {command.expected_version}",
                    field="expected_version",
                )
            return current.model_copy(
                update={
                    "content": command.content.model_dump(),
                    "updated_at": _now(),
                    "updated_by": command.agent_id,
                    "last_update": me,
                }
            )

        saved = await self.store.update_draft(draft["_id"], change)
        if saved is None:
            raise Refused("no_such_draft", "the draft was sent or discarded", field="draft_id")
        return {"draft_id": saved.id, "version": saved.version}

    async def on_discard_draft(self, command: c.DiscardDraft) -> dict[str, Any]:
        """Throw a draft away."""
        case, _ = await self._prepare(command)
        draft = await self.store.get_draft(command.draft_id)
        if draft is not None and draft["case_number"] != case["_id"]:
            raise Refused("no_such_draft", "no such draft on this case", field="draft_id")
        await self.store.delete_draft(command.draft_id)
        return {"draft_id": command.draft_id, "discarded": True}

"""Mail out: replies, forwards, follow-ups and new outbound cases, with their templates and
attachments (and the uploads an agent may attach)."""

from __future__ import annotations

from typing import Any

from switchboard.contracts import Message
from switchboard.contracts import cases as c
from switchboard.contracts.mail import (
    Address,
    AttachmentRef,
    OutboundAddress,
)
from switchboard.runtime.errors import Refused
from switchboard.threading import metrics, rules
from switchboard.threading import templates as tpl
from switchboard.threading.domain.cases import (
    add_email_to_case,
    new_case,
)
from switchboard.threading.domain.common import addr as _addr
from switchboard.threading.domain.common import now as _now
from switchboard.threading.domain.outbound import (
    default_recipients,
    forward_text,
    outbound_email,
)
from switchboard.threading.domain.rounds import end_interaction
from switchboard.threading.handlers.assignments import Assignments
from switchboard.threading.handlers.base import (
    _SAMPLE_THREAD,
    Build,
)
from switchboard.threading.refusals import hidden_case
from switchboard.threading.store import Document
from switchboard.threading.subjects import clean_subject, outbound_subject, remove_tags


class Outbound(Assignments):
    """Mail an agent sends, built by ``domain.outbound`` and handed to the mail edge."""

    async def on_record_upload(self, command: c.RecordUpload) -> dict[str, Any]:
        """Remember who uploaded a file, so it may leave with their email."""
        await self.store.record_upload(command.agent_id, command.attachment.model_dump())
        return {"attachment_id": command.attachment.attachment_id}

    async def _send(
        self,
        command: c.ReplyToCase | c.SendFollowUp | c.ForwardEmail,
        kind: str,
    ) -> dict[str, Any]:
        """Reply, forward or follow up: an outbound email of the case."""

        first: dict[str, Any] = {}

        async def plan(case: Document) -> Build:
            return await self._plan_outbound(case, command, kind, first)

        result = await self._case_command(command, plan)
        if first:  # observed once the change is stored, not on a retried build
            metrics.FIRST_RESPONSE_SECONDS.labels(first["queue"]).observe(first["seconds"])
        if command.draft_id is not None:  # sent: the draft is done (checked to be this case's)
            await self.store.delete_draft(command.draft_id)
        return result

    async def _plan_outbound(
        self,
        case: Document,
        command: c.ReplyToCase | c.SendFollowUp | c.ForwardEmail,
        kind: str,
        first: dict[str, Any],
    ) -> Build:
        """Check and compose an agent's outbound email (draft, template, recipients, subject
        with the thread tag), store it, and return the change to the case that sends it."""
        cfg = self.service_config(case["service"])
        draft = await self._draft_for(case, command.draft_id)
        content = (draft or {}).get("content") or {}
        parent: Document | None = None
        if isinstance(command, c.ReplyToCase):
            key = self._email_of_case(case, command.reply_to_email_id, "reply_to_email_id")
            parent = await self.store.get_email(key) if key else await self._latest_inbound(case)
        elif isinstance(command, c.ForwardEmail):
            key = self._email_of_case(case, command.email_id, "email_id")
            parent = await self.store.get_email(key) if key else await self._latest_inbound(case)
            if parent is None:
                raise Refused("no_email", "this case has no email to forward", field="email_id")
        else:
            emails = await self.store.emails_of_case(case["_id"])
            parent = emails[-1] if emails else None

        def pick(name: str, default: Any) -> Any:
            value = getattr(command, name, None)
            if value:
                return value
            stored = content.get(name)
            if stored:
                if name in ("to", "cc", "bcc"):
                    return [OutboundAddress(**a) for a in stored]
                if name == "attachments":
                    return [AttachmentRef(**a) for a in stored]
                return stored
            return default

        to: list[OutboundAddress] = pick("to", [])
        if not to and kind in ("reply", "follow_up"):
            to = default_recipients(case, parent if kind == "reply" else None)
        if not to:
            raise Refused("no_recipient", "say whom to send it to", field="to")
        text: str = pick("text", "")
        html: str | None = pick("html", None)
        attachments: list[AttachmentRef] = pick("attachments", [])
        await self._check_attachments(attachments, command.agent_id, case)
        if kind == "forward":
            assert parent is not None
            text = forward_text(text, parent)
            if isinstance(command, c.ForwardEmail) and command.include_attachments:
                attachments = attachments + [AttachmentRef(**a) for a in parent["attachments"]]
        template_id: str | None = pick("template_id", None)
        agent_name: str | None = getattr(command, "agent_name", None)
        template = None
        if template_id:
            template = await self._template_for(template_id, case["service"])
            # Tried before anything is stored (the thread id below is minted for real).
            self._render(template, case, agent_name, case.get("thread_id") or _SAMPLE_THREAD)
        if template is None and not text.strip() and not (html or "").strip():
            raise Refused("empty", "the message has no text", field="text")
        disposition = getattr(command, "disposition", None)
        if disposition and not cfg.disposition(disposition):
            raise Refused(
                "unknown_disposition",
                f"service {case['service']} has no disposition {disposition!r}",
                field="disposition",
            )
        thread_id = await self.store.ensure_thread_id(case["_id"], self.ids.mint)
        given: str | None = pick("subject", None)
        if template is not None:
            rendered = self._render(template, case, agent_name, thread_id)
            text, html = tpl.compose(rendered, text=text, html=html)
            if kind == "follow_up":  # a reply or forward keeps "Re:"/"Fwd:" and the subject
                given = given or rendered.subject
        base = (parent or {}).get("subject") or case.get("subject", "")
        prefix = {"reply": "Re:", "forward": "Fwd:", "follow_up": ""}[kind]
        if given:
            subject = outbound_subject(
                remove_tags(given, cfg.subject_tag_format),
                prefix="",
                thread_id=thread_id,
                tag_format=cfg.subject_tag_format,
                with_tag=cfg.tag_in_subject,
            )
        else:
            subject = outbound_subject(
                base or case.get("subject", ""),
                prefix=prefix,
                thread_id=thread_id,
                tag_format=cfg.subject_tag_format,
                with_tag=cfg.tag_in_subject,
            )
        request, doc = outbound_email(
            cause=command,
            key=kind,
            case=case,
            cfg=cfg,
            kind=kind,
            to=to,
            cc=pick("cc", []),
            bcc=pick("bcc", []),
            subject=subject,
            text=text,
            html=html,
            attachments=attachments,
            thread_id=thread_id,
            parent=parent,
            agent_id=command.agent_id,
            template_id=template_id,
            is_reply=kind == "reply",
        )
        await self.store.insert_email(doc)
        finish = bool(getattr(command, "finish", False))

        def build(current: Document) -> tuple[list[Message], dict[str, Any]]:
            add_email_to_case(current, doc)
            current["last_outbound_at"] = _now()
            first.clear()
            if (
                kind in ("reply", "follow_up")
                and current.get("origin") == "inbound"
                and current.get("first_response_at") is None
            ):
                current["first_response_at"] = current["last_outbound_at"]
                waited = current["first_response_at"] - current["created_at"]
                first.update(queue=current["service"], seconds=waited.total_seconds())
            current["agents"] = rules.agents_last_first(current.get("agents", []), command.agent_id)
            messages: list[Message] = [
                request,
                c.CaseEmailAttached.caused_by(
                    command,
                    key="attached",
                    case_number=current["_id"],
                    email_id=doc["_id"],
                    direction="outbound",
                    service=current["service"],
                    action="attached",
                    matched_by="agent",
                ),
                c.CaseOutboundRequested.caused_by(
                    command,
                    key="outbound",
                    case_number=current["_id"],
                    email_id=doc["_id"],
                    kind=kind,
                    agent_id=command.agent_id,
                ),
            ]
            closed = False
            if disposition:
                messages += self._apply_disposition(
                    current, command, disposition, parent["_id"] if parent else None, cfg
                )
                closed = current["status"] == "closed"
            if finish and not closed:
                messages += end_interaction(current, command, f"{kind}_sent", cfg)
            return messages, {
                "case_number": current["_id"],
                "email_id": doc["_id"],
                "outbound_id": request.outbound_id,
                "thread_id": thread_id,
                "subject": subject,
                "status": current["status"],
            }

        return build

    async def on_reply(self, command: c.ReplyToCase) -> dict[str, Any]:
        """Reply to the customer (the first reply mints the thread identifier)."""
        return await self._send(command, "reply")

    async def on_forward(self, command: c.ForwardEmail) -> dict[str, Any]:
        """Forward an email of the case to an outside address."""
        return await self._send(command, "forward")

    async def on_follow_up(self, command: c.SendFollowUp) -> dict[str, Any]:
        """Send a follow-up outbound email on the case."""
        return await self._send(command, "follow_up")

    async def on_new_outbound(self, command: c.SendNewOutbound) -> dict[str, Any]:
        """Write to a customer first: a new case with its first (outbound) email."""
        if self.config.services and not self.config.known(command.service):
            raise Refused("unknown_service", f"no service {command.service!r}", field="service")
        if command.linked_case_number is not None:
            linked = await self._case(command.linked_case_number, field="linked_case_number")
            hidden = hidden_case(linked["_id"], "linked_case_number")
            await self._may_see(linked, command.agent_id, command.acting_role, hidden=hidden)
        await self._check_attachments(command.attachments, command.agent_id, None)
        cfg = self.service_config(command.service)
        subject_of_case = clean_subject(command.subject, cfg.subject_tag_format)
        template = None
        if command.template_id:
            template = await self._template_for(command.template_id, command.service)
            # Tried on a case-to-be before a number is claimed or anything is stored.
            trial = {
                "_id": tpl.SAMPLE_VALUES["case_number"],
                "service": command.service,
                "subject": subject_of_case,
                "contact": _addr(command.to[0]),
            }
            self._render(template, trial, command.agent_name, _SAMPLE_THREAD)
        contact = command.to[0]
        number = await self.store.open_case(
            f"outbound/{command.message_id}",
            lambda n: new_case(
                n,
                service=command.service,
                subject=subject_of_case,
                contact=_addr(contact),
                origin="outbound",
                linked_to=command.linked_case_number,
                first_email="",
                agent_id=command.agent_id,
            ),
        )
        thread_id = await self.store.ensure_thread_id(number, self.ids.mint)
        case = await self.store.get_case(number)
        assert case is not None
        text, html = command.text, command.html
        if template is not None:
            rendered = self._render(template, case, command.agent_name, thread_id)
            text, html = tpl.compose(rendered, text=text, html=html)
        subject = outbound_subject(
            remove_tags(command.subject, cfg.subject_tag_format),
            prefix="",
            thread_id=thread_id,
            tag_format=cfg.subject_tag_format,
            with_tag=cfg.tag_in_subject,
        )
        request, doc = outbound_email(
            cause=command,
            key="new",
            case=case,
            cfg=cfg,
            kind="new_outbound",
            to=command.to,
            cc=command.cc,
            bcc=command.bcc,
            subject=subject,
            text=text,
            html=html,
            attachments=command.attachments,
            thread_id=thread_id,
            agent_id=command.agent_id,
            template_id=command.template_id,
            is_reply=False,
        )
        await self.store.insert_email(doc)  # a retry finds it stored: nothing new

        def build(current: Document) -> tuple[list[Message], dict[str, Any]]:
            add_email_to_case(current, doc)
            current["first_email"] = doc["_id"]
            current["last_outbound_at"] = _now()
            return [
                c.CaseCreated.caused_by(
                    command,
                    key="created",
                    case_number=number,
                    service=command.service,
                    subject=current["subject"],
                    contact=Address(**_addr(contact)),
                    email_id=doc["_id"],
                    origin="outbound",
                    linked_case_number=command.linked_case_number,
                ),
                request,
                c.CaseOutboundRequested.caused_by(
                    command,
                    key="outbound",
                    case_number=number,
                    email_id=doc["_id"],
                    kind="new_outbound",
                    agent_id=command.agent_id,
                ),
            ], {
                "case_number": number,
                "email_id": doc["_id"],
                "thread_id": thread_id,
                "outbound_id": request.outbound_id,
                "subject": subject,
            }

        _, result = await self._commit(number, str(command.message_id), build)
        if command.linked_case_number:
            await self._link(command.linked_case_number, number)
        metrics.CASES_CREATED.labels(command.service, "outbound").inc()
        metrics.COMMANDS.labels(command.NAME, "ok").inc()
        return dict(result)

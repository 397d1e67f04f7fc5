"""Threading's message handlers: validate -> rules -> store -> publish.

Every change to a case goes through :meth:`ThreadingHandlers._commit`: one version-guarded write
of the case document that also records, under the handled message's id, the messages it causes
(the case's ``outbox``) and the answer. Then they are published and marked published. A retried
message finds its outbox entry and publishes the same messages again (deterministic ids, so the
consumers' ledgers drop the copies); an entry left unpublished by a crash is swept periodically.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiormq.exceptions import PublishError
from pydantic import ValidationError

from switchboard.contracts import Message, message_class
from switchboard.contracts import cases as c
from switchboard.contracts.mail import (
    Address,
    AttachmentRef,
    EmailDeliveryFailed,
    EmailOutboundRequested,
    EmailReceived,
    EmailSent,
    OutboundAddress,
)
from switchboard.contracts.queues import threading as queues
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    RouteReason,
    RouteRequested,
    RouteWithdrawn,
)
from switchboard.runtime.assignments import agent_services, routing_holds
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import Refused
from switchboard.threading import access, metrics, rules
from switchboard.threading import email_identity as identity
from switchboard.threading import templates as tpl
from switchboard.threading.config import ServiceConfig, ThreadingConfig
from switchboard.threading.masking import (
    Span,
    marked_text,
    mask_card_numbers,
    mask_spans,
    propagation_pieces,
    redact_everywhere,
    span_problem,
)
from switchboard.threading.store import CaseMissing, Document, ThreadingStore
from switchboard.threading.subjects import clean_subject, outbound_subject, remove_tags
from switchboard.threading.threadids import ThreadIds

log = structlog.get_logger("switchboard.threading")

THREAD_HEADER = "X-Switchboard-Thread"
_SAMPLE_THREAD = str(tpl.SAMPLE_VALUES["thread_id"])
UNMATCHED_AUTOMATIC = "unmatched_automatic_mail"
_NS = uuid.UUID("6f1c2a52-5d4b-4c1e-9a43-2f7d0f3c9b11")

Build = Callable[[Document], tuple[list[Message], dict[str, Any]]]
Plan = Callable[[Document], Awaitable[Build]]


@dataclass(frozen=True)
class Intake:
    action: str
    case_number: int | None
    matched_by: str = ""
    linked_to: int | None = None
    new_participant: bool = False
    """Joined by the thread identifier from an address on no earlier message of the case."""


def _now() -> datetime:
    return datetime.now(UTC)


def _addr(a: Address) -> dict[str, str]:
    return {"name": a.name, "address": a.address}


def _no_template(template_id: str, field: str) -> Refused:
    return Refused("unknown_template", f"there is no reply template {template_id!r}", field=field)


def _stale_template(template_id: str, version: int, expected: int) -> Refused:
    return Refused(
        "stale_template",
        f"template {template_id!r} is at version {version}, not {expected}"
        + (" (0: it does not exist)" if version == 0 else ""),
        field="expected_version",
    )


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso(v) for v in value]
    return value


class ThreadingHandlers:
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

    # =========================================================================================
    # plumbing
    # =========================================================================================

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
        for item in entry.get("messages", []):
            message = message_class(item["name"]).model_validate(item["body"])
            await self._publish(message)

    async def _commit(self, case_number: int, key: str, build: Build) -> tuple[Document, Any]:
        """Change the case and record the messages to publish, atomically; then publish."""
        found: dict[str, Document] = {}

        def mutate(case: Document) -> bool:
            existing = (case.get("outbox") or {}).get(key)
            if existing is not None:
                found["entry"] = existing
                return False
            messages, result = build(case)
            entry = {
                "messages": [{"name": m.NAME, "body": m.model_dump(mode="json")} for m in messages],
                "result": result,
                "published": False,
                "at": _now(),
            }
            case.setdefault("outbox", {})[key] = entry
            found["entry"] = entry
            return True

        case = await self.store.update_case(case_number, mutate)
        entry = found["entry"]
        if not entry.get("published"):
            await self._publish_entry(entry)
            await self.store.mark_published(case_number, key)
        return case, entry.get("result") or {}

    async def _commit_new(self, fresh: Document, key: str, build: Build) -> Any:
        """Create a case with its first changes and messages in one insert (no lock needed:
        nobody knows the case yet); a case that exists already (a retry) goes through
        :meth:`_commit`."""
        messages, result = build(fresh)
        fresh["outbox"] = {
            key: {
                "messages": [{"name": m.NAME, "body": m.model_dump(mode="json")} for m in messages],
                "result": result,
                "published": False,
                "at": _now(),
            }
        }
        fresh["outbox_pending"] = True
        if not await self.store.insert_case(fresh):
            _, again = await self._commit(fresh["_id"], key, build)
            return again
        await self._publish_entry(fresh["outbox"][key])
        await self.store.mark_published(fresh["_id"], key)
        return result

    async def sweep_outbox(self) -> None:
        """Publish what a crashed handler recorded but did not publish, and flag what went out
        (runs periodically)."""
        for case in await self.store.cases_with_unpublished(timedelta(seconds=15)):
            pending = {
                k: e for k, e in (case.get("outbox") or {}).items() if not e.get("published")
            }
            sent = await self.store.published_keys(case["_id"], list(pending))
            for key, entry in pending.items():
                if key not in sent:
                    await self._publish_entry(entry)
                    await self.store.mark_published(case["_id"], key)
            await self.store.settle_outbox(case["_id"], set(pending))

    async def _case(self, case_number: int, field: str = "case_number") -> Document:
        case = await self.store.get_case(case_number)
        if case is None:
            raise access.hidden_case(case_number, field)
        return case

    @staticmethod
    def _authorise(case: Document, agent_id: str, acting_role: str) -> None:
        problem = rules.holder_problem(case, agent_id, acting_role)
        if problem:
            raise Refused("not_assigned", problem, field="agent_id")

    async def _may_see(
        self,
        case: Document,
        agent_id: str | None,
        acting_role: str,
        query: c.GetCaseThread | c.CaseCommand | None = None,
        hidden: Refused | None = None,
    ) -> Document:
        """The case if this person may see it (``access.case_access``), else the answer of a
        case that is not there (``access.hidden_case``).
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
            raise hidden or access.hidden_case(case["_id"])
        return case

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

    async def on_record_upload(self, command: c.RecordUpload) -> dict[str, Any]:
        """Remember who uploaded a file, so it may leave with their email."""
        await self.store.record_upload(command.agent_id, command.attachment.model_dump())
        return {"attachment_id": command.attachment.attachment_id}

    @staticmethod
    def _end_interaction(
        case: Document, cause: Message, outcome: str, cfg: ServiceConfig
    ) -> list[Message]:
        """Messages that end the case's current routing round (and mark it ended)."""
        interaction = case.setdefault("interaction", {"round": 0, "state": "idle"})
        state = interaction.get("state")
        iid = interaction.get("id")
        messages: list[Message] = []
        if state == "assigned" and iid:
            messages.append(
                InteractionEnded.caused_by(
                    cause,
                    key=f"end:{iid}",
                    interaction_id=iid,
                    agent_id=interaction["agent_id"],
                    channel="email",
                    wrap_up=cfg.wrap_up,
                    outcome=outcome,
                )
            )
        elif state == "routing" and iid:
            messages.append(
                RouteWithdrawn.caused_by(
                    cause, key=f"withdraw:{iid}", interaction_id=iid, reason=outcome
                )
            )
        if state in ("assigned", "routing"):
            interaction.update(state="ended", ended_at=_now())
        return messages

    @staticmethod
    def _route(
        case: Document,
        cause: Message,
        *,
        reason: RouteReason,
        preferred_agent_id: str | None = None,
        personal_agent_id: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> list[Message]:
        """Start a new routing round unless one is under way (queued, offered or assigned)."""
        interaction = case.setdefault("interaction", {"round": 0, "state": "idle"})
        if interaction.get("state") in ("routing", "assigned"):
            return []
        round_ = int(interaction.get("round", 0)) + 1
        iid = rules.interaction_id(case["_id"], round_)
        interaction.update(
            id=iid, round=round_, state="routing", agent_id=None, since=_now(), reason=reason
        )
        contact = case.get("contact") or {}
        return [
            RouteRequested.caused_by(
                cause,
                key=f"route:{iid}",
                interaction_id=iid,
                channel="email",
                service=case["service"],
                reason=reason,
                preferred_agent_id=preferred_agent_id,
                personal_agent_id=personal_agent_id,
                summary={
                    "case_number": case["_id"],
                    "subject": case.get("subject", ""),
                    "customer": contact.get("name") or contact.get("address", ""),
                    "customer_address": contact.get("address", ""),
                    **(summary or {}),
                },
                requested_at=_now(),
            )
        ]

    # =========================================================================================
    # inbound mail
    # =========================================================================================

    async def on_email_received(self, event: EmailReceived) -> dict[str, Any]:
        """File a customer's mail under a case (new, matched, reopened or linked)."""
        with metrics.INTAKE_SECONDS.time():
            return await self._file(event)

    async def _file(self, event: EmailReceived) -> dict[str, Any]:
        cfg = self.service_config(event.service)
        key = rules.message_id_key(event.internet_message_id) or f"sha256-{event.email_id}"
        header = rules.message_id_header(key)
        content = identity.content_key(event)
        existing = await self.store.get_email(key)
        reused = existing is not None and identity.is_other_mail(existing, content)
        if reused:
            # another mail under a Message-ID we know: an email of its own, never a "copy"
            key = identity.reused_key(key, content)
            existing = await self.store.get_email(key)
        if existing is not None:
            if existing.get("source") != str(event.message_id):
                await self.store.add_copy(key, event.email_id, event.mailbox)
                metrics.DUPLICATE_EMAILS.inc()
                return {"case_number": existing["case_number"], "duplicate": True}
            return await self._finish_intake(event, existing, cfg)

        mask = cfg.mask_card_numbers and self.mask_cards_default
        subject, text, cards = event.subject, event.text, 0
        if mask:
            subject, in_subject = mask_card_numbers(subject)
            text, in_text = mask_card_numbers(text)
            cards = in_subject + in_text
            metrics.CARDS_MASKED.inc(cards)
        # numbers found here reached us unmasked (the HTML copy may hold them: withheld); the
        # mail edge masks them in every copy before storing (its count is recorded with ours)
        withhold_html = cards > 0
        cards += event.cards_masked

        intake = await self._decide(event, cfg, subject)
        number = intake.case_number
        if number is None:
            number = await self.store.case_number_for(key)
        answer, answer_skipped = await self._auto_answer_kind(event, intake, cfg)
        defects = list(event.defects)
        if reused:
            metrics.REUSED_MESSAGE_IDS.inc()
            defects.append(f"message_id_reused: {header} is also on another, different email")
        doc = {
            "_id": key,
            "message_id": header,
            "content_key": content,
            "message_id_reused": reused,
            "case_number": number,
            "direction": "inbound",
            "kind": "inbound",
            "source": str(event.message_id),
            "raw_email_ids": [event.email_id],
            "mailboxes": [event.mailbox],
            "channel": event.channel,
            "service": event.service,
            "from": _addr(event.sender),
            "to": [_addr(a) for a in event.to],
            "cc": [_addr(a) for a in event.cc],
            "reply_to": [_addr(a) for a in event.reply_to],
            "subject": subject,
            "text": text,
            "text_truncated": event.text_truncated,
            "text_ref": getattr(event, "text_ref", None),
            "html_ref": event.html_ref,
            "html_withheld": withhold_html,
            "attachments": [a.model_dump() for a in event.attachments],
            "when": event.sent_at,
            "sent_at_flagged": event.sent_at_flagged,
            "received_at": event.received_at,
            "classification": event.classification,
            "in_reply_to": event.in_reply_to,
            "references": list(event.references),
            "thread_header": event.thread_header,
            "bounced_message_id": event.bounced_message_id,
            "defects": defects,
            "masked": (
                [{"by": "system", "what": "card_numbers", "count": cards, "at": _now()}]
                if cards
                else []
            ),
            "intake": {
                "action": intake.action,
                "matched_by": intake.matched_by,
                "linked_to": intake.linked_to,
                "auto_answer": answer,
                "auto_answer_skipped": answer_skipped,
                "new_participant": intake.new_participant,
            },
            "new_participant": intake.new_participant,
            "stored_at": _now(),
        }
        if not await self.store.insert_email(doc):
            winner = await self.store.get_email(key)
            assert winner is not None
            if identity.is_other_mail(winner, content):
                return await self._file(event)  # another mail took this Message-ID just now
            if winner.get("source") != str(event.message_id):
                await self.store.add_copy(key, event.email_id, event.mailbox)
                metrics.DUPLICATE_EMAILS.inc()
                return {"case_number": winner["case_number"], "duplicate": True}
            doc = winner
        return await self._finish_intake(event, doc, cfg)

    async def _decide(self, event: EmailReceived, cfg: ServiceConfig, subject: str) -> Intake:
        if event.classification == "bounce" and event.bounced_message_id:
            bounced = await self.store.get_email(rules.message_id_key(event.bounced_message_id))
            if bounced is not None:
                return Intake("recorded", bounced["case_number"], "bounced_message")
        clue_list = rules.clues(
            subject=subject,
            thread_header=event.thread_header,
            in_reply_to=event.in_reply_to,
            references=event.references,
            thread_ids=self.ids,
            tag_format=cfg.subject_tag_format,
        )
        if not any(k.kind == "subject_tag" for k in clue_list):
            from switchboard.threading.subjects import find_tags

            if find_tags(subject, cfg.subject_tag_format):
                metrics.REJECTED_TAGS.inc()
        for clue in clue_list:
            case: Document | None = None
            if clue.kind in ("subject_tag", "header"):
                for thread_id in clue.values:
                    number = await self.store.case_for_thread(thread_id)
                    if number is not None and (case := await self.store.get_case(number)):
                        break
            else:
                for email in await self.store.find_emails(list(clue.values)):
                    if case := await self.store.get_case(email["case_number"]):
                        break
                if (
                    case is not None
                    and clue.kind in rules.MESSAGE_ID_CLUES
                    and not rules.may_join_by_message_id(
                        event.sender.address, case.get("participants", [])
                    )
                ):
                    return Intake("linked", None, clue.kind, linked_to=case["_id"])
            if case is None:
                continue
            new = not rules.took_part(event.sender.address, case.get("participants", []))
            action = rules.follow_up_action(
                case_status=case["status"],
                closed_at=case.get("closed_at"),
                classification=event.classification,
                policy_mode=self.service_config(case["service"]).closed_case.mode,
                reopen_within_days=self.service_config(
                    case["service"]
                ).closed_case.reopen_within_days,
                now=_now(),
            )
            if action == "attach":
                return Intake("attached", case["_id"], clue.kind, new_participant=new)
            if action == "reopen":
                return Intake("reopened", case["_id"], clue.kind, new_participant=new)
            if action == "new_linked":
                return Intake("linked", None, clue.kind, linked_to=case["_id"])
            if action == "reject":
                return Intake("rejected", case["_id"], clue.kind)
            return Intake("recorded", case["_id"], clue.kind)
        return Intake("created", None)

    async def _auto_answer_kind(
        self, event: EmailReceived, intake: Intake, cfg: ServiceConfig
    ) -> tuple[str | None, str | None]:
        """Decide (and count against the rate limit) whether an automatic answer goes out:
        (kind or None, why one that was due is skipped)."""
        if intake.action in ("created", "linked") and cfg.auto_ack.enabled:
            kind = "auto_ack"
        elif intake.action == "rejected":
            kind = "auto_reject"
        else:
            return None, None
        to = event.reply_to[0] if event.reply_to else event.sender
        recipient = to.address
        problem = rules.answer_address_problem(to.name, recipient)
        if problem is not None:
            return None, self._answer_skipped(kind, problem)
        own = {
            rules.address_key(a)
            for a in (*self.config.own_addresses(), cfg.sender.address, event.mailbox)
        }
        if not rules.may_answer_automatically(recipient, event.classification, own) or not (
            rules.may_answer_automatically(event.sender.address, event.classification, own)
        ):
            metrics.AUTO_ANSWERS.labels(kind, "never_to_this_sender").inc()
            return None, None
        window = rules.rate_window(_now(), cfg.auto_ack.window_minutes)
        if not await self.store.take_ack_quota(
            rules.address_key(recipient), window, cfg.auto_ack.per_recipient_limit
        ):
            metrics.AUTO_ANSWERS.labels(kind, "rate_limited").inc()
            return None, None
        metrics.AUTO_ANSWERS.labels(kind, "sent").inc()
        return kind, None

    @staticmethod
    def _answer_skipped(kind: str, reason: str, outcome: str = "unaddressable") -> str:
        """An automatic answer that cannot be sent as built: counted and logged; the mail is
        filed and routed all the same, and the case's history says why no answer went out."""
        metrics.AUTO_ANSWERS.labels(kind, outcome).inc()
        log.warning("automatic answer skipped", kind=kind, reason=reason)
        return f"{kind}: {reason}"

    async def _finish_intake(
        self, event: EmailReceived, email: Document, cfg: ServiceConfig
    ) -> dict[str, Any]:
        intake = email["intake"]
        number = int(email["case_number"])
        action = intake["action"]
        created = action in ("created", "linked")
        classification = email.get("classification", "normal")
        unrouted = created and rules.files_without_routing(classification)
        fresh: Document | None = None
        if created:
            fresh = self._new_case(
                number,
                service=event.service,
                subject=clean_subject(email["subject"], cfg.subject_tag_format),
                contact=email["from"],
                origin="inbound",
                linked_to=intake.get("linked_to"),
                first_email=email["_id"],
            )
            if unrouted:
                self._file_closed(fresh, classification)
        answer_kind = intake.get("auto_answer")
        skipped = intake.get("auto_answer_skipped")
        auto: tuple[EmailOutboundRequested, Document] | None = None
        if answer_kind:
            case_now: Document | None
            if fresh is not None:
                # (On a retry the case exists already with its outbox entry, which wins.)
                fresh["thread_id"] = await self.store.claim_thread_id(number, self.ids.mint)
                case_now = fresh
            else:
                await self.store.ensure_thread_id(number, self.ids.mint)
                case_now = await self.store.get_case(number)
            assert case_now is not None
            try:
                auto = self._automatic_answer(
                    event, email, case_now, cfg, answer_kind, str(case_now["thread_id"])
                )
            except ValidationError as exc:  # never let the answer hold up the customer's mail
                error = exc.errors()[0]
                where = ".".join(str(p) for p in error["loc"])
                skipped = self._answer_skipped(answer_kind, f"{where}: {error['msg']}", "invalid")
            else:
                await self.store.insert_email(auto[1])

        def build(case: Document) -> tuple[list[Message], dict[str, Any]]:
            messages: list[Message] = []
            self._add_email_to_case(case, email)
            case["last_inbound_at"] = email.get("received_at") or _now()
            if created:
                messages.append(
                    c.CaseCreated.caused_by(
                        event,
                        key="created",
                        case_number=number,
                        service=case["service"],
                        subject=case.get("subject", ""),
                        contact=Address(**email["from"]),
                        email_id=email["_id"],
                        origin="inbound",
                        linked_case_number=intake.get("linked_to"),
                        status=case["status"],
                    )
                )
            if unrouted:
                messages.append(
                    c.CaseClosed.caused_by(
                        event,
                        key="closed",
                        case_number=number,
                        service=case["service"],
                        reason=UNMATCHED_AUTOMATIC,
                    )
                )
            if action == "reopened":
                case.update(status="open", closed_at=None, reopened_at=_now())
                case.setdefault("history", []).append(
                    {"what": "reopened", "at": _now(), "email_id": email["_id"]}
                )
                messages.append(
                    c.CaseReopened.caused_by(
                        event,
                        key="reopened",
                        case_number=number,
                        service=case["service"],
                        email_id=email["_id"],
                    )
                )
            messages.append(
                c.CaseEmailAttached.caused_by(
                    event,
                    key="attached",
                    case_number=number,
                    email_id=email["_id"],
                    direction="inbound",
                    service=case["service"],
                    action=action,
                    matched_by=intake.get("matched_by", ""),
                    classification=email.get("classification", "normal"),
                )
            )
            if action in ("created", "linked", "attached", "reopened") and case["status"] == "open":
                if action in ("created", "linked"):
                    messages += self._route(case, event, reason="new")
                else:
                    preferred = None
                    case_cfg = self.service_config(case["service"])
                    if case_cfg.follow_up_to_previous_agent and case.get("agents"):
                        preferred = case["agents"][0]
                    messages += self._route(
                        case, event, reason="follow_up", preferred_agent_id=preferred
                    )
            if auto is not None:
                request, auto_doc = auto
                self._add_email_to_case(case, auto_doc)
                messages.append(request)
            if skipped:
                entry = {"what": "auto_answer_skipped", "email_id": email["_id"], "reason": skipped}
                history = case.setdefault("history", [])
                if not any(
                    h.get("what") == entry["what"] and h.get("email_id") == entry["email_id"]
                    for h in history
                ):
                    history.append({**entry, "at": _now()})
            return messages, {"case_number": number, "action": action}

        if intake.get("linked_to"):
            await self._link(int(intake["linked_to"]), number)
        if intake.get("matched_by") == "bounced_message" and email.get("bounced_message_id"):
            await self._record_delivery(
                rules.message_id_key(email["bounced_message_id"]), "bounced", email["_id"]
            )
        if fresh is not None:
            result = await self._commit_new(fresh, str(event.message_id), build)
        else:
            _, result = await self._commit(number, str(event.message_id), build)
        metrics.EMAILS_FILED.labels(action, intake.get("matched_by") or "none").inc()
        if created:
            metrics.CASES_CREATED.labels(event.service, "inbound").inc()
        if unrouted:
            metrics.UNROUTED_CASES.labels(event.service, classification).inc()
        return dict(result)

    @staticmethod
    def _file_closed(case: Document, classification: str) -> None:
        """A new case opened by an auto-reply or bounce that matched no case: closed at once,
        never routed (see :func:`rules.files_without_routing`)."""
        now = _now()
        case.update(
            status="closed", closed_at=now, closed_by="system", filed_unrouted=classification
        )
        case["history"].append(
            {"what": "closed", "at": now, "agent_id": None, "reason": UNMATCHED_AUTOMATIC}
        )

    async def _link(self, older: int, newer: int) -> None:
        def mutate(case: Document) -> bool:
            links = case.setdefault("linked_cases", [])
            if newer in links:
                return False
            links.append(newer)
            return True

        with contextlib.suppress(CaseMissing):
            await self.store.update_case(older, mutate)

    @staticmethod
    def _add_email_to_case(case: Document, email: Document) -> None:
        keys = case.setdefault("email_keys", [])
        if email["_id"] not in keys:
            keys.append(email["_id"])
        participants = case.setdefault("participants", [])
        people = [email.get("from") or {}, *email.get("to", []), *email.get("cc", [])]
        people += email.get("reply_to", []) + email.get("bcc", [])
        for person in people:
            address = rules.address_key(person.get("address"))
            if address and address not in participants:
                participants.append(address)

    @staticmethod
    def _new_case(
        number: int,
        *,
        service: str,
        subject: str,
        contact: dict[str, str],
        origin: str,
        linked_to: int | None,
        first_email: str,
        agent_id: str | None = None,
    ) -> Document:
        now = _now()
        return {
            "_id": number,
            "number": number,
            "status": "open",
            "service": service,
            "contact": contact,
            "subject": subject,
            "thread_id": None,
            "origin": origin,
            "first_email": first_email,
            "agents": [agent_id] if agent_id else [],
            "dispositions": [],
            "notes": [],
            "linked_cases": [linked_to] if linked_to else [],
            "participants": [],
            "email_keys": [],
            "history": [{"what": "created", "at": now, "agent_id": agent_id}],
            "interaction": {"round": 0, "state": "idle", "agent_id": None, "id": None},
            "created_at": now,
            "updated_at": now,
            "closed_at": None,
            "reopened_at": None,
            "closed_by": None,
            "final_disposition": None,
            "last_inbound_at": None,
            "last_outbound_at": None,
            "outbox": {},
            "outbox_pending": False,
            "filed_unrouted": None,
            "version": 0,
        }

    def _automatic_answer(
        self,
        event: EmailReceived,
        email: Document,
        case: Document,
        cfg: ServiceConfig,
        kind: str,
        thread_id: str,
    ) -> tuple[EmailOutboundRequested, Document]:
        recipient = event.reply_to[0] if event.reply_to else event.sender
        values = {"case_number": case["_id"], "subject": case.get("subject", "")}
        if kind == "auto_ack":
            subject, text = cfg.auto_ack.subject, cfg.auto_ack.text
        else:
            subject, text = cfg.closed_case.reject_subject, cfg.closed_case.reject_text
        return self._outbound(
            cause=event,
            key=kind,
            case=case,
            cfg=cfg,
            kind=kind,
            to=[OutboundAddress(name=recipient.name, address=recipient.address)],
            subject=outbound_subject(
                rules.fill(subject, **values),
                prefix="",
                thread_id=thread_id,
                tag_format=cfg.subject_tag_format,
                with_tag=cfg.tag_in_subject,
            ),
            text=rules.fill(text, **values),
            parent=email,
            thread_id=thread_id,
            automatic=True,
        )

    def _outbound(
        self,
        *,
        cause: Message,
        key: str,
        case: Document,
        cfg: ServiceConfig,
        kind: str,
        to: Sequence[OutboundAddress],
        subject: str,
        text: str,
        thread_id: str | None,
        parent: Document | None = None,
        cc: Sequence[OutboundAddress] = (),
        bcc: Sequence[OutboundAddress] = (),
        html: str | None = None,
        attachments: Sequence[AttachmentRef] = (),
        automatic: bool = False,
        agent_id: str | None = None,
        template_id: str | None = None,
        is_reply: bool = True,
    ) -> tuple[EmailOutboundRequested, Document]:
        """The request to the mail edge and the stored outbound email, both deterministic."""
        number = case["_id"]
        domain = cfg.sender.address.rpartition("@")[2]
        token = uuid.uuid5(_NS, f"{cause.message_id}:{key}").hex
        msg_key = f"{token}.{number}@{domain}"
        in_reply_to = parent["message_id"] if parent is not None and is_reply else None
        references = (
            rules.references_for_reply(parent.get("references", []), parent["_id"])
            if parent is not None
            else []
        )
        headers = {THREAD_HEADER: thread_id} if thread_id and cfg.tag_in_header else {}
        request = EmailOutboundRequested.caused_by(
            cause,
            key=f"send:{key}",
            outbound_id=f"{number}-{token[:20]}",
            case_number=number,
            sender=cfg.sender,
            to=list(to),
            cc=list(cc),
            bcc=list(bcc),
            subject=subject,
            text=text,
            html=html,
            attachments=list(attachments),
            internet_message_id=rules.message_id_header(msg_key),
            in_reply_to=in_reply_to,
            references=references,
            automatic=automatic,
            extra_headers=headers,
        )
        doc = {
            "_id": msg_key,
            "message_id": request.internet_message_id,
            "case_number": number,
            "direction": "outbound",
            "kind": kind,
            "source": str(cause.message_id),
            "outbound_id": request.outbound_id,
            "agent_id": agent_id,
            "template_id": template_id,
            "service": case["service"],
            "from": _addr(cfg.sender),
            "to": [_addr(a) for a in to],
            "cc": [_addr(a) for a in cc],
            "bcc": [_addr(a) for a in bcc],
            "reply_to": [],
            "subject": subject,
            "text": text,
            "html": html,
            "html_ref": None,
            "html_withheld": False,
            "attachments": [a.model_dump() for a in attachments],
            "when": _now(),
            "classification": "normal",
            "automatic": automatic,
            "in_reply_to": in_reply_to,
            "references": references,
            "thread_id": thread_id,
            "masked": [],
            "delivery": {"status": "requested", "at": _now(), "detail": ""},
            "stored_at": _now(),
        }
        return request, doc

    # =========================================================================================
    # signals from routing and the mail edge
    # =========================================================================================

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

    async def on_email_sent(self, event: EmailSent) -> None:
        """The relay took an outbound email: its delivery becomes ``sent``."""
        key = await self.store.find_outbound(
            event.outbound_id, rules.message_id_key(event.internet_message_id)
        )
        if key is None:
            log.warning("email.sent for no email of ours", outbound_id=event.outbound_id)
            return
        await self._record_delivery(key, "sent", event.relay_reply)

    async def on_delivery_failed(self, event: EmailDeliveryFailed) -> None:
        """The relay refused an outbound email, for good or for now."""
        key = await self.store.find_outbound(
            event.outbound_id, rules.message_id_key(event.internet_message_id)
        )
        if key is None:
            log.warning("email.delivery_failed for no email of ours", outbound_id=event.outbound_id)
            return
        await self._record_delivery(
            key,
            "failed" if event.permanent else "failed_temporarily",
            f"{event.smtp_code or ''} {event.smtp_reply}".strip(),
        )

    async def _record_delivery(self, key: str, status: str, detail: str) -> None:
        """Set an email's delivery status unless it already says something later (the mail
        edge's events and bounces travel on different queues and may arrive out of order)."""

        def mutate(email: Document) -> bool:
            current = (email.get("delivery") or {}).get("status")
            if not rules.delivery_may_change(current, status):
                return False
            email["delivery"] = {"status": status, "detail": detail, "at": _now()}
            return True

        await self.store.update_email(key, mutate)

    # =========================================================================================
    # agent commands
    # =========================================================================================

    async def _prepare(self, command: c.CaseCommand) -> tuple[Document, bool]:
        """Load and authorise; says whether this command already ran (retry after a crash)."""
        case = await self._case(command.case_number)
        if str(command.message_id) in (case.get("outbox") or {}):
            return case, True
        if rules.holder_problem(case, command.agent_id, command.acting_role):
            case = await self._may_see(case, command.agent_id, command.acting_role, command)
        self._authorise(case, command.agent_id, command.acting_role)
        return case, False

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

    async def _case_command(self, command: c.CaseCommand, plan: Plan) -> dict[str, Any]:
        """The frame every agent command on a case shares.

        Load the case and check the agent holds it (asking routing first if the assignment
        may not have reached us); answer a command that already ran (a retry after a crash)
        from its outbox entry; let ``plan`` check the command against the case (a refusal
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
            to = self._default_recipients(case, parent if kind == "reply" else None)
        if not to:
            raise Refused("no_recipient", "say whom to send it to", field="to")
        text: str = pick("text", "")
        html: str | None = pick("html", None)
        attachments: list[AttachmentRef] = pick("attachments", [])
        await self._check_attachments(attachments, command.agent_id, case)
        if kind == "forward":
            assert parent is not None
            text = self._forward_text(text, parent)
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
        request, doc = self._outbound(
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
            self._add_email_to_case(current, doc)
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
                messages += self._end_interaction(current, command, f"{kind}_sent", cfg)
            return messages, {
                "case_number": current["_id"],
                "email_id": doc["_id"],
                "outbound_id": request.outbound_id,
                "thread_id": thread_id,
                "subject": subject,
                "status": current["status"],
            }

        return build

    @staticmethod
    def _default_recipients(case: Document, parent: Document | None) -> list[OutboundAddress]:
        if parent is not None and parent.get("direction") == "inbound":
            source = parent.get("reply_to") or [parent["from"]]
        else:
            source = [case.get("contact") or {}]
        out = []
        for person in source:
            try:
                out.append(OutboundAddress(name=person.get("name", ""), address=person["address"]))
            except (KeyError, ValueError):
                continue
        return out

    @staticmethod
    def _forward_text(comment: str, parent: Document) -> str:
        sender = parent.get("from") or {}
        who = f"{sender.get('name', '')} <{sender.get('address', '')}>".strip()
        to = ", ".join(a.get("address", "") for a in parent.get("to", []))
        when = _iso(parent.get("when"))
        header = (
            "---------- Forwarded message ----------\n"
            f"From: {who}\nDate: {when}\nSubject: {parent.get('subject', '')}\nTo: {to}\n\n"
        )
        intro = comment.rstrip() + "\n\n" if comment.strip() else ""
        return intro + header + str(parent.get("text", ""))

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
            hidden = access.hidden_case(linked["_id"], "linked_case_number")
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
        number = await self.store.case_number_for(f"outbound/{command.message_id}")
        contact = command.to[0]
        await self.store.insert_case(
            self._new_case(
                number,
                service=command.service,
                subject=subject_of_case,
                contact=_addr(contact),
                origin="outbound",
                linked_to=command.linked_case_number,
                first_email="",
                agent_id=command.agent_id,
            )
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
        request, doc = self._outbound(
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
            self._add_email_to_case(current, doc)
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

    # -- drafts ---------------------------------------------------------------------------------

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

        def mutate(current: Document) -> bool:
            if current.get("last_update") == me:
                return False  # this command ran already (retry after a crash)
            version = int(current["version"])
            if command.expected_version is not None and command.expected_version != version:
                raise Refused(
                    "stale_draft",
                    f"the draft is at version {version}, not {command.expected_version}",
                    field="expected_version",
                )
            current.update(
                content=command.content.model_dump(),
                updated_at=_now(),
                updated_by=command.agent_id,
                last_update=me,
            )
            return True

        saved = await self.store.update_draft(draft["_id"], mutate)
        if saved is None:
            raise Refused("no_such_draft", "the draft was sent or discarded", field="draft_id")
        return {"draft_id": saved["_id"], "version": saved["version"]}

    async def on_discard_draft(self, command: c.DiscardDraft) -> dict[str, Any]:
        """Throw a draft away."""
        case, _ = await self._prepare(command)
        draft = await self.store.get_draft(command.draft_id)
        if draft is not None and draft["case_number"] != case["_id"]:
            raise Refused("no_such_draft", "no such draft on this case", field="draft_id")
        await self.store.delete_draft(command.draft_id)
        return {"draft_id": command.draft_id, "discarded": True}

    # -- dispositions, closing, notes ---------------------------------------------------------

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
        case.setdefault("dispositions", []).append(
            {
                "name": found.name,
                "final": found.final,
                "email_id": email_key,
                "agent_id": command.agent_id,
                "at": _now(),
            }
        )
        messages: list[Message] = [
            c.CaseDispositionSet.caused_by(
                command,
                key="disposition",
                case_number=case["_id"],
                disposition=found.name,
                final=found.final,
                email_id=email_key,
                agent_id=command.agent_id,
            )
        ]
        if found.final and case["status"] != "closed":
            case.update(
                status="closed",
                closed_at=_now(),
                closed_by=command.agent_id,
                final_disposition=found.name,
            )
            case.setdefault("history", []).append(
                {
                    "what": "closed",
                    "at": _now(),
                    "agent_id": command.agent_id,
                    "disposition": found.name,
                }
            )
            messages += self._end_interaction(case, command, "closed", cfg)
            messages.append(
                c.CaseClosed.caused_by(
                    command,
                    key="closed",
                    case_number=case["_id"],
                    service=case["service"],
                    disposition=found.name,
                    agent_id=command.agent_id,
                )
            )
            metrics.CASES_CLOSED.labels(case["service"]).inc()
        return messages

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
                    messages += self._end_interaction(current, command, "completed", cfg)
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
                    messages += self._note(current, command, command.note, key)
                messages += self._apply_disposition(current, command, found.name, key, cfg)
                return messages, {"case_number": current["_id"], "status": current["status"]}

            return build

        return await self._case_command(command, plan)

    @staticmethod
    def _note(
        case: Document, command: c.CaseCommand, text: str, email_key: str | None
    ) -> list[Message]:
        note_id = str(uuid.uuid5(_NS, f"note:{command.message_id}"))
        case.setdefault("notes", []).append(
            {
                "note_id": note_id,
                "text": text,
                "email_id": email_key,
                "agent_id": command.agent_id,
                "at": _now(),
            }
        )
        return [
            c.CaseNoteAdded.caused_by(
                command,
                key="note",
                case_number=case["_id"],
                note_id=note_id,
                email_id=email_key,
                agent_id=command.agent_id,
            )
        ]

    async def on_add_note(self, command: c.AddCaseNote) -> dict[str, Any]:
        """A note on the case, or on one of its emails."""

        async def plan(case: Document) -> Build:
            key = self._email_of_case(case, command.email_id, "email_id")

            def build(current: Document) -> tuple[list[Message], dict[str, Any]]:
                messages = self._note(current, command, command.text, key)
                return messages, {
                    "case_number": current["_id"],
                    "note_id": current["notes"][-1]["note_id"],
                }

            return build

        return await self._case_command(command, plan)

    # -- transfer, change of service ----------------------------------------------------------

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
                    messages += self._note(current, command, command.note, None)
                messages += self._end_interaction(current, command, "transferred", cfg)
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
                messages += self._route(
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

    # -- masking ------------------------------------------------------------------------------

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

                def mutate(email: Document, by_field: dict[str, list[Span]] = by_field) -> bool:
                    # Applied to the email as it is when written (a delivery status recorded
                    # meanwhile stays); starring keeps lengths, so the offsets still hold.
                    if any(m.get("command") == me for m in email.get("masked", [])):
                        return False  # this command ran already (retry after a crash)
                    for field, mine in by_field.items():
                        if mine:
                            email[field] = mask_spans(email.get(field) or "", mine)[0]
                    email["html_withheld"] = True
                    email["masked"] = [
                        *email.get("masked", []),
                        {
                            "by": command.agent_id,
                            "what": "spans",
                            "count": sum(len(m) for m in by_field.values()),
                            "at": _now(),
                            "command": me,
                        },
                    ]
                    return True

                await self.store.update_email(key, mutate)
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

    # =========================================================================================
    # reply templates
    # =========================================================================================

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

    # =========================================================================================
    # queries
    # =========================================================================================

    @staticmethod
    def case_view(case: Document) -> dict[str, Any]:
        interaction = case.get("interaction") or {}
        view: dict[str, Any] = _iso(
            {
                "case_number": case["_id"],
                "status": case["status"],
                "service": case["service"],
                "subject": case.get("subject", ""),
                "contact": case.get("contact"),
                "thread_id": case.get("thread_id"),
                "agents": case.get("agents", []),
                "assigned_agent_id": interaction.get("agent_id")
                if interaction.get("state") == "assigned"
                else None,
                "interaction_id": interaction.get("id"),
                "interaction_state": interaction.get("state"),
                "dispositions": case.get("dispositions", []),
                "final_disposition": case.get("final_disposition"),
                "notes": case.get("notes", []),
                "linked_cases": case.get("linked_cases", []),
                "origin": case.get("origin"),
                "created_at": case.get("created_at"),
                "updated_at": case.get("updated_at"),
                "closed_at": case.get("closed_at"),
                "reopened_at": case.get("reopened_at"),
                "email_count": len(case.get("email_keys", [])),
            }
        )
        return view

    @staticmethod
    def email_view(email: Document) -> dict[str, Any]:
        withheld = bool(email.get("html_withheld"))
        view: dict[str, Any] = _iso(
            {
                "email_id": email["_id"],
                "message_id": email.get("message_id"),
                "direction": email["direction"],
                "kind": email.get("kind"),
                "from": email.get("from"),
                "when": email.get("when"),
                "to": email.get("to", []),
                "cc": email.get("cc", []),
                "bcc": email.get("bcc", []) if email["direction"] == "outbound" else [],
                "subject": email.get("subject", ""),
                "text": email.get("text", ""),
                "text_truncated": email.get("text_truncated", False),
                "text_ref": None if withheld else email.get("text_ref"),
                "html_ref": None if withheld else email.get("html_ref"),
                "html": None if withheld else email.get("html"),
                "html_withheld": withheld,
                "attachments": email.get("attachments", []),
                "classification": email.get("classification"),
                "agent_id": email.get("agent_id"),
                "masked": bool(email.get("masked")),
                "intake": email.get("intake"),
                "defects": email.get("defects", []),
                "message_id_reused": bool(email.get("message_id_reused")),
                "delivery": email.get("delivery"),
                "mailboxes": email.get("mailboxes", []),
                "in_reply_to": email.get("in_reply_to"),
                "new_participant": bool(email.get("new_participant")),
            }
        )
        return view

    async def on_get_thread(self, query: c.GetCaseThread) -> dict[str, Any]:
        """The case and its thread view (every email, oldest first): for whoever may see the
        case (``access``: customer mail is not for everyone's eyes)."""
        case = await self._case(query.case_number)
        case = await self._may_see(case, query.agent_id, query.acting_role, query)
        emails = await self.store.emails_of_case(case["_id"])
        view = {
            "case": self.case_view(case),
            "emails": [self.email_view(e) for e in emails],
            # what the desktop offers in its disposition list (a final one closes the case)
            "service_dispositions": [
                d.model_dump() for d in self.service_config(case["service"]).dispositions
            ],
        }
        if query.include_drafts:
            view["drafts"] = [
                _iso({k: v for k, v in d.items() if k != "_id"} | {"draft_id": d["_id"]})
                for d in await self.store.drafts_of_case(case["_id"])
            ]
        return view

    async def on_lookup(self, query: c.LookUpCase) -> dict[str, Any]:
        """A case by number or thread identifier: summary only."""
        number = query.case_number
        hidden = None
        if number is None and query.thread_id:
            hidden = Refused(
                "no_such_case", "no case has this thread identifier", field="thread_id"
            )
            if not self.ids.verify(query.thread_id):
                raise Refused("no_such_case", "not a thread identifier of ours", field="thread_id")
            number = await self.store.case_for_thread(query.thread_id.strip().upper())
            if number is None:
                raise hidden
        if number is None:
            raise Refused(
                "missing", "give a case number or a thread identifier", field="case_number"
            )
        case = await self._may_see(
            await self._case(number), query.agent_id, query.acting_role, hidden=hidden
        )
        return {"case": self.case_view(case)}

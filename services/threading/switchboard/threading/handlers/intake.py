"""Mail in: filing every received email under a case (new, follow-up, reopened or linked),
automatic answers, routing it; and the mail edge's delivery reports."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from switchboard.contracts import Message
from switchboard.contracts import cases as c
from switchboard.contracts.mail import (
    Address,
    EmailDeliveryFailed,
    EmailOutboundRequested,
    EmailReceived,
    EmailSent,
)
from switchboard.threading import email_identity as identity
from switchboard.threading import metrics, rules
from switchboard.threading.config import ServiceConfig
from switchboard.threading.domain.cases import (
    UNMATCHED_AUTOMATIC,
    Intake,
    add_email_to_case,
    file_closed,
    new_case,
)
from switchboard.threading.domain.common import now as _now
from switchboard.threading.domain.email import inbound_email
from switchboard.threading.domain.outbound import (
    automatic_answer,
)
from switchboard.threading.domain.rounds import start_round
from switchboard.threading.handlers.base import (
    HandlerBase,
    log,
)
from switchboard.threading.masking import (
    mask_card_numbers,
)
from switchboard.threading.records import Delivery, EmailRecord
from switchboard.threading.statuses import after_customer_mail, on_reopened
from switchboard.threading.store import Document
from switchboard.threading.subjects import clean_subject


class MailIntake(HandlerBase):
    """Received mail filed and routed (whatever else fails), and delivery reports."""

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
        if number is None:  # the email stored below claims it (a retry reads it there)
            number = await self.store.next_case_number()
        answer, answer_skipped = await self._auto_answer_kind(event, intake, cfg)
        defects = list(event.defects)
        if reused:
            metrics.REUSED_MESSAGE_IDS.inc()
            defects.append(f"message_id_reused: {header} is also on another, different email")
        doc = inbound_email(
            event,
            key=key,
            header=header,
            content_key=content,
            reused=reused,
            case_number=number,
            subject=subject,
            text=text,
            withhold_html=withhold_html,
            cards_masked=cards,
            defects=defects,
            intake=intake,
            auto_answer=answer,
            auto_answer_skipped=answer_skipped,
        ).document()
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
            fresh = new_case(
                number,
                service=event.service,
                subject=clean_subject(email["subject"], cfg.subject_tag_format),
                contact=email["from"],
                origin="inbound",
                linked_to=intake.get("linked_to"),
                first_email=email["_id"],
            )
            if unrouted:
                file_closed(fresh, classification)
        answer_kind = intake.get("auto_answer")
        skipped = intake.get("auto_answer_skipped")
        auto: tuple[EmailOutboundRequested, Document] | None = None
        if answer_kind:
            case_now: Document | None
            if fresh is not None:
                # (On a retry the case exists already with its handled answer, which wins.)
                fresh["thread_id"] = await self.store.claim_thread_id(number, self.ids.mint)
                case_now = fresh
            else:
                await self.store.ensure_thread_id(number, self.ids.mint)
                case_now = await self.store.get_case(number)
            assert case_now is not None
            try:
                auto = automatic_answer(
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
            add_email_to_case(case, email)
            case["last_inbound_at"] = email.get("received_at") or _now()
            messages += after_customer_mail(case, self.service_config(case["service"]), event)
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
                on_reopened(case, self.service_config(case["service"]), _now())
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
                    messages += start_round(case, event, reason="new")
                else:
                    preferred = None
                    case_cfg = self.service_config(case["service"])
                    if case_cfg.follow_up_to_previous_agent and case.get("agents"):
                        preferred = case["agents"][0]
                    messages += start_round(
                        case, event, reason="follow_up", preferred_agent_id=preferred
                    )
            if auto is not None:
                request, auto_doc = auto
                add_email_to_case(case, auto_doc)
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

        def change(email: EmailRecord) -> EmailRecord | None:
            current = email.delivery.status if email.delivery is not None else None
            if not rules.delivery_may_change(current, status):
                return None
            delivery = Delivery(status=status, detail=detail, at=_now())
            return email.model_copy(update={"delivery": delivery})

        await self.store.update_email(key, change)

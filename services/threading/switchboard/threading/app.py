"""Threading service wiring: settings, build(settings) -> Runtime, main()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from pydantic import Field, SecretStr, model_validator

from switchboard.contracts import casebook as casebook_contracts
from switchboard.contracts import cases
from switchboard.contracts.mail import (
    EmailDeliveryFailed,
    EmailOutboundRequested,
    EmailReceived,
    EmailSent,
)
from switchboard.contracts.queues import threading as queues
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    RouteRequested,
    RouteWithdrawn,
)
from switchboard.runtime.consumers import Consumer, consume_table
from switchboard.runtime.jobs import PeriodicJob
from switchboard.runtime.service import Runtime, serve
from switchboard.runtime.settings import ServiceSettings
from switchboard.threading.case_desk import CaseDesk
from switchboard.threading.casebook import Casebook
from switchboard.threading.config import load_file, load_templates
from switchboard.threading.handlers import ThreadingHandlers
from switchboard.threading.store import ThreadingStore
from switchboard.threading.threadids import ThreadIds

log = structlog.get_logger("switchboard.threading")

DEV_THREAD_KEY = "dev-only-thread-key--set-SB_THREAD_KEY-in-production"


class ThreadingSettings(ServiceSettings):
    thread_key: SecretStr | None = Field(
        default=None,
        description="HMAC key that makes thread identifiers verifiable (SB_THREAD_KEY[_FILE]); "
        "required unless SB_DEVELOPMENT=true",
    )
    threading_config_file: Path | None = Field(
        default=None, description="JSON service configuration seeded when the store is empty"
    )
    case_number_start: int = Field(default=14355, ge=1, description="the first case number")
    mask_card_numbers: bool = Field(
        default=True, description="mask payment card numbers before storing (per service too)"
    )
    config_refresh_seconds: float = Field(default=30.0, gt=0)
    outbox_sweep_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _key_given(self) -> ThreadingSettings:
        # A key every deployment would share makes thread identifiers forgeable: refuse it.
        if self.thread_key is None and not self.development:
            raise ValueError(
                "SB_THREAD_KEY (or SB_THREAD_KEY_FILE) is required: the key that makes thread "
                "identifiers verifiable; set SB_DEVELOPMENT=true to use the development key"
            )
        return self


def build(settings: ThreadingSettings) -> Runtime:
    runtime = Runtime("threading", settings)
    store = ThreadingStore(runtime.db)
    if settings.thread_key is None:
        log.warning("using the development thread key (SB_DEVELOPMENT): set SB_THREAD_KEY")
        key = DEV_THREAD_KEY
    else:
        key = settings.thread_key.get_secret_value()
    handlers = ThreadingHandlers(
        store,
        runtime.bus,
        ThreadIds(key.encode()),
        mask_cards_default=settings.mask_card_numbers,
    )

    casebook = Casebook(handlers.index, runtime.bus, lambda: handlers.config)
    desk = CaseDesk(handlers)

    @runtime.on_start
    async def prepare() -> None:
        await store.ensure_indexes(settings.case_number_start)
        await handlers.index.ensure_indexes()
        if migrated := await store.migrate_keyed_outboxes(handlers.outbox):
            log.info("case outboxes rewritten in the kernel's shape", cases=migrated)
        if settings.threading_config_file is not None:
            services = load_file(settings.threading_config_file)
            seeded = await store.seed_config(
                [{"_id": s.name, **s.model_dump(mode="json")} for s in services]
            )
            if seeded:
                log.info("service configuration seeded", file=str(settings.threading_config_file))
            templates = load_templates(settings.threading_config_file)
            if templates and await store.seed_templates(
                [
                    {
                        "_id": t.template_id,
                        **t.model_dump(exclude={"template_id"}),
                        "version": 1,
                        "updated_by": "config file",
                        "updated_at": datetime.now(UTC),
                    }
                    for t in templates
                ]
            ):
                log.info("reply templates seeded", count=len(templates))
        await handlers.reload_config()

    consume_table(
        runtime.bus,
        queues.ALL,
        [
            Consumer(EmailReceived, handlers.on_email_received),
            Consumer(InteractionAssigned, handlers.on_interaction_assigned),
            Consumer(EmailSent, handlers.on_email_sent),
            Consumer(EmailDeliveryFailed, handlers.on_delivery_failed),
            Consumer(cases.ReplyToCase, handlers.on_reply),
            Consumer(cases.ForwardEmail, handlers.on_forward),
            Consumer(cases.SendFollowUp, handlers.on_follow_up),
            Consumer(cases.SendNewOutbound, handlers.on_new_outbound),
            Consumer(cases.SaveDraft, handlers.on_save_draft),
            Consumer(cases.UpdateDraft, handlers.on_update_draft),
            Consumer(cases.DiscardDraft, handlers.on_discard_draft),
            Consumer(cases.CloseCase, handlers.on_close),
            Consumer(cases.TransferCase, handlers.on_transfer),
            Consumer(cases.ChangeCaseService, handlers.on_change_service),
            Consumer(cases.MaskCaseData, handlers.on_mask),
            Consumer(cases.AddCaseNote, handlers.on_add_note),
            Consumer(cases.SetDisposition, handlers.on_set_disposition),
            Consumer(cases.GetCaseThread, handlers.on_get_thread),
            Consumer(cases.LookUpCase, handlers.on_lookup),
            Consumer(cases.SaveReplyTemplate, handlers.on_save_template),
            Consumer(cases.DeleteReplyTemplate, handlers.on_delete_template),
            Consumer(cases.ListReplyTemplates, handlers.on_list_templates),
            Consumer(cases.CaseHistoryRequested, handlers.on_case_history),
            Consumer(cases.RecordUpload, handlers.on_record_upload),
            Consumer(casebook_contracts.ListMyCases, casebook.on_my_cases),
            Consumer(casebook_contracts.SearchCases, casebook.on_search),
            Consumer(casebook_contracts.GetContactHistory, casebook.on_contact_history),
            Consumer(casebook_contracts.OpenCaseByHand, desk.on_open_by_hand),
            Consumer(casebook_contracts.SetCaseStatus, desk.on_set_status),
        ],
    )

    runtime.bus.publishes(
        RouteRequested,
        RouteWithdrawn,
        InteractionEnded,
        EmailOutboundRequested,
        cases.CaseCreated,
        cases.CaseEmailAttached,
        cases.CaseReopened,
        cases.CaseClosed,
        cases.CaseDispositionSet,
        cases.CaseNoteAdded,
        cases.CaseTransferred,
        cases.CaseServiceChanged,
        cases.CaseMasked,
        cases.CaseOutboundRequested,
        cases.CaseStatusChanged,
    )

    async def forget_query_answers() -> None:
        await store.forget_answers([q.name for q in queues.QUERIES.values()])

    async def purge_ack_log() -> None:
        await store.purge_ack_log(timedelta(days=2))

    runtime.jobs(
        [
            PeriodicJob(
                "reload service configuration",
                settings.config_refresh_seconds,
                handlers.reload_config,
            ),
            PeriodicJob(
                "publish unpublished case outbox",
                settings.outbox_sweep_seconds,
                handlers.sweep_outbox,
            ),
            PeriodicJob("forget stored query answers", 300.0, forget_query_answers),
            PeriodicJob("purge auto-answer rate log", 3600.0, purge_ack_log),
        ]
    )
    runtime.handlers = handlers  # type: ignore[attr-defined]
    runtime.store = store  # type: ignore[attr-defined]
    runtime.casebook = casebook  # type: ignore[attr-defined]
    runtime.desk = desk  # type: ignore[attr-defined]
    return runtime


def main() -> None:
    serve(build(ThreadingSettings()))

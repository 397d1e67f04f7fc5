"""The threading service's MongoDB adapter (collections described in docs/data-model.md).

Plain MongoDB; every claim is one conditional write (the server's single-document atomicity,
``switchboard.runtime.storage``). Case numbers come from a ``Sequence`` (``$inc``); an inbound
email is claimed by its Message-ID (``emails._id``), which also keeps the case number it was
given, so a retried mail finds its number there. Cases move from one version to the next
and emails, drafts and reply templates likewise, each through the kernel's
``VersionedCollection`` of its typed record (``records``): one ``replace_one`` filtered on the
version read; a writer that lost decides again on the fresh record. Automatic answers are
counted per recipient and window by the kernel's ``Slots`` (``ack_log``).

The change one message makes to a case and the messages it causes are written together (the
kernel's ``Outbox``: the case's ``outbox`` list), with the answer a retry of that message gets
(``handled``), so a crash between the write and the publish is repaired by the retry or the
outbox sweep.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from switchboard.runtime.mongo import retry_when_busy
from switchboard.runtime.storage import (
    NotFound,
    Outbox,
    Sequence,
    Slots,
    Versioned,
    VersionedCollection,
    delete_older_than,
)
from switchboard.runtime.storage.outbox import Publish
from switchboard.threading.masking import redact_everywhere
from switchboard.threading.records import (
    CaseRecord,
    DraftRecord,
    EmailRecord,
    TemplateRecord,
    with_outbox,
)

log = structlog.get_logger("switchboard.threading")

Document = dict[str, Any]
HISTORY_EMAIL_FIELDS = {
    name: 1
    for name in (
        "case_number",
        "direction",
        "kind",
        "agent_id",
        "automatic",
        "stored_at",
        "intake",
        "classification",
    )
}
"""What a case's events need of its emails (``history.py``): no bodies."""
COUNTER_ID = "case_number"
OPENED_BY = "opened_by"
"""The key of the command that opened a case (by hand, new outbound), kept in the case."""
OLD_PUBLISHED = "outbox_published"
"""The pre-kernel outbox's record of what went out, read once by the start-up migration."""

Decide = Callable[[Document], tuple[list[Document], Any]]
"""A command's change to the case document: the messages it causes and its answer."""
R = TypeVar("R", bound=Versioned)
Change = Callable[[R], R | None]
"""A change of one record: the record changed, or None when there is nothing to write."""


class CaseMissing(LookupError):
    pass


class ThreadingStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.cases = db["cases"]
        self.case_records = VersionedCollection(self.cases, CaseRecord, attempts=100)
        self.emails = db["emails"]
        self.email_records = VersionedCollection(self.emails, EmailRecord, attempts=100)
        self.counters = db["counters"]
        self.thread_ids = db["thread_ids"]
        self.drafts = db["drafts"]
        self.draft_records = VersionedCollection(self.drafts, DraftRecord, attempts=100)
        self.config = db["service_config"]
        self.ack_log = db["ack_log"]
        self.ledger = db["processed_messages"]
        self.templates = db["templates"]
        self.template_records = VersionedCollection(self.templates, TemplateRecord, attempts=100)
        self.uploads = db["uploads"]

    async def ensure_indexes(self, case_number_start: int) -> None:
        await self.emails.create_index([("case_number", ASCENDING), ("when", ASCENDING)])
        await self.emails.create_index("outbound_id")
        await self.emails.create_index("source")
        await self.cases.create_index("contact.address")
        await self.cases.create_index([("status", ASCENDING), ("service", ASCENDING)])
        await self.cases.create_index("unpublished")
        # Only cases a command opened carry the key (sparse): one case per command.
        await self.cases.create_index(OPENED_BY, unique=True, sparse=True)
        await self.drafts.create_index("case_number")
        await self.ack_log.create_index("at")
        await self.ack_log.create_index("created_at")
        await self.ensure_counter(case_number_start)

    # -- case numbers ----------------------------------------------------------------------

    async def ensure_counter(self, start: int) -> None:
        """The counter holds the last number given; raising ``start`` later moves it up."""
        for _ in range(3):
            try:
                await self.counters.update_one(
                    {"_id": COUNTER_ID}, {"$max": {"value": start - 1}}, upsert=True
                )
                return
            except DuplicateKeyError:  # another replica created it at the same moment
                continue

    async def next_case_number(self) -> int:
        """The next case number: one ``$inc`` of the counter (created by :meth:`ensure_counter`
        at start; no number is handed out twice; a number taken by a handler that then failed
        is a gap)."""
        return await Sequence(self.counters, COUNTER_ID).next()

    async def case_opened_by(self, key: str) -> int | None:
        """The number of the case command ``key`` opened (a retry finds it), if it did."""
        found = await self.cases.find_one({OPENED_BY: key}, {"_id": 1})
        return int(found["_id"]) if found is not None else None

    async def open_case(self, key: str, make: Callable[[int], Document]) -> int:
        """The case command ``key`` opens (by hand, new outbound): the one it opened already (a
        retry after a crash: the same number, never a second, empty case), else ``make`` of the
        next number, inserted with ``key`` in ``opened_by`` (unique). Inbound mail needs no
        key: its stored email keeps its number."""
        number = await self.case_opened_by(key)
        if number is not None:
            return number
        number = await self.next_case_number()
        if await self.insert_case({**make(number), OPENED_BY: key}):
            return number
        again = await self.case_opened_by(key)  # a copy of the command opened it meanwhile
        assert again is not None, f"case {number} for {key} neither inserted nor found"
        return again

    # -- emails ----------------------------------------------------------------------------

    async def get_email(self, key: str) -> Document | None:
        return await self.emails.find_one({"_id": key})

    async def find_emails(self, keys: list[str]) -> list[Document]:
        if not keys:
            return []
        found = {d["_id"]: d async for d in self.emails.find({"_id": {"$in": keys}})}
        return [found[k] for k in keys if k in found]

    async def insert_email(self, doc: Document) -> bool:
        """False when an email with this Message-ID is already stored (unique ``_id``)."""
        return await _insert_new(self.emails, doc)

    async def add_copy(self, key: str, email_id: str, mailbox: str) -> None:
        """The same Message-ID came again (another mailbox): remember the copy, nothing else."""
        await self.update_email(key, lambda email: email.with_copy(email_id, mailbox))

    async def update_email(self, key: str, change: Change[EmailRecord]) -> EmailRecord | None:
        """Change an email as its next version (None when there is no such email)."""
        return await _change(self.email_records, key, change)

    async def emails_of_case(self, case_number: int) -> list[Document]:
        docs = [d async for d in self.emails.find({"case_number": case_number})]
        return sorted(docs, key=lambda d: (d.get("when") or d.get("stored_at"), d["_id"]))

    async def find_outbound(self, outbound_id: str, message_key: str) -> str | None:
        """The email id of an outbound email, by the mail edge's request id or Message-ID."""
        found = await self.emails.find_one(
            {"$or": [{"outbound_id": outbound_id}, {"_id": message_key}]}, {"_id": 1}
        )
        return str(found["_id"]) if found is not None else None

    # -- thread ids ------------------------------------------------------------------------

    async def case_for_thread(self, thread_id: str) -> int | None:
        doc = await self.thread_ids.find_one({"_id": thread_id})
        return int(doc["case_number"]) if doc else None

    async def claim_thread_id(self, case_number: int, mint: Callable[[], str]) -> str:
        """Mint an identifier no other case has (unique insert) and map it to the case."""
        while True:
            candidate = mint()
            try:
                await self.thread_ids.insert_one(
                    {"_id": candidate, "case_number": case_number, "at": _now()}
                )
            except DuplicateKeyError:
                continue
            return candidate

    async def ensure_thread_id(self, case_number: int, mint: Callable[[], str]) -> str:
        """The case's thread identifier, minted and kept in the case the first time."""
        case = await self.case_records.get(case_number)
        if case is None:
            raise CaseMissing(case_number)
        if case.thread_id:
            return case.thread_id
        candidate = await self.claim_thread_id(case_number, mint)

        def change(current: CaseRecord) -> tuple[CaseRecord | None, str]:
            if current.thread_id:
                return None, current.thread_id
            return current.model_copy(update={"thread_id": candidate, "updated_at": _now()}), (
                candidate
            )

        done = await self.case_records.update(case_number, change, known=case)
        if done.result != candidate:
            await self.thread_ids.delete_one({"_id": candidate})
        return done.result

    # -- cases -----------------------------------------------------------------------------

    async def get_case(self, case_number: int) -> Document | None:
        return await self.cases.find_one({"_id": case_number})

    async def cases_after(self, after: int, limit: int) -> list[tuple[Document, list[Document]]]:
        """Up to ``limit`` cases numbered after ``after``, each with its emails (a rebuild's
        page: two reads)."""
        found = self.cases.find({"_id": {"$gt": after}}).sort("_id", ASCENDING).limit(limit)
        cases = [doc async for doc in found]
        emails: dict[int, list[Document]] = {doc["_id"]: [] for doc in cases}
        wanted = {"$in": list(emails)}
        async for email in self.emails.find({"case_number": wanted}, HISTORY_EMAIL_FIELDS):
            emails[email["case_number"]].append(email)
        return [(doc, emails[doc["_id"]]) for doc in cases]

    async def insert_case(self, doc: Document) -> bool:
        return await _insert_new(self.cases, doc)

    async def update_case(self, case_number: int, change: Change[CaseRecord]) -> CaseRecord:
        """Change the case as its next version, with no message to publish (None from
        ``change``: nothing to write); the case as stored. ``updated_at`` is set with the
        write."""

        def stamped(case: CaseRecord) -> tuple[CaseRecord | None, None]:
            new = change(case)
            return (None if new is None else new.model_copy(update={"updated_at": _now()})), None

        try:
            done = await self.case_records.update(case_number, stamped)
        except NotFound as exc:
            raise CaseMissing(case_number) from exc
        return done.aggregate

    async def commit(self, case_number: int, key: str, decide: Decide) -> tuple[CaseRecord, Any]:
        """Apply handled message ``key``'s change to the case with the messages it causes (in
        the outbox) and its answer (``handled``), in one version-guarded write; the case as
        stored and the answer. A message handled already changes nothing and gets its answer
        again."""

        def change(case: CaseRecord) -> tuple[CaseRecord | None, Any]:
            done = case.handled.get(key)
            if done is not None:
                return None, done.result
            draft = copy.deepcopy(case.document())
            messages, result = decide(draft)
            waiting = draft.get("outbox") or []  # as ``decide`` left it (masking stars it)
            return with_outbox(draft, waiting, key, messages, result), result

        try:
            done = await self.case_records.update(case_number, change)
        except NotFound as exc:
            raise CaseMissing(case_number) from exc
        return done.aggregate, done.result

    async def commit_new(
        self, fresh: Document, key: str, decide: Decide
    ) -> tuple[CaseRecord, Any] | None:
        """Create a case with handled message ``key``'s change and messages in one insert
        (nobody knows the case yet); None when it exists already (a retry: :meth:`commit`)."""
        messages, result = decide(fresh)
        record = with_outbox(fresh, [], key, messages, result)
        if not await self.case_records.insert(record):
            return None
        return record, result

    def outbox(self, publish: Publish) -> Outbox[CaseRecord]:
        """The cases' outbox, publishing through ``publish``; the sweep takes what a crashed
        handler left after ``grace``."""
        return Outbox(self.case_records, publish, grace=timedelta(seconds=15))

    async def migrate_keyed_outboxes(self, outbox: Outbox[CaseRecord]) -> int:
        """Rewrite cases stored with the pre-kernel outbox in today's shape, publishing what
        they hold unpublished (what ``outbox_published`` says went out is not sent again);
        then drop ``outbox_published``. Runs at start; how many cases it rewrote."""
        old = self.db[OLD_PUBLISHED]
        rewritten = 0
        async for doc in self.cases.find({"outbox_pending": {"$exists": True}}):
            number, entries = doc["_id"], doc.get("outbox") or {}
            ids = [f"{number}/{key}" for key in entries]
            sent = {d["_id"] async for d in old.find({"_id": {"$in": ids}})}
            for key, entry in entries.items():
                entry["published"] = entry.get("published") or f"{number}/{key}" in sent
            stored = await self.case_records.replace(CaseRecord.model_validate(doc))
            if stored is None:  # changed meanwhile, so rewritten; the sweep publishes the rest
                continue
            rewritten += 1
            try:
                await outbox.flush(number, stored.unsent(), written=stored)
            except Exception as exc:  # the broker is away: the sweep publishes them later
                log.warning("migrated case outbox not published yet", case=number, error=str(exc))
        if await self.cases.find_one({"outbox_pending": {"$exists": True}}, {"_id": 1}) is None:
            await retry_when_busy(lambda: self.db.drop_collection(OLD_PUBLISHED))
        return rewritten

    # -- drafts ----------------------------------------------------------------------------

    async def insert_draft(self, doc: Document) -> bool:
        return await _insert_new(self.drafts, doc)

    async def get_draft(self, draft_id: str) -> Document | None:
        return await self.drafts.find_one({"_id": draft_id})

    async def update_draft(self, draft_id: str, change: Change[DraftRecord]) -> DraftRecord | None:
        """Change a draft as its next version (None when it is gone)."""
        return await _change(self.draft_records, draft_id, change)

    async def delete_draft(self, draft_id: str) -> None:
        await self.drafts.delete_one({"_id": draft_id})

    async def drafts_of_case(self, case_number: int) -> list[Document]:
        docs = [d async for d in self.drafts.find({"case_number": case_number})]
        return sorted(docs, key=lambda d: d.get("created_at") or _now())

    # -- uploads ---------------------------------------------------------------------------

    async def record_upload(self, agent_id: str, attachment: Document) -> None:
        """Who uploaded which file (keyed by both: the same bytes may be uploaded by two)."""
        doc = {
            "_id": f"{agent_id}/{attachment['attachment_id']}",
            "agent_id": agent_id,
            "attachment_id": attachment["attachment_id"],
            "filename": attachment.get("filename", ""),
            "at": _now(),
        }
        await _insert_new(self.uploads, doc)

    async def uploaded_by(self, agent_id: str, attachment_ids: list[str]) -> set[str]:
        keys = [f"{agent_id}/{a}" for a in attachment_ids]
        return {d["attachment_id"] async for d in self.uploads.find({"_id": {"$in": keys}})}

    # -- masking ---------------------------------------------------------------------------

    async def redact_case_copies(self, case_number: int, pieces: list[str]) -> int:
        """Replace the pieces in every email and draft document of the case; returns count.

        Each document is redacted as its next version (a delivery status or a draft edit
        written meanwhile is kept, and redacted too)."""
        emails = [e["_id"] for e in await self.emails_of_case(case_number)]
        drafts = [d["_id"] for d in await self.drafts_of_case(case_number)]
        return await _redact(self.email_records, emails, pieces) + await _redact(
            self.draft_records, drafts, pieces
        )

    async def forget_answers(self, consumers: list[str]) -> None:
        """Drop the runtime ledger's stored answers of these consumers (they may quote text)."""
        for consumer in consumers:
            # "/" + 1 == "0": the range holds exactly the ids "<consumer>/..."
            await self.ledger.delete_many({"_id": {"$gte": f"{consumer}/", "$lt": f"{consumer}0"}})

    # -- reply templates -------------------------------------------------------------------

    async def get_template(self, template_id: str) -> Document | None:
        """A template that is not deleted (deleted ones stay as documents with ``deleted``)."""
        return await self.templates.find_one({"_id": template_id, "deleted": {"$ne": True}})

    async def all_templates(self) -> list[Document]:
        docs = [d async for d in self.templates.find({"deleted": {"$ne": True}})]
        return sorted(docs, key=lambda d: (str(d.get("name", "")).casefold(), str(d["_id"])))

    async def insert_template(self, doc: Document) -> bool:
        return await _insert_new(self.templates, doc)

    async def update_template(
        self, template_id: str, change: Change[TemplateRecord]
    ) -> TemplateRecord | None:
        """Change a template as its next version (None when there is no such document)."""
        return await _change(self.template_records, template_id, change)

    async def seed_templates(self, documents: list[Document]) -> bool:
        """Store the file's templates only when there are none yet (deleted ones count: an
        operator who deleted every template does not get the file's back)."""
        return await _seed_when_empty(self.templates, documents)

    # -- configuration ---------------------------------------------------------------------

    async def config_documents(self) -> list[Document]:
        return [d async for d in self.config.find({})]

    async def seed_config(self, documents: list[Document]) -> bool:
        """Store the file's configuration only when the collection is empty."""
        return await _seed_when_empty(self.config, documents)

    # -- automatic answers -----------------------------------------------------------------

    async def take_ack_quota(self, recipient: str, window: str, limit: int) -> bool:
        """Take one of ``limit`` automatic answers for ``recipient`` in this window (the
        kernel's ``Slots``: one conditional ``$inc``); False when all are taken."""
        return await Slots(self.ack_log, f"{recipient}|{window}").take(limit)

    async def purge_ack_log(self, older_than: timedelta) -> None:
        await delete_older_than(self.ack_log, "created_at", older_than)
        await self.ack_log.delete_many({"at": {"$lt": _now() - older_than}})  # numbered slots


async def _change(records: VersionedCollection[R], key: str, change: Change[R]) -> R | None:
    """The record as ``change`` left it (as it is, when there was nothing to write); None when
    there is no record ``key``."""
    try:
        done = await records.update(key, lambda record: (change(record), None))
    except NotFound:
        return None
    return done.aggregate


async def _redact(records: VersionedCollection[R], keys: list[str], pieces: list[str]) -> int:
    """Star ``pieces`` in every text of these records, each as its next version; how many
    held any."""
    hits = 0
    for key in keys:
        with contextlib.suppress(NotFound):
            done = await records.update(key, lambda record: (_redacted(record, pieces), None))
            hits += done.written
    return hits


def _redacted(record: R, pieces: list[str]) -> R | None:
    """``record`` with ``pieces`` starred in every text it holds (None: none was there)."""
    document = record.document()
    body = {k: v for k, v in document.items() if k not in ("_id", "version")}
    new, hit = redact_everywhere(body, pieces)
    return record.model_validate({**document, **new}) if hit else None


async def _insert_new(collection: AsyncCollection[Document], doc: Document) -> bool:
    """Insert under a unique ``_id``; False when that ``_id`` is taken (a claim by key)."""
    try:
        await collection.insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


async def _seed_when_empty(
    collection: AsyncCollection[Document], documents: list[Document]
) -> bool:
    """Copy a file's entries in only when the collection is empty: once seeded, the collection
    is the truth (two replicas seeding at once insert each entry once)."""
    if await collection.count_documents({}) > 0:
        return False
    for doc in documents:
        await _insert_new(collection, doc)
    return True


def _now() -> datetime:
    return datetime.now(UTC)

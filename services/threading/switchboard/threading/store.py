"""The threading service's MongoDB adapter (collections described in docs/data-model.md).

Plain MongoDB; every claim is one conditional write (the server's single-document atomicity,
``switchboard.runtime.storage``). Case numbers come from a ``Sequence`` (``$inc``); an inbound
email is claimed by its Message-ID (``emails._id``), which also keeps the case number it was
given, so a retried mail finds its number there. Cases move from one version to the next
through a ``VersionedCollection[Case]``; emails, drafts and reply templates with one
``replace_one`` filtered on the version read (:meth:`ThreadingStore.versioned_update`); a writer
that lost decides again on the fresh document. Automatic answers are counted per recipient and
window by the kernel's ``Slots`` (``ack_log``).

The changes of one message to a case and the messages it causes are written together (the
case's ``outbox``), so a crash between the write and the publish is repaired by the retry or the
outbox sweeper.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ConfigDict
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from switchboard.runtime.mongo import retry_when_busy
from switchboard.runtime.storage import (
    NotFound,
    Sequence,
    Slots,
    Versioned,
    VersionedCollection,
    delete_older_than,
)
from switchboard.runtime.storage.versioned import backoff
from switchboard.threading.domain.case import Case
from switchboard.threading.masking import redact_everywhere

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
OUTBOX_KEEP = timedelta(hours=24)


class CaseMissing(LookupError):
    pass


class CaseRecord(Case, Versioned):
    """A case as the kernel's :class:`VersionedCollection` stores it (keyed by its number)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")


class Contention(RuntimeError):
    pass


class ThreadingStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.cases = db["cases"]
        self.case_records = VersionedCollection(self.cases, CaseRecord, attempts=100)
        self.emails = db["emails"]
        self.counters = db["counters"]
        self.thread_ids = db["thread_ids"]
        self.drafts = db["drafts"]
        self.config = db["service_config"]
        self.ack_log = db["ack_log"]
        self.number_claims = db["case_number_claims"]
        self.published = db["outbox_published"]
        self.ledger = db["processed_messages"]
        self.templates = db["templates"]
        self.uploads = db["uploads"]

    async def ensure_indexes(self, case_number_start: int) -> None:
        await self.emails.create_index([("case_number", ASCENDING), ("when", ASCENDING)])
        await self.emails.create_index("outbound_id")
        await self.emails.create_index("source")
        await self.cases.create_index("contact.address")
        await self.cases.create_index([("status", ASCENDING), ("service", ASCENDING)])
        await self.cases.create_index("outbox_pending")
        await self.drafts.create_index("case_number")
        await self.ack_log.create_index("at")
        await self.ack_log.create_index("created_at")
        await self.published.create_index("at")
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

    async def case_number_for(self, key: str) -> int:
        """The case number claimed for one command that opens a case (by hand, outbound): a
        retry after a crash gets the same number back, so it never opens a second case (an
        empty one) beside the first. Inbound mail needs no such claim: its stored email is."""
        found = await self.number_claims.find_one({"_id": key})
        if found is None:
            number = await self.next_case_number()
            if await _insert_new(self.number_claims, {"_id": key, "number": number, "at": _now()}):
                return number
            found = await self.number_claims.find_one({"_id": key})
            assert found is not None
        return int(found["number"])

    # -- versioned writes of cases, emails, drafts and templates ---------------------------

    async def versioned_update(
        self,
        collection: str,
        key: Any,
        mutate: Callable[[Document], bool],
        *,
        attempts: int = 100,
        before_write: Callable[[Document], None] = lambda _: None,
    ) -> Document | None:
        """Read, change in memory, write back as the next version; None if there is no such
        document (any more).

        The write is one ``replace_one`` filtered on the version read: if another writer came
        first it matches nothing, and the change is decided again on the winner's document.
        ``mutate`` changes the document in place and says whether it changed anything; it may
        raise to refuse (nothing is written then).
        """
        docs = self.db[collection]
        for attempt in range(attempts):
            current = await docs.find_one({"_id": key})
            if current is None:
                return None
            draft = copy.deepcopy(current)
            if not mutate(draft):
                return current
            before_write(draft)
            version = int(current.get("version", 0))
            draft["version"] = version + 1
            guard: Document = {"_id": key, "version": version}
            if "version" not in current:
                guard = {"_id": key, "version": {"$exists": False}}
            result = await retry_when_busy(
                lambda: docs.replace_one(guard, draft)  # noqa: B023 (awaited here)
            )
            if result.matched_count == 1:
                return draft
            await backoff(attempt)
        raise Contention(f"{collection} {key} is changed by too many writers at once")

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

        def mutate(email: Document) -> bool:
            changed = False
            for field, value in (("raw_email_ids", email_id), ("mailboxes", mailbox)):
                values = email.setdefault(field, [])
                if value not in values:
                    values.append(value)
                    changed = True
            return changed

        await self.update_email(key, mutate)

    async def update_email(self, key: str, mutate: Callable[[Document], bool]) -> Document | None:
        return await self.versioned_update("emails", key, mutate)

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
        case = await self.get_case(case_number)
        if case is None:
            raise CaseMissing(case_number)
        if case.get("thread_id"):
            return str(case["thread_id"])
        candidate = await self.claim_thread_id(case_number, mint)
        chosen: dict[str, str] = {}

        def mutate(current: Document) -> bool:
            if current.get("thread_id"):
                chosen["id"] = str(current["thread_id"])
                return False
            current["thread_id"] = chosen["id"] = candidate
            return True

        await self.update_case(case_number, mutate)
        if chosen["id"] != candidate:
            await self.thread_ids.delete_one({"_id": candidate})
        return chosen["id"]

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

    async def update_case(self, case_number: int, mutate: Callable[[Document], bool]) -> Document:
        """Change the case as its next version (:meth:`VersionedCollection.update`): ``mutate``
        changes the case document in place and says whether it changed anything; it may raise
        to refuse (nothing is written then). The outbox is pruned and ``updated_at`` set with
        every write. Returns the case as stored."""

        def change(case: CaseRecord) -> tuple[CaseRecord | None, None]:
            draft = copy.deepcopy(case.document())
            if not mutate(draft):
                return None, None
            _prune_outbox(draft)
            draft["updated_at"] = _now()
            return CaseRecord.model_validate(draft), None

        try:
            done = await self.case_records.update(case_number, change)
        except NotFound as exc:
            raise CaseMissing(case_number) from exc
        return done.aggregate.document()

    async def mark_published(self, case_number: int, key: str) -> None:
        """Remember that an outbox entry went out: one insert, no lock (the flag in the case
        document is brought up to date by the sweeper or the case's next change)."""
        with contextlib.suppress(DuplicateKeyError):
            await self.published.insert_one({"_id": f"{case_number}/{key}", "at": _now()})

    async def published_keys(self, case_number: int, keys: list[str]) -> set[str]:
        ids = [f"{case_number}/{k}" for k in keys]
        found = {d["_id"] async for d in self.published.find({"_id": {"$in": ids}})}
        return {k for k in keys if f"{case_number}/{k}" in found}

    async def settle_outbox(self, case_number: int, keys: set[str]) -> None:
        """Flag these outbox entries published in the case document itself."""

        def mutate(case: Document) -> bool:
            changed = False
            for key, entry in (case.get("outbox") or {}).items():
                if key in keys and not entry.get("published"):
                    entry["published"] = True
                    changed = True
            return changed

        await self.update_case(case_number, mutate)

    async def cases_with_unpublished(self, older_than: timedelta) -> list[Document]:
        cutoff = _now() - older_than
        cursor = self.cases.find({"outbox_pending": True, "updated_at": {"$lt": cutoff}})
        return [d async for d in cursor.limit(100)]

    # -- drafts ----------------------------------------------------------------------------

    async def insert_draft(self, doc: Document) -> bool:
        return await _insert_new(self.drafts, doc)

    async def get_draft(self, draft_id: str) -> Document | None:
        return await self.drafts.find_one({"_id": draft_id})

    async def update_draft(
        self, draft_id: str, mutate: Callable[[Document], bool]
    ) -> Document | None:
        """Change a draft as its next version (None when it is gone); see
        :meth:`versioned_update`."""
        return await self.versioned_update("drafts", draft_id, mutate)

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
        hits: set[tuple[str, Any]] = set()

        def mutate(doc: Document) -> bool:
            body = {k: v for k, v in doc.items() if k not in ("_id", "version")}
            new, hit = redact_everywhere(body, pieces)
            if hit:
                doc.update(new)
                hits.add((collection, doc["_id"]))
            return hit

        for collection, docs in (
            ("emails", await self.emails_of_case(case_number)),
            ("drafts", await self.drafts_of_case(case_number)),
        ):
            for doc in docs:
                await self.versioned_update(collection, doc["_id"], mutate)
        return len(hits)

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
        self, template_id: str, mutate: Callable[[Document], bool]
    ) -> Document | None:
        return await self.versioned_update("templates", template_id, mutate)

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
        await self.published.delete_many({"at": {"$lt": _now() - 2 * OUTBOX_KEEP}})


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


def _prune_outbox(case: Document) -> None:
    outbox = case.get("outbox") or {}
    cutoff = _now() - OUTBOX_KEEP
    case["outbox"] = {
        k: v for k, v in outbox.items() if not (v.get("published") and _aware(v.get("at")) < cutoff)
    }
    case["outbox_pending"] = any(not v.get("published") for v in case["outbox"].values())


def _aware(value: Any) -> datetime:
    if not isinstance(value, datetime):
        return _now()
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)

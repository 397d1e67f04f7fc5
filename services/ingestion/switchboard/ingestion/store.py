"""The MongoDB adapter of the mail edge: raw mail and blobs in GridFS, its own collections.

* ``raw`` bucket: every received message exactly as its bytes arrived, ``_id`` = SHA-256 hex.
* ``blobs`` bucket: attachments, sanitised HTML and full texts, ``_id`` = SHA-256 of the content,
  so the same attachment sent a hundred times is stored once.
* ``mails``: one :class:`~switchboard.ingestion.mail.Mail` per distinct raw message (same
  ``_id``), a versioned aggregate: where it first came from, the mailboxes it is for
  (``targets``), those whose event is confirmed (``published_for``), and in its outbox the
  events a failed attempt left to publish; ``state`` pending -> done once every target's is.
* ``outbound``: one document per ``outbound_id``; the record that makes a send happen once.
* ``imap_state``: last seen UID per mailbox folder and its UIDVALIDITY.
* ``mailbox_leases``: which replica polls an IMAP mailbox (the kernel's
  :class:`~switchboard.runtime.storage.Lease`, ``_id`` = mailbox key).
* ``quarantine``: the operators' list of mail that could not be parsed.
* ``locks``: raw mails and blobs destroyed because threading masked the email they held
  (``raw/<id>``, ``blob/<id>``): the fact (case, who, when), never the bytes; served as 410.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from gridfs import AsyncGridFSBucket
from gridfs.errors import FileExists, NoFile
from pymongo import ASCENDING, InsertOne, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from switchboard.ingestion.mail import Mail
from switchboard.runtime.mongo import GroupedWrites
from switchboard.runtime.storage import Lease, Outbox, VersionedCollection
from switchboard.runtime.storage.outbox import Publish

Document = dict[str, Any]
CHUNK_SIZE = 255 * 1024  # GridFS's default chunk size


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobMissing(LookupError):
    """A referenced raw mail or attachment is not in the store."""


class _Bucket:
    """A GridFS bucket whose files are named by the SHA-256 of their bytes (write-once)."""

    def __init__(self, db: AsyncDatabase[Document], name: str) -> None:
        self._bucket = AsyncGridFSBucket(db, bucket_name=name, chunk_size_bytes=CHUNK_SIZE)
        self._files = db[f"{name}.files"]
        self._chunks = db[f"{name}.chunks"]
        # the one-chunk files of concurrent mails go to the server together (group commit)
        self._new_chunks = GroupedWrites(self._chunks)
        self._new_files = GroupedWrites(self._files)

    async def ensure_indexes(self) -> None:
        await self._files.create_index([("filename", ASCENDING), ("uploadDate", ASCENDING)])
        await self._chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)

    async def exists(self, blob_id: str) -> bool:
        return await self._files.find_one({"_id": blob_id}, {"_id": 1}) is not None

    async def put(self, blob_id: str, data: bytes, metadata: Document | None = None) -> bool:
        """Store once; True when this call wrote it. Returns only when the file is complete.

        No "exists?" read first: the write itself finds out (unique ``_id`` / chunk index), which
        saves a round trip on every new mail. A file that fits one chunk is written as its chunk
        then its files document (the GridFS layout, readable by any GridFS client; the files
        document last, so a file is visible only when whole).
        """
        try:
            if len(data) <= CHUNK_SIZE:
                await self._new_chunks.write(InsertOne({"files_id": blob_id, "n": 0, "data": data}))
                await self._new_files.write(
                    InsertOne(
                        {
                            "_id": blob_id,
                            "filename": blob_id,
                            "length": len(data),
                            "chunkSize": CHUNK_SIZE,
                            "uploadDate": datetime.now(UTC),
                            "metadata": metadata or {},
                        }
                    )
                )
            else:
                await self._bucket.upload_from_stream_with_id(
                    blob_id, blob_id, data, metadata=metadata or {}
                )
            return True
        except (DuplicateKeyError, FileExists):
            pass
        # Stored already, or someone else is writing the same bytes, or a crashed writer left
        # chunks behind: wait for the files document, else clean up and write it again.
        for _ in range(50):
            if await self.exists(blob_id):
                return False
            await asyncio.sleep(0.1)
        await self._chunks.delete_many({"files_id": blob_id})
        await self._bucket.upload_from_stream_with_id(
            blob_id, blob_id, data, metadata=metadata or {}
        )
        return True

    async def get(self, blob_id: str) -> bytes:
        try:
            stream = await self._bucket.open_download_stream(blob_id)
        except NoFile:
            raise BlobMissing(blob_id) from None
        return await stream.read()

    async def info(self, blob_id: str) -> Document | None:
        return await self._files.find_one({"_id": blob_id})

    async def destroy(self, blob_id: str) -> None:
        """Delete the bytes for good (files document first: the file stops being visible)."""
        await self._files.delete_one({"_id": blob_id})
        await self._chunks.delete_many({"files_id": blob_id})


class MailStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.raw = _Bucket(db, "raw")
        self.blobs = _Bucket(db, "blobs")
        self.mails = db["mails"]
        self.outbound = db["outbound"]
        self.imap_state = db["imap_state"]
        self.mailbox_leases = db["mailbox_leases"]
        self.records = VersionedCollection(self.mails, Mail)
        self._new_mails = GroupedWrites(self.mails)
        """First writes of concurrent mails, sent together."""
        self.quarantine = db["quarantine"]
        self.locks = db["locks"]

    async def ensure_indexes(self) -> None:
        await self.raw.ensure_indexes()
        await self.blobs.ensure_indexes()
        await self.quarantine.create_index([("received_at", ASCENDING)])
        await self.mails.create_index([("internet_message_id", ASCENDING)])
        await self.mails.create_index([("unpublished", ASCENDING)])  # the outbox sweep
        # mails stored before they were versioned aggregates: guard their next write
        await self.mails.update_many({"version": {"$exists": False}}, {"$set": {"version": 0}})

    # ---------------------------------------------------------------- inbound

    async def put_raw(self, email_id: str, raw: bytes) -> None:
        await self.raw.put(email_id, raw, {"kind": "raw-mail", "size": len(raw)})

    async def put_blob(self, data: bytes, *, content_type: str, kind: str) -> str:
        blob_id = sha256_hex(data)
        await self.blobs.put(
            blob_id, data, {"kind": kind, "content_type": content_type, "size": len(data)}
        )
        return blob_id

    async def add_mail(self, mail: Mail) -> bool:
        """Store a mail on its first arrival; False when another arrival stored it first."""
        try:
            await self._new_mails.write(InsertOne(mail.document()))
        except DuplicateKeyError:
            return False
        return True

    async def change_mail(self, email_id: str, change: Callable[[Mail], Mail]) -> Mail:
        """Apply ``change`` to the stored mail with one version-guarded write."""
        done = await self.records.update(email_id, lambda mail: (change(mail), None))
        return done.aggregate

    def outbox(self, publish: Publish) -> Outbox[Mail]:
        """The mails' events left unpublished by a failed attempt, published through
        ``publish``; the sweep needs no grace, as only an attempt that gave up leaves them."""
        return Outbox(self.records, publish, grace=timedelta(0))

    async def record_quarantine(self, doc: Document) -> None:
        await self.quarantine.update_one({"_id": doc["_id"]}, {"$set": doc}, upsert=True)

    async def list_quarantine(self, limit: int = 100) -> list[Document]:
        cursor = self.quarantine.find({}).sort("received_at", -1).limit(limit)
        return [doc async for doc in cursor]

    # ---------------------------------------------------------------- masking

    async def mails_for_keys(self, keys: list[str]) -> list[Document]:
        """The stored mails behind threading's email keys (Message-ID without brackets, or
        ``sha256-<email_id>``, or ``<Message-ID>#reused-<content>`` for a mail that reused one);
        every raw copy with that Message-ID (for a reused one: the other mails' too, rather
        than too few)."""
        ids = [k.removeprefix("sha256-") for k in keys if k.startswith("sha256-")]
        msgids = [f"<{k.split('#reused-')[0]}>" for k in keys if not k.startswith("sha256-")]
        found: dict[str, Document] = {}
        for query in ({"_id": {"$in": ids}}, {"internet_message_id": {"$in": msgids}}):
            async for doc in self.mails.find(query):
                found[doc["_id"]] = doc
        return list(found.values())

    async def lock(self, kind: str, blob_id: str, facts: Document) -> None:
        await self.locks.update_one(
            {"_id": f"{kind}/{blob_id}"},
            {"$setOnInsert": {**facts, "at": datetime.now(UTC)}},
            upsert=True,
        )

    async def locked(self, kind: str, blob_id: str) -> Document | None:
        return await self.locks.find_one({"_id": f"{kind}/{blob_id}"})

    async def mark_masked(self, email_id: str, facts: Document) -> None:
        masked = {**facts, "at": datetime.now(UTC)}
        await self.change_mail(email_id, lambda mail: mail.model_copy(update={"masked": masked}))

    # ---------------------------------------------------------------- IMAP

    async def imap_position(self, key: str) -> Document | None:
        return await self.imap_state.find_one({"_id": key})

    async def set_imap_position(self, key: str, uidvalidity: int, last_uid: int) -> None:
        await self.imap_state.update_one(
            {"_id": key},
            {"$set": {"uidvalidity": uidvalidity, "last_uid": last_uid, "at": datetime.now(UTC)}},
            upsert=True,
        )

    def lease(self, key: str, holder: str) -> Lease:
        return Lease(self.mailbox_leases, key, holder)

    # ---------------------------------------------------------------- outbound

    async def outbound_record(self, outbound_id: str) -> Document | None:
        return await self.outbound.find_one({"_id": outbound_id})

    async def outbound_begin(self, outbound_id: str, facts: Document) -> Document:
        """Create (or read) the send record; counts this try."""
        await self.outbound.update_one(
            {"_id": outbound_id},
            {"$setOnInsert": {**facts, "state": "new", "tries": 0}},
            upsert=True,
        )
        doc = await self.outbound.find_one_and_update(
            {"_id": outbound_id},
            {"$inc": {"tries": 1}, "$set": {"updated_at": datetime.now(UTC)}},
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return doc

    async def outbound_set(
        self, outbound_id: str, state: str, *, expect: str | None = None, **facts: Any
    ) -> bool:
        """Move the record to ``state``; with ``expect`` only from that state (a guard)."""
        query: Document = {"_id": outbound_id}
        if expect is not None:
            query["state"] = expect
        result = await self.outbound.update_one(
            query, {"$set": {"state": state, "updated_at": datetime.now(UTC), **facts}}
        )
        return result.modified_count == 1

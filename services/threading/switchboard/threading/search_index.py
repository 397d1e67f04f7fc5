"""The case index: one entry per case (``case_index``, ``_id`` = the case number as a padded
string) holding the case's normalised words, the fields a result row shows and the fields a
search checks; and the postings (``postings``) naming, per term, the cases that have it. Every
read is by ``_id``: the one lookup every MongoDB-protocol server serves from an index (the
local one reads the whole collection for a filtered or sorted query on any other field).

Why postings keyed by ``_id`` and not a text index: not every MongoDB-protocol server has
one, and the portable path must work everywhere. The words of a case (subject, contact name and
address, every email's text, every note) are folded (case, accents); a search
for several words reads each word's postings and keeps the cases that have them all.

The entry is recomputed from the case and its stored emails after every change of the case
(threading's ``_commit``), so masking, which rewrites the stored emails and notes first, removes
the masked words from the index in the same step; the entry, the postings and the agents' lists
share one collection, so that change is one write command (``index_writes``). ``rebuild``
recomputes everything; ``ensure_current`` (at start) rebuilds an index of an older layout.
"""

from __future__ import annotations

import asyncio
import random
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from switchboard.runtime.storage import TooMuchContention
from switchboard.threading.index_writes import (
    Changes,
    agent_rows_missing,
    changes_of,
    row_of,
    statements,
)
from switchboard.threading.posting_store import Postings

Document = dict[str, Any]
INDEX = "case_index"
"""One collection holds the entries, the postings, the terms' heads and the agents' lists, so
that a case's whole change is one write command (see ``CaseIndex.refresh``)."""
LAYOUT = "layout"
LAYOUT_VERSION = 2
"""The index's layout: 2 = entries, postings, heads and agents in one collection."""
OLD_COLLECTIONS = ("case_postings", "case_terms", "agent_cases")
ROW_FIELDS = {"row": 1, "last_activity": 1, "new_mail_waiting": 1, "holder": 1}
"""What a row shows: a row is read with no more of an entry (its words are the bulk of it)."""
ATTEMPTS = 50
MAX_WORDS = 5000
"""Words kept per case (a mail thread of novels is still found by its first words)."""
PREVIEW_CHARS = 200
_WORD = re.compile(r"[^\W_]+(?:[@.+\-'][^\W_]+)*", re.UNICODE)
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "re",
        "fw",
        "fwd",
        "so",
        "that",
        "the",
        "this",
        "to",
        "was",
        "we",
        "with",
        "you",
        "your",
    ]
)


def fold(text: str) -> str:
    """Lower case without accents: what is stored and what is asked are folded alike."""
    if text.isascii():  # most text: nothing to decompose
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """The searchable words of a text, in order, without stop words. An address
    (``ann@example.com``) is one word and also its parts."""
    found: list[str] = []
    for match in _WORD.finditer(fold(text)):
        token = match.group(0)
        parts = [token] if token.isalnum() else [token, *re.split(r"[@.+\-']", token)]
        found += [p for p in parts if p and p not in _STOP]
    return found


def query_words(text: str) -> list[str]:
    """The words asked for (each must be present), duplicates removed."""
    return list(dict.fromkeys(words(text)))


def entry_key(case_number: int) -> str:
    """The ``_id`` of a case's entry: a string (an exact ``_id`` lookup on a string key is
    served by the ``_id`` index on every server this runs on), zero-padded so that the
    keys sort as the numbers do."""
    return f"{case_number:012d}"


def entry_for(case: Document, emails: Iterable[Document]) -> Document:
    """The index entry of a case: pure, from the case and its emails (oldest first)."""
    emails = list(emails)
    contact = case.get("contact") or {}
    texts = [
        str(case.get("subject") or ""),
        str(contact.get("name") or ""),
        str(contact.get("address") or ""),
        str(case.get("thread_id") or ""),
        *(str(n.get("text") or "") for n in case.get("notes") or []),
    ]
    for email in emails:
        texts += [str(email.get("subject") or ""), str(email.get("text") or "")]
    seen: dict[str, None] = {}
    for text in texts:
        for word in words(text):
            if len(seen) >= MAX_WORDS:
                break
            seen.setdefault(word, None)
    last = emails[-1] if emails else None
    interaction = case.get("interaction") or {}
    last_activity = max(
        (t for t in (_at(case.get("updated_at")), _at(case.get("created_at"))) if t),
        default=datetime.now(UTC),
    )
    addresses = {str(contact.get("address") or "").casefold(), *case.get("participants", [])}
    last_in, last_out = _at(case.get("last_inbound_at")), _at(case.get("last_outbound_at"))
    return {
        "_id": entry_key(case["_id"]),
        "number": case["_id"],
        "words": " ".join(seen),  # one string: the server reads it at once, not word by word
        "subject_words": query_words(str(case.get("subject") or "")),
        "name_words": query_words(str(contact.get("name") or "")),
        "addresses": sorted(a for a in addresses if a),
        "thread_id": case.get("thread_id"),
        "service": case.get("service"),
        "status": case.get("status"),
        "work_status": case.get("work_status") or case.get("status"),
        "open": case.get("status") != "closed",
        "agents": list(case.get("agents") or []),
        "holder": interaction.get("agent_id") if interaction.get("state") == "assigned" else None,
        "dispositions": sorted(
            {fold(str(d.get("name") or "")) for d in case.get("dispositions") or []}
        ),
        "final_disposition": case.get("final_disposition"),
        "last_activity": last_activity,
        "created_at": _at(case.get("created_at")),
        "new_mail_waiting": bool(last_in and (last_out is None or last_in > last_out))
        and case.get("status") != "closed",
        "row": {
            "case_number": case["_id"],
            "subject": case.get("subject", ""),
            "contact": contact or None,
            "service": case.get("service"),
            "status": case.get("status"),
            "work_status": case.get("work_status") or case.get("status"),
            "thread_id": case.get("thread_id"),
            "final_disposition": case.get("final_disposition"),
            "preview": _preview(last, case),
            "preview_direction": last.get("direction") if last else None,
        },
    }


def _preview(last: Document | None, case: Document) -> str:
    notes = case.get("notes") or []
    text = str(last.get("text") or "") if last else str(notes[-1].get("text") if notes else "")
    return " ".join(text.split())[:PREVIEW_CHARS]


def _at(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class CaseIndex:
    """The ``case_index`` documents: written only here, read by ``casebook``."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.entries = db[INDEX]
        self.postings = Postings(db, INDEX)
        self.thread_ids = db["thread_ids"]
        self.cases = db["cases"]
        self.emails = db["emails"]

    async def refresh(self, case_number: int) -> None:
        """Recompute the case's entry from what is stored now and write the difference from
        the entry before, in one write command (``index_writes``); repeated, from a fresh
        read, when another writer changed a document it touches in between."""
        key = entry_key(case_number)
        for _ in range(ATTEMPTS):
            old, case = await asyncio.gather(
                self.entries.find_one({"_id": key}), self.cases.find_one({"_id": case_number})
            )
            new = None if case is None else entry_for(case, await self._emails(case))
            if await self._write(changes_of([(case_number, old, new)])):
                if new is None:
                    await self.entries.delete_one({"_id": key})
                return
            await asyncio.sleep(random.uniform(0, 0.01))
        raise TooMuchContention(
            f"the search index of case {case_number} is changed by too many writers"
        )

    async def _write(self, changes: Changes) -> bool:
        current = await self.postings.documents(changes.keys())
        missing = agent_rows_missing(changes, current)
        rows = await asyncio.gather(
            *(self.entries.find_one({"_id": entry_key(n)}, ROW_FIELDS) for n in missing)
        )
        found = {n: row_of(e) for n, e in zip(missing, rows, strict=True) if e is not None}
        return await self.postings.write(statements(changes, current, found))

    async def _emails(self, case: Document) -> list[Document]:
        # By ``_id``, one at a time: the one lookup every MongoDB-protocol server indexes.
        looked_up = await asyncio.gather(
            *(self.emails.find_one({"_id": key}) for key in case.get("email_keys") or [])
        )
        found = [e for e in looked_up if e is not None]
        found.sort(key=lambda e: (_at(e.get("when")) or datetime.min.replace(tzinfo=UTC), e["_id"]))
        return found

    async def rebuild(self, batch: int = 200) -> int:
        """Recompute the whole index from the cases (after a restore, a new word rule, or an
        index of an older layout): dropped, then written ``batch`` cases per write command."""
        await self.db.drop_collection(INDEX)
        for name in OLD_COLLECTIONS:
            await self.db.drop_collection(name)
        count, pending = 0, []
        async for case in self.cases.find({}):
            pending.append(case)
            if len(pending) >= batch:
                count += await self._rebuild_some(pending)
                pending = []
        count += await self._rebuild_some(pending)
        await self.entries.replace_one({"_id": LAYOUT}, {"version": LAYOUT_VERSION}, upsert=True)
        return count

    async def _rebuild_some(self, cases: list[Document]) -> int:
        pairs = [(int(c["_id"]), None, entry_for(c, await self._emails(c))) for c in cases]
        for _ in range(ATTEMPTS):
            olds = await self.postings.documents(entry_key(n) for n, _, _ in pairs)
            if await self._write(changes_of((n, olds[entry_key(n)], e) for n, _, e in pairs)):
                return len(pairs)
        raise TooMuchContention("the search index is changed by too many writers to rebuild")

    async def ensure_current(self) -> bool:
        """Rebuild the index when it is of an older layout (or missing while there are cases):
        run at start. True when it rebuilt."""
        layout = await self.entries.find_one({"_id": LAYOUT})
        if layout is not None and layout.get("version") == LAYOUT_VERSION:
            return False
        if layout is None and await self.cases.find_one({}, {"_id": 1}) is None:
            await self.entries.replace_one(
                {"_id": LAYOUT}, {"version": LAYOUT_VERSION}, upsert=True
            )
            return False
        await self.rebuild()
        return True

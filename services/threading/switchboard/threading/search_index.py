"""The case index: one document per case (``case_index``, ``_id`` = case number) holding the
case's normalised words and the fields search and contact history filter and sort on; and one
document per agent (``agent_cases``, ``_id`` = agent id) naming the cases they held or worked
with whether each is open and its last activity, which My Cases reads by ``_id`` alone (the one
lookup served by the ``_id`` index alone, with no filtered, sorted query).

Why a collection of words and not a ``$text`` index: not every MongoDB-protocol server has
one, and the portable path must work everywhere. The words of a case (subject,
contact name and address, thread id, every email's text, every note) are folded (case, accents)
and kept as an array with a multikey index; a search for several words asks for all of them.

The entry is recomputed from the case and its stored emails after every change of the case
(threading's ``_commit``), so masking, which rewrites the stored emails and notes first, removes
the masked words from the index in the same step. ``rebuild`` recomputes every entry.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]
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
        "words": list(seen),
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
    """The ``case_index`` collection: written only here, read by ``casebook``."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.entries = db["case_index"]
        self.by_agent = db["agent_cases"]
        self.cases = db["cases"]
        self.emails = db["emails"]

    async def ensure_indexes(self) -> None:
        """Each query's leading equality, then the sort (last activity, newest first)."""
        await self.entries.create_index([("words", ASCENDING), ("last_activity", DESCENDING)])
        await self.entries.create_index(
            [("agents", ASCENDING), ("open", DESCENDING), ("last_activity", DESCENDING)]
        )
        await self.entries.create_index([("addresses", ASCENDING), ("created_at", DESCENDING)])
        await self.entries.create_index([("service", ASCENDING), ("last_activity", DESCENDING)])
        await self.entries.create_index("last_activity")
        await self.entries.create_index("thread_id")

    async def refresh(self, case_number: int) -> None:
        """Recompute the case's entry from what is stored now (idempotent)."""
        case = await self.cases.find_one({"_id": case_number})
        if case is None:
            await self.entries.delete_one({"_id": entry_key(case_number)})
            return
        # By ``_id``, one at a time: the one lookup every MongoDB-protocol server indexes.
        looked_up = await asyncio.gather(
            *(self.emails.find_one({"_id": key}) for key in case.get("email_keys") or [])
        )
        found = [e for e in looked_up if e is not None]
        found.sort(key=lambda e: (_at(e.get("when")) or datetime.min.replace(tzinfo=UTC), e["_id"]))
        entry = entry_for(case, found)
        await self.entries.replace_one({"_id": entry["_id"]}, entry, upsert=True)
        mark = {"open": entry["open"], "at": entry["last_activity"]}
        for agent_id in entry["agents"]:
            await self.by_agent.update_one(
                {"_id": agent_id}, {"$set": {f"cases.{case_number}": mark}}, upsert=True
            )

    async def rebuild(self) -> int:
        """Recompute every case's entry (after a restore, or to take in a new word rule)."""
        count = 0
        async for case in self.cases.find({}, {"_id": 1}):
            await self.refresh(int(case["_id"]))
            count += 1
        return count

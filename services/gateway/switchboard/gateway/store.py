"""The gateway's own MongoDB collections: people, sessions (token hashes), login attempts, and
the projection of who holds which interaction (for pushing new mail to the right agent).

Expired sessions and old attempt windows are removed by a periodic :meth:`GatewayStore.purge`
(expiry without a TTL index: see :mod:`switchboard.runtime.storage.expiry`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]

_CASE_INTERACTION = re.compile(r"^case-(\d+)(?:\.\d+)?$")


def case_number_of(interaction_id: str) -> int | None:
    """``case-14355`` and ``case-14355.2`` are interactions of case 14355."""
    match = _CASE_INTERACTION.match(interaction_id)
    return int(match.group(1)) if match else None


class GatewayStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.people = database["people"]
        self.sessions = database["sessions"]
        self.attempts = database["login_attempts"]
        self.holdings = database["holdings"]

    async def ensure_indexes(self) -> None:
        await self.sessions.create_index("person_id")
        await self.sessions.create_index("expires_at")
        await self.attempts.create_index("until")
        await self.holdings.create_index("case_number")
        await self.holdings.create_index("agent_id")

    # -- people ----------------------------------------------------------------------------

    async def count_people(self) -> int:
        return await self.people.count_documents({})

    async def person(self, person_id: str) -> Document | None:
        return await self.people.find_one({"_id": person_id})

    async def list_people(self) -> list[Document]:
        found = [p async for p in self.people.find({}, {"password_hash": 0})]
        return sorted(found, key=lambda p: str(p["_id"]))

    async def insert_person(self, person: Document) -> bool:
        try:
            await self.people.insert_one(person)
        except DuplicateKeyError:
            return False
        return True

    async def upsert_person(self, person_id: str, fields: Document) -> None:
        await self.people.update_one({"_id": person_id}, {"$set": fields}, upsert=True)

    async def set_password_hash(self, person_id: str, password_hash: str) -> None:
        await self.people.update_one({"_id": person_id}, {"$set": {"password_hash": password_hash}})

    # -- sessions --------------------------------------------------------------------------

    async def add_session(self, session: Document) -> None:
        await self.sessions.insert_one(session)

    async def session(self, token_hash: str) -> Document | None:
        return await self.sessions.find_one({"_id": token_hash})

    async def revoke_session(self, token_hash: str) -> bool:
        result = await self.sessions.delete_one({"_id": token_hash})
        return result.deleted_count > 0

    async def revoke_sessions_of(self, person_id: str) -> int:
        result = await self.sessions.delete_many({"person_id": person_id})
        return result.deleted_count

    # -- login attempts (fixed windows, shared by every replica) ----------------------------

    async def count_attempt(self, key: str, window: timedelta, now: datetime) -> int:
        """Count one attempt under ``key`` in the current window; the count so far."""
        seconds = int(window.total_seconds())
        start = int(now.timestamp()) // seconds * seconds
        window_start = datetime.fromtimestamp(start, UTC)
        found = await self.attempts.find_one_and_update(
            {"_id": f"{key}@{start}"},
            {
                "$inc": {"count": 1},
                "$setOnInsert": {"key": key, "until": window_start + window},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(found["count"]) if found else 1

    async def failures(self, key: str) -> Document | None:
        """The failed logins counted under ``key``: ``{count, last}``, or None."""
        return await self.attempts.find_one({"_id": f"failures:{key}"})

    async def count_failure(self, key: str, now: datetime, keep: timedelta) -> int:
        """One more failed login under ``key`` (kept ``keep`` after the last); the count."""
        found = await self.attempts.find_one_and_update(
            {"_id": f"failures:{key}"},
            {"$inc": {"count": 1}, "$set": {"key": key, "last": now, "until": now + keep}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(found["count"]) if found else 1

    async def forget_attempts(self, key: str) -> None:
        await self.attempts.delete_many({"key": key})

    async def purge(self, now: datetime) -> None:
        await self.sessions.delete_many({"expires_at": {"$lt": now}})
        await self.attempts.delete_many({"until": {"$lt": now}})
        await self.holdings.delete_many({"ended": True, "at": {"$lt": now - timedelta(days=2)}})

    # -- who holds which interaction --------------------------------------------------------

    async def hold(self, interaction_id: str, agent_id: str, at: datetime) -> None:
        """Record an assignment; an ``ended`` already recorded (out of order) stays ended."""
        key = f"{interaction_id}/{agent_id}"
        with contextlib.suppress(DuplicateKeyError):
            await self.holdings.insert_one(
                {
                    "_id": key,
                    "interaction_id": interaction_id,
                    "agent_id": agent_id,
                    "case_number": case_number_of(interaction_id),
                    "ended": False,
                    "at": at,
                }
            )

    async def release(self, interaction_id: str, agent_id: str, at: datetime) -> None:
        await self.holdings.update_one(
            {"_id": f"{interaction_id}/{agent_id}"},
            {
                "$set": {
                    "interaction_id": interaction_id,
                    "agent_id": agent_id,
                    "case_number": case_number_of(interaction_id),
                    "ended": True,
                    "at": at,
                }
            },
            upsert=True,
        )

    async def holders_of_cases(self, case_numbers: Iterable[int]) -> dict[int, set[str]]:
        """Who holds an interaction of each of these cases (one read for them all)."""
        holders: dict[int, set[str]] = {number: set() for number in case_numbers}
        if not holders:
            return holders
        cursor = self.holdings.find(
            {"case_number": {"$in": list(holders)}, "ended": False},
            {"case_number": 1, "agent_id": 1},
        )
        async for doc in cursor:
            holders.setdefault(int(doc["case_number"]), set()).add(str(doc["agent_id"]))
        return holders

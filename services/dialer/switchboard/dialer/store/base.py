"""What every part of the dialer's store shares: the database, its collections, their indexes."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from switchboard.runtime.storage import TimerQueue

Document = dict[str, Any]
GLOBAL = "*"


class Conflict(Exception):
    """The record changed underneath us; the message is retried."""


class StoreBase:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        *,
        sorted_picks: bool = False,
    ) -> None:
        self.db = db
        self.sorted_picks = sorted_picks
        self.campaigns = db["campaigns"]
        self.records = db["records"]
        self.live = db["live"]
        self.hopper = db["hopper"]
        self.backlog = db["backlog"]
        self.review_timers = TimerQueue(db["review_timers"])
        self.dnc = db["dnc"]
        self.skips = db["skips"]
        self.imports = db["imports"]
        self.import_errors = db["import_errors"]
        self.journal = db["journal"]

    async def ensure_indexes(self) -> None:
        await self.records.create_index(
            [("campaign_id", ASCENDING), ("state", ASCENDING), ("next_at", ASCENDING)]
        )
        await self.records.create_index("call_id")
        await self.live.create_index([("campaign_id", ASCENDING), ("state", ASCENDING)])
        await self.live.create_index([("agent_id", ASCENDING), ("state", ASCENDING)])
        await self.live.create_index("call_id")
        await self.hopper.create_index("campaign_id")
        await self.review_timers.ensure_indexes()
        await self.dnc.create_index([("number", ASCENDING), ("scope", ASCENDING)])
        await self.skips.create_index([("campaign_id", ASCENDING), ("agent_id", ASCENDING)])
        await self.import_errors.create_index([("import_id", ASCENDING), ("line", ASCENDING)])
        await self.journal.create_index("record_id")

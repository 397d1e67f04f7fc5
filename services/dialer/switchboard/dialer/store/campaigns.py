"""Campaigns (typed aggregates, version-guarded writes) and the do-not-call lists."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pymongo.errors import DuplicateKeyError

from switchboard.contracts.campaigns import CampaignSpec
from switchboard.dialer.store.base import GLOBAL, StoreBase


class CampaignStore(StoreBase):
    # -- campaigns -----------------------------------------------------------------------------

    async def create_campaign(self, campaign_id: str, spec: CampaignSpec, now: datetime) -> bool:
        try:
            await self.campaigns.insert_one(
                {
                    "_id": campaign_id,
                    "spec": spec.model_dump(mode="json"),
                    "created_at": now,
                    "updated_at": now,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def update_campaign(self, campaign_id: str, spec: CampaignSpec, now: datetime) -> bool:
        done = await self.campaigns.update_one(
            {"_id": campaign_id},
            {"$set": {"spec": spec.model_dump(mode="json"), "updated_at": now}},
        )
        return done.matched_count == 1

    async def campaign(self, campaign_id: str) -> CampaignSpec | None:
        found = await self.campaigns.find_one({"_id": campaign_id})
        return None if found is None else CampaignSpec.model_validate(found["spec"])

    async def all_campaigns(self) -> list[tuple[str, CampaignSpec]]:
        return [
            (doc["_id"], CampaignSpec.model_validate(doc["spec"]))
            async for doc in self.campaigns.find({})
        ]

    async def campaign_count(self) -> int:
        return await self.campaigns.count_documents({})

    # -- do-not-call ---------------------------------------------------------------------------

    async def change_dnc(
        self, scope: str, add: Iterable[str], remove: Iterable[str], now: datetime
    ) -> None:
        for number in add:
            await self.dnc.update_one(
                {"_id": f"{scope}|{number}"},
                {"$set": {"number": number, "scope": scope, "at": now}},
                upsert=True,
            )
        for number in remove:
            await self.dnc.delete_one({"_id": f"{scope}|{number}"})

    async def dnc_hits(
        self, campaign_id: str, spec: CampaignSpec, numbers: Iterable[str]
    ) -> set[str]:
        """Which of ``numbers`` are on the global list or on this campaign's."""
        wanted = list(numbers)
        hits = {n for n in wanted if n in spec.do_not_call}
        async for entry in self.dnc.find(
            {"number": {"$in": wanted}, "scope": {"$in": [GLOBAL, campaign_id]}}
        ):
            hits.add(entry["number"])
        return hits

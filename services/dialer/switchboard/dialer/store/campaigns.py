"""Campaigns (typed aggregates, version-guarded writes) and the do-not-call lists."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from switchboard.contracts.campaigns import CampaignSpec
from switchboard.dialer.store.base import GLOBAL, Document, StoreBase
from switchboard.runtime.storage import Aggregate, NotFound, VersionedCollection


class Campaign(Aggregate):
    """A campaign as stored: its spec (as JSON, the way operators wrote it) and when."""

    spec: CampaignSpec
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def document(self) -> Document:
        return {**super().document(), "spec": self.spec.model_dump(mode="json")}

    def revised(self, spec: CampaignSpec, now: datetime) -> Campaign:
        return self.model_copy(update={"spec": spec, "updated_at": now})


class CampaignStore(StoreBase):
    def __init__(self, db: AsyncDatabase[Document], *, sorted_picks: bool = False) -> None:
        super().__init__(db, sorted_picks=sorted_picks)
        self.versioned_campaigns = VersionedCollection(self.campaigns, Campaign)

    # -- campaigns -----------------------------------------------------------------------------

    async def create_campaign(self, campaign_id: str, spec: CampaignSpec, now: datetime) -> bool:
        campaign = Campaign(id=campaign_id, spec=spec, created_at=now, updated_at=now)
        return await self.versioned_campaigns.insert(campaign)

    async def update_campaign(self, campaign_id: str, spec: CampaignSpec, now: datetime) -> bool:
        """Replace the spec (one version-guarded write); False when there is no such campaign."""
        try:
            await self.versioned_campaigns.update(
                campaign_id, lambda campaign: (campaign.revised(spec, now), None)
            )
        except NotFound:
            return False
        return True

    async def campaign(self, campaign_id: str) -> CampaignSpec | None:
        found = await self.versioned_campaigns.get(campaign_id)
        return None if found is None else found.spec

    async def all_campaigns(self) -> list[tuple[str, CampaignSpec]]:
        return [(c.id, c.spec) async for c in self.versioned_campaigns.find({})]

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

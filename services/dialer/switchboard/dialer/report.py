"""A campaign's report: records by state, disposition and result, attempts, contacts, skips."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Document = dict[str, Any]


async def campaign_report(
    records: AsyncCollection[Document], skips: AsyncCollection[Document], campaign_id: str
) -> Document:
    """A campaign's figures, counted from ``records`` (the authority) and ``skips``."""

    async def grouped(collection: Any, match: Document, key: str) -> dict[str, int]:
        pipeline = [{"$match": match}, {"$group": {"_id": f"${key}", "n": {"$sum": 1}}}]
        return {
            str(doc["_id"]): int(doc["n"]) async for doc in await collection.aggregate(pipeline)
        }

    match = {"campaign_id": campaign_id}
    totals = {"attempts": 0, "answered": 0, "records": 0, "skips": 0}
    sums = {
        "attempts": "$attempt_count",
        "answered": "$answered_count",
        "records": 1,
        "skips": "$skips",
    }
    for name, value in sums.items():
        # one accumulator per $group: the local server computes only the first one right
        pipeline: list[dict[str, Any]] = [
            {"$match": match},
            {"$group": {"_id": None, "n": {"$sum": value}}},
        ]
        async for doc in await records.aggregate(pipeline):
            totals[name] = int(doc["n"])
    by_disposition = await grouped(records, {**match, "disposition": {"$ne": None}}, "disposition")
    by_state = await grouped(records, match, "state")
    by_result = await grouped(records, {**match, "state": "closed"}, "result")
    attempts, answered = totals["attempts"], totals["answered"]
    return {
        "campaign_id": campaign_id,
        "records": totals["records"],
        "by_state": by_state,
        "by_disposition": by_disposition,
        "by_result": by_result,
        "attempts": attempts,
        "contacts": answered,
        "contact_rate": round(answered / attempts, 4) if attempts else 0.0,
        "skips": totals["skips"],
        "skips_by_agent": await grouped(skips, match, "agent_id"),
    }

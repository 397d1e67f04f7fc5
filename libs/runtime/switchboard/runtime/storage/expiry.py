"""Old documents deleted by a periodic job, where MongoDB would use a TTL index.

FerretDB 1.24 has no TTL index (nor partial indexes), so expiry is a filtered delete the
service runs as one of its periodic jobs; on MongoDB it costs the same one delete.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from switchboard.runtime.mongo import retry_when_busy


async def delete_older_than(
    collection: AsyncCollection[dict[str, Any]], field: str, age: timedelta
) -> int:
    """Delete the documents whose ``field`` is more than ``age`` in the past; how many."""
    cutoff = datetime.now(UTC) - age
    done = await retry_when_busy(lambda: collection.delete_many({field: {"$lt": cutoff}}))
    return done.deleted_count

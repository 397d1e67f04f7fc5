"""Journal retention: the journal is bounded, and nothing the read model needs is lost.

Entries older than the retention are first folded into the **checkpoint** (a second copy of
the read model, ``checkpoint_*`` collections: the figures and facts as of the horizon), then
dropped. A rebuild starts from the checkpoint and folds the journal that is left, so it gives
the same figures as before the entries were dropped. Folding is idempotent (natural keys), so
a run cut off between folding and dropping is simply done again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from switchboard.reporting.domain import Policy, hour_of
from switchboard.reporting.folding import Folder, fold_journal
from switchboard.reporting.store import CHECKPOINT, ReportStore
from switchboard.runtime.storage import Lease

log = structlog.get_logger("switchboard.reporting")

LEASE = timedelta(minutes=30)
BATCH = 1000


class JournalKeeper:
    """Keeps the journal within ``keep`` (one replica at a time: a lease)."""

    def __init__(self, store: ReportStore, policy: Policy, keep: timedelta, holder: str) -> None:
        self.store = store
        self.checkpoint = ReportStore(store.db, CHECKPOINT)
        self.folder = Folder(self.checkpoint, policy)
        self.keep = keep
        self.lease = Lease(store.db["reporting_leases"], "journal retention", holder)

    async def run(self) -> None:
        """The periodic job."""
        if await self.lease.acquire(LEASE) is None:
            return  # another replica trims
        try:
            await self.trim(datetime.now(UTC))
        finally:
            await self.lease.release()

    async def trim(self, now: datetime) -> int:
        """Fold the entries before the horizon (``now`` less the retention, a whole hour) into
        the checkpoint, then drop exactly those; how many were dropped."""
        horizon = hour_of(now - self.keep)
        await self.checkpoint.ensure_indexes()
        folded = await fold_journal(self.folder, self.store.journal_in_order(before=horizon))
        await self.store.set_checkpoint_until(horizon)
        dropped = 0
        for start in range(0, len(folded), BATCH):
            dropped += await self.store.forget(folded[start : start + BATCH])
        if dropped:
            log.info("journal trimmed", dropped=dropped, horizon=horizon.isoformat())
        return dropped

"""Collections of the pre-kernel design that no code uses any more, dropped at start.

Before the server gave single-document atomicity, claims were written as separate ticket
documents: version tickets (threading and agent-state ``version_claims``, routing
``cas_tickets``, the dialer's ``record_versions``), threading's ``case_locks`` and
``case_numbers`` and ``case_number_claims`` (the number a command opening a case was given:
now the case keeps the command's key, ``opened_by``), ingestion's ``imap_leases``, and takeover
tickets inside the processed-message ledger (``state: "ticket"``). Every service runs
:func:`drop_retired` on its own database when it starts: idempotent, and it touches only these
names. A name here must never be used again.
"""

from __future__ import annotations

from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from switchboard.runtime.mongo import retry_when_busy

log = structlog.get_logger("switchboard.runtime.storage")

RETIRED_COLLECTIONS = frozenset(
    {
        "version_claims",
        "cas_tickets",
        "record_versions",
        "case_locks",
        "case_numbers",
        "case_number_claims",
        "imap_leases",
    }
)
LEDGER = "processed_messages"


async def drop_retired(database: AsyncDatabase[dict[str, Any]]) -> list[str]:
    """Drop the retired collections found in ``database`` and the ledger's old tickets; the
    names dropped."""
    present = set(await database.list_collection_names())
    dropped = sorted(RETIRED_COLLECTIONS & present)
    for name in dropped:
        await retry_when_busy(lambda: database.drop_collection(name))  # noqa: B023 (awaited here)
    tickets = await retry_when_busy(lambda: database[LEDGER].delete_many({"state": "ticket"}))
    if dropped or tickets.deleted_count:
        log.info(
            "retired claim collections dropped",
            collections=dropped,
            ledger_tickets=tickets.deleted_count,
        )
    return dropped

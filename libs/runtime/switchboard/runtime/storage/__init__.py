"""What every service stores the same way: typed aggregates, their outbox, and claims.

Everything here is plain MongoDB: one conditional write per claim, ``$inc`` for counters. It
relies on the server's single-document atomicity, which MongoDB gives and the local FerretDB
is patched to give (``deploy/local/ferretdb-patches``); stock FerretDB is not supported. The
few features FerretDB 1.24 lacks are worked around here and nowhere else (``expiry``: no TTL
index; ``Outbox``/``VersionedCollection``: whole-document writes, no ``arrayFilters``).
"""

from switchboard.runtime.storage.claims import Lease, Sequence, Slots
from switchboard.runtime.storage.expiry import delete_older_than
from switchboard.runtime.storage.outbox import HoldsOutbox, Outbox, WithOutbox
from switchboard.runtime.storage.timers import Timer, TimerQueue
from switchboard.runtime.storage.versioned import (
    Aggregate,
    NotFound,
    TooMuchContention,
    Updated,
    Versioned,
    VersionedCollection,
)

__all__ = [
    "Aggregate",
    "HoldsOutbox",
    "Lease",
    "NotFound",
    "Outbox",
    "Sequence",
    "Slots",
    "Timer",
    "TimerQueue",
    "TooMuchContention",
    "Updated",
    "Versioned",
    "VersionedCollection",
    "WithOutbox",
    "delete_older_than",
]

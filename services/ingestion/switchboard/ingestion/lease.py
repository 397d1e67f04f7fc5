"""Exactly one replica polls an IMAP mailbox: a lease in MongoDB, renewed by its holder.

Two replicas polling one account would both fetch every message (the SHA-256 dedupe keeps it to
one event, but it doubles the IMAP traffic and races on marking/moving). The lease is a series
of tickets, ``_id`` = ``<mailbox key>/<epoch>``: the replica that inserts the next epoch holds
the mailbox. The insert under a unique ``_id`` is the claim, because it is the one write
FerretDB makes atomic among concurrent writers (a conditional update is not; see
docs/developing.md), so two replicas can never both win an epoch.

* Holding: the holder extends its own ticket's ``expires_at`` every ``ttl / 3``. Nobody else
  ever writes that ticket.
* Taking over: a replica that finds the newest ticket expired (or released) inserts the next
  epoch. The old holder sees a newer epoch, or its own ticket expiring unrenewed by its clock,
  and stops polling (it fences itself before the ticket can be taken, clocks being in step).
* Releasing: a holder that stops (shutdown) marks its ticket expired, so another replica takes
  over at its next try instead of after ``ttl``.

Old tickets are deleted by the next holder. Should an overlap happen anyway (clock skew, a stall
longer than the ttl), the dedupe keeps it harmless.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

import structlog

from switchboard.ingestion.store import MailStore

log = structlog.get_logger("switchboard.ingestion.lease")


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class MailboxLease:
    def __init__(self, store: MailStore, key: str, *, ttl: timedelta) -> None:
        self._store = store
        self.key = key
        self.ttl = ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.epoch: int | None = None
        self._expires_at = _now()

    @property
    def held(self) -> bool:
        return self.epoch is not None and _now() < self._expires_at

    async def acquire(self) -> bool:
        """Try once to become the holder; True when this replica now holds the mailbox."""
        now = _now()
        latest = await self._store.latest_lease(self.key)
        if latest is not None and _aware(latest["expires_at"]) > now:
            return bool(latest["holder"] == self.holder and latest["epoch"] == self.epoch)
        epoch = 1 if latest is None else int(latest["epoch"]) + 1
        expires = now + self.ttl
        if not await self._store.insert_lease(self.key, epoch, self.holder, expires):
            return False
        self.epoch, self._expires_at = epoch, expires
        log.info("IMAP mailbox lease taken", key=self.key, epoch=epoch, holder=self.holder)
        await self._store.forget_leases(self.key, epoch - 1)
        return True

    async def renew(self) -> bool:
        """Extend the lease; False (and no longer held) when it was lost or ran out."""
        if self.epoch is None:
            return False
        now = _now()
        if now >= self._expires_at:
            return self._lost("ran out before it could be renewed")
        latest = await self._store.latest_lease(self.key)
        if latest is None or latest["epoch"] != self.epoch or latest["holder"] != self.holder:
            return self._lost("another replica took the mailbox")
        expires = now + self.ttl
        await self._store.extend_lease(self.key, self.epoch, self.holder, expires)
        self._expires_at = expires
        return True

    async def release(self) -> None:
        if self.epoch is None:
            return
        epoch, self.epoch = self.epoch, None
        await self._store.extend_lease(self.key, epoch, self.holder, _now() - timedelta(seconds=1))
        log.info("IMAP mailbox lease released", key=self.key, epoch=epoch)

    def _lost(self, why: str) -> bool:
        log.warning("IMAP mailbox lease lost", key=self.key, epoch=self.epoch, reason=why)
        self.epoch = None
        return False

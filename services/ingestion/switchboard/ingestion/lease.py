"""Exactly one replica polls an IMAP mailbox: the kernel's :class:`Lease`, renewed by its holder.

Two replicas polling one account would both fetch every message (the SHA-256 dedupe keeps it to
one event, but it doubles the IMAP traffic and races on marking/moving). The lease is one
document per mailbox (:class:`switchboard.runtime.storage.Lease`): taken when free or expired,
renewed by its holder every ``ttl / 3``, given back on shutdown so another replica takes over
at its next try instead of after ``ttl``.

A holder also fences itself by its own clock: once the lease has run out unrenewed (a stall,
the database away) it stops polling before another replica can take the mailbox, clocks being
in step. Each change of holder raises the lease's epoch, so a holder that paused learns at its
next renewal that the mailbox moved on. Should an overlap happen anyway (clock skew), the
dedupe keeps it harmless.
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


class MailboxLease:
    def __init__(self, store: MailStore, key: str, *, ttl: timedelta) -> None:
        self.key = key
        self.ttl = ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease = store.lease(key, self.holder)
        self.epoch: int | None = None
        self._expires_at = _now()

    @property
    def held(self) -> bool:
        return self.epoch is not None and _now() < self._expires_at

    async def acquire(self) -> bool:
        """Try once to become (or stay) the holder; True when this replica holds the mailbox."""
        expires = _now() + self.ttl
        epoch = await self._lease.acquire(self.ttl)
        if epoch is None:
            return False
        if epoch != self.epoch:
            log.info("IMAP mailbox lease taken", key=self.key, epoch=epoch, holder=self.holder)
        self.epoch, self._expires_at = epoch, expires
        return True

    async def renew(self) -> bool:
        """Extend the lease; False (and no longer held) when it was lost or ran out."""
        if self.epoch is None:
            return False
        if _now() >= self._expires_at:
            return self._lost("ran out before it could be renewed")
        expires = _now() + self.ttl
        epoch = await self._lease.acquire(self.ttl)
        if epoch != self.epoch:
            return self._lost("another replica took the mailbox")
        self._expires_at = expires
        return True

    async def release(self) -> None:
        if self.epoch is None:
            return
        epoch, self.epoch = self.epoch, None
        await self._lease.release()
        log.info("IMAP mailbox lease released", key=self.key, epoch=epoch)

    def _lost(self, why: str) -> bool:
        log.warning("IMAP mailbox lease lost", key=self.key, epoch=self.epoch, reason=why)
        self.epoch = None
        return False

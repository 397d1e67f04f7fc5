"""IMAP pollers (aioimaplib): one task per mailbox that names an IMAP account.

A session connects over implicit TLS (993), or in the clear and then STARTTLS (required: a
server that does not offer it is never sent the password; aioimaplib has no STARTTLS, so the
connection's transport is upgraded with asyncio's ``loop.start_tls``), logs in, selects the
folder and sweeps: every message with a UID above the last one
handled (and, in "seen" mode, not yet \\Seen) is fetched with ``BODY.PEEK[]`` (which leaves the
flags alone), ingested (stored + event confirmed), and only *then* marked seen, moved or deleted.
A failure stops the sweep at that message, which stays untouched for the next one. Between
sweeps the session waits in IDLE when the server offers it, else sleeps ``poll_seconds``.

The last handled UID is kept in MongoDB with the folder's UIDVALIDITY; when UIDVALIDITY changes
the old UIDs mean nothing, so the folder is swept from the start (the SHA-256 dedupe keeps mail
already received from being published twice). A broken session reconnects with exponential
backoff and jitter.

Only the replica holding the mailbox's lease (:mod:`switchboard.ingestion.lease`) polls it; the
others try to take the lease every ``ttl / 3`` and take over when its holder stops or stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import ssl
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

import aioimaplib  # type: ignore[import-untyped]
import structlog

from switchboard.ingestion import metrics
from switchboard.ingestion.ingest import Arrival, Ingestor
from switchboard.ingestion.lease import MailboxLease
from switchboard.ingestion.mailboxes import ImapSource, Mailbox
from switchboard.ingestion.store import MailStore

log = structlog.get_logger("switchboard.ingestion.imap")

T = TypeVar("T")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)", re.I)


class ImapError(RuntimeError):
    pass


def _ok(response: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if response.result != "OK":
        detail = b" ".join(bytes(x) for x in response.lines[-1:]).decode("utf-8", "replace")
        raise ImapError(f"{what}: {response.result} {detail}")
    return response


async def _unless_lost(waiting: Awaitable[T], lost: asyncio.Event) -> T:
    """Wait for ``waiting``, but give up as soon as the connection is gone."""
    task = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(lost.wait())
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, gone):
            if not pending.done():
                pending.cancel()
    if lost.is_set():
        raise ImapError("connection to the IMAP server lost")
    return task.result()


class ImapPoller:
    def __init__(
        self,
        mailbox: Mailbox,
        ingestor: Ingestor,
        store: MailStore,
        *,
        backoff_max: float = 60.0,
        lease_seconds: float = 30.0,
    ) -> None:
        assert mailbox.imap is not None
        self.mailbox = mailbox
        self.source: ImapSource = mailbox.imap
        self._ingestor = ingestor
        self._store = store
        self._backoff_max = backoff_max
        self._key = (
            f"{mailbox.address}|{self.source.user}@{self.source.host}:{self.source.port}"
            f"/{self.source.folder}"
        )
        self.sessions = 0
        self.handled = 0
        self._lost = asyncio.Event()
        self.lease = MailboxLease(store, self._key, ttl=timedelta(seconds=lease_seconds))

    async def run(self) -> None:
        """Poll while this replica holds the mailbox's lease; otherwise wait to take it over."""
        every = self.lease.ttl.total_seconds() / 3
        while True:
            try:
                held = await self.lease.acquire()
            except Exception as exc:
                held = False
                log.warning("IMAP lease unavailable", mailbox=self.mailbox.address, error=str(exc))
            if held:
                try:
                    await self._poll_while_held(every)
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.lease.release())
            await asyncio.sleep(every * random.uniform(0.8, 1.2))

    async def _poll_while_held(self, every: float) -> None:
        """Poll, renewing the lease; stop polling the moment the lease is lost."""
        polling = asyncio.create_task(self._poll(), name=f"imap poll {self.mailbox.address}")
        try:
            while not polling.done():
                await asyncio.wait({polling}, timeout=every)
                if polling.done():
                    break
                try:
                    still = await self.lease.renew()
                except Exception as exc:  # the database away: hold on until the lease runs out
                    log.warning("IMAP lease not renewed", error=str(exc))
                    still = self.lease.held
                if not still:
                    log.warning("IMAP lease lost: stopping", mailbox=self.mailbox.address)
                    return
        finally:
            polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)

    async def _poll(self) -> None:
        delay = 1.0
        while True:
            try:
                await self._session()
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.IMAP_ERRORS.labels(self.mailbox.address).inc()
                log.warning(
                    "IMAP session failed, reconnecting",
                    mailbox=self.mailbox.address,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=round(delay, 1),
                )
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._backoff_max)

    def _tls_context(self) -> ssl.SSLContext:
        src = self.source
        context = ssl.create_default_context(cafile=str(src.ca_file) if src.ca_file else None)
        if not src.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _starttls(self, client: aioimaplib.IMAP4) -> None:
        """Upgrade the connection to TLS (RFC 3501 6.2.1) before anything secret is sent."""
        protocol = client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError("the server does not offer STARTTLS; not logging in without TLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        _ok(await self._cmd(protocol.execute(command)), "STARTTLS")
        loop = asyncio.get_running_loop()
        transport = await self._cmd(
            loop.start_tls(
                protocol.transport,
                protocol,
                self._tls_context(),
                server_hostname=self.source.host,
                ssl_handshake_timeout=self.source.timeout_seconds,
            )
        )
        if transport is None:
            raise ImapError("STARTTLS: the connection closed during the TLS handshake")
        protocol.transport = transport
        # Whatever the server said before the handshake is forgotten (RFC 3501: capabilities
        # must be asked again over TLS; nothing injected in the clear is believed).
        protocol.capabilities = set()
        await self._cmd(protocol.capability())

    async def _session(self) -> None:
        src = self.source
        lost = self._lost = asyncio.Event()
        client = aioimaplib.IMAP4(
            host=src.host,
            port=src.port,
            timeout=src.timeout_seconds,
            conn_lost_cb=lambda exc: lost.set(),
            ssl_context=self._tls_context() if src.tls == "ssl" else None,
        )
        try:
            await self._cmd(client.wait_hello_from_server())
            if src.tls == "starttls":
                await self._starttls(client)
            _ok(await self._cmd(client.login(src.user, src.secret())), "LOGIN")
            await self._cmd(client.protocol.capability())
            selected = _ok(await self._cmd(client.select(src.folder)), f"SELECT {src.folder}")
            uidvalidity = self._uidvalidity(selected)
            self.sessions += 1
            log.info("IMAP session open", mailbox=self.mailbox.address, folder=src.folder)
            use_idle = src.idle and client.has_capability("IDLE")
            while True:
                await self._sweep(client, uidvalidity)
                if use_idle:
                    idle = await _unless_lost(
                        asyncio.wait_for(
                            client.idle_start(timeout=src.poll_seconds), src.timeout_seconds
                        ),
                        lost,
                    )
                    await _unless_lost(
                        client.wait_server_push(timeout=src.poll_seconds + src.timeout_seconds),
                        lost,
                    )
                    client.idle_done()
                    await _unless_lost(asyncio.wait_for(idle, src.timeout_seconds), lost)
                else:
                    await _unless_lost(asyncio.sleep(src.poll_seconds), lost)
                    _ok(await self._cmd(client.noop()), "NOOP")
                # UIDVALIDITY may change while we are connected (folder recreated): re-check.
                status = _ok(await self._cmd(client.status(src.folder, "(UIDVALIDITY)")), "STATUS")
                current = self._uidvalidity(status)
                if current != uidvalidity:
                    _ok(await self._cmd(client.select(src.folder)), f"SELECT {src.folder}")
                    uidvalidity = current
        finally:
            if not lost.is_set() and not client.has_pending_idle():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.logout(), 2)
            transport = client.protocol.transport
            if transport is not None:
                transport.close()
            for task in [*client.tasks, *client.protocol.tasks]:
                task.cancel()

    async def _cmd(self, command: Awaitable[T]) -> T:
        """One IMAP command: bounded in time, and abandoned as soon as the connection drops
        (aioimaplib puts no timeout on some UID commands)."""
        return await _unless_lost(
            asyncio.wait_for(command, self.source.timeout_seconds), self._lost
        )

    @staticmethod
    def _uidvalidity(response: aioimaplib.Response) -> int:
        for line in response.lines:
            found = _UIDVALIDITY.search(bytes(line))
            if found:
                return int(found.group(1))
        raise ImapError("the server did not say the folder's UIDVALIDITY")

    async def _sweep(self, client: aioimaplib.IMAP4, uidvalidity: int) -> None:
        src = self.source
        position = await self._store.imap_position(self._key)
        last_uid = 0
        if position is not None and position.get("uidvalidity") == uidvalidity:
            last_uid = int(position.get("last_uid", 0))
        elif position is not None:
            log.warning(
                "UIDVALIDITY changed: sweeping the folder from the start",
                mailbox=self.mailbox.address,
                old=position.get("uidvalidity"),
                new=uidvalidity,
            )
        criteria = ["UID", f"{last_uid + 1}:*", "UNSEEN" if src.after == "seen" else "UNDELETED"]
        found = _ok(await self._cmd(client.uid_search(*criteria, charset=None)), "UID SEARCH")
        uids = sorted(
            {int(tok) for line in found.lines[:-1] for tok in bytes(line).split() if tok.isdigit()}
        )
        for uid in (u for u in uids if u > last_uid):
            raw = await self._fetch(client, uid)
            await self._ingestor.ingest(
                raw,
                Arrival(
                    channel="imap",
                    mailbox=self.mailbox,
                    source=f"imap:{src.user}@{src.host}/{src.folder}/uid {uid}",
                ),
            )
            await self._done_with(client, uid)
            await self._store.set_imap_position(self._key, uidvalidity, uid)
            self.handled += 1

    async def _fetch(self, client: aioimaplib.IMAP4, uid: int) -> bytes:
        response = _ok(await self._cmd(client.uid("fetch", str(uid), "(BODY.PEEK[])")), "UID FETCH")
        literals = [bytes(x) for x in response.lines if isinstance(x, bytearray)]
        if not literals:
            raise ImapError(f"UID FETCH {uid} returned no message body")
        return max(literals, key=len)

    async def _done_with(self, client: aioimaplib.IMAP4, uid: int) -> None:
        src = self.source
        if src.after == "seen":
            _ok(await self._cmd(client.uid("store", str(uid), "+FLAGS", "(\\Seen)")), "UID STORE")
            return
        if src.after == "move" and client.has_capability("MOVE"):
            _ok(await self._cmd(client.uid("move", str(uid), src.move_to)), "UID MOVE")
            return
        if src.after == "move":
            _ok(await self._cmd(client.uid("copy", str(uid), src.move_to)), "UID COPY")
        _ok(await self._cmd(client.uid("store", str(uid), "+FLAGS", "(\\Deleted)")), "UID STORE")
        if client.has_capability("UIDPLUS"):
            _ok(await self._cmd(client.uid("expunge", str(uid))), "UID EXPUNGE")
        else:
            _ok(await self._cmd(client.expunge()), "EXPUNGE")

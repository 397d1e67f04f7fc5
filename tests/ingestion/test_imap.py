"""The IMAP poller against a real IMAP server: Debian's dovecot, started here, on loopback only.

Dovecot runs from its own config in a temp dir (base_dir, state, maildir, passwd-file), listening
on 127.0.0.1 on a free port; nothing under /etc/dovecot is read or touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sb_ingestion_testkit import self_signed
from testkit import eventually

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


@dataclass
class Dovecot:
    port: int
    user: str
    password: str
    root: Path
    process: subprocess.Popen[bytes]
    imaps_port: int = 0
    cert: Path | None = None

    def imap(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        if self.cert is not None:
            client.starttls(ssl.create_default_context(cafile=str(self.cert)))
        client.login(self.user, self.password)
        return client

    def start(self) -> None:
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() takes every child with it
        )
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                self.imap().logout()
                return
            if time.monotonic() > deadline or self.process.poll() is not None:
                log = self.root / "dovecot.log"
                text = log.read_text() if log.exists() else ""
                pytest.fail(f"dovecot did not start: {text[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server and every process it started (open IMAP sessions drop)."""
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(root: Path, port: int, tls: tuple[Path, Path, int] | None = None) -> str:
    if os.getuid() == 0:
        # dovecot will not run its login process or mail as root: use its packaged users,
        # and let the mail live as nobody (the maildir is chowned to it)
        internal, login, mail_uid, mail_gid = "dovecot", "dovenull", 65534, 65534
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        internal, login, mail_uid, mail_gid = me, me, os.getuid(), os.getgid()
    ssl, imaps_port = "ssl = no\ndisable_plaintext_auth = no", 0
    if tls is not None:
        # TLS on both ports; no password is accepted in the clear (LOGINDISABLED before
        # STARTTLS), so a login that works proves the TLS path
        cert, key, imaps_port = tls
        ssl = f"ssl = required\nssl_cert = <{cert}\nssl_key = <{key}\ndisable_plaintext_auth = yes"
    return f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = sb-test-{port}
log_path = {root}/dovecot.log
protocols = imap
shutdown_clients = yes
listen = 127.0.0.1
{ssl}
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


@contextlib.contextmanager
def _dovecot(tls: bool) -> Iterator[Dovecot]:
    if not os.path.exists(DOVECOT):
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs dovecot (apt-get install dovecot-imapd)")
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd)")
    # not under pytest's tmp_path: its 0700 parents would keep the mail user out
    root = Path(tempfile.mkdtemp(prefix="sb-dovecot-"))
    root.chmod(0o755)
    (root / "mail").mkdir()
    (root / "passwd").write_text("agent:{PLAIN}imap-secret\n")
    if os.getuid() == 0:
        os.chown(root / "mail", 65534, 65534)
    port = _free_port()
    cert: Path | None = None
    imaps_port = 0
    if tls:
        if shutil.which("openssl") is None:
            pytest.skip("openssl is needed to make a throwaway certificate")
        cert, key = self_signed(root)
        imaps_port = _free_port()
        (root / "dovecot.conf").write_text(_config(root, port, (cert, key, imaps_port)))
    else:
        (root / "dovecot.conf").write_text(_config(root, port))
    server = Dovecot(port, "agent", "imap-secret", root, None, imaps_port, cert)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        if server.process is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with _dovecot(tls=False) as server:
        yield server


@pytest.fixture
def dovecot_tls() -> Iterator[Dovecot]:
    """Dovecot with a throwaway certificate: implicit TLS on ``imaps_port``, STARTTLS on
    ``port``, and no login at all without TLS."""
    with _dovecot(tls=True) as server:
        yield server


def _mail(n: int) -> bytes:
    return (
        f"From: Customer {n} <c{n}@example.com>\r\n"
        f"To: support@switchboard.local\r\n"
        f"Subject: IMAP mail {n}\r\n"
        f"Message-ID: <imap-{n}@example.com>\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nBody {n}\r\n"
    ).encode()


def _append(server: Dovecot, folder: str, *mails: bytes) -> None:
    client = server.imap()
    try:
        for raw in mails:
            client.append(folder, None, None, raw)
    finally:
        client.logout()


def _folder_state(server: Dovecot, folder: str) -> tuple[int, int]:
    """(messages in the folder, messages without \\Seen)"""
    client = server.imap()
    try:
        client.select(folder)
        _, everything = client.uid("search", None, "ALL")  # type: ignore[arg-type]
        _, unseen = client.uid("search", None, "UNSEEN")  # type: ignore[arg-type]
        return len(everything[0].split()), len(unseen[0].split())
    finally:
        client.logout()


def _mailbox(server: Dovecot, folder: str, after: str) -> list[dict[str, Any]]:
    return [
        {
            "address": "support@switchboard.local",
            "service": "support",
            "imap": {
                "host": "127.0.0.1",
                "port": server.port,
                "tls": "none",
                "user": server.user,
                "password": server.password,
                "folder": folder,
                "after": after,
                "poll_seconds": 0.5,
                "timeout_seconds": 5,
            },
        }
    ]


async def test_imap_mail_is_stored_published_then_marked_seen(
    dovecot: Dovecot, make_service: Callable[..., Any]
) -> None:
    await asyncio.to_thread(_append, dovecot, "INBOX", _mail(1), _mail(2))
    runtime, listener = make_service(mailboxes=_mailbox(dovecot, "INBOX", "seen"))
    async with runtime.app:
        await eventually(lambda: len(listener.received) == 2)
        assert {e.channel for e in listener.received} == {"imap"}
        assert {e.subject for e in listener.received} == {"IMAP mail 1", "IMAP mail 2"}
        await eventually(lambda: _folder_state(dovecot, "INBOX") == (2, 0))
        # IDLE (dovecot has it) picks up new mail without waiting for a reconnect
        await asyncio.to_thread(_append, dovecot, "INBOX", _mail(3))
        await eventually(lambda: len(listener.received) == 3)
        await eventually(lambda: _folder_state(dovecot, "INBOX") == (3, 0))
        [poller] = runtime.imap_pollers
        assert poller.sessions == 1


async def test_imap_move_mode_and_uidvalidity_change(
    dovecot: Dovecot, make_service: Callable[..., Any]
) -> None:
    def prepare() -> None:
        client = dovecot.imap()
        client.create("Support")
        client.create("Processed")
        client.logout()

    await asyncio.to_thread(prepare)
    await asyncio.to_thread(_append, dovecot, "Support", _mail(10))
    runtime, listener = make_service(mailboxes=_mailbox(dovecot, "Support", "move"))
    async with runtime.app:
        await eventually(lambda: len(listener.received) == 1)
        await eventually(lambda: _folder_state(dovecot, "Support")[0] == 0)
        assert _folder_state(dovecot, "Processed")[0] == 1

    # the folder is recreated: new UIDVALIDITY, UIDs start again at 1
    def recreate() -> None:
        client = dovecot.imap()
        client.delete("Support")
        client.create("Support")
        client.logout()

    await asyncio.to_thread(recreate)
    await asyncio.to_thread(_append, dovecot, "Support", _mail(11), _mail(10))
    runtime, listener2 = make_service(mailboxes=_mailbox(dovecot, "Support", "move"))
    async with runtime.app:
        # mail 11 is new; mail 10 again is the same bytes: stored once, no second event
        await eventually(lambda: _folder_state(dovecot, "Support")[0] == 0)
        await eventually(lambda: len(listener2.received) == 1)
        assert listener2.received[0].subject == "IMAP mail 11"


async def test_imap_reconnects_with_backoff_when_the_server_goes_away(
    dovecot: Dovecot, make_service: Callable[..., Any]
) -> None:
    await asyncio.to_thread(_append, dovecot, "INBOX", _mail(20))
    runtime, listener = make_service(
        mailboxes=_mailbox(dovecot, "INBOX", "delete"), imap_backoff_max_seconds=0.5
    )
    async with runtime.app:
        [poller] = runtime.imap_pollers
        await eventually(lambda: len(listener.received) == 1)
        await asyncio.to_thread(dovecot.stop)
        await asyncio.sleep(1.5)  # a few failed reconnects
        await asyncio.to_thread(dovecot.start)
        await asyncio.to_thread(_append, dovecot, "INBOX", _mail(21))
        await eventually(lambda: len(listener.received) == 2)
        assert poller.sessions >= 2
        await eventually(lambda: _folder_state(dovecot, "INBOX")[0] == 0)


async def test_imap_wrong_password_keeps_retrying_and_loses_nothing(
    dovecot: Dovecot, make_service: Callable[..., Any]
) -> None:
    await asyncio.to_thread(_append, dovecot, "INBOX", _mail(30))
    settings = _mailbox(dovecot, "INBOX", "delete")
    settings[0]["imap"]["password"] = "wrong"
    runtime, listener = make_service(mailboxes=settings, imap_backoff_max_seconds=0.5)
    async with runtime.app:
        await asyncio.sleep(1.5)
        assert runtime.imap_pollers[0].sessions == 0 and listener.received == []
    assert _folder_state(dovecot, "INBOX") == (1, 1)


async def test_only_one_replica_polls_a_mailbox_and_another_takes_over(
    dovecot: Dovecot, make_service: Callable[..., Any]
) -> None:
    """Two replicas with the same mailbox: one polls, the other waits; when the polling one
    stops, the other takes the mailbox over and nothing is missed."""
    await asyncio.to_thread(_append, dovecot, "INBOX", _mail(40), _mail(41))
    config = _mailbox(dovecot, "INBOX", "seen")
    first, seen_by_first = make_service(mailboxes=config, imap_lease_seconds=3)
    second, seen_by_second = make_service(mailboxes=config, imap_lease_seconds=3)

    def received() -> list[Any]:
        # the two replicas' test listeners share one queue: count what either one got
        return [*seen_by_first.received, *seen_by_second.received]

    first_app = first.app
    await first_app.__aenter__()
    running = True
    try:
        await eventually(lambda: len(received()) == 2)
        async with second.app:
            await asyncio.to_thread(_append, dovecot, "INBOX", _mail(42))
            await eventually(lambda: len(received()) == 3)
            await asyncio.sleep(3.5)  # longer than the lease: renewals and takeover tries
            assert first.imap_pollers[0].sessions == 1 and first.imap_pollers[0].lease.held
            assert second.imap_pollers[0].sessions == 0
            assert not second.imap_pollers[0].lease.held
            assert _folder_state(dovecot, "INBOX") == (3, 0)

            await first_app.__aexit__(None, None, None)  # the polling replica stops
            running = False
            await eventually(lambda: second.imap_pollers[0].sessions > 0, seconds=10)
            await asyncio.to_thread(_append, dovecot, "INBOX", _mail(43))
            await eventually(lambda: _folder_state(dovecot, "INBOX") == (4, 0))
            await eventually(lambda: len(received()) == 4)
            assert sorted(e.subject for e in received()) == [
                f"IMAP mail {n}" for n in (40, 41, 42, 43)
            ]
            await eventually(lambda: second.imap_pollers[0].handled == 1)
            assert first.imap_pollers[0].handled == 3
    finally:
        if running:
            await first_app.__aexit__(None, None, None)


async def test_the_lease_has_one_winner_expires_and_fences_its_old_holder(
    make_service: Callable[..., Any],
) -> None:
    """The lease itself on the real store: many replicas claim at once, one wins; a holder that
    stops renewing loses the mailbox to the next one and learns it at its next renewal."""
    from datetime import timedelta

    from switchboard.ingestion.lease import MailboxLease

    runtime, _ = make_service()
    async with runtime.app:
        store = runtime.store
        leases = [MailboxLease(store, "box", ttl=timedelta(seconds=1)) for _ in range(6)]
        won = await asyncio.gather(*(lease.acquire() for lease in leases))
        assert won.count(True) == 1
        holder = leases[won.index(True)]
        others = [lease for lease in leases if lease is not holder]
        assert await holder.renew()
        assert not any(await asyncio.gather(*(lease.acquire() for lease in others)))
        await asyncio.sleep(1.2)  # the holder stalls past its lease
        won = await asyncio.gather(*(lease.acquire() for lease in others))
        assert won.count(True) == 1
        assert not await holder.renew() and not holder.held
        successor = others[won.index(True)]
        await successor.release()
        assert await holder.acquire()  # released: taken at once


def _tls_mailbox(server: Dovecot, tls: str, **extra: Any) -> list[dict[str, Any]]:
    config = _mailbox(server, "INBOX", "seen")
    imap = config[0]["imap"]
    imap.update(host="localhost", tls=tls, ca_file=str(server.cert), **extra)
    imap["port"] = server.imaps_port if tls == "ssl" else server.port
    return config


async def test_imap_over_implicit_tls(
    dovecot_tls: Dovecot, make_service: Callable[..., Any]
) -> None:
    await asyncio.to_thread(_append, dovecot_tls, "INBOX", _mail(50))
    runtime, listener = make_service(mailboxes=_tls_mailbox(dovecot_tls, "ssl"))
    async with runtime.app:
        [event] = await eventually(lambda: listener.received)
        assert event.subject == "IMAP mail 50" and event.channel == "imap"
        await eventually(lambda: _folder_state(dovecot_tls, "INBOX") == (1, 0))
        # IDLE works over TLS too
        await asyncio.to_thread(_append, dovecot_tls, "INBOX", _mail(51))
        await eventually(lambda: len(listener.received) == 2)
        assert runtime.imap_pollers[0].sessions == 1
    assert "TLS" in (dovecot_tls.root / "dovecot.log").read_text()


async def test_imap_starttls(dovecot_tls: Dovecot, make_service: Callable[..., Any]) -> None:
    await asyncio.to_thread(_append, dovecot_tls, "INBOX", _mail(60))
    runtime, listener = make_service(mailboxes=_tls_mailbox(dovecot_tls, "starttls"))
    async with runtime.app:
        [event] = await eventually(lambda: listener.received)
        assert event.subject == "IMAP mail 60"
        await eventually(lambda: _folder_state(dovecot_tls, "INBOX") == (1, 0))
        await asyncio.to_thread(_append, dovecot_tls, "INBOX", _mail(61))
        await eventually(lambda: len(listener.received) == 2)
        assert runtime.imap_pollers[0].sessions == 1


async def test_starttls_refuses_an_unverified_server_or_one_without_starttls(
    dovecot_tls: Dovecot, dovecot: Dovecot, make_service: Callable[..., Any]
) -> None:
    """A certificate that does not verify, or a server that offers no STARTTLS (as a
    downgrading man in the middle would): no login, the mail stays on the server."""
    await asyncio.to_thread(_append, dovecot_tls, "INBOX", _mail(70))
    await asyncio.to_thread(_append, dovecot, "INBOX", _mail(71))
    untrusted = _tls_mailbox(dovecot_tls, "starttls")
    untrusted[0]["imap"].pop("ca_file")
    plain = _mailbox(dovecot, "INBOX", "seen")
    plain[0]["imap"]["tls"] = "starttls"
    plain[0]["address"] = "sales@switchboard.local"
    runtime, listener = make_service(mailboxes=[*untrusted, *plain], imap_backoff_max_seconds=0.5)
    async with runtime.app:
        await asyncio.sleep(2.0)
        assert [p.sessions for p in runtime.imap_pollers] == [0, 0]
        assert listener.received == []
    assert _folder_state(dovecot_tls, "INBOX") == (1, 1)
    assert _folder_state(dovecot, "INBOX") == (1, 1)

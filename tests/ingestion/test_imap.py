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
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sb_ingestion_testkit import eventually

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


@dataclass
class Dovecot:
    port: int
    user: str
    password: str
    root: Path
    process: subprocess.Popen[bytes]

    def imap(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
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


def _config(root: Path, port: int) -> str:
    if os.getuid() == 0:
        # dovecot will not run its login process or mail as root: use its packaged users,
        # and let the mail live as nobody (the maildir is chowned to it)
        internal, login, mail_uid, mail_gid = "dovecot", "dovenull", 65534, 65534
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        internal, login, mail_uid, mail_gid = me, me, os.getuid(), os.getgid()
    return f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = sb-test-{port}
log_path = {root}/dovecot.log
protocols = imap
shutdown_clients = yes
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
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
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
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
    (root / "dovecot.conf").write_text(_config(root, port))
    server = Dovecot(port, "agent", "imap-secret", root, None)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        if server.process is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


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

"""A RabbitMQ node and a FerretDB server of one run's own, that it may kill and restart.

The shared servers of the test suite (`switchboard.app.localstack`) are used by everyone on
the machine; a fault-injection run must not kill them. These run on free loopback ports with
their own data directories, and are stopped when the run ends.
"""

from __future__ import annotations

import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from stack import REPO

from switchboard.app.localstack import management_call

FERRETDB_SCRIPT = REPO / "deploy" / "local" / "ferretdb.sh"


def steady_port() -> int:
    """A free port below the kernel's ephemeral range. A server that is killed and started
    again must get its port back: a port from the ephemeral range may meanwhile be taken by a
    client's own end, or a client reconnecting to it may connect to itself."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _wait(ready: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise RuntimeError(f"{what} not ready within {seconds:.0f} s")


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers signal 0; it is gone for our purpose once its last thread is: the
    # leader of a many-threaded server (FerretDB, the Erlang VM) turns zombie while the others
    # are still exiting and its listening socket is still open
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            zombie = stat.read().split(")")[-1].split()[0] == "Z"
        return zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1
    except FileNotFoundError:
        return True


@dataclass
class OwnRabbitMQ:
    """A second RabbitMQ node (Debian's rabbitmq-server) with its own name, ports and data."""

    base: Path
    name: str = field(default_factory=lambda: f"chaos{os.getpid()}")
    amqp_port: int = field(default_factory=steady_port)
    management_port: int = field(default_factory=steady_port)
    dist_port: int = field(default_factory=steady_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.management_port}"

    def _env(self) -> dict[str, str]:
        b = self.base
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(b / "pid"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(b / "feature_flags"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(b / "plugins-expand"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self, timeout: float = 120.0) -> None:
        if not shutil.which("rabbitmq-server"):
            raise RuntimeError("rabbitmq-server is not installed: run `make install`")
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
        )
        (self.base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        if os.geteuid() == 0:
            # Debian's script runs the node as the rabbitmq user: it must own the directories
            user = pwd.getpwnam("rabbitmq")
            for path in [self.base, *self.base.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        (self.base / "pid").unlink(missing_ok=True)
        log = (self.base / "server.out").open("ab")
        self._process = subprocess.Popen(
            ["rabbitmq-server"],
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait(self.ready, timeout, f"RabbitMQ node {self.node}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"http://127.0.0.1:{self.management_port}/api/aliveness-test/%2F",
                    headers={"authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="},
                ),
                timeout=2,
            ) as answer:
                return bool(json.loads(answer.read()).get("status") == "ok")
        except OSError:
            return False

    def beam_pid(self) -> int | None:
        try:
            return int((self.base / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """kill -9 the Erlang VM: every connection drops, unconfirmed work is lost."""
        pid = self.beam_pid()
        if pid is not None:
            _kill(pid)
            _wait(lambda: _gone(pid), 30, "RabbitMQ VM to die")
            _wait(lambda: not _listening(self.amqp_port), 30, "RabbitMQ's port to close")
        if self._process is not None:
            with_group = self._process.pid
            _kill(-with_group)
            self._process.wait(30)

    def stop(self) -> None:
        pid = self.beam_pid()
        if pid is not None and not _gone(pid):
            _kill(pid, signal.SIGTERM)
            try:
                _wait(lambda: _gone(pid), 60, "RabbitMQ to stop")
            except RuntimeError:
                _kill(pid)
        if self._process is not None and self._process.poll() is None:
            _kill(-self._process.pid, signal.SIGTERM)
            self._process.wait(30)

    def still_queued(self, prefixes: tuple[str, ...] = ("",)) -> int:
        """Messages waiting in the work queues named with one of ``prefixes`` (never the
        dead-letter or reply queues)."""
        queues = management_call(self.management_url, "GET", "/api/queues")
        assert isinstance(queues, list)
        return sum(
            int(q.get("messages", 0))
            for q in queues
            if q["name"].startswith(prefixes)
            and not q["name"].endswith(".dead")
            and ".replies." not in q["name"]
        )

    def dead_letters(self) -> dict[str, int]:
        """Messages waiting in every ``*.dead`` queue of every virtual host."""
        queues = management_call(self.management_url, "GET", "/api/queues")
        assert isinstance(queues, list)
        return {
            q["name"]: int(q.get("messages", 0))
            for q in queues
            if q["name"].endswith(".dead") and int(q.get("messages", 0))
        }


@dataclass
class OwnFerretDB:
    """FerretDB (deploy/local/ferretdb.sh) on a port and data directory of its own."""

    data: Path
    port: int = field(default_factory=steady_port)

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["bash", str(FERRETDB_SCRIPT), "start", str(self.data), str(self.port)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"FerretDB did not start: {done.stdout}{done.stderr}")

    def kill(self) -> None:
        pid = int((self.data / "ferretdb.pid").read_text().strip())
        _kill(pid)
        _wait(lambda: _gone(pid), 30, "FerretDB to die")
        _wait(lambda: not _listening(self.port), 30, "FerretDB's port to close")
        (self.data / "ferretdb.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(FERRETDB_SCRIPT), "stop", str(self.data)], capture_output=True, check=False
        )

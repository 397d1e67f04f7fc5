"""Find a real RabbitMQ and a real MongoDB-protocol server, or start them on this machine.

The order is: URLs from the environment, then testcontainers when a Docker engine answers,
then local servers started here (Debian's ``rabbitmq-server`` and FerretDB built by
``deploy/local/ferretdb.sh``), listening on loopback only. ``make run`` and the test suite both
come through here, so they meet the same servers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[4]
FERRETDB_SCRIPT = REPO_ROOT / "deploy" / "local" / "ferretdb.sh"
LOCAL_FERRETDB_PORT = 27117
LOCAL_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_MANAGEMENT_URL = "http://guest:guest@127.0.0.1:15672"


class BackendUnavailable(RuntimeError):
    """No way to reach or start a server that is needed."""


@dataclass
class Backends:
    amqp_url: str
    mongodb_url: str
    management_url: str | None = None
    origin: dict[str, str] = field(default_factory=dict)
    restart_broker: Callable[[], None] | None = None

    def vhost_url(self, vhost: str) -> str:
        """The AMQP URL of another virtual host on the same broker."""
        parts = urllib.parse.urlsplit(self.amqp_url)
        return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(vhost, "")))


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def _docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.contextmanager
def backends(state_dir: Path, *, use_containers: bool = True) -> Iterator[Backends]:
    """Yield reachable servers; containers started here are removed on exit.

    Local servers are left running on exit: starting RabbitMQ costs seconds, and the next run
    (or ``make run``) reuses them.
    """
    amqp_url = os.environ.get("AMQP_URL") or os.environ.get("SB_AMQP_URL")
    mongodb_url = os.environ.get("MONGODB_URL") or os.environ.get("SB_MONGODB_URL")
    found = Backends(amqp_url or "", mongodb_url or "")
    if amqp_url:
        found.origin["amqp"] = "environment"
        found.management_url = os.environ.get("AMQP_MANAGEMENT_URL")
    if mongodb_url:
        found.origin["mongodb"] = "environment"
    with contextlib.ExitStack() as stack:
        if (not amqp_url or not mongodb_url) and use_containers and _docker_engine_answers():
            _from_containers(found, stack)
        if not found.amqp_url:
            _start_local_rabbitmq(found)
        if not found.mongodb_url:
            _start_local_ferretdb(found, state_dir)
        yield found


def _from_containers(found: Backends, stack: contextlib.ExitStack) -> None:
    from testcontainers.community.mongodb import MongoDbContainer
    from testcontainers.community.rabbitmq import RabbitMqContainer

    if not found.amqp_url:
        rabbit = stack.enter_context(
            RabbitMqContainer("rabbitmq:4-management").with_exposed_ports(5672, 15672)
        )
        host = rabbit.get_container_host_ip()
        found.amqp_url = f"amqp://guest:guest@{host}:{rabbit.get_exposed_port(5672)}/"
        found.management_url = f"http://guest:guest@{host}:{rabbit.get_exposed_port(15672)}"
        found.origin["amqp"] = "testcontainers"
    if not found.mongodb_url:
        mongo = stack.enter_context(MongoDbContainer("mongo:7"))
        found.mongodb_url = mongo.get_connection_url()
        found.origin["mongodb"] = "testcontainers"


def _rabbitmq_ping() -> bool:
    done = subprocess.run(
        ["rabbitmq-diagnostics", "-q", "ping"], capture_output=True, timeout=30, check=False
    )
    return done.returncode == 0


def _start_local_rabbitmq(found: Backends) -> None:
    if not shutil.which("rabbitmq-server"):
        raise BackendUnavailable(
            "no AMQP_URL, no Docker engine and no rabbitmq-server: run `make services` "
            "(it installs Debian's rabbitmq-server)"
        )
    if not _port_open("127.0.0.1", 5672) or not _rabbitmq_ping():
        subprocess.run(
            [
                "rabbitmq-plugins",
                "enable",
                "--offline",
                "rabbitmq_management",
                "rabbitmq_prometheus",
            ],
            capture_output=True,
            check=False,
        )
        subprocess.run(["rabbitmq-server", "-detached"], capture_output=True, check=False)
        _wait(lambda: _port_open("127.0.0.1", 5672) and _rabbitmq_ping(), 90, "RabbitMQ")
    _wait(lambda: _port_open("127.0.0.1", 15672), 60, "RabbitMQ management")
    found.amqp_url = LOCAL_AMQP_URL
    found.management_url = LOCAL_MANAGEMENT_URL
    found.origin["amqp"] = "local rabbitmq-server"
    found.restart_broker = restart_local_rabbitmq


def stop_local_rabbitmq_app() -> None:
    """Stop the RabbitMQ application on the local node (the node stays up): clients lose it."""
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], capture_output=True, check=True)


def start_local_rabbitmq_app() -> None:
    subprocess.run(["rabbitmqctl", "-q", "start_app"], capture_output=True, check=True)
    _wait(lambda: _port_open("127.0.0.1", 5672), 60, "RabbitMQ after restart")


def restart_local_rabbitmq() -> None:
    """Restart the RabbitMQ application on the local node: every connection drops."""
    stop_local_rabbitmq_app()
    start_local_rabbitmq_app()


def _start_local_ferretdb(found: Backends, state_dir: Path) -> None:
    url = f"mongodb://127.0.0.1:{LOCAL_FERRETDB_PORT}/"
    if not _port_open("127.0.0.1", LOCAL_FERRETDB_PORT):
        data = state_dir / "ferretdb"
        data.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["bash", str(FERRETDB_SCRIPT), "start", str(data), str(LOCAL_FERRETDB_PORT)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BackendUnavailable(f"FerretDB did not start: {done.stdout}{done.stderr}")
    _refuse_another_build(url)
    found.mongodb_url = url
    found.origin["mongodb"] = "local FerretDB"


def _refuse_another_build(url: str) -> None:
    """A FerretDB on the local port that is not this checkout's build (an older one, stock
    FerretDB) lacks the patches the storage relies on (single-document atomicity): refuse it
    with the way out, rather than let claims have several winners."""
    from pymongo import MongoClient

    wanted = subprocess.run(
        ["bash", str(FERRETDB_SCRIPT), "version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=10_000)
    with client:
        running = client.admin.command("buildInfo").get("ferretdbVersion")
    if running is not None and running != wanted:
        raise BackendUnavailable(
            f"the FerretDB on {url} is {running}, not this checkout's build {wanted} "
            "(deploy/local/ferretdb-patches): stop it "
            "(bash deploy/local/ferretdb.sh stop <its data dir>) and run again"
        )


def _wait(ready: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise BackendUnavailable(f"{what} did not become ready within {seconds:.0f} s")


def management_call(management_url: str, method: str, path: str, body: object = None) -> object:
    """Call RabbitMQ's management HTTP API (vhosts for test isolation, queue inspection)."""
    parts = urllib.parse.urlsplit(management_url)
    base = f"{parts.scheme}://{parts.hostname}:{parts.port}"
    token = base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Basic {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None

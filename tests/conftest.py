"""Real servers for every test: found or started once, isolated per test.

Each test gets its own RabbitMQ virtual host and its own MongoDB database prefix. With CI=true a
test that needs a server and cannot get one fails; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pymongo import AsyncMongoClient

from switchboard.app.localstack import (
    REPO_ROOT,
    Backends,
    BackendUnavailable,
    backends,
    management_call,
)
from switchboard.runtime.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)

# Development defaults (the built-in thread key, service APIs without their token) for every
# service the tests start, in this process or as a child; a test of the production refusal
# clears it.
os.environ.setdefault("SB_DEVELOPMENT", "true")


@pytest.fixture(scope="session")
def real_servers() -> Iterator[Backends]:
    try:
        with backends(REPO_ROOT / ".local") as found:
            yield found
    except BackendUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs real servers: {exc}")
        pytest.skip(f"no real RabbitMQ/MongoDB here: {exc}")


@pytest.fixture
def amqp_url(real_servers: Backends) -> Iterator[str]:
    """A fresh virtual host of its own for one test."""
    if real_servers.management_url is None:
        yield real_servers.amqp_url
        return
    vhost = f"t-{uuid.uuid4().hex[:10]}"
    user = real_servers.amqp_url.split("://", 1)[1].split(":", 1)[0]
    management_call(real_servers.management_url, "PUT", f"/api/vhosts/{vhost}")
    management_call(
        real_servers.management_url,
        "PUT",
        f"/api/permissions/{vhost}/{user}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )
    yield real_servers.vhost_url(vhost)
    management_call(real_servers.management_url, "DELETE", f"/api/vhosts/{vhost}")


@pytest.fixture
async def database_prefix(
    real_servers: Backends, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """A database prefix of its own for one test; its databases are dropped afterwards.

    They are dropped by name, as the services asked for them: listing every database stalls
    for a long time on a busy FerretDB (it sizes each one).
    """
    prefix = f"t{uuid.uuid4().hex[:10]}"
    used: set[str] = set()
    named = ServiceSettings.database_name

    def recorded(self: ServiceSettings, service: str) -> str:
        name = named(self, service)
        if name.startswith(prefix):
            used.add(name)
        return name

    monkeypatch.setattr(ServiceSettings, "database_name", recorded)
    yield prefix
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(real_servers.mongodb_url)
    try:
        for name in sorted(used):
            await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture
def make_settings(
    amqp_url: str, database_prefix: str, real_servers: Backends
) -> Callable[..., Any]:
    """Settings of any service pointed at this test's vhost and databases."""

    def build(cls: type[S] = ServiceSettings, **overrides: Any) -> S:  # type: ignore[assignment]
        values: dict[str, Any] = {
            "amqp_url": amqp_url,
            "mongodb_url": real_servers.mongodb_url,
            "database_prefix": database_prefix,
            "http_port": 0,
            "retry_delay_seconds": 0.2,
            "graceful_timeout_seconds": 10.0,
            "log_format": "console",
            **overrides,
        }
        return cls(**values)

    return build


@pytest.fixture
def corpus_dir() -> Path:
    return Path(__file__).parent / "corpus"

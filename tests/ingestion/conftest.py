"""Fixtures of the ingestion tests: the service in-process, a listener standing in for threading,
and a real SMTP sink (aiosmtpd) standing in for the outbound relay."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

# The workspace may have been synced before this package had files; make it importable anyway.
_SERVICE = Path(__file__).resolve().parents[2] / "services" / "ingestion"
if str(_SERVICE) not in sys.path:
    sys.path.insert(0, str(_SERVICE))

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from aiosmtpd.smtp import SMTP  # noqa: E402
from sb_ingestion_testkit import MAILBOXES, Listener, Relay  # noqa: E402

from switchboard.ingestion.app import IngestionRuntime, IngestionSettings, build  # noqa: E402


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    sink = Relay()
    loop = asyncio.get_running_loop()
    sink.server = await loop.create_server(lambda: SMTP(sink), "127.0.0.1", 0)
    sink.port = sink.server.sockets[0].getsockname()[1]
    yield sink
    sink.server.close()


@pytest.fixture
def ingestion_settings(make_settings: Callable[..., Any], relay: Relay) -> Callable[..., Any]:
    def settings(**overrides: Any) -> IngestionSettings:
        values: dict[str, Any] = {
            "mailboxes": MAILBOXES,
            "smtp_port": 0,
            "relay_port": relay.port,
            "max_attempts": 4,
            "retry_delay_seconds": 0.2,
            **overrides,
        }
        return make_settings(IngestionSettings, **values)  # type: ignore[no-any-return]

    return settings


@pytest.fixture
def make_service(ingestion_settings: Callable[..., Any]) -> Callable[..., Any]:
    def make(
        *, listen_received: bool = True, **overrides: Any
    ) -> tuple[IngestionRuntime, Listener]:
        runtime = build(ingestion_settings(**overrides))
        listener = Listener()
        listener.attach(runtime, received=listen_received)
        return runtime, listener

    return make

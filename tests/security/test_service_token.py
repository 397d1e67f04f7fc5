"""Issue 16, item 5: a service API is never served without a credential.

Each service runs as its own process (`switchboard serve <service>`), as in production: without
a service token it refuses to start; with one (read from a secret file) it answers only callers
that send it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from switchboard.app.localstack import Backends

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from stack import free_port

pytestmark = [pytest.mark.timeout(300)]

TOKEN = "a-long-random-service-token-from-the-secret-file"

APIS = {
    "ingestion": ("GET", "/mail/quarantine"),
    "dialer": ("GET", "/dialer/imports/status?import_id=none"),
}


def _env(amqp_url: str, mongodb_url: str, prefix: str, port: int, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SB_") and k not in ("AMQP_URL", "MONGODB_URL")
    }
    return {
        **env,
        "SB_AMQP_URL": amqp_url,
        "SB_MONGODB_URL": mongodb_url,
        "SB_DATABASE_PREFIX": prefix,
        "SB_HTTP_PORT": str(port),
        "SB_SMTP_PORT": "0",
        "SB_LOG_FORMAT": "json",
        **extra,
    }


def _serve(service: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "switchboard.app.cli", "serve", service],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("service", sorted(APIS))
def test_a_service_api_without_a_token_refuses_to_start(
    service: str, amqp_url: str, real_servers: Backends, database_prefix: str
) -> None:
    process = _serve(
        service, _env(amqp_url, real_servers.mongodb_url, database_prefix, free_port())
    )
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert b"SB_SERVICE_TOKEN" in output, output.decode(errors="replace")[-2000:]


@pytest.fixture
def token_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "service_token"
    path.write_text(f"{TOKEN}\n")
    yield path


@pytest.mark.parametrize("service", sorted(APIS))
async def test_a_service_api_answers_only_with_the_token_from_the_secret_file(
    service: str,
    amqp_url: str,
    real_servers: Backends,
    database_prefix: str,
    token_file: Path,
) -> None:
    port = free_port()
    env = _env(
        amqp_url,
        real_servers.mongodb_url,
        database_prefix,
        port,
        SB_SERVICE_TOKEN_FILE=str(token_file),
    )
    process = _serve(service, env)
    try:
        await asyncio.to_thread(_wait_ready, port, process)
        method, path = APIS[service]
        token = TOKEN
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert (await http.request(method, path)).status_code == 401
            wrong = {"authorization": f"Bearer {token}x"}
            assert (await http.request(method, path, headers=wrong)).status_code == 401
            right = {"authorization": f"Bearer {token}"}
            answer = await http.request(method, path, headers=right)
            assert answer.status_code in (200, 404), answer.text
            assert answer.status_code != 401
            assert (await http.get("/metrics")).status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    assert token.encode() not in output


def _wait_ready(port: int, process: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service exited: {process.stdout.read()!r}")  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the service did not become ready")

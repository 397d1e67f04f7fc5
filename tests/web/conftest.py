"""Browser tests of the desktop and wallboard: Debian's Chromium driven by Playwright against the
whole stack (every service its own process, real RabbitMQ and MongoDB-protocol server, mail in by
SMTP, replies out to a local SMTP sink). One stack for the whole session; each test uses agents
of its own and leaves them logged out.

Nothing here downloads a browser: Playwright launches the `chromium` that apt installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from switchboard.app.localstack import Backends, management_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenario import CAMPAIGN_FILE
from stack import REPO, SmtpSink, Stack

WEB = REPO / "web"

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
expect.set_options(timeout=10_000)  # a loaded machine; a person would wait this long too


def _built() -> bool:
    """The app is built (``make install`` does it); build it here when npm is at hand."""
    if (WEB / "dist" / "index.html").is_file():
        return True
    npm = shutil.which("npm")
    if npm is None:
        return False
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "build"], cwd=WEB, check=True)
    return True


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium here (apt-get install -y chromium)")
    return {**browser_type_launch_args, "executable_path": chromium, "args": ["--no-sandbox"]}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_context_args,
        "viewport": {"width": 1280, "height": 720},
        "locale": "en-GB",
        "timezone_id": "Europe/Paris",
    }


@pytest.fixture(scope="session")
def sink() -> Iterator[SmtpSink]:
    smtp = SmtpSink()
    smtp.start()
    yield smtp
    smtp.stop()


@pytest.fixture(scope="session")
def stack(real_servers: Backends, sink: SmtpSink) -> Iterator[Stack]:
    if not _built():
        pytest.skip("the web app is not built and npm is missing")
    vhost = f"web-{uuid.uuid4().hex[:8]}"
    amqp_url = real_servers.amqp_url
    if real_servers.management_url:
        user = real_servers.amqp_url.split("://", 1)[1].split(":", 1)[0]
        management_call(real_servers.management_url, "PUT", f"/api/vhosts/{vhost}")
        management_call(
            real_servers.management_url,
            "PUT",
            f"/api/permissions/{vhost}/{user}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        amqp_url = real_servers.vhost_url(vhost)
    running = Stack(
        amqp_url=amqp_url,
        mongodb_url=real_servers.mongodb_url,
        database_prefix=f"web{uuid.uuid4().hex[:6]}",
        relay_port=sink.port,
        log_path=REPO / ".local" / "web" / "stack.log",
        extra_env={"SB_CAMPAIGNS_FILE": str(CAMPAIGN_FILE), "SB_WEB_DIST": str(WEB / "dist")},
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()
        if real_servers.management_url:
            management_call(real_servers.management_url, "DELETE", f"/api/vhosts/{vhost}")


@pytest.fixture(scope="session")
def base_url(stack: Stack) -> str:
    return stack.url("gateway")

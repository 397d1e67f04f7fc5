"""Issue 16, item 6: `make run` never prints a password it was given.

`switchboard run` is started as a person would, with a MongoDB URL that holds a password; the
service it starts cannot log in with it (the local server takes no credentials), fails, and is
restarted. Nothing it or the supervisor printed on the way holds the password.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from switchboard.app.localstack import Backends

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from stack import free_port

PASSWORD = "Never-Print-Me-7f3a"


@pytest.mark.timeout(240)
def test_make_run_masks_the_mongodb_password(real_servers: Backends, amqp_url: str) -> None:
    host = real_servers.mongodb_url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SB_")},
        "MONGODB_URL": f"mongodb://operator:{PASSWORD}@{host}/",
        "AMQP_URL": amqp_url,
        "SB_AGENT_STATE_HTTP_PORT": str(free_port()),
        "SB_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "switchboard.app.cli", "run", "--only", "agent_state"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lines: list[str] = []
    restarted = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            if "service exited; restarting" in line:
                restarted.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert restarted.wait(180), "".join(lines)[-3000:]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        reader.join(10)
    output = "".join(lines)
    assert f"mongodb://operator:***@{host}/" in output
    assert PASSWORD not in output

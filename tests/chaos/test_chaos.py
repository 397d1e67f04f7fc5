"""The short fault-injection run (`make chaos` runs the long one): 120 mails through
the whole stack while each service is killed once and RabbitMQ and FerretDB restart once."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).parent))
from run import Options, chaos
from stack import REPO


@pytest.mark.e2e
@pytest.mark.timeout(1200)
async def test_nothing_is_lost_or_doubled_while_services_and_servers_die() -> None:
    if not shutil.which("rabbitmq-server"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs rabbitmq-server for the fault-injection run")
        pytest.skip("no rabbitmq-server here: run `make install`")
    lines: list[str] = []
    workdir = REPO / ".local" / "chaos" / f"test-{time.strftime('%Y%m%d-%H%M%S')}"
    report = await chaos(
        Options(mails=120, clients=4, rate=2.0, kills_per_service=1, stall_timeout=120.0),
        workdir,
        lines.append,
    )
    report.print(lines.append)
    print("\n".join(lines))
    assert not report.violations, "\n".join(lines)
    assert all(f.ended for f in report.faults), "some faults were never injected"

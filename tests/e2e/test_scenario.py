"""End to end: every service its own process, driven only through SMTP and the gateway."""

from __future__ import annotations

import re
import secrets
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from switchboard.app.localstack import Backends
from switchboard.app.supervisor import SERVICE_ORDER

sys.path.insert(0, str(Path(__file__).parent))
from scenario import CAMPAIGN_FILE, SECRETS_USED, run_scenario
from stack import SmtpSink, Stack

LOG_PATH = Path(__file__).resolve().parents[2] / ".local" / "e2e" / "stack.log"


@pytest.mark.e2e
@pytest.mark.timeout(420)
async def test_the_demo_scenario_through_every_service(
    real_servers: Backends, amqp_url: str
) -> None:
    sink = SmtpSink()
    sink.start()
    prefix = f"e2e{uuid.uuid4().hex[:6]}"
    service_token = secrets.token_urlsafe(32)
    stack = Stack(
        amqp_url=amqp_url,
        mongodb_url=real_servers.mongodb_url,
        database_prefix=prefix,
        relay_port=sink.port,
        log_path=LOG_PATH,
        extra_env={"SB_CAMPAIGNS_FILE": str(CAMPAIGN_FILE), "SB_SERVICE_TOKEN": service_token},
    )
    transcript: list[str] = []
    try:
        stack.start()
        seen = await run_scenario(stack, sink, transcript.append)
    except BaseException:
        print("\n".join(transcript))
        print(f"the services' logs: {stack.log_path}")
        raise
    finally:
        exit_code = stack.stop()
        sink.stop()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(real_servers.mongodb_url)
        for service in SERVICE_ORDER:
            await client.drop_database(f"{prefix}_{service}")
        await client.close()
    assert seen["state_after_accept"] == "busy"
    assert re.search(r"[A-Z0-9]{12}", seen["reply_subject"]), seen["reply_subject"]
    assert (
        "Alice Martin" in seen["reply_text"] and f"case {seen['case_number']}" in seen["reply_text"]
    )
    assert seen["answer_case_number"] == seen["case_number"]
    assert seen["answer_agent"] == "alice"
    assert seen["case_status"] == "closed"
    assert seen["emails_in_case"] >= 3
    assert seen["offered_again"]
    assert seen["record_state"] == "closed"
    assert seen["agent_state_after_record"] in ("ready", "wrap_up")
    assert exit_code == 0, "Ctrl-C must stop every service cleanly"
    # Issue 16: no password, token or card number in any line any service process wrote.
    logged = stack.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    used = sorted({service_token, *SECRETS_USED})
    assert len(used) >= 6 and len(logged) > 50
    leaks = [(s[:4] + "…", n) for n, line in enumerate(logged, 1) for s in used if s in line]
    assert not leaks, f"secrets in {stack.log_path} (secret, line): {leaks[:10]}"

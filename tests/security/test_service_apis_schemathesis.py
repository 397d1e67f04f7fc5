"""Schemathesis over the mail edge's and the dialer's HTTP APIs, each service its own process,
authenticated with the service token: no server error, every answer as the document declares.

(The gateway's API has its own run: tests/gateway/test_schemathesis.py.)
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.result import Ok

from switchboard.app.localstack import Backends
from switchboard.dialer.openapi import OPENAPI as DIALER_API
from switchboard.ingestion.openapi import OPENAPI as MAIL_API

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from stack import REPO, free_port

pytestmark = [pytest.mark.timeout(300)]

TOKEN = "schemathesis-service-token-0123456789"
EXAMPLES_PER_OPERATION = 25
DEMO = REPO / "deploy" / "demo"
EXAMPLES = {
    "mailbox": "support@switchboard.local",
    "campaign_id": "spring-renewals",
    "format": "csv",
}
"""Values that reach past "no such thing" (the demo's mailbox and campaign)."""


def _with_examples(document: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] in EXAMPLES:
                    parameter["example"] = EXAMPLES[parameter["name"]]
    return document


@pytest.mark.parametrize(
    ("service", "document", "path"),
    [("ingestion", MAIL_API, "/mail/openapi.json"), ("dialer", DIALER_API, "/dialer/openapi.json")],
)
def test_a_service_api_answers_as_its_document_declares(
    service: str,
    document: dict[str, Any],
    path: str,
    amqp_url: str,
    real_servers: Backends,
    database_prefix: str,
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SB_")},
        "SB_AMQP_URL": amqp_url,
        "SB_MONGODB_URL": real_servers.mongodb_url,
        "SB_DATABASE_PREFIX": database_prefix,
        "SB_HTTP_PORT": str(port),
        "SB_SMTP_ENABLED": "false",
        "SB_SERVICE_TOKEN": TOKEN,
        "SB_MAILBOXES_FILE": str(DEMO / "ingestion.json"),
        "SB_CAMPAIGNS_FILE": str(DEMO / "dialer.json"),
        "SB_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "switchboard.app.cli", "serve", service],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, process)
        served = urllib.request.Request(base_url + path, headers=_auth())
        with urllib.request.urlopen(served, timeout=10) as answer:
            assert answer.status == 200  # the document is served, behind the token
        failures = _fuzz(_with_examples(document), base_url)
    finally:
        process.terminate()
        process.wait(60)
    assert not failures, "\n".join(failures)


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _fuzz(document: dict[str, Any], base_url: str) -> list[str]:
    schema = schemathesis.openapi.from_dict(document)
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    assert len(operations) == sum(len(ops) for ops in document["paths"].values())
    failures = []
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=_auth(), timeout=30)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    return failures


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited"
        try:
            with urllib.request.urlopen(base_url + "/health/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the service did not become ready")

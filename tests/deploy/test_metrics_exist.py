"""Every metric a dashboard or an alert reads exists on the real services, after real work.

The whole system runs as processes (as `make run` starts it, with the demo data), a customer's
mail goes through SMTP in, a supervisor logs in; then every service's `/metrics` is scraped.
"""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import socket
import sys
import urllib.request
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from switchboard.app.localstack import Backends
from switchboard.app.supervisor import SERVICE_ORDER, installed_services

from .conftest import dashboard_queries, metric_names, rule_queries

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from stack import Stack, free_port

LOG_PATH = Path(__file__).resolve().parents[2] / ".local" / "deploy" / "stack.log"
HELP = re.compile(r"^# HELP (\S+)", re.M)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", re.M)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
OWNER = {
    "switchboard_routing_": "routing",
    "switchboard_threading_": "threading",
    "switchboard_ingestion_": "ingestion",
    "switchboard_dialer_": "dialer",
    "switchboard_gateway_": "gateway",
    "switchboard_agent": "agent_state",
}
HISTOGRAM_PARTS = ("_bucket", "_count", "_sum")


def _referenced() -> set[str]:
    names: set[str] = set()
    for _, _, expr in dashboard_queries() + rule_queries():
        names |= {n for n in metric_names(expr) if n.startswith("switchboard_")}
    return names


def _base(name: str, exported: set[str]) -> str:
    for suffix in HISTOGRAM_PARTS:
        if name.endswith(suffix) and name.removesuffix(suffix) in exported:
            return name.removesuffix(suffix)
    return name


async def _exercise(stack: Stack) -> None:
    mail = EmailMessage()
    mail["From"] = "Dana Customer <dana@example.net>"
    mail["To"] = "support@switchboard.local"
    mail["Subject"] = "My order has not arrived"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@example.net>"
    mail.set_content("Hello, order 4711 has not arrived yet.")

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
            smtp.send_message(mail)

    await asyncio.to_thread(send)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as http:
        login = await http.post(
            "/auth/login", json={"login": "supervisor-1", "password": "supervisor-demo-pass"}
        )
        assert login.status_code == 200, login.text
        # a command with an answer: it comes back over the gateway's own reply queue
        bearer = {"Authorization": f"Bearer {login.json()['token']}"}
        queues = await http.get("/supervisor/queues", headers=bearer)
        assert queues.status_code == 200, queues.text
        deadline = asyncio.get_running_loop().time() + 60
        async with httpx.AsyncClient(base_url=stack.url("routing"), timeout=10) as routing:
            while (
                'switchboard_routing_queue_depth{queue="support"}'
                not in (await routing.get("/metrics")).text
            ):
                assert asyncio.get_running_loop().time() < deadline, "the mail never got queued"
                await asyncio.sleep(0.5)


@pytest.mark.timeout(300)
async def test_every_metric_of_the_dashboards_and_rules_is_served_after_real_work(
    real_servers: Backends, amqp_url: str
) -> None:
    prefix = f"dep{uuid.uuid4().hex[:6]}"
    stack = Stack(
        amqp_url=amqp_url,
        mongodb_url=real_servers.mongodb_url,
        database_prefix=prefix,
        relay_port=free_port(),
        log_path=LOG_PATH,
    )
    scraped: dict[str, str] = {}
    try:
        stack.start()
        await _exercise(stack)
        async with httpx.AsyncClient(timeout=10) as http:
            for service in installed_services():
                scraped[service] = (await http.get(stack.url(service, "/metrics"))).text
    finally:
        stack.stop()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(real_servers.mongodb_url)
        for service in SERVICE_ORDER:
            await client.drop_database(f"{prefix}_{service}")
        await client.close()

    exported = {service: set(HELP.findall(text)) for service, text in scraped.items()}
    everywhere = set().union(*exported.values())
    missing = sorted(n for n in _referenced() if _base(n, everywhere) not in everywhere)
    assert not missing, f"read by a dashboard or rule, served by no service: {missing}"
    for name in _referenced():
        owner = next((s for p, s in OWNER.items() if name.startswith(p)), None)
        if owner is not None:
            assert _base(name, exported[owner]) in exported[owner], (name, owner)
    for service, names in exported.items():
        assert "switchboard_bus_received_messages_total" in names, service
        assert "switchboard_dependency_up" in names, service
        assert not any(n.startswith("faststream_") for n in names), service

    for service, text in scraped.items():
        for name, labels in SAMPLE.findall(text):
            found = dict(LABEL.findall(labels or ""))
            assert not {"service", "job", "instance"} & found.keys(), (service, name, found)
            assert not any(".replies." in v for v in found.values()), (service, name, found)
    assert 'queue="support"' in scraped["routing"]
    # the answer's destination is the reply queue, labelled without its per-process name
    assert 'destination="default.gateway.replies"' in scraped["routing"]


def test_rabbitmq_serves_the_per_queue_metrics_the_dashboards_read() -> None:
    try:
        socket.create_connection(("127.0.0.1", 15692), timeout=2).close()
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs rabbitmq_prometheus on 127.0.0.1:15692")
        pytest.skip("rabbitmq_prometheus is not enabled on the local RabbitMQ (port 15692)")
    url = (
        "http://127.0.0.1:15692/metrics/detailed"
        "?family=queue_coarse_metrics&family=queue_consumer_count"
    )
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    served = set(HELP.findall(text))
    read = {
        n
        for _, _, expr in dashboard_queries() + rule_queries()
        for n in metric_names(expr)
        if n.startswith("rabbitmq_")
    }
    assert read and read <= served, sorted(read - served)

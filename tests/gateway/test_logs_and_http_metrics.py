"""The gateway's logs and HTTP metrics: route templates, statuses, never secrets."""

from __future__ import annotations

import httpx
import pytest
from structlog.testing import capture_logs

from switchboard.gateway.app import GatewaySettings, build

from .conftest import PEOPLE


async def test_requests_are_logged_and_counted_by_route_template_without_secrets(
    client: httpx.AsyncClient,
) -> None:
    with capture_logs() as logs:
        refused = await client.post(
            "/auth/login?token=query-secret",
            json={"login": "nobody", "password": "password-secret"},
        )
        unknown = await client.get("/cases/14355?token=query-secret")
        stray = await client.get("/no/such/page/4711")
    assert refused.status_code == 401
    assert unknown.status_code == 401
    assert stray.status_code == 404
    lines = [line for line in logs if line.get("event") == "http request"]
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("POST", "/auth/login", 401),
        ("GET", "/cases/{case_number}", 401),
        ("GET", "unmatched", 404),
    ]
    for line in lines:
        text = repr(line)
        assert "secret" not in text and "14355" not in text and "4711" not in text
        assert line["seconds"] >= 0

    metrics = (await client.get("/metrics")).text
    assert (
        'switchboard_gateway_http_requests_total{method="GET",route="/cases/{case_number}",'
        'status="401"}' in metrics
    )
    assert 'route="unmatched",status="404"' in metrics
    assert (
        'switchboard_gateway_http_request_seconds_count{method="POST",route="/auth/login"}'
        in metrics
    )
    assert "14355" not in metrics and "query-secret" not in metrics


async def test_seeding_names_the_people_never_their_passwords(
    gateway_settings: GatewaySettings, capsys: pytest.CaptureFixture[str]
) -> None:
    production = gateway_settings.model_copy(update={"development": False})
    async with build(production).app:
        pass
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "people seeded" in printed and "supervisor-1" in printed
    assert not any(password in printed for _, password in PEOPLE.values())

"""The compose file against what an operator needs: every service, secrets, no surprises."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import yaml

from switchboard.app.supervisor import installed_services
from switchboard.runtime.settings import ServiceSettings

from .conftest import DEPLOY, REPO, compose

INFRASTRUCTURE = {"rabbitmq", "mongo", "prometheus", "alertmanager", "grafana", "jaeger"}
PUBLISHED = {"gateway", "ingestion"}


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", text))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return {str(k): str(v) for k, v in env.items()}


def test_every_installed_service_is_in_the_stack_and_scraped() -> None:
    services = compose()["services"]
    installed = set(installed_services())
    assert installed, "no service installed: the comparison would prove nothing"
    assert set(services) - INFRASTRUCTURE == installed
    for name in installed:
        assert services[name]["command"] == ["serve", name]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "switchboard"]
    assert set(job["dns_sd_configs"][0]["names"]) == installed


def test_every_container_restarts_rotates_logs_and_has_a_healthcheck() -> None:
    for name, service in compose()["services"].items():
        assert service.get("restart") == "unless-stopped", name
        assert service["logging"]["options"]["max-size"], name
        assert service["healthcheck"]["test"], name


def test_services_stop_after_their_graceful_timeout_not_before() -> None:
    default = ServiceSettings.model_fields["graceful_timeout_seconds"].default
    for name in installed_services():
        service = compose()["services"][name]
        graceful = float(_environment(service).get("SB_GRACEFUL_TIMEOUT_SECONDS", default))
        assert _seconds(service["stop_grace_period"]) > graceful, name


def test_only_the_gateway_and_smtp_are_published_beyond_loopback() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            if name not in PUBLISHED:
                assert str(port).startswith("127.0.0.1:"), (name, port)
    assert compose()["services"]["gateway"]["ports"]
    assert compose()["services"]["ingestion"]["ports"]


def test_secrets_come_from_files_and_no_demo_data_is_in_the_plain_stack() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    assert "/app/demo" not in text and "deploy/demo" not in text
    assert "RABBITMQ_DEFAULT_PASS" not in text
    services = compose()["services"]
    for name in installed_services():
        env = _environment(services[name])
        for key in ("SB_AMQP_URL_FILE", "SB_MONGODB_URL_FILE", "SB_SERVICE_TOKEN_FILE"):
            secret = env[key].removeprefix("/run/secrets/")
            assert secret in services[name]["secrets"], (name, key)
        assert not any(k in env for k in ("SB_AMQP_URL", "SB_MONGODB_URL", "SB_THREAD_KEY"))
        assert "SB_DEVELOPMENT" not in env, name
    assert _environment(services["threading"])["SB_THREAD_KEY_FILE"] == "/run/secrets/thread_key"
    assert "thread_key" in services["threading"]["secrets"]
    grafana = _environment(services["grafana"])
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    mongo = _environment(services["mongo"])
    assert mongo["MONGO_INITDB_ROOT_PASSWORD_FILE"].startswith("/run/secrets/")
    assert services["rabbitmq"]["hostname"] == "rabbitmq"


def test_the_secrets_folder_is_ignored_and_nothing_in_it_is_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "deploy/secrets"], cwd=REPO, capture_output=True, text=True
    )
    assert tracked.stdout.strip() == ""
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/secrets/amqp_url"], cwd=REPO, check=False
    )
    assert ignored.returncode == 0


def test_the_demo_override_seeds_every_service_from_deploy_demo() -> None:
    demo = yaml.safe_load((DEPLOY / "compose.demo.yml").read_text())["services"]
    assert set(demo) == set(installed_services())
    for name, service in demo.items():
        files = [v for k, v in service["environment"].items() if k.endswith("_FILE")]
        assert files and all(f.startswith("/app/demo/") for f in files), name
        assert any(v.startswith("./deploy/demo:") for v in service["volumes"]), name

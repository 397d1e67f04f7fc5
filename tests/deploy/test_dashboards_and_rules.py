"""Dashboards and alert rules: valid JSON, valid PromQL, a runbook for every alert."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import DASHBOARDS, DEPLOY, REPO, dashboard_queries, metric_names, rule_queries

EXPECTED_DASHBOARDS = {"flow", "contact-center", "mail-edge", "campaigns", "rabbitmq"}
ALERTS = {
    "ServiceDown",
    "ConsumerQueueWithoutConsumer",
    "DeadLetterQueueGrowing",
    "RetriesClimbing",
    "InteractionWaitingTooLong",
    "AgentStuckInState",
    "OutboundMailFailing",
    "SmtpRefusingMostMail",
    "MongoDBUnreachable",
    "RabbitMQUnreachable",
}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs promtool (deploy/local/install.sh --ci installs it)")
        pytest.skip("no promtool here: `make install CI=1` installs it")
    return found


def test_the_dashboards_are_provisioned_and_well_formed() -> None:
    assert {p.stem.removeprefix("switchboard-") for p in DASHBOARDS} == EXPECTED_DASHBOARDS
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "switchboard.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] not in uids
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == datasource["uid"], (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])


def test_the_flow_dashboard_shows_retries_and_dead_letters_by_outcome() -> None:
    by_outcome = " ".join(
        expr
        for board, title, expr in dashboard_queries()
        if board == "switchboard-flow.json" and title.endswith("by outcome")
    )
    assert "switchboard_messages_retried_total" in by_outcome
    assert "switchboard_messages_dead_lettered_total" in by_outcome


def test_every_dashboard_and_rule_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = _promtool()
    queries = dashboard_queries() + rule_queries()
    rules = {
        "groups": [
            {
                "name": "every-query",
                "rules": [
                    {"record": f"check:query_{n}", "expr": expr}
                    for n, (_, _, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(queries)} rules found" in done.stdout


def test_recorded_series_used_anywhere_are_recorded() -> None:
    recorded = {name for _, name, _ in rule_queries() if ":" in name}
    used = {
        n for _, _, e in dashboard_queries() + rule_queries() for n in metric_names(e) if ":" in n
    }
    assert used and used <= recorded


def test_no_query_reads_a_label_a_domain_metric_no_longer_has() -> None:
    for board, title, expr in dashboard_queries() + rule_queries():
        if "switchboard_routing" in expr or "switchboard_threading" in expr:
            assert not re.search(r"\bservice\b", expr.replace('up{job="switchboard"', "")), (
                board,
                title,
            )


def test_every_alert_has_a_summary_and_a_runbook_in_the_operations_guide() -> None:
    operations = (REPO / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", operations, re.M)
    }
    seen = set()
    for path in (DEPLOY / "prometheus" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                seen.add(rule["alert"])
                annotations = rule["annotations"]
                assert annotations["summary"], rule["alert"]
                page, _, anchor = annotations["runbook"].partition("#")
                assert page == "docs/operations.md" and anchor in anchors, rule["alert"]
    assert seen >= ALERTS


def test_every_alert_has_a_promtool_unit_test() -> None:
    tested = set()
    for path in (DEPLOY / "prometheus" / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check["exp_alerts"]:
                    tested.add(check["alertname"])
    assert tested >= ALERTS


def test_the_rule_unit_tests_pass() -> None:
    promtool = _promtool()
    tests = sorted(str(p) for p in (DEPLOY / "prometheus" / "tests").glob("*.yml"))
    done = subprocess.run([promtool, "test", "rules", *tests], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

"""Shared readers of the deployment files: the compose file, Prometheus rules, dashboards."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))

_NAME = re.compile(r"(?<![\w:])((?:switchboard|rabbitmq)_[a-zA-Z0-9_]*|switchboard:[a-zA-Z0-9_:]+)")
_STRINGS = re.compile(r"\"[^\"]*\"|'[^']*'")
_SELECTORS = re.compile(r"\{[^}]*\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) of every target of every dashboard."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
    return found


def rule_queries() -> list[tuple[str, str, str]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((path.name, rule.get("alert") or rule["record"], rule["expr"]))
    return found


def metric_names(expr: str) -> set[str]:
    """The project's and RabbitMQ's metric names (and recorded series) an expression reads."""
    text = _SELECTORS.sub(" ", _STRINGS.sub('""', expr))
    return set(_NAME.findall(text))

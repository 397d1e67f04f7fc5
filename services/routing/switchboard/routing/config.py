"""The services configuration file (seeded into MongoDB when no service is configured)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import TypeAdapter

from switchboard.contracts.routing import ServiceDefinition

_SERVICES = TypeAdapter(list[ServiceDefinition])


def load_services(path: Path) -> list[ServiceDefinition]:
    """Read ``{"services": [...]}`` (or a bare list) of service definitions."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("services", [])
    return _SERVICES.validate_python(data)

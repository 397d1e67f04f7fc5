"""What threading's rules share: the document shape they work on, the clock, address copies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from switchboard.contracts.mail import Address

Document = dict[str, Any]
"""A case or email as stored (the store's shape; typed aggregates replace it step by step)."""

NS = uuid.UUID("6f1c2a52-5d4b-4c1e-9a43-2f7d0f3c9b11")
"""Namespace of the deterministic ids (outbound keys, notes) derived from a message id."""


def now() -> datetime:
    return datetime.now(UTC)


def addr(a: Address) -> dict[str, str]:
    return {"name": a.name, "address": a.address}


def iso(value: Any) -> Any:
    """Datetimes (also inside dicts and lists) as ISO text, naive ones read as UTC."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, dict):
        return {k: iso(v) for k, v in value.items()}
    if isinstance(value, list):
        return [iso(v) for v in value]
    return value

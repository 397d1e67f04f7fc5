"""Exceptions with a meaning for the message runtime."""

from __future__ import annotations

from switchboard.contracts import Refusal


class Refused(Exception):
    """A command that must not be carried out: answered with the reason, never retried."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.refusal = Refusal(code=code, message=message, field=field)


class InHandElsewhere(Exception):
    """Another copy of this work is under way (or its holder died and its own lease has not run
    out): the runtime checks back later, like a busy claim, without spending an attempt."""


def describe_validation_error(exc: Exception) -> tuple[str, str | None]:
    """A one-line description of a pydantic error, and the first field it names."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc), None
    parts = []
    first_field: str | None = None
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(message)"
        first_field = first_field or where
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts), first_field

"""Forward one command to its owning service and turn the answer into HTTP terms."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import structlog
from pydantic import ValidationError

from switchboard.contracts import Message
from switchboard.gateway.errors import ApiError, status_for
from switchboard.gateway.metrics import FORWARDED
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import describe_validation_error

log = structlog.get_logger("switchboard.gateway.forward")


def build_command(factory: Callable[..., Message], **fields: Any) -> Message:
    """Build a command; a value the contract refuses becomes 422 naming the field."""
    try:
        return factory(**fields)
    except ValidationError as exc:
        text, field = describe_validation_error(exc)
        raise ApiError(422, "invalid", text, field=field) from exc


class Forwarder:
    def __init__(self, bus: Bus, timeout: float) -> None:
        self._bus = bus
        self.timeout = timeout

    async def send(
        self,
        command: Message,
        *,
        owner: str,
        path_fields: Collection[str] = (),
        identity_fields: Collection[str] = (),
    ) -> dict[str, Any]:
        """The owner's ``result``; its refusal, silence or absence as an :class:`ApiError`."""
        name = command.NAME
        try:
            outcome = await self._bus.request(command, timeout=self.timeout)
        except TimeoutError:
            FORWARDED.labels(name, "timeout").inc()
            log.warning("owner did not answer", command=name, owner=owner, timeout=self.timeout)
            raise ApiError(
                504,
                "timeout",
                f"{owner} did not answer {name} within {self.timeout:g} s; "
                "it may still carry it out, check before retrying",
            ) from None
        except Exception as exc:
            FORWARDED.labels(name, "unavailable").inc()
            log.warning("command not delivered", command=name, owner=owner, error=repr(exc))
            raise ApiError(
                503,
                "unavailable",
                f"{owner} cannot take {name} now (not running or broker unreachable)",
            ) from None
        if outcome.ok:
            FORWARDED.labels(name, "ok").inc()
            return outcome.result
        refusal = outcome.error
        if refusal is None:
            FORWARDED.labels(name, "refused").inc()
            raise ApiError(409, "refused", f"{owner} refused {name} without a reason")
        FORWARDED.labels(name, "refused").inc()
        raise ApiError(
            status_for(refusal, path_fields, identity_fields),
            refusal.code,
            refusal.message,
            field=refusal.field,
        )

"""The names of the RabbitMQ topology, defined once.

Every event and command goes through one durable topic exchange, routed by the message ``NAME``.
Each consumer owns a durable queue bound to the names it handles, and two companions:

* ``<queue>.retry`` holds a failed message for a delay (per-message expiration), then dead-letters
  it back into ``<queue>`` through the default exchange;
* ``<queue>.dead`` keeps what could not be handled, with the error and the attempt count in its
  headers (``x-sb-error``, ``x-sb-attempts``) for an operator to read and replay.
"""

from __future__ import annotations

from dataclasses import dataclass

EXCHANGE = "switchboard"
"""The topic exchange every message is published to, routing key = message NAME."""

HEADER_ATTEMPT = "x-sb-attempt"
HEADER_ERROR = "x-sb-error"
HEADER_ATTEMPTS = "x-sb-attempts"
HEADER_CONSUMER = "x-sb-consumer"
HEADER_FAILED_AT = "x-sb-failed-at"
HEADER_NAME = "x-sb-name"


@dataclass(frozen=True)
class ConsumerQueue:
    """A durable queue one service consumes, and the message names routed into it."""

    name: str
    binds: tuple[str, ...]

    @property
    def retry(self) -> str:
        return f"{self.name}.retry"

    @property
    def dead(self) -> str:
        return f"{self.name}.dead"

"""The queues the gateway consumes durably (shared by its replicas).

The gateway keeps a small projection of who holds which interaction, so that new mail on a case
can be pushed to the agent working it. Live push itself does not use these queues: every gateway
replica binds an exclusive, auto-delete queue of its own to the exchange (see the gateway docs).
"""

from __future__ import annotations

from switchboard.contracts.base import Message
from switchboard.contracts.routing import (
    InteractionAssigned,
    InteractionEnded,
    InteractionTransferred,
)
from switchboard.contracts.topology import ConsumerQueue


def _queue(message: type[Message]) -> ConsumerQueue:
    return ConsumerQueue(f"gateway.{message.NAME}", (message.NAME,))


ASSIGNMENTS = _queue(InteractionAssigned)
ENDED = _queue(InteractionEnded)
TRANSFERRED = _queue(InteractionTransferred)

ALL = (ASSIGNMENTS, ENDED, TRANSFERRED)

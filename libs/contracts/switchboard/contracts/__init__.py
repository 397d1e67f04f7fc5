"""Every message Switchboard services exchange, and every name of the topology they use.

This package is the only place a message or a queue is defined. Services import from here and
never spell a routing key, exchange or queue name by hand.
"""

from switchboard.contracts.base import (
    Command,
    Event,
    Message,
    Outcome,
    Refusal,
    SingleLine,
    message_class,
    registered_messages,
)
from switchboard.contracts.topology import EXCHANGE, ConsumerQueue

__all__ = [
    "EXCHANGE",
    "Command",
    "ConsumerQueue",
    "Event",
    "Message",
    "Outcome",
    "Refusal",
    "SingleLine",
    "message_class",
    "registered_messages",
]

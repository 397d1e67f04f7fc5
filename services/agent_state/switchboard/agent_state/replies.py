"""Work-around for answered commands (until the runtime's Bus does this itself).

The runtime's ``Bus.consume`` lets FastStream publish the answer to the requester's direct
reply-to address with ``mandatory=True``. RabbitMQ 3.10 (Debian's, used by ``make run`` and the
tests) *returns* such a message as NO_ROUTE even though it delivers it; with
``on_return_raises`` the reply raises, the command is nacked and requeued, and every redelivery
(answered from the ledger) fails the same way: an endless loop per answered command.

:class:`ReplyingBus` is ``Bus`` with one change: the answer goes back with ``mandatory=False``
(a requester that gave up simply does not get it). Everything else (validation, ledger,
refusals, retry, dead-lettering) is the runtime's own ``Bus._handle``.
"""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.rabbit import RabbitMessage, RabbitQueue, RabbitResponse

from switchboard.contracts import ConsumerQueue, Outcome, Refusal
from switchboard.runtime.bus import Bus, Handler, M
from switchboard.runtime.service import Runtime

UNAVAILABLE = Outcome(
    ok=False,
    error=Refusal(
        code="unavailable", message="the command could not be handled now; it will be retried"
    ),
)


class ReplyingBus(Bus):
    def consume(
        self, queue: ConsumerQueue, model: type[M], handler: Handler[M], *, description: str = ""
    ) -> None:
        self._queues.append(queue)

        async def on_message(msg: RabbitMessage) -> Any:
            outcome = await self._handle(queue, model, handler, msg)
            if not msg.reply_to:
                return None
            answer = outcome if outcome is not None else UNAVAILABLE
            return RabbitResponse(
                answer.model_dump_json().encode(),
                mandatory=False,
                content_type="application/json",
                correlation_id=msg.correlation_id,
            )

        on_message.__name__ = f"{queue.name}:{getattr(handler, '__name__', 'handler')}"
        self.broker.subscriber(
            RabbitQueue(queue.name, declare=False),
            title=queue.name,
            description=description or (handler.__doc__ or "").strip() or model.__doc__,
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )(on_message)


def use_replying_bus(runtime: Runtime) -> ReplyingBus:
    """Swap the runtime's bus before any consumer is registered."""
    bus = ReplyingBus(runtime.broker, runtime.settings, runtime.ledger)
    runtime.bus = bus
    return bus

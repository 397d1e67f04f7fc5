"""Telephony: the adapter interface, the simulator, and the consumer that drives an adapter.

The dialer publishes ``dial.requested``; an adapter places the call and reports what happens as
``call.progressed`` (ringing, answered, busy, no answer, failed, ended). A real PBX adapter
implements :class:`TelephonyAdapter` (see docs/dialer.md): ``dial`` starts the call and returns;
the adapter calls ``report`` whenever the PBX tells it something about the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from switchboard.contracts.campaigns import CallProgressed, CallStatus, DialRequested
from switchboard.runtime.bus import Bus

log = structlog.get_logger("switchboard.dialer.telephony")

Report = Callable[[CallStatus, str], Awaitable[None]]
"""``report(status, detail)``: publish one step of the call's progress."""


class TelephonyAdapter(Protocol):
    async def dial(self, request: DialRequested, report: Report) -> None:
        """Start the call (do not wait for it to end); report progress through ``report``."""

    async def close(self) -> None:
        """Stop: hang up or forget calls in hand."""


class SimulatedTelephony:
    """Pretends to call: rings, then answers (and hangs up later), is busy, no answer, fails.

    The outcome of a number comes from ``outcomes`` (E.164 -> outcome), else ``default``.
    Calls in progress live in memory: a restart forgets them (the agent still sets the
    disposition; the dialer does not wait for a hang-up to allow it).
    """

    def __init__(
        self,
        *,
        outcomes: dict[str, CallStatus],
        default: CallStatus,
        ring_seconds: float,
        talk_seconds: float,
    ) -> None:
        self.outcomes = outcomes
        self.default = default
        self.ring_seconds = ring_seconds
        self.talk_seconds = talk_seconds
        self._calls: set[asyncio.Task[None]] = set()

    async def dial(self, request: DialRequested, report: Report) -> None:
        await report("dialing", f"simulated call to {request.number}")
        task = asyncio.create_task(self._play(request, report), name=f"call {request.call_id}")
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _play(self, request: DialRequested, report: Report) -> None:
        outcome = self.outcomes.get(request.number, self.default)
        try:
            await report("ringing", "")
            await asyncio.sleep(self.ring_seconds)
            await report(outcome, "simulated")
            if outcome == "answered":
                await asyncio.sleep(self.talk_seconds)
                await report("ended", "simulated hang-up")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("simulated call failed to report", call_id=request.call_id)

    async def close(self) -> None:
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)


class TelephonyConsumer:
    """Feeds ``dial.requested`` to an adapter and publishes its reports as ``call.progressed``.

    Each report's message id derives from the request and the status, so a redelivered request
    re-reports the same messages and the dialer's ledger drops the copies.
    """

    def __init__(self, adapter: TelephonyAdapter, bus: Bus) -> None:
        self.adapter = adapter
        self.bus = bus

    async def on_dial_requested(self, request: DialRequested) -> None:
        async def report(status: CallStatus, detail: str) -> None:
            await self.bus.publish(
                CallProgressed.caused_by(
                    request, key=status, call_id=request.call_id, status=status, detail=detail
                )
            )

        await self.adapter.dial(request, report)

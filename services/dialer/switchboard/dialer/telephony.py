"""Telephony: the adapter interface, the simulator, and the consumer that drives an adapter.

The dialer publishes ``dial.requested``; an adapter places the call and reports what happens as
``call.progressed`` (ringing, answered, busy, no answer, failed, ended). A real PBX adapter
implements :class:`TelephonyAdapter` (see docs/dialer.md): ``dial`` starts the call and returns;
the adapter calls ``report`` whenever the PBX tells it something about the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

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
    A call is a document in ``calls`` with its planned timeline (status, due time) and the
    index of the next step; :meth:`advance`, run periodically, reports the steps that are due.
    So a simulator that restarts mid-call (or another replica) still reports the rest of the
    call. A step reported twice (a crash between the report and the saved index, or two
    replicas at once) carries the same message id, which the dialer's ledger drops.
    """

    def __init__(
        self,
        calls: AsyncCollection[dict[str, Any]],
        *,
        outcomes: dict[str, CallStatus],
        default: CallStatus,
        ring_seconds: float,
        talk_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.calls = calls
        self.outcomes = outcomes
        self.default = default
        self.ring_seconds = ring_seconds
        self.talk_seconds = talk_seconds
        self.now = clock

    def plan(self, request: DialRequested, start: datetime) -> list[dict[str, Any]]:
        """The steps of a call placed at ``start`` (pure: the outcome decides the timeline)."""
        outcome = self.outcomes.get(request.number, self.default)
        answered_at = start + timedelta(seconds=self.ring_seconds)
        steps: list[dict[str, Any]] = [
            {"status": "ringing", "detail": "", "at": start},
            {"status": outcome, "detail": "simulated", "at": answered_at},
        ]
        if outcome == "answered":
            ends = answered_at + timedelta(seconds=self.talk_seconds)
            steps.append({"status": "ended", "detail": "simulated hang-up", "at": ends})
        return steps

    async def dial(self, request: DialRequested, report: Report) -> None:
        await report("dialing", f"simulated call to {request.number}")
        steps = self.plan(request, self.now())
        with contextlib.suppress(DuplicateKeyError):  # a redelivered request: planned already
            await self.calls.insert_one(
                {
                    "_id": request.call_id,
                    "request": request.model_dump_json(),
                    "steps": steps,
                    "next": 0,
                    "due": steps[0]["at"],
                }
            )

    async def advance(self, reporter: Callable[[DialRequested], Report]) -> int:
        """Report every due step of the calls in progress; returns how many were reported."""
        reported = 0
        async for call in self.calls.find({"due": {"$lte": self.now()}}).limit(200):
            request = DialRequested.model_validate_json(call["request"])
            report = reporter(request)
            steps, index = call["steps"], int(call["next"])
            now = self.now()
            try:
                while index < len(steps) and _aware(steps[index]["at"]) <= now:
                    await report(steps[index]["status"], steps[index]["detail"])
                    index += 1
                    reported += 1
            except Exception:
                log.exception("simulated call failed to report", call_id=request.call_id)
            if index >= len(steps):
                await self.calls.delete_one({"_id": call["_id"]})
            elif index != call["next"]:
                await self.calls.update_one(
                    {"_id": call["_id"]}, {"$set": {"next": index, "due": steps[index]["at"]}}
                )
        return reported

    async def close(self) -> None:
        """Calls in progress stay in MongoDB: the next simulator reports the rest."""


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class TelephonyConsumer:
    """Feeds ``dial.requested`` to an adapter and publishes its reports as ``call.progressed``.

    Each report's message id derives from the request and the status, so a redelivered request
    re-reports the same messages and the dialer's ledger drops the copies.
    """

    def __init__(self, adapter: TelephonyAdapter, bus: Bus) -> None:
        self.adapter = adapter
        self.bus = bus

    async def on_dial_requested(self, request: DialRequested) -> None:
        await self.adapter.dial(request, self.reporter(request))

    def reporter(self, request: DialRequested) -> Report:
        """``report(status, detail)`` for one call: publishes ``call.progressed``."""

        async def report(status: CallStatus, detail: str) -> None:
            await self.bus.publish(
                CallProgressed.caused_by(
                    request, key=status, call_id=request.call_id, status=status, detail=detail
                )
            )

        return report

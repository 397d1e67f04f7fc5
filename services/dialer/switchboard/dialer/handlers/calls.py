"""Telephony's reports on the calls the dialer requested."""

from __future__ import annotations

import structlog

from switchboard.contracts.campaigns import (
    CallProgressed,
)
from switchboard.dialer import metrics
from switchboard.dialer.domain.holding import call_progressed
from switchboard.dialer.handlers.base import HandlerBase

log = structlog.get_logger("switchboard.dialer")


class CallProgress(HandlerBase):
    async def on_call_progress(self, event: CallProgressed) -> None:
        metrics.CALLS.labels(event.status).inc()
        record = await self.store.by_call(event.call_id)
        if record is None:
            log.warning("progress of an unknown call", call_id=event.call_id)
            return
        changed = call_progressed(
            record, event.call_id, event.status, event.at or event.occurred_at
        )
        if changed is not None:
            await self.store.save(changed)

"""Offers: made (capacity first, then the interaction), answered, closed."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from typing import Any

import structlog

from switchboard.contracts.routing import (
    InteractionAssigned,
    OfferAnswer,
    OfferMade,
    OfferRejected,
)
from switchboard.routing import domain, metrics
from switchboard.routing.handlers.core import (
    RouterCore,
    _aware,
    _event_id,
)
from switchboard.routing.store import utcnow
from switchboard.runtime.errors import Refused
from switchboard.runtime.storage import NotFound

log = structlog.get_logger("switchboard.routing")


class Offers(RouterCore):
    """Make an offer, free a hold, take an answer."""

    async def offer(
        self,
        item: domain.WorkItem,
        agent_id: str,
        *,
        pulled: bool = False,
        agent: domain.AgentRecord | None = None,
    ) -> bool:
        """Reserve the agent, then the interaction; give the agent back if the second fails.

        ``agent``: the agent as the plan read it, so the reservation need not read it again.
        """
        now = utcnow()
        service = await self.catalog.get(item.service)
        channel = item.channel
        offer_id = domain.offer_id(
            item.id, item.round, item.offers_in_round + 1, kind="pull/" if pulled else ""
        )
        token = uuid.uuid4().hex  # this reservation's own mark: a loser releases only its own

        reserve = domain.reservation(
            offer_id,
            item.id,
            channel,
            token,
            now,
            default_capacity=self.store.default_capacity,
            pulled=pulled,
        )
        _, reserved = await self._change_agent(agent_id, reserve, create=False, known=agent)
        if not reserved:
            metrics.CAS_CONFLICTS.labels("agent").inc()
            return False
        auto = bool(service and service.auto_accept) or pulled
        timeout = service.offer_timeout_seconds if service else 30.0
        expires_at = now + timedelta(seconds=timeout)
        offer = domain.Offer(
            id=offer_id, agent_id=agent_id, made_at=now, expires_at=expires_at, auto_accept=auto
        )
        updated = domain.offered(item, offer, pulled=pulled, now=now)
        try:
            written = updated is not None and await self._replace_work(item, updated) is not None
        except Exception:
            # the database failed us mid-way: give the capacity back now (best effort; the
            # stale-hold sweep is the backstop) rather than leave the agent looking full
            with contextlib.suppress(Exception):
                await self.release_hold(agent_id, token=token)
            raise
        if not written:
            metrics.CAS_CONFLICTS.labels("work").inc()
            await self.release_hold(agent_id, token=token)
            return False
        service_name = item.service
        if not pulled:
            metrics.OFFERS.labels(service_name).inc()
            metrics.REQUEST_TO_OFFER.labels(service_name).observe(
                max((now - item.waiting_since).total_seconds(), 0.0)
            )
            await self.emit(
                OfferMade(
                    message_id=_event_id(offer_id, "made"),
                    offer_id=offer_id,
                    interaction_id=item.id,
                    agent_id=agent_id,
                    channel=channel,
                    service=service_name,
                    expires_at=expires_at,
                    auto_accept=auto,
                    # the desktop's pop-up shows how long the customer has waited
                    summary={
                        **(item.summary or {}),
                        "waiting_since": _aware(item.waiting_since).isoformat(),
                    },
                )
            )
        if auto:
            how = "pulled" if pulled else "auto_accepted"
            metrics.ASSIGNMENTS.labels(service_name, how).inc()
            if not pulled:
                metrics.OFFER_OUTCOMES.labels(service_name, "auto_accepted").inc()
            await self.emit(
                InteractionAssigned(
                    message_id=_event_id(offer_id, "assigned"),
                    interaction_id=item.id,
                    agent_id=agent_id,
                    channel=channel,
                    service=service_name,
                    offer_id=offer_id,
                    how=how,
                )
            )
        log.info(
            "offer made" if not auto else "interaction assigned",
            interaction_id=item.id,
            agent_id=agent_id,
            offer_id=offer_id,
        )
        return True

    async def release_hold(
        self,
        agent_id: str,
        *,
        offer_id: str | None = None,
        interaction_id: str | None = None,
        token: str | None = None,
    ) -> bool:
        now = utcnow()

        drop = domain.release(now, offer_id=offer_id, interaction_id=interaction_id, token=token)
        _, changed = await self._change_agent(agent_id, drop, create=False)
        return changed

    async def answer(self, msg: OfferAnswer) -> dict[str, Any]:
        now = utcnow()

        def decide(
            current: domain.WorkItem,
        ) -> tuple[domain.WorkItem | None, domain.Refusal | domain.Offer | None]:
            """The answer's decision; its result is the offer answered when there is a write."""
            decision = domain.answered(
                current,
                msg.offer_id,
                msg.agent_id,
                accept=msg.accept,
                now=now,
                decline_for=self.decline_cooldown,
            )
            if isinstance(decision, domain.WorkItem):
                return decision, current.offer
            return None, decision

        interaction_id = domain.interaction_of_offer(msg.offer_id)
        recalled = self.hints.last_written_work(interaction_id) if interaction_id else None
        for attempt in range(4):
            # first the copy this replica wrote when it made the offer, if it did
            from_copy = attempt == 0 and recalled is not None and msg.offer_id in recalled.offer_ids
            item = recalled if from_copy else await self.store.work_by_offer(msg.offer_id)
            if item is None:
                raise Refused("unknown_offer", f"no offer {msg.offer_id}", field="offer_id")
            _, outcome = decide(item)
            if not isinstance(outcome, domain.Offer):
                if from_copy:
                    continue  # nothing to write by the copy: decide on what is stored
                break  # a refusal, or the same accept again
            try:
                done = await self._change_work(item.id, decide, known=item)
            except NotFound:
                continue  # ended and archived meanwhile: answer from the archive
            item, outcome = done.aggregate, done.result
            break
        else:
            raise RuntimeError(f"offer {msg.offer_id} kept changing: retry")
        if isinstance(outcome, domain.Refusal):
            raise Refused(outcome.code, outcome.text, field=outcome.field)
        if outcome is None:  # accepted already: the same answer again
            return {"status": "assigned", "interaction_id": item.id}
        offer = outcome
        service_name = item.service
        if msg.accept:
            self._close_offer(item, "accepted")
            metrics.ASSIGNMENTS.labels(service_name, "accepted").inc()
            await self.emit(
                InteractionAssigned.caused_by(
                    msg,
                    interaction_id=item.id,
                    agent_id=msg.agent_id,
                    channel=item.channel,
                    service=service_name,
                    offer_id=msg.offer_id,
                    how="accepted",
                )
            )
            return {"status": "assigned", "interaction_id": item.id}
        self._close_offer(item, "rejected")
        await self.release_hold(msg.agent_id, offer_id=offer.id)
        await self.emit(
            OfferRejected.caused_by(
                msg,
                offer_id=msg.offer_id,
                interaction_id=item.id,
                agent_id=msg.agent_id,
                reason=msg.reason,
            )
        )
        await self.dispatch_work(item.id)
        await self.dispatch_agent(msg.agent_id)
        return {"status": "rejected", "interaction_id": item.id}

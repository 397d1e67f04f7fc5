"""The routing events a stored interaction implies, for reporting's rebuild from the services'
data (``routing.history_requested``): pure, no I/O.

They come from the interaction's history, kept over its rounds: each assignment (accepted,
accepted for the agent, pulled), each offer not answered in time (told as its
``offer.made`` then its ``offer.timed_out``, the pair reporting counts a RONA from), each
transfer, and the end of an assigned round. Each is told at the moment routing wrote it; the
published event was stamped a few milliseconds later. What routing does not keep is not told:
offers that were rejected, accepted or cancelled are not needed by the reports and are kept
only as the round's last ``past_offers`` (without times); an interaction stored before its
history kept assignments, ends and missed offers tells only its transfers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import Any

from switchboard.contracts import Message
from switchboard.contracts import routing as r
from switchboard.routing.domain import WorkItem

HISTORY_NAMESPACE = uuid.UUID("5a0d3e7b-9c21-4f6a-b8e4-2d7c1f9a0b35")


def interaction_events(item: WorkItem) -> list[Message]:
    """The interaction's events in the order routing published them."""
    events: list[Message] = []
    for index, line in enumerate(sorted(item.history, key=lambda h: h.at)):
        names: dict[str, Any] = dict(line.model_extra or {})

        made = partial(_event, item.id, index, line.at)
        common = {"interaction_id": item.id, "channel": item.channel}
        if line.what == "offer_timed_out":
            offer = {"offer_id": names["offer_id"], "agent_id": names["agent_id"], **common}
            events.append(
                made(
                    r.OfferMade,
                    "made",
                    service=names.get("service") or item.service,
                    expires_at=names.get("expires_at") or line.at,
                    **offer,
                )
            )
            events.append(made(r.OfferTimedOut, "timed_out", **offer))
        elif line.what == "assigned":
            events.append(
                made(
                    r.InteractionAssigned,
                    "assigned",
                    agent_id=names["agent_id"],
                    service=names.get("service") or item.service,
                    offer_id=names.get("offer_id"),
                    how=names.get("how") or "accepted",
                    **common,
                )
            )
        elif line.what == "transferred":
            events.append(
                made(
                    r.InteractionTransferred,
                    "transferred",
                    from_agent_id=names["from_agent"],
                    from_service=names.get("from_service") or "",
                    to_service=names.get("to_service") or "",
                    to_agent_id=names.get("to_agent"),
                    reason=names.get("reason") or "",
                    **common,
                )
            )
        elif line.what == "ended":
            events.append(made(r.InteractionEnded, "ended", agent_id=names["agent_id"], **common))
    return events


def _event(
    item_id: str, index: int, at: datetime, model: type[Message], key: str, /, **fields: Any
) -> Message:
    message_id = uuid.uuid5(HISTORY_NAMESPACE, f"{item_id}:{index}:{key}")
    return model(message_id=message_id, occurred_at=at, **fields)

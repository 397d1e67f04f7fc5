"""How an owner's refusal becomes an HTTP status (pure)."""

from __future__ import annotations

import pytest

from switchboard.contracts import Refusal
from switchboard.gateway.errors import status_for


@pytest.mark.parametrize(
    ("code", "field", "status"),
    [
        ("not_yours", "agent_id", 403),
        ("not_assigned", "case_number", 403),
        ("forbidden", "actor_role", 403),
        ("unknown_offer", "offer_id", 404),  # the thing in the URL
        ("no_such_case", "case_number", 404),
        ("unknown_service", "to_service", 422),  # a thing named in the body
        ("unknown_reason", "reason", 422),
        ("unknown_agent", "agent_id", 403),  # the acting person, from the token
        ("bad_number", "phones.0", 422),
        ("in_the_past", "at", 422),
        ("offer_closed", "offer_id", 409),
        ("already_ready", None, 409),
        ("queue_empty", None, 409),
    ],
)
def test_refusal_status(code: str, field: str | None, status: int) -> None:
    refusal = Refusal(code=code, message="because", field=field)
    path = {"offer_id", "case_number", "record_id"}
    assert status_for(refusal, path, identity_fields={"agent_id", "actor_id"}) == status


def test_the_push_queue_binds_events_and_never_commands() -> None:
    from switchboard.contracts import message_class
    from switchboard.gateway.push import pushed_events

    names = pushed_events()
    assert {"offer.made", "agent.state_changed", "case.email_attached"} <= set(names)
    assert "campaign.record_skipped" in names
    assert all(message_class(name).KIND == "event" for name in names)
    assert "case.reply" not in names

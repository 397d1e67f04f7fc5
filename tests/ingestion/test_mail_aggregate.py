"""The stored mail's pure transitions (no servers): what is confirmed, what waits, when done."""

from __future__ import annotations

from datetime import UTC, datetime

from switchboard.ingestion.mail import Mail, Target, pending_event

SUPPORT = Target(mailbox="support@x", service="support")
SALES = Target(mailbox="sales@x", service="sales")


def _mail() -> Mail:
    return Mail(
        id="abc",
        size=10,
        channel="smtp",
        mailbox="support@x",
        service="support",
        targets=[],
        received_at=datetime.now(UTC),
    )


def test_a_mail_whose_events_all_went_out_is_done_with_nothing_waiting() -> None:
    events = [pending_event("email.received", [t.mailbox], {}) for t in (SUPPORT, SALES)]
    mail = _mail().after_publishing([SUPPORT, SALES], events, [])
    assert mail.state == "done" and not mail.unpublished and mail.outbox == []
    assert mail.published_for == ["sales@x", "support@x"]
    assert mail.missing([SUPPORT, SALES]) == []


def test_a_failed_publish_keeps_the_rest_in_the_outbox_until_it_is_published() -> None:
    first, second = (
        pending_event("email.received", [t.mailbox], {"n": t.mailbox}) for t in (SUPPORT, SALES)
    )
    mail = _mail().after_publishing([SUPPORT, SALES], [first], [second])
    assert mail.state == "pending" and mail.unpublished and mail.unsent() == [second]
    assert mail.missing([SUPPORT, SALES]) == [SALES]
    assert mail.unannounced([SUPPORT, SALES]) == []  # waiting in the outbox, not lost
    done = mail.published(second)
    assert done is not None and done.state == "done" and not done.unpublished
    assert done.published(second) is None  # marked already


def test_the_same_mailbox_twice_is_one_target() -> None:
    mail = _mail().after_publishing([SUPPORT], [], [])
    again = mail.after_publishing([SUPPORT, SALES], [], [])
    assert [t.mailbox for t in again.targets] == ["support@x", "sales@x"]


def test_documents_from_before_targets_and_published_for_read_as_one_mailbox() -> None:
    old = {
        "_id": "abc",
        "size": 1,
        "channel": "smtp",
        "mailbox": "support@x",
        "service": "support",
        "received_at": datetime.now(UTC),
        "state": "done",
    }
    mail = Mail.model_validate(old)
    assert mail.targets == [SUPPORT] and mail.published_for == ["support@x"]
    assert mail.missing([SUPPORT]) == [] and mail.missing([SALES]) == [SALES]

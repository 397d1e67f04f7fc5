"""The in-memory queue index: queue order, newest version wins, rebuilds keep what is newer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switchboard.routing.queue_index import Place, QueueIndex

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def waiting(
    interaction_id: str,
    version: int = 1,
    *,
    service: str = "support",
    priority: int = 0,
    minute: int = 0,
    personal: str | None = None,
) -> Place:
    return Place(
        interaction_id=interaction_id,
        version=version,
        waiting=True,
        service=service,
        priority=priority,
        queued_at=T0 + timedelta(minutes=minute),
        personal_agent_id=personal,
    )


def gone(interaction_id: str, version: int) -> Place:
    return Place(interaction_id=interaction_id, version=version, waiting=False)


def test_the_head_is_in_queue_order_priority_then_age() -> None:
    index = QueueIndex()
    index.note(waiting("late", minute=5))
    index.note(waiting("early", minute=1))
    index.note(waiting("urgent", priority=5, minute=9))

    assert index.head(services=["support"], limit=10) == ["urgent", "early", "late"]
    assert index.head(services=["support"], limit=2) == ["urgent", "early"]


def test_an_agent_sees_their_personal_work_and_their_services_team_work_only() -> None:
    index = QueueIndex()
    index.note(waiting("sales-1", service="sales", minute=0))
    index.note(waiting("support-1", minute=3))
    index.note(waiting("for-alice", minute=2, personal="alice"))
    index.note(waiting("for-bob", minute=1, personal="bob"))

    head = index.head(services=["support"], personal_agent_ids=["alice"], limit=10)

    assert head == ["for-alice", "support-1"]
    assert index.head(services=["support", "sales"], limit=10) == ["sales-1", "support-1"]


def test_an_offer_takes_work_out_and_a_requeue_puts_it_back_with_its_age() -> None:
    index = QueueIndex()
    index.note(waiting("a", 1, minute=1))
    index.note(waiting("b", 1, minute=2))

    index.note(gone("a", 2))  # offered
    assert index.head(services=["support"], limit=10) == ["b"]

    index.note(waiting("a", 3, minute=1))  # rejected: back at the head, age kept
    assert index.head(services=["support"], limit=10) == ["a", "b"]


def test_an_older_notice_never_undoes_a_newer_one() -> None:
    index = QueueIndex()
    index.note(gone("a", 4))

    assert index.note(waiting("a", 3)) is False
    assert index.head(services=["support"], limit=10) == []
    assert len(index) == 0


def test_a_rebuild_replaces_what_was_lost_but_keeps_what_was_noted_during_the_read() -> None:
    index = QueueIndex()
    index.note(waiting("stale", 1, minute=0))  # its "offered" notice was lost
    since = index.mark()
    index.note(waiting("new-during-read", 1, minute=9))  # written while the read ran
    index.note(gone("taken-during-read", 5))  # the read below still saw it waiting

    index.rebuild(
        [waiting("missed", 2, minute=1), waiting("taken-during-read", 4, minute=2)], since
    )

    assert index.built
    assert index.head(services=["support"], limit=10) == ["missed", "new-during-read"]


def test_a_rebuild_with_a_newer_version_than_a_recent_notice_wins() -> None:
    index = QueueIndex()
    since = index.mark()
    index.note(gone("a", 2))

    index.rebuild([waiting("a", 3, minute=1)], since)

    assert index.head(services=["support"], limit=10) == ["a"]


def test_a_dropped_entry_returns_with_a_newer_version_only() -> None:
    index = QueueIndex()
    index.note(waiting("a", 2))
    index.drop("a")

    assert index.note(waiting("a", 1)) is False
    assert index.head(services=["support"], limit=10) == []
    index.note(waiting("a", 3))
    assert index.head(services=["support"], limit=10) == ["a"]

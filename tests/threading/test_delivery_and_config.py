"""What the mail edge reports about outbound mail (`email.sent`, `email.delivery_failed`,
bounces), and the periodic re-reading of the service configuration, over the real bus and
database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from switchboard.contracts import Message
from switchboard.contracts import cases as c
from switchboard.contracts.mail import Address, EmailDeliveryFailed, EmailSent
from switchboard.contracts.queues import threading as queues
from switchboard.threading.app import ThreadingSettings, build

from .conftest import Sinks, Threading, eventually


async def _reply(t: Threading, number: int, text: str) -> dict[str, Any]:
    sent = await t.command(
        c.ReplyToCase(case_number=number, agent_id="a1", text=text, finish=False)
    )
    assert sent.ok, sent.error
    email = await t.store.get_email(sent.result["email_id"])
    assert email is not None and email["delivery"]["status"] == "requested"
    return email


async def _handled(t: Threading, message: Message) -> None:
    """Publish and wait until the consumer has recorded the message as done."""
    queue = {EmailSent.NAME: queues.EMAILS_SENT, EmailDeliveryFailed.NAME: queues.DELIVERY_FAILED}
    key = f"{queue[message.NAME].name}/{message.message_id}"
    await t.send(message)

    async def done() -> bool:
        entry = await t.store.ledger.find_one({"_id": key})
        return entry is not None and entry.get("state") == "done"

    await eventually(done)


async def _delivery(t: Threading, key: str) -> dict[str, Any]:
    email = await t.store.get_email(key)
    assert email is not None
    delivery: dict[str, Any] = email["delivery"]
    return delivery


async def test_sent_and_failed_reach_the_email_in_its_case(threading: Threading) -> None:
    t = threading
    number = (await t.held_case())["case_number"]
    out = await _reply(t, number, "We are on it.")

    later = EmailDeliveryFailed(
        outbound_id=out["outbound_id"],
        internet_message_id=out["message_id"],
        case_number=number,
        smtp_code=451,
        smtp_reply="4.7.1 try again later",
        permanent=False,
    )
    await _handled(t, later)
    delivery = await _delivery(t, out["_id"])
    assert (delivery["status"], delivery["detail"]) == (
        "failed_temporarily",
        "451 4.7.1 try again later",
    )
    await _handled(
        t,
        EmailSent(
            outbound_id=out["outbound_id"],
            internet_message_id=out["message_id"],
            relay_reply="250 2.0.0 queued as 4F2A",
        ),
    )
    delivery = await _delivery(t, out["_id"])
    assert (delivery["status"], delivery["detail"]) == ("sent", "250 2.0.0 queued as 4F2A")
    # A "failed for now" that arrives late (another queue) does not undo "sent".
    late = later.model_copy(update={"message_id": uuid.uuid4()})
    await _handled(t, late)
    assert (await _delivery(t, out["_id"]))["status"] == "sent"

    # Known only by its Message-ID (another request id), refused for good.
    second = await _reply(t, number, "One more thing.")
    await _handled(
        t,
        EmailDeliveryFailed(
            outbound_id="someone-else",
            internet_message_id=second["message_id"],
            smtp_code=550,
            smtp_reply="5.1.1 user unknown",
        ),
    )
    delivery = await _delivery(t, second["_id"])
    assert (delivery["status"], delivery["detail"]) == ("failed", "550 5.1.1 user unknown")
    assert (await _delivery(t, out["_id"]))["status"] == "sent"

    # The thread view shows both.
    view = await t.command(c.GetCaseThread(case_number=number, agent_id="a1"))
    statuses = {e["email_id"]: e["delivery"] for e in view.result["emails"]}
    assert statuses[out["_id"]]["status"] == "sent"
    assert statuses[second["_id"]]["status"] == "failed"


async def test_news_of_mail_that_is_not_ours_is_acked_and_changes_nothing(
    threading: Threading,
) -> None:
    t = threading
    before = [d async for d in t.store.emails.find({})]
    await _handled(t, EmailSent(outbound_id="nobody", internet_message_id="<nobody@x.example>"))
    await _handled(
        t,
        EmailDeliveryFailed(
            outbound_id="nobody", internet_message_id="<nobody@x.example>", smtp_reply="550"
        ),
    )
    assert [d async for d in t.store.emails.find({})] == before
    # Nothing went to the dead-letter queues either (they were handled, not failed).
    for queue in (queues.EMAILS_SENT, queues.DELIVERY_FAILED):
        channel = await t.sinks.connection.channel()
        dead = await channel.declare_queue(queue.dead, passive=True)
        assert dead.declaration_result.message_count == 0
        await channel.close()


async def test_a_bounce_is_not_undone_by_a_late_sent(threading: Threading) -> None:
    t = threading
    number = (await t.held_case())["case_number"]
    out = await _reply(t, number, "Here is the answer.")
    await t.file(
        t.mail(
            sender=Address(address="mailer-daemon@mx.customer.example"),
            subject="Undelivered Mail Returned to Sender",
            classification="bounce",
            bounced_message_id=out["message_id"],
        )
    )
    assert (await _delivery(t, out["_id"]))["status"] == "bounced"
    await _handled(
        t, EmailSent(outbound_id=out["outbound_id"], internet_message_id=out["message_id"])
    )
    assert (await _delivery(t, out["_id"]))["status"] == "bounced"


async def test_edits_of_the_configuration_collection_are_followed(
    threading_settings: Callable[..., ThreadingSettings], sinks: Sinks
) -> None:
    runtime = build(threading_settings(config_refresh_seconds=0.3))
    async with runtime.app:
        t = Threading(runtime, sinks)
        assert not t.handlers.service_config("support").auto_ack.enabled
        before = await t.file(t.mail(subject="First"))
        assert before["intake"]["auto_answer"] is None

        # An operator switches the acknowledgement on for support, in the collection.
        await t.store.config.update_one({"_id": "support"}, {"$set": {"auto_ack.enabled": True}})

        async def reloaded() -> bool:
            return t.handlers.service_config("support").auto_ack.enabled

        await eventually(reloaded, seconds=10)
        after = await t.file(t.mail(subject="Second"))
        assert after["intake"]["auto_answer"] == "auto_ack"
        [ack] = await t.drain("outbound")
        assert ack["automatic"] is True and ack["to"][0]["address"] == "ann@customer.example"

        # A typo in one service's document keeps that service's last good configuration and
        # leaves the others alone; a new service added meanwhile is picked up.
        await t.store.config.update_one(
            {"_id": "support"}, {"$set": {"thread_id_placement": "nowhere"}}
        )
        await t.store.config.insert_one(
            {"_id": "returns", "sender": {"name": "Returns", "address": "returns@acme.example"}}
        )

        async def returns_known() -> bool:
            return t.handlers.config.known("returns")

        await eventually(returns_known, seconds=10)
        support = t.handlers.service_config("support")
        assert support.auto_ack.enabled and support.thread_id_placement == "subject"
        assert t.handlers.service_config("sales").thread_id_placement == "header"

        # Fixed: followed again.
        await t.store.config.update_one(
            {"_id": "support"}, {"$set": {"thread_id_placement": "header"}}
        )

        async def fixed() -> bool:
            return t.handlers.service_config("support").thread_id_placement == "header"

        await eventually(fixed, seconds=10)

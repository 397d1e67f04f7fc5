"""After masking, automatic or by hand, the masked digits are nowhere.

Against the real stack: a customer writes card numbers in every text form of a mail (the
subject, the text part, only the HTML part, an attachment's name); another writes an account
number the detector cannot know, which the agent masks by hand (subject and text). Then every
collection of every service's database, every GridFS file (its raw bytes and its decoded MIME
parts), the gateway's live journal, every dead letter, every log line and the API answers an
agent, a supervisor or the mail edge's own client get are searched for the digits.
"""

from __future__ import annotations

import email
import email.policy
import json
import urllib.parse
from collections.abc import Iterable

import pytest

from switchboard.app.localstack import Backends, management_call
from tests.security.conftest import Stack, customer_mail, until, until_ok

SUBJECT_CARD = "5555 5555 5555 4444"
TEXT_CARD = "4111 1111 1111 1111"
HTML_ONLY_CARD = "6011-1111-1111-1117"
FILENAME_CARD = "4012888888881881"
ACCOUNT = "9876.5432.1098"  # not a card number: only an agent can know to mask it


def needles(*numbers: str) -> set[str]:
    """The forms a number can be found in: as written, bare digits, and without its last four
    (what masking keeps is not secret)."""
    found: set[str] = set()
    for number in numbers:
        digits = "".join(c for c in number if c.isdigit())
        found |= {number, digits, digits[:-4], number[: len(number) - 4]}
    return {n for n in found if len(n) >= 8}


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    return sorted(s for s in secrets if s in text)


def mime_texts(raw: bytes) -> str:
    """Everything a reader of this MIME message sees: headers, decoded text, file names."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    out = [str(v) for v in parsed.values()]
    for part in parsed.walk():
        out += [str(v) for v in part.values()]
        out.append(str(part.get_filename() or ""))
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                out.append(payload.decode("utf-8", "replace"))
    return "\n".join(out)


async def stored_everywhere(stack: Stack) -> dict[str, str]:
    """Every stored document and file of every service, as text, by where it is."""
    found: dict[str, str] = {}
    for name, runtime in stack.runtimes.items():
        db = runtime.db
        for collection in await db.list_collection_names():
            async for doc in db[collection].find({}):
                where = f"{name}.{collection}/{doc.get('_id')}"
                if collection.endswith(".chunks") and isinstance(doc.get("data"), bytes):
                    data: bytes = doc["data"]
                    found[where] = data.decode("latin-1") + "\n" + mime_texts(data)
                else:
                    found[where] = json.dumps(doc, default=str)
    return found


def dead_letters(real_servers: Backends, amqp_url: str) -> dict[str, str]:
    if real_servers.management_url is None:
        pytest.skip("no RabbitMQ management API to read dead letters")
    vhost = urllib.parse.quote(urllib.parse.urlsplit(amqp_url).path.lstrip("/"), safe="")
    queues = management_call(real_servers.management_url, "GET", f"/api/queues/{vhost}")
    assert isinstance(queues, list)
    found: dict[str, str] = {}
    for queue in queues:
        if not str(queue["name"]).endswith(".dead") or not queue.get("messages"):
            continue
        got = management_call(
            real_servers.management_url,
            "POST",
            f"/api/queues/{vhost}/{urllib.parse.quote(queue['name'], safe='')}/get",
            {"count": 1000, "ackmode": "ack_requeue_true", "encoding": "auto"},
        )
        found[queue["name"]] = json.dumps(got)
    return found


async def test_masked_digits_are_nowhere_after_automatic_and_hand_masking(
    stack: Stack,
    real_servers: Backends,
    amqp_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    await stack.login("alice", "supervisor-1")
    alice, boss = stack.headers["alice"], stack.headers["supervisor-1"]
    ready = await stack.http.post("/me/log-in", json={"initial_state": "ready"}, headers=alice)
    assert ready.status_code == 200, ready.text

    # -- automatic: a card number in every text form ------------------------------------------
    await stack.deliver(
        customer_mail(
            f"Card {SUBJECT_CARD} charged twice",
            f"Hello, my card {TEXT_CARD} was charged twice.",
            html=f"<p>Hello, my card <b>{HTML_ONLY_CARD}</b> was charged twice.</p>",
            attachment=(f"receipt-{FILENAME_CARD}.pdf", b"%PDF-1.4\nreceipt\n%%EOF\n"),
        )
    )

    async def offered_case() -> int | None:
        # the offer routing made to alice, as her live journal holds it
        async for frame in stack.gateway.db["live_frames"].find({"event": "offer.made"}):
            data = json.loads(frame["body"])
            if data.get("agent_id") == "alice" and data["interaction_id"].startswith("case-"):
                accepted = await stack.http.post(
                    f"/offers/{data['offer_id']}/accept", headers=alice
                )
                assert accepted.status_code == 200, accepted.text
                return int(str(data["interaction_id"]).removeprefix("case-").split(".")[0])
        return None

    automatic = await until(offered_case)
    view = (await until_ok(lambda: stack.http.get(f"/cases/{automatic}", headers=alice))).json()
    inbound = next(e for e in view["emails"] if e["direction"] == "inbound")
    assert inbound["subject"].endswith("4444 charged twice")
    assert "1111" in inbound["text"] and inbound["masked"]  # the last four are kept
    assert inbound["attachments"][0]["filename"] == "receipt-************1881.pdf"
    html = await stack.http.get(
        f"/cases/{automatic}/html", params={"email_id": inbound["email_id"]}, headers=alice
    )
    assert html.status_code == 200, html.text  # the HTML is masked, so it is served
    assert "1117" in html.text

    # -- by hand: an account number in the subject and the text --------------------------------
    await stack.deliver(
        customer_mail(
            f"Account {ACCOUNT} closed",
            f"Hello, please close account {ACCOUNT} today.",
            sender="Ben Customer <ben@example.org>",
            html=f"<p>Hello, please close account {ACCOUNT} today.</p>",
        )
    )

    async def second_offer() -> int | None:
        async for frame in stack.gateway.db["live_frames"].find({"event": "offer.made"}):
            data = json.loads(frame["body"])
            if not data["interaction_id"].startswith("case-"):
                continue
            number = int(str(data["interaction_id"]).removeprefix("case-").split(".")[0])
            if data.get("agent_id") == "alice" and number != automatic:
                accepted = await stack.http.post(
                    f"/offers/{data['offer_id']}/accept", headers=alice
                )
                assert accepted.status_code == 200, accepted.text
                return number
        return None

    by_hand = await until(second_offer)
    view = (await until_ok(lambda: stack.http.get(f"/cases/{by_hand}", headers=alice))).json()
    mail = next(e for e in view["emails"] if e["direction"] == "inbound")
    raw_id = None
    edge_mail = (
        await stack.runtimes["ingestion"]
        .db["mails"]
        .find_one({"internet_message_id": mail["message_id"]})
    )
    assert edge_mail is not None
    raw_id = edge_mail["_id"]
    spans = [
        {
            "email_id": mail["email_id"],
            "field": field,
            "start": mail[field].index(ACCOUNT),
            "end": mail[field].index(ACCOUNT) + len(ACCOUNT),
        }
        for field in ("subject", "text")
    ]
    masked = await stack.http.post(f"/cases/{by_hand}/mask", json={"spans": spans}, headers=alice)
    assert masked.status_code == 200, masked.text

    # the mail edge follows: its raw copy and the HTML copy are gone, the fact recorded
    async def raw_gone() -> bool:
        answer = await stack.edge.get("/mail/raw", params={"id": raw_id})
        return answer.status_code == 410

    await until(raw_gone)
    lock = await stack.runtimes["ingestion"].db["locks"].find_one({"_id": f"raw/{raw_id}"})
    assert lock is not None
    assert lock["agent_id"] == "alice" and lock["case_number"] == by_hand and lock["at"]
    assert lock["kind"] == "spans" and lock["destroyed"] is True

    # the gateway's journal drops the masked text of the case's frames (offer.made included)
    async def journal_masked() -> bool:
        async for frame in stack.gateway.db["live_frames"].find({"case_number": by_hand}):
            if ACCOUNT in frame["body"]:
                return False
        return True

    await until(journal_masked)

    # routing forgets the subject it copied into its queue rows
    async def routing_masked() -> bool:
        work = stack.runtimes["routing"].db["work"]
        return not [
            d
            async for d in work.find({"summary.case_number": by_hand})
            if ACCOUNT in json.dumps(d, default=str)
        ]

    await until(routing_masked)

    # -- everything a person or the edge's client can ask -------------------------------------
    answers: dict[str, str] = {}
    for case in (automatic, by_hand):
        for who, headers in (("alice", alice), ("supervisor", boss)):
            for path, params in (
                (f"/cases/{case}", None),
                ("/cases", {"case_number": case}),
            ):
                got = await stack.http.get(path, params=params, headers=headers)
                answers[f"{who} GET {path} {params}"] = got.text
        case_view = (await stack.http.get(f"/cases/{case}", headers=boss)).json()
        for item in case_view["emails"]:
            got = await stack.http.get(
                f"/cases/{case}/html", params={"email_id": item["email_id"]}, headers=boss
            )
            answers[f"GET html {case} {item['email_id']}"] = got.text
            for ref in (item.get("html_ref"), item.get("text_ref")):
                if ref:
                    answers[f"edge blob {ref}"] = (
                        await stack.edge.get("/mail/blobs", params={"id": ref})
                    ).text
            for attachment in item["attachments"]:
                got = await stack.http.get(
                    f"/cases/{case}/attachments/{attachment['attachment_id']}", headers=boss
                )
                answers[f"attachment {attachment['attachment_id']}"] = got.text + str(got.headers)
    async for doc in stack.runtimes["ingestion"].db["mails"].find({}):
        got = await stack.edge.get("/mail/raw", params={"id": doc["_id"]})
        answers[f"edge raw {doc['_id']}"] = got.text + (
            mime_texts(got.content) if got.status_code == 200 else ""
        )
    for path in ("/queues/team", "/queues/personal", "/me/state"):
        answers[f"alice GET {path}"] = (await stack.http.get(path, headers=alice)).text
    answers["supervisor queues"] = (await stack.http.get("/supervisor/queues", headers=boss)).text

    secrets = needles(SUBJECT_CARD, TEXT_CARD, HTML_ONLY_CARD, FILENAME_CARD, ACCOUNT)
    places = {
        **{f"stored {k}": v for k, v in (await stored_everywhere(stack)).items()},
        **{f"answer {k}": v for k, v in answers.items()},
        **{f"dead letter {k}": v for k, v in dead_letters(real_servers, amqp_url).items()},
    }
    captured = capfd.readouterr()
    places["log lines"] = captured.out + captured.err
    found = {where: leaks(text, secrets) for where, text in places.items()}
    found = {where: hits for where, hits in found.items() if hits}
    assert not found, json.dumps(found, indent=1)[:6000]


def test_needles_find_what_they_should() -> None:
    """The search is not blind: an unmasked copy would be found, a masked one not."""
    secrets = needles(TEXT_CARD)
    assert leaks(f"my card {TEXT_CARD}", secrets)
    assert leaks("4111111111111111", secrets)
    assert not leaks("my card **** **** **** 1111", secrets)

"""An agent's email carries only the case's own attachments and the agent's own uploads.

Blob ids are content hashes anyone may learn; before this rule a reply, a follow-up, a forward
or a new outbound email attached whatever stored blob it named: another case's attachment, the
sanitised HTML copy of a mail (a copy masking locks), another agent's upload. Now each such
attachment is refused (403 ``attachment_forbidden``, naming the file) and nothing is sent.
"""

from __future__ import annotations

import email.message
from typing import Any

from tests.security.conftest import Stack, customer_mail, until, until_ok

INVOICE = b"%PDF-1.4\n" + b"alice's customer invoice " * 40 + b"\n%%EOF\n"
OTHER = b"%PDF-1.4\n" + b"another customer's contract " * 40 + b"\n%%EOF\n"


def names(mail: email.message.EmailMessage) -> set[str]:
    return {str(p.get_filename()) for p in mail.walk() if p.get_filename()}


async def test_only_the_cases_attachments_and_own_uploads_leave(stack: Stack) -> None:
    await stack.login("alice", "bruno")
    await stack.deliver(
        customer_mail(
            "Invoice please",
            "Hello, invoice attached.",
            html="<p>Hello, <b>invoice</b> attached.</p>",
            attachment=("invoice.pdf", INVOICE),
        )
    )
    await stack.deliver(
        customer_mail(
            "Contract",
            "Hello, my contract.",
            sender="Carl Other <carl@example.org>",
            attachment=("contract.pdf", OTHER),
        )
    )
    mine = await stack.take_case("alice", "Invoice please")
    theirs = await stack.take_case("bruno", "Contract")
    alice, bruno = stack.headers["alice"], stack.headers["bruno"]

    def inbound(view: dict[str, Any]) -> dict[str, Any]:
        return next(e for e in view["emails"] if e["direction"] == "inbound")

    own_email = inbound((await stack.http.get(f"/cases/{mine}", headers=alice)).json())
    other_email = inbound((await stack.http.get(f"/cases/{theirs}", headers=bruno)).json())
    (own_attachment,) = own_email["attachments"]
    (other_attachment,) = other_email["attachments"]
    html_copy = {
        "attachment_id": own_email["html_ref"],
        "filename": "copy.html",
        "content_type": "text/html",
        "size": 10,
    }

    async def upload(headers: dict[str, str], name: str, body: bytes) -> dict[str, Any]:
        answer = await stack.http.post(
            "/attachments",
            params={"filename": name},
            content=body,
            headers={**headers, "Content-Type": "text/plain"},
        )
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    bruno_upload = await upload(bruno, "bruno-notes.txt", b"bruno's private notes\n" * 5)
    alice_upload = await upload(alice, "refund.txt", b"Your refund is on its way.\n" * 3)

    refused_cases = [
        ("another case's attachment", other_attachment, "contract.pdf"),
        ("the HTML copy of the case's mail", html_copy, "copy.html"),
        ("another agent's upload", bruno_upload, "bruno-notes.txt"),
    ]
    for what, attachment, name in refused_cases:
        for path, body in (
            (f"/cases/{mine}/reply", {"text": "see attached", "finish": False}),
            (f"/cases/{mine}/follow-up", {"text": "see attached"}),
            (
                "/cases",
                {
                    "service": "support",
                    "to": [{"address": "someone@example.com"}],
                    "subject": "Hello",
                    "text": "see attached",
                },
            ),
        ):
            answer = await stack.http.post(
                path, json={**body, "attachments": [attachment]}, headers=alice
            )
            assert answer.status_code == 403, (what, path, answer.text)
            problem = answer.json()
            assert problem["code"] == "attachment_forbidden", (what, path, problem)
            assert problem["field"] == "attachments"
            assert name in problem["detail"], (what, path, problem)
        # a forward carries attachments only through a draft: the draft refuses them
        draft = await stack.http.post(
            f"/cases/{mine}/drafts",
            json={"kind": "forward", "content": {"text": "fyi", "attachments": [attachment]}},
            headers=alice,
        )
        assert draft.status_code == 403, (what, draft.text)
        assert draft.json()["code"] == "attachment_forbidden"
        assert draft.json()["field"] == "content.attachments"

    # the case's own attachment and alice's own upload do leave
    sent = await stack.http.post(
        f"/cases/{mine}/reply",
        json={"text": "Here you are.", "attachments": [own_attachment, alice_upload]},
        headers=alice,
    )
    assert sent.status_code == 200, sent.text

    async def delivered() -> email.message.EmailMessage | None:
        for mail in stack.sink.parsed():
            if "refund.txt" in names(mail):
                return mail
        return None

    mail = await until(delivered)
    assert names(mail) == {"invoice.pdf", "refund.txt"}
    # the refused ones never reached the relay (the accepted reply, sent after them, did)
    everything = set().union(*(names(m) for m in stack.sink.parsed()))
    assert not everything & {"contract.pdf", "copy.html", "bruno-notes.txt"}
    view = await until_ok(lambda: stack.http.get(f"/cases/{mine}", headers=alice))
    by_alice = [e for e in view.json()["emails"] if e.get("agent_id") == "alice"]
    assert [e["kind"] for e in by_alice] == ["reply"], by_alice

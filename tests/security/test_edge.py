"""Issue 16 against the deployed stack (`switchboard run`, every service its own process).

Items: 2 (reply-chain hijack), 5 (service APIs need a credential), 6 (no secret printed),
7 (login throttling, X-Forwarded-For), 8 (bad input: 422, never a stuck message), 9 (header
injection by file name, one address parser, agent HTML sanitised), 10 (RCPT TO limit, never an
automatic answer to ourselves).
"""

from __future__ import annotations

import asyncio
import smtplib
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest

from .deployed import (
    MAX_RECIPIENTS,
    SUPPORT,
    TRUSTED_PROXY,
    Deployed,
    client,
    demo_password,
    demo_passwords,
)

pytestmark = [pytest.mark.timeout(600)]

SERVICE_APIS = [
    ("ingestion", "GET", "/mail/quarantine"),
    ("ingestion", "GET", "/mail/messages?id=x"),
    ("ingestion", "GET", "/mail/raw?id=x"),
    ("ingestion", "GET", "/mail/blobs?id=x"),
    ("ingestion", "POST", "/mail/attachments?filename=a.txt"),
    ("ingestion", "POST", "/mail/messages?mailbox=support@switchboard.local"),
    ("dialer", "POST", "/dialer/imports?campaign_id=x"),
    ("dialer", "GET", "/dialer/imports/status?import_id=x"),
]


# -- 5: every service API needs the service token ------------------------------------------


@pytest.mark.parametrize("token", [None, "Bearer wrong-token", "wrong-token"])
async def test_service_apis_refuse_a_caller_without_the_service_token(
    deployed: Deployed, token: str | None
) -> None:
    headers = {"authorization": token} if token else {}
    async with httpx.AsyncClient(timeout=30) as http:
        for service, method, path in SERVICE_APIS:
            answer = await http.request(
                method, deployed.url(service, path), headers=headers, content=b"x"
            )
            assert answer.status_code == 401, (service, path, answer.status_code, answer.text)
        # probes stay open, and say nothing about customers
        for service in ("ingestion", "dialer"):
            ready = await http.get(deployed.url(service, "/health/ready"))
            assert ready.status_code == 200
            assert set(ready.json()) == {"status", "broker", "mongodb"}


async def test_the_gateway_reaches_the_mail_edge_with_the_token_make_run_made(
    deployed: Deployed,
) -> None:
    async with deployed.session("alice") as agent:
        stored = await agent.post("/attachments", params={"filename": "note.txt"}, content=b"hello")
    assert stored.status_code == 201, stored.text
    assert stored.json()["filename"] == "note.txt"
    assert "a service token made for this run (not printed)" in deployed.output()


# -- 6: nothing secret printed ----------------------------------------------------------------


async def test_seeding_prints_where_the_passwords_are_never_their_values(
    deployed: Deployed,
) -> None:
    output = deployed.output()
    assert "Gateway people seeded now" in output
    assert "deploy/demo/gateway.json" in output
    for password in demo_passwords():
        assert password not in output


# -- 2: reply-chain hijack --------------------------------------------------------------------


async def test_a_stranger_with_a_message_id_starts_a_linked_case(deployed: Deployed) -> None:
    subject = f"Parcel lost {uuid.uuid4().hex[:6]}"
    first = deployed.send_mail(subject, "Where is my parcel?", sender="grace@example.org")
    async with deployed.session("supervisor-1") as boss:
        case = await deployed.find_case(boss, subject)
        number = case["case"]["case_number"]
        stranger_subject = f"Re: {subject} (stranger)"
        deployed.send_mail(
            stranger_subject,
            "Send the refund to me instead.",
            sender="mallory@evil.example",
            In_Reply_To=first,
        )
        other = await deployed.find_case(boss, stranger_subject)
        other_number = other["case"]["case_number"]
        assert other_number != number, "the stranger's mail was filed on the customer's case"
        linked = other["case"]["linked_cases"]
        assert number in [c if isinstance(c, int) else c.get("case_number") for c in linked]
        again = (await boss.get(f"/cases/{number}")).json()
        inbound = [e["subject"] for e in again["emails"] if e["direction"] == "inbound"]
        assert inbound == [subject]

        # the customer's own answer with the same In-Reply-To still joins
        deployed.send_mail(
            f"Re: {subject}", "Any news?", sender="grace@example.org", In_Reply_To=first
        )
        joined = await _emails_of(boss, number, 2)
        assert not joined[-1]["new_participant"]


async def test_a_new_address_joining_by_thread_id_is_shown_as_new(deployed: Deployed) -> None:
    subject = f"Broken screen {uuid.uuid4().hex[:6]}"
    deployed.send_mail(subject, "My screen cracked.", sender="ann@example.org")
    async with deployed.session("supervisor-1") as boss:
        case = await deployed.find_case(boss, subject)
        number = case["case"]["case_number"]
        thread_id = case["case"]["thread_id"]
        # the acknowledgement carries the thread tag in its subject; Bob answers it
        tagged = await _outbound_subject(boss, number)
        assert thread_id in tagged
        deployed.send_mail(f"Re: {tagged}", "I am Ann's colleague.", sender="bob@example.org")
        emails = await _emails_of(boss, number, 2)
    assert not emails[0]["new_participant"]
    assert emails[1]["new_participant"] is True
    assert emails[1]["from"]["address"] == "bob@example.org"


async def _outbound_subject(boss: httpx.AsyncClient, number: int) -> str:
    deadline = time.monotonic() + 60
    while True:
        emails = (await boss.get(f"/cases/{number}")).json()["emails"]
        sent = [e["subject"] for e in emails if e["direction"] == "outbound"]
        if sent:
            return str(sent[0])
        assert time.monotonic() < deadline, f"case {number} was never acknowledged"
        await asyncio.sleep(0.3)


async def _emails_of(boss: httpx.AsyncClient, number: int, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        emails: list[dict[str, Any]] = (await boss.get(f"/cases/{number}")).json()["emails"]
        inbound = [e for e in emails if e["direction"] == "inbound"]
        if len(inbound) >= count:
            return inbound
        assert time.monotonic() < deadline, f"case {number} has {len(inbound)} of {count}"
        await asyncio.sleep(0.3)


# -- 7: login throttling and the client address -----------------------------------------------


async def test_wrong_passwords_never_lock_the_owner_out(deployed: Deployed) -> None:
    wrong = {"login": "bruno", "password": "not-brunos-password"}
    async with client(deployed.url("gateway"), "127.0.0.2") as attacker:
        statuses = [(await attacker.post("/auth/login", json=wrong)).status_code for _ in range(7)]
        assert statuses == [401] * 5 + [429] * 2
        refused = await attacker.post("/auth/login", json=wrong)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 1
        # spoofing X-Forwarded-For from an untrusted peer changes nothing
        spoofed = await attacker.post(
            "/auth/login", json=wrong, headers={"x-forwarded-for": "203.0.113.9"}
        )
        assert spoofed.status_code == 429
    # the owner, at their own desk, logs in at once
    async with deployed.session("bruno", local_address="127.0.0.4") as owner:
        assert (await owner.get("/me")).status_code == 200


async def test_only_a_trusted_proxy_names_the_client(deployed: Deployed) -> None:
    wrong = {"login": "chloe", "password": "not-chloes-password"}
    async with client(deployed.url("gateway"), TRUSTED_PROXY) as proxy:
        seen_by_proxy = {"x-forwarded-for": "198.51.100.7, 127.0.0.99"}
        for _ in range(6):
            await proxy.post("/auth/login", json=wrong, headers=seen_by_proxy)
        refused = await proxy.post("/auth/login", json=wrong, headers=seen_by_proxy)
        assert refused.status_code == 429
        # another client behind the same proxy (the address the proxy saw) is not held up,
        # whatever the client itself wrote further left
        other = await proxy.post(
            "/auth/login",
            json={"login": "chloe", "password": _password("chloe")},
            headers={"x-forwarded-for": "198.51.100.7, 192.0.2.44"},
        )
        assert other.status_code == 200, other.text


def _password(person_id: str) -> str:
    return demo_password(person_id)


# -- 8: bad input answers 422 at once, in the declared shape ----------------------------------


async def test_a_dot_or_dollar_in_a_skill_name_is_422_naming_the_field(
    deployed: Deployed,
) -> None:
    async with deployed.session("supervisor-1") as boss:
        schema = (await boss.get("/openapi.json")).json()
        for skill in ("billing.vip", "$where"):
            started = time.monotonic()
            answer = await boss.post(
                "/supervisor/services",
                json={
                    "service": {"name": "vip", "channel": "email", "required_skills": {skill: 3}}
                },
            )
            assert answer.status_code == 422, answer.text
            assert time.monotonic() - started < 5
            body = answer.json()
            assert body["field"].startswith("service.required_skills"), body
            _conforms(schema, "/supervisor/services", "post", "422", body)


async def test_the_quarantine_list_refuses_a_limit_that_is_no_number(
    deployed: Deployed,
) -> None:
    token = _service_token_of(deployed)
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(
            deployed.url("ingestion", "/mail/quarantine"),
            params={"limit": "abc"},
            headers={"authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 422
    assert answer.json()["field"] == "limit"


def _conforms(schema: dict[str, Any], path: str, method: str, status: str, body: Any) -> None:
    """``body`` matches what the OpenAPI document declares for this answer."""
    declared = schema["paths"][path][method]["responses"][status]
    ref = declared["content"]["application/json"]["schema"]
    validator = jsonschema_rs.Draft202012Validator({"components": schema["components"], **ref})
    errors = list(validator.iter_errors(body))
    assert not errors, [e.message for e in errors]


def _service_token_of(deployed: Deployed) -> str:
    """The token `switchboard run` handed to its services, read from the gateway process's
    environment: a test may look where an operator could."""
    assert deployed.stack.process is not None
    supervisor = str(deployed.stack.process.pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = stat.read_text().rsplit(")", 1)[1].split()[1]
            if parent != supervisor:
                continue
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"SB_SERVICE_TOKEN="):
                return entry.split(b"=", 1)[1].decode()
    raise AssertionError("no service process carries SB_SERVICE_TOKEN")


# -- 9: file names, addresses, agent HTML --------------------------------------------------


async def test_a_line_break_in_an_attachment_name_is_refused(deployed: Deployed) -> None:
    async with deployed.session("alice") as agent:
        upload = await agent.post(
            "/attachments",
            params={"filename": "invoice.pdf\r\nBcc: victim@example.org"},
            content=b"%PDF-1.4",
        )
        assert upload.status_code == 422, upload.text
        assert upload.json()["field"] == "filename"
        reply = await agent.post(
            "/cases",
            json={
                "service": "support",
                "to": [{"address": "grace@example.org"}],
                "subject": "Your invoice",
                "text": "Attached.",
                "attachments": [
                    {
                        "attachment_id": "x" * 64,
                        "filename": "a.pdf\r\nBcc: victim@example.org",
                        "content_type": "application/pdf",
                        "size": 8,
                    }
                ],
            },
        )
        assert reply.status_code == 422, reply.text
        assert "filename" in reply.json()["field"]
    token = _service_token_of(deployed)
    async with httpx.AsyncClient(timeout=30) as http:
        direct = await http.post(
            deployed.url("ingestion", "/mail/attachments"),
            params={"filename": "a.pdf\nBcc: victim@example.org"},
            content=b"x",
            headers={"authorization": f"Bearer {token}"},
        )
    assert direct.status_code == 422


@pytest.mark.parametrize(
    "address",
    ["grace@example.org,mallory@evil.example", "<grace@example.org>", '"a,b"@example.org'],
)
async def test_an_address_that_parsers_could_split_is_refused(
    deployed: Deployed, address: str
) -> None:
    async with deployed.session("alice") as agent:
        answer = await agent.post(
            "/cases",
            json={
                "service": "support",
                "to": [{"name": "Hopper, Grace", "address": address}],
                "subject": "Hello",
                "text": "Hello",
            },
        )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"].startswith("to")


async def test_agent_html_is_sanitised_before_it_is_stored_and_sent(deployed: Deployed) -> None:
    marker = uuid.uuid4().hex[:8]
    async with deployed.session("alice") as agent:
        sent = await agent.post(
            "/cases",
            json={
                "service": "support",
                "to": [{"name": "Hopper, Grace", "address": f"grace-{marker}@example.org"}],
                "subject": f"Your order {marker}",
                "text": "See below.",
                "html": '<p onclick="steal()">Hi</p><script>steal()</script>'
                '<a href="javascript:steal()">x</a>',
            },
        )
        assert sent.status_code in (200, 201, 202), sent.text
    deadline = time.monotonic() + 60
    while not any(marker in str(m["Subject"]) for m in deployed.sink.received):
        assert time.monotonic() < deadline, "the mail never reached the relay"
        await asyncio.sleep(0.3)
    mail = next(m for m in deployed.sink.received if marker in str(m["Subject"]))
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    content = html.get_content()
    assert "<p>Hi</p>" in content
    for bad in ("script", "onclick", "javascript:"):
        assert bad not in content
    # header and envelope name the same one recipient, the display name quoted once
    assert mail["To"].addresses[0].addr_spec == f"grace-{marker}@example.org"
    assert mail["To"].addresses[0].display_name == "Hopper, Grace"


# -- 10: SMTP recipients, automatic answers -------------------------------------------------


async def test_smtp_answers_452_past_the_recipient_limit(deployed: Deployed) -> None:
    def transaction() -> list[int]:
        codes = []
        with smtplib.SMTP("127.0.0.1", deployed.stack.smtp_port, timeout=30) as smtp:
            smtp.ehlo()
            smtp.mail("grace@example.org")
            for _ in range(MAX_RECIPIENTS + 2):
                codes.append(smtp.rcpt(SUPPORT)[0])
            smtp.rset()
        return codes

    codes = await asyncio.to_thread(transaction)
    assert codes == [250] * MAX_RECIPIENTS + [452, 452]


async def test_no_automatic_answer_to_our_own_address(deployed: Deployed) -> None:
    subject = f"Loop {uuid.uuid4().hex[:6]}"
    deployed.send_mail(subject, "From ourselves.", sender=SUPPORT)
    async with deployed.session("supervisor-1") as boss:
        case = await deployed.find_case(boss, subject)
    email = case["emails"][0]
    assert email["intake"]["auto_answer"] is None
    # a customer's mail of the same kind is answered (the rule is not simply off)
    customer_subject = f"Hello {uuid.uuid4().hex[:6]}"
    deployed.send_mail(customer_subject, "Hi.", sender=f"dan-{uuid.uuid4().hex[:4]}@example.org")
    async with deployed.session("supervisor-1") as boss:
        answered = await deployed.find_case(boss, customer_subject)
    assert answered["emails"][0]["intake"]["auto_answer"] == "auto_ack"
    assert not any(SUPPORT in str(m["To"]) for m in deployed.sink.received)

"""Who may see and act on what (docs/security.md): one table, every route x role x relation.

The rule (``switchboard.threading.access``): a supervisor sees and acts on every case; an agent
acts on the case they hold, and sees the cases they hold or worked and the cases of their
services. Against the real stack: alice holds a support case, bruno is in the support team
(same service), dmitri only in sales (another service), supervisor-1 is a supervisor.

Every route that names a case number, a thread identifier, an email, an attachment (blob) or a
record is in the table. A route the person may use is asked something that passes the
authorisation and is then refused for its content (an email id that is not there, an unknown
disposition ...), so the table changes nothing and still shows who got past the door.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import httpx

from switchboard.dialer.domain import record_id_for

from .conftest import Stack, customer_mail, until_ok

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
REFUSED_CODES = {"not_assigned", "not_yours", "not_held"}

Relation = Literal["holder", "same service", "other service", "supervisor"]
PEOPLE: dict[Relation, str] = {
    "holder": "alice",
    "same service": "bruno",
    "other service": "dmitri",
    "supervisor": "supervisor-1",
}
SEE: set[Relation] = {"holder", "same service", "supervisor"}
ACT: set[Relation] = {"holder", "supervisor"}


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    allowed: set[Relation]
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    ok: int | None = 200
    """The status of an allowed call (None: any refusal of the content, never 401/403)."""


def routes(case: int, email_id: str, attachment_id: str, thread_id: str) -> list[Route]:
    nothing = "no-such-email@example.com"
    return [
        # -- seeing: the case, its emails, attachments and HTML, found by number or thread id
        Route("thread view", "GET", f"/cases/{case}", SEE),
        Route("look up by number", "GET", "/cases", SEE, params={"case_number": case}),
        Route("look up by thread id", "GET", "/cases", SEE, params={"thread_id": thread_id}),
        Route("contact history of the case", "GET", f"/cases/{case}/history", SEE),
        Route("attachment (blob id)", "GET", f"/cases/{case}/attachments/{attachment_id}", SEE),
        Route("HTML (email id)", "GET", f"/cases/{case}/html", SEE, params={"email_id": email_id}),
        Route(
            "new outbound linked to the case",
            "POST",
            "/cases",
            SEE,
            json={
                "service": "support",
                "to": [{"address": "someone@example.com"}],
                "subject": "About your case",
                "text": "Hello",
                "template_id": "no-such-template",
                "linked_case_number": case,
            },
            ok=None,
        ),
        # -- acting: only the holder (and supervisors)
        Route(
            "reply",
            "POST",
            f"/cases/{case}/reply",
            ACT,
            json={"text": "x", "reply_to_email_id": nothing},
            ok=None,
        ),
        Route(
            "forward",
            "POST",
            f"/cases/{case}/forward",
            ACT,
            json={"to": [{"address": "x@example.com"}], "email_id": nothing},
            ok=None,
        ),
        Route(
            "follow-up",
            "POST",
            f"/cases/{case}/follow-up",
            ACT,
            json={"text": "x", "draft_id": "no-such-draft"},
            ok=None,
        ),
        Route(
            "save draft",
            "POST",
            f"/cases/{case}/drafts",
            ACT,
            json={"reply_to_email_id": nothing},
            ok=None,
        ),
        Route("change draft", "PUT", f"/cases/{case}/drafts/no-such-draft", ACT, json={}, ok=None),
        Route("discard draft", "DELETE", f"/cases/{case}/drafts/no-such-draft", ACT, ok=None),
        Route(
            "close",
            "POST",
            f"/cases/{case}/close",
            ACT,
            json={"disposition": "no-such-disposition"},
            ok=None,
        ),
        Route(
            "transfer",
            "POST",
            f"/cases/{case}/transfer",
            ACT,
            json={"to_service": "no-such-service"},
            ok=None,
        ),
        Route(
            "change service",
            "POST",
            f"/cases/{case}/service",
            ACT,
            json={"service": "no-such-service"},
            ok=None,
        ),
        Route(
            "mask",
            "POST",
            f"/cases/{case}/mask",
            ACT,
            json={"spans": [{"email_id": nothing, "start": 0, "end": 1}]},
            ok=None,
        ),
        Route(
            "disposition",
            "POST",
            f"/cases/{case}/disposition",
            ACT,
            json={"disposition": "no-such-disposition"},
            ok=None,
        ),
        Route(
            "work status",
            "POST",
            f"/cases/{case}/status",
            ACT,
            json={"status": "no-such-status"},
            ok=None,
        ),
        Route(
            "note",
            "POST",
            f"/cases/{case}/notes",
            ACT,
            json={"text": "x", "email_id": nothing},
            ok=None,
        ),
    ]


async def call(stack: Stack, route: Route, person: str) -> httpx.Response:
    return await stack.http.request(
        route.method,
        route.path,
        json=route.json,
        params=route.params,
        headers=stack.headers[person],
    )


def verdict(route: Route, relation: Relation, answer: httpx.Response) -> str | None:
    """What is wrong with this answer (None when it is what the rule says)."""
    is_json = answer.headers.get("content-type", "").startswith("application/json")
    body = answer.json() if is_json else None
    code = body.get("code") if isinstance(body, dict) else None
    if relation in route.allowed:
        if route.ok is not None and answer.status_code != route.ok:
            return f"expected {route.ok}, got {answer.status_code} {answer.text[:200]}"
        if answer.status_code in (401, 403) or answer.status_code >= 500 or code in REFUSED_CODES:
            return f"allowed but refused: {answer.status_code} {answer.text[:200]}"
        return None
    if answer.status_code != 403 or code not in REFUSED_CODES:
        return f"expected 403 (not yours), got {answer.status_code} {answer.text[:200]}"
    return None


async def test_every_case_route_for_every_role_and_relation(stack: Stack) -> None:
    await stack.login(*PEOPLE.values())
    await stack.deliver(
        customer_mail(
            "Invoice question",
            "Hello, my invoice is attached.",
            html="<p>Hello, my <b>invoice</b> is attached.</p>",
            attachment=("invoice.pdf", PDF),
        )
    )
    case = await stack.take_case("alice", "Invoice question")
    alice = stack.headers["alice"]
    # a reply that keeps the case in alice's hands gives it a thread identifier
    replied = await stack.http.post(
        f"/cases/{case}/reply", json={"text": "We are looking.", "finish": False}, headers=alice
    )
    assert replied.status_code == 200, replied.text
    view = (await until_ok(lambda: stack.http.get(f"/cases/{case}", headers=alice))).json()
    inbound = next(e for e in view["emails"] if e["direction"] == "inbound")
    thread_id = view["case"]["thread_id"]
    assert thread_id

    table = routes(case, inbound["email_id"], inbound["attachments"][0]["attachment_id"], thread_id)
    wrong: list[str] = []
    for route in table:
        for relation, person in PEOPLE.items():
            answer = await call(stack, route, person)
            problem = verdict(route, relation, answer)
            if problem:
                wrong.append(f"{route.name} as {relation} ({person}): {problem}")
    assert not wrong, "\n".join(wrong)

    # what a person finds by search is what they may see (the same rule, as a query)
    for relation, person in PEOPLE.items():
        for params in ({"case_number": case}, {"text": "invoice attached"}):
            found = await stack.http.get(
                "/cases/search", params=params, headers=stack.headers[person]
            )
            assert found.status_code == 200, found.text
            numbers = [row["case_number"] for row in found.json()["cases"]]
            if relation in SEE:
                assert case in numbers, (relation, params, numbers)
            else:
                assert case not in numbers, (relation, params, numbers)

    # nothing in the table changed the case: still alice's, one reply, no link
    after = (await stack.http.get(f"/cases/{case}", headers=alice)).json()
    assert after["case"]["interaction_state"] == "assigned"
    assert after["case"]["linked_cases"] == []
    assert len(after["emails"]) == len(view["emails"])


async def test_a_record_is_seen_by_supervisors_and_refused_to_agents_not_offered_it(
    stack: Stack,
) -> None:
    await stack.login("alice", "dmitri", "supervisor-1")
    campaign = await until_ok(
        lambda: stack.http.get(
            "/supervisor/campaigns/spring-renewals", headers=stack.headers["supervisor-1"]
        )
    )
    assert campaign.status_code == 200
    record_id = record_id_for("spring-renewals", "CUST-1001")
    seen = await until_ok(
        lambda: stack.http.get(f"/records/{record_id}", headers=stack.headers["supervisor-1"])
    )
    assert seen.json()["record_id"] == record_id
    assert seen.json()["customer"] == "Ada Lovelace"
    for agent in ("alice", "dmitri"):
        refused = await stack.http.get(f"/records/{record_id}", headers=stack.headers[agent])
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "not_held"

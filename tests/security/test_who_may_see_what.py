"""Who may see and act on what (docs/security.md): one table, every route x role x relation.

The rule (``switchboard.threading.access``): a supervisor sees and acts on every case; an agent
acts on the case they hold, and sees the cases they hold or worked and the cases of their
services. Against the real stack: alice holds a support case, bruno is in the support team
(same service), dmitri only in sales (another service), supervisor-1 is a supervisor.

Every route that names a case number, a thread identifier, an email, an attachment (blob) or a
record is in the table. A route the person may use is asked something that passes the
authorisation and is then refused for its content (an email id that is not there, an unknown
disposition ...), so the table changes nothing and still shows who got past the door.

Someone who may see a case (or record) but not act on it gets 403 (not yours); someone who may
not even see it gets exactly the answer of a case (record) that does not exist, so an id does
not tell that it exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from switchboard.dialer.domain import record_id_for
from tests.gateway.conftest import DEMO

from .conftest import Stack, customer_mail, until, until_ok

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
REFUSED_CODES = {"not_assigned", "not_yours", "not_held"}
HIDDEN_CODES = {"no_such_case", "unknown_record"}

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


def _problem(answer: httpx.Response) -> dict[str, Any]:
    is_json = answer.headers.get("content-type", "").startswith("application/json")
    body = answer.json() if is_json else None
    return body if isinstance(body, dict) else {}


def verdict(
    route: Route,
    relation: str,
    answer: httpx.Response,
    hidden: httpx.Response,
    sees: set[Any],
    named: str,
    missing: str,
) -> str | None:
    """What is wrong with this answer (None when it is what the rule says). ``hidden`` is the
    same request naming a ``missing`` id instead of ``named``: what someone who may not see the
    thing must get, word for word."""
    code = _problem(answer).get("code")
    if relation in route.allowed:
        if route.ok is not None and answer.status_code != route.ok:
            return f"expected {route.ok}, got {answer.status_code} {answer.text[:200]}"
        if answer.status_code in (401, 403) or answer.status_code >= 500 or code in REFUSED_CODES:
            return f"allowed but refused: {answer.status_code} {answer.text[:200]}"
        if code in HIDDEN_CODES:
            return f"allowed but told it is not there: {answer.text[:200]}"
        return None
    if relation in sees:
        if answer.status_code != 403 or code not in REFUSED_CODES:
            return f"expected 403 (not yours), got {answer.status_code} {answer.text[:200]}"
        return None
    expected = _problem(hidden)
    got = _problem(answer)
    # 404 for the id in the path or query; 422 for a case named in the body (the link)
    if answer.status_code != hidden.status_code or hidden.status_code not in (404, 422):
        return (
            f"expected {hidden.status_code} like an unknown id, got {answer.status_code}"
            f" {answer.text[:200]}"
        )
    if str(expected.get("detail", "")).replace(missing, named) != got.get("detail") or (
        expected.get("code"),
        expected.get("field"),
    ) != (got.get("code"), got.get("field")):
        return f"answer differs from an unknown id's: {answer.text[:200]} vs {hidden.text[:200]}"
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

    ids = (inbound["email_id"], inbound["attachments"][0]["attachment_id"])
    table = routes(case, *ids, thread_id)
    missing = case + 1_000_000  # no such case: what a person who may not see one must get
    # a thread identifier of ours that names no case (words of threading's lookup)
    unknown_thread = httpx.Response(
        404,
        json={"detail": "no case has this thread identifier", "code": "no_such_case"}
        | {"field": "thread_id"},
    )
    wrong: list[str] = []
    for route, hidden_route in zip(table, routes(missing, *ids, thread_id), strict=True):
        for relation, person in PEOPLE.items():
            answer = await call(stack, route, person)
            hidden = await call(stack, hidden_route, person)
            named, absent = str(case), str(missing)
            if route.name == "look up by thread id":  # its unknown: a thread id not of ours
                hidden, named, absent = unknown_thread, "", ""
            problem = verdict(route, relation, answer, hidden, SEE, named, absent)
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


def record_routes(record_id: str) -> list[Route]:
    """Every record route. The holder's calls are refused for their content (no call made yet,
    an unknown disposition, a time in the past, a number that is none), so nothing changes."""
    agent_acts = {"holder"}
    return [
        Route("preview", "GET", f"/records/{record_id}", {"holder", "supervisor"}),
        Route("accept", "POST", f"/records/{record_id}/accept", agent_acts, json={}),
        Route("reject", "POST", f"/records/{record_id}/reject", set(), json={"reason": "x"}),
        Route(
            "call",
            "POST",
            f"/records/{record_id}/call",
            agent_acts,
            json={"number": "not a number"},
            ok=None,
        ),
        Route(
            "disposition",
            "POST",
            f"/records/{record_id}/disposition",
            agent_acts,
            json={"disposition": "Renewed", "note": "x"},
            ok=None,
        ),
        Route(
            "reschedule",
            "POST",
            f"/records/{record_id}/reschedule",
            agent_acts,
            json={"at": "2001-01-01T00:00:00Z", "note": "x"},
            ok=None,
        ),
        Route(
            "complete",
            "POST",
            f"/records/{record_id}/complete",
            agent_acts,
            json={"disposition": "no-such-disposition"},
            ok=None,
        ),
        Route("skip", "POST", f"/records/{record_id}/skip", agent_acts, json={"reason": "x"}),
    ]


RECORD_PEOPLE = {"holder": "alice", "other agent": "dmitri", "supervisor": "supervisor-1"}


async def test_every_record_route_for_the_holder_another_agent_and_a_supervisor(
    stack: Stack,
) -> None:
    """A preview record is the agent's only while offered to or held by them: another agent
    is told it does not exist; a supervisor sees it but may not act on it."""
    await stack.login(*RECORD_PEOPLE.values())
    boss = stack.headers["supervisor-1"]
    spec = json.loads((DEMO / "dialer.json").read_text())["campaigns"][0]["campaign"]
    every_hour = {"start": "00:00", "end": "23:59"}
    spec |= {"calling_hours": every_hour, "active": True, "number_rules": []}
    updated = await stack.http.put(
        "/supervisor/campaigns/spring-renewals", json={"campaign": spec}, headers=boss
    )
    assert updated.status_code == 200, updated.text
    logged = await stack.http.post(
        "/me/log-in", json={"initial_state": "ready"}, headers=stack.headers["alice"]
    )
    assert logged.status_code == 200, logged.text
    ids = [record_id_for("spring-renewals", f"CUST-100{n}") for n in range(1, 7)]

    async def offered_to_alice() -> str | None:
        for record_id in ids:
            seen = await stack.http.get(f"/records/{record_id}", headers=boss)
            if seen.status_code == 200 and seen.json()["state"] == "offered":
                return record_id
        return None

    record_id = await until(offered_to_alice)
    # offered: alice sees it, another agent is told there is no such record
    offered = await stack.http.get(f"/records/{record_id}", headers=stack.headers["alice"])
    assert offered.status_code == 200, offered.text
    stranger = await stack.http.get(f"/records/{record_id}", headers=stack.headers["dmitri"])
    assert stranger.status_code == 404, stranger.text
    accepted = await stack.http.post(
        f"/records/{record_id}/accept", json={}, headers=stack.headers["alice"]
    )
    assert accepted.status_code == 200, accepted.text

    async def held() -> bool:
        seen = await stack.http.get(f"/records/{record_id}", headers=boss)
        return seen.status_code == 200 and seen.json()["state"] == "held"

    await until(held)
    missing = record_id_for("spring-renewals", "NO-SUCH-CUSTOMER")
    wrong: list[str] = []
    for route, hidden_route in zip(record_routes(record_id), record_routes(missing), strict=True):
        for relation, person in RECORD_PEOPLE.items():
            if route.name == "skip" and relation == "holder":
                continue  # skipping changes the record: the holder skips last, below
            answer = await call(stack, route, person)
            hidden = await call(stack, hidden_route, person)
            problem = verdict(
                route, relation, answer, hidden, {"holder", "supervisor"}, record_id, missing
            )
            if problem:
                wrong.append(f"{route.name} as {relation} ({person}): {problem}")
    assert not wrong, "\n".join(wrong)

    preview = (await stack.http.get(f"/records/{record_id}", headers=boss)).json()
    assert preview["state"] == "held" and preview["attempts"] == [], preview
    assert [h["kind"] for h in preview["history"]] == [
        h["kind"] for h in offered.json()["history"]
    ], "a refused command changed the record's history"
    skipped = await stack.http.post(
        f"/records/{record_id}/skip", json={"reason": "x"}, headers=stack.headers["alice"]
    )
    assert skipped.status_code == 200, skipped.text
    # handed back: no longer alice's to see
    gone = await stack.http.get(f"/records/{record_id}", headers=stack.headers["alice"])
    assert gone.status_code == 404, gone.text

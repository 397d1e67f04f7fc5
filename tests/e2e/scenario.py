"""The scripted demo: a customer's email conversation and a preview record, end to end.

Run by `make demo` (it starts the whole stack, prints a readable transcript, stops it) and by
tests/e2e/test_scenario.py, which asserts on what the transcript shows. Everything goes through
the real edges: SMTP in, the gateway's HTTP API and live stream, SMTP out to a local sink.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).parent))
from stack import REPO, SmtpSink, Stack

CAMPAIGN_FILE = Path(__file__).parent / "campaign.json"
SUPPORT = "support@switchboard.local"
CUSTOMER = "grace@example.org"
CARD_NUMBER = "4111 1111 1111 1111"
"""A test card number the customer writes: it must never reach a log."""
SECRETS_USED: set[str] = {CARD_NUMBER, CARD_NUMBER.replace(" ", "")}
"""Every password, token and card number the scenario used (the log search looks for each)."""


def demo_login(person_id: str) -> tuple[str, str]:
    people = json.loads((REPO / "deploy" / "demo" / "gateway.json").read_text())
    for person in people.get("people", people if isinstance(people, list) else []):
        if person.get("id") == person_id or person.get("person_id") == person_id:
            return person.get("login", person_id), person["password"]
    raise LookupError(f"{person_id} is not in deploy/demo/gateway.json")


@dataclass
class Agent:
    """One agent at their desktop: an API session and a live stream."""

    stack: Stack
    person_id: str
    say: Callable[[str], None]
    http: httpx.AsyncClient = field(init=False)
    frames: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    backlog: list[dict[str, Any]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _socket: Any = None

    async def log_in(self) -> None:
        login, password = demo_login(self.person_id)
        self.http = httpx.AsyncClient(base_url=self.stack.url("gateway"), timeout=30)
        answer = await self.http.post("/auth/login", json={"login": login, "password": password})
        answer.raise_for_status()
        token = answer.json()["token"]
        SECRETS_USED.update({password, token})
        self.http.headers["authorization"] = f"Bearer {token}"
        self._socket = await websockets.connect(
            self.stack.url("gateway", "/me/live").replace("http", "ws"),
            additional_headers={"Authorization": f"Bearer {token}"},
        )
        self._reader = asyncio.create_task(self._read())
        await self.call("POST", "/me/log-in")
        await self.call("POST", "/me/ready")
        self.say(f"{self.person_id} logs in and makes themselves Ready")

    async def _read(self) -> None:
        async for raw in self._socket:
            await self.frames.put(json.loads(raw))

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if body is None and method != "GET":
            body = {}
        answer = await self.http.request(method, path, json=body)
        if answer.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {answer.status_code}: {answer.text}")
        return answer.json() if answer.content else None

    async def next_event(
        self,
        name: str,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
        seconds: float = 60,
    ) -> dict[str, Any]:
        def matches(frame: dict[str, Any]) -> bool:
            return frame.get("event") == name and where(frame.get("data", {}))

        for frame in self.backlog:
            if matches(frame):
                self.backlog.remove(frame)
                return dict(frame["data"])
        async with asyncio.timeout(seconds):
            while True:
                frame = await self.frames.get()
                if matches(frame):
                    return dict(frame["data"])
                self.backlog.append(frame)

    async def state(self) -> str:
        answer = await self.call("GET", "/me/state")
        agents = answer.get("agents", answer.get("result", {}).get("agents", []))
        return str(agents[0]["state"]) if agents else "unknown"

    async def becomes(self, state: str, seconds: float = 30) -> str:
        """The state the live stream announces next (agent-state moves the agent a moment after
        routing assigns the work)."""
        if await self.state() == state:
            return state
        changed = await self.next_event(
            "agent.state_changed", lambda d: d.get("state") == state, seconds
        )
        return str(changed["state"])

    async def work_ended(self, seconds: float = 30) -> str:
        """Wait until the finished work has left the agent Busy; wrap-up is ended at once."""
        for _ in range(int(seconds / 0.2)):
            state = await self.state()
            if state != "busy":
                break
            await asyncio.sleep(0.2)
        else:
            raise TimeoutError(f"{self.person_id} still busy after {seconds} s")
        if state == "wrap_up":
            self.say(f"{self.person_id} is in wrap-up and makes themselves Ready")
            await self.call("POST", "/me/ready")
        return state

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader:
            self._reader.cancel()
        await self.http.aclose()


def send_customer_mail(stack: Stack, subject: str, text: str, **headers: str) -> str:
    message = EmailMessage()
    message["From"] = f"Grace Hopper <{CUSTOMER}>"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        smtp.send_message(message)
    return str(message["Message-ID"])


async def run_scenario(stack: Stack, sink: SmtpSink, say: Callable[[str], None]) -> dict[str, Any]:
    """Play the scenario; returns what a test checks."""
    seen: dict[str, Any] = {}
    alice = Agent(stack, "alice", say)
    await alice.log_in()
    try:
        await _email_conversation(stack, sink, alice, say, seen)
        await _supervisor_starts_campaign(stack, say)
        await _preview_record(alice, say, seen)
    finally:
        await alice.close()
    return seen


async def _email_conversation(
    stack: Stack, sink: SmtpSink, alice: Agent, say: Callable[[str], None], seen: dict[str, Any]
) -> None:
    """A customer writes in, alice replies, the customer answers, the case is closed."""
    first_id = send_customer_mail(
        stack,
        "My invoice is wrong",
        f"Hello, invoice 2026-113 charges me twice on my card {CARD_NUMBER}. Grace",
    )
    say(f"Grace mails {SUPPORT} over SMTP: 'My invoice is wrong' ({first_id})")
    offer = await alice.next_event("offer.made", lambda d: d.get("channel") == "email")
    case_number = int(offer["summary"]["case_number"])
    seen["case_number"] = case_number
    say(f"case {case_number} created; offered to alice ({offer['offer_id']})")
    await alice.call("POST", f"/offers/{offer['offer_id']}/accept")
    seen["state_after_accept"] = await alice.becomes("busy")
    say(f"alice accepts; her state is now {seen['state_after_accept']}")
    thread = await alice.call("GET", f"/cases/{case_number}")
    first = thread["emails"][0]
    say(
        f"thread view: From {first['from']} | When {first.get('when')} "
        f"| Subject {first['subject']!r}"
    )

    await alice.call(
        "POST",
        f"/cases/{case_number}/reply",
        {
            "text": "Dear Grace, we refunded the double charge.",
            "template_id": "signature",
            "finish": True,
        },
    )
    reply = (await _mail_to(sink, CUSTOMER, lambda m: "refunded" in _text(m)))[0]
    seen["reply_subject"] = str(reply["Subject"])
    seen["reply_text"] = _text(reply)
    say(f"the reply reaches the customer's mail server: Subject {reply['Subject']!r}")
    await alice.work_ended()

    send_customer_mail(
        stack,
        f"Re: {reply['Subject']}",
        "Thank you, the refund arrived. Grace",
        In_Reply_To=str(reply["Message-ID"]),
        References=str(reply["Message-ID"]),
    )
    say("Grace answers the reply")
    offer = await alice.next_event("offer.made", lambda d: d.get("channel") == "email")
    seen["answer_case_number"] = int(offer["summary"]["case_number"])
    seen["answer_agent"] = offer["agent_id"]
    say(f"the answer joins case {offer['summary']['case_number']}, offered to {offer['agent_id']}")
    await alice.call("POST", f"/offers/{offer['offer_id']}/accept")
    await alice.becomes("busy")
    await alice.call(
        "POST",
        f"/cases/{case_number}/disposition",
        {"disposition": "Customer confirmed", "finish": True},
    )
    thread = await alice.call("GET", f"/cases/{case_number}")
    seen["case_status"] = thread["case"]["status"] if "case" in thread else thread["status"]
    seen["emails_in_case"] = len(thread["emails"])
    say(f"final disposition 'Customer confirmed': case {case_number} is {seen['case_status']}")
    await alice.work_ended()


async def _supervisor_starts_campaign(stack: Stack, say: Callable[[str], None]) -> None:
    """The demo campaign is loaded inactive; a supervisor switches it on."""
    login, password = demo_login("supervisor-1")
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as http:
        answer = await http.post("/auth/login", json={"login": login, "password": password})
        answer.raise_for_status()
        SECRETS_USED.update({password, answer.json()["token"]})
        http.headers["authorization"] = f"Bearer {answer.json()['token']}"
        campaign = json.loads(CAMPAIGN_FILE.read_text())["campaigns"][0]
        spec = {**campaign["campaign"], "active": True}
        answer = await http.put(
            f"/supervisor/campaigns/{campaign['campaign_id']}", json={"campaign": spec}
        )
        if answer.status_code >= 400:
            raise AssertionError(f"activating the campaign -> {answer.status_code}: {answer.text}")
    say(f"the supervisor starts the campaign '{spec['name']}'")


async def _preview_record(alice: Agent, say: Callable[[str], None], seen: dict[str, Any]) -> None:
    """A preview record: previewed, skipped, offered again, called, completed."""
    offer = await alice.next_event("offer.made", lambda d: d.get("channel") == "preview")
    record_id = str(offer["summary"]["record_id"])
    say(f"preview: {offer['summary']['customer']} of {offer['summary']['campaign']}")
    await alice.call("POST", f"/offers/{offer['offer_id']}/accept")
    record = await alice.call("GET", f"/records/{record_id}")
    say(f"alice reviews the record ({await alice.state()}); numbers: {_numbers(record)}")
    await alice.call("POST", f"/records/{record_id}/skip", {"reason": "not now"})
    say("alice skips it; the record is put back for later")
    offer = await alice.next_event(
        "offer.made", lambda d: d.get("summary", {}).get("record_id") == record_id
    )
    seen["offered_again"] = True
    say("the same record is offered again")
    await alice.call("POST", f"/offers/{offer['offer_id']}/accept")
    call = await alice.call("POST", f"/records/{record_id}/call", {})
    say(f"alice calls the recommended number: {call}")
    await alice.call("POST", f"/records/{record_id}/disposition", {"disposition": "Renewed"})
    done = await alice.call("POST", f"/records/{record_id}/complete", {"disposition": "Renewed"})
    seen["record_state"] = done.get("state")
    seen["record_disposition"] = done.get("disposition")
    seen["agent_state_after_record"] = await alice.work_ended()
    say(f"record completed ({seen['record_state']}); alice is {seen['agent_state_after_record']}")


def _text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return body.get_content() if body is not None else ""


def _numbers(record: dict[str, Any]) -> str:
    phones = record.get("numbers") or record.get("phones") or []
    return ", ".join(
        f"{p.get('number')}{' (recommended)' if p.get('recommended') else ''}" for p in phones
    )


async def _mail_to(
    sink: SmtpSink, address: str, wanted: Callable[[EmailMessage], bool], seconds: float = 60
) -> list[EmailMessage]:
    async with asyncio.timeout(seconds):
        while True:
            found = [m for m in sink.received if address in str(m["To"]) and wanted(m)]
            if found:
                return found
            await asyncio.sleep(0.2)


async def main() -> int:
    from switchboard.app.localstack import backends, management_call

    sink = SmtpSink()
    sink.start()
    with backends(REPO / ".local", use_containers=False) as found:
        # A virtual host of its own, so a `make run` on this machine is not disturbed.
        vhost = f"demo-{uuid.uuid4().hex[:6]}"
        if found.management_url:
            management_call(found.management_url, "PUT", f"/api/vhosts/{vhost}")
            user = found.amqp_url.split("://", 1)[1].split(":", 1)[0]
            management_call(
                found.management_url,
                "PUT",
                f"/api/permissions/{vhost}/{user}",
                {"configure": ".*", "write": ".*", "read": ".*"},
            )
        stack = Stack(
            amqp_url=found.vhost_url(vhost) if found.management_url else found.amqp_url,
            mongodb_url=found.mongodb_url,
            database_prefix=f"demo{uuid.uuid4().hex[:6]}",
            relay_port=sink.port,
            log_path=REPO / ".local" / "demo" / "stack.log",
            extra_env={"SB_CAMPAIGNS_FILE": str(CAMPAIGN_FILE)},
        )
        print("starting every service as its own process ...", flush=True)
        stack.start()
        try:
            await run_scenario(stack, sink, lambda line: print(f"  * {line}", flush=True))
        finally:
            stack.stop()
            sink.stop()
            if found.management_url:
                management_call(found.management_url, "DELETE", f"/api/vhosts/{vhost}")
    print(f"done; the services' logs are in {stack.log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

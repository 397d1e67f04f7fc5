"""Agents at their desktops during a fault-injection run: the gateway's API and live stream only.

Each agent logs in once, keeps its live stream open (reconnecting with ``?since=`` after the
gateway or the broker went away, as a desktop does), makes itself Ready, accepts every offer
it is made and closes the case with a final disposition. What it saw is written down for the
checks: offers (with the time each was open), assignments won, and every time it found itself in
a state it did not ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import websockets
from stack import Stack

RETRY_FOR_SECONDS = 180.0
RECONNECT_PAUSES = (0.25, 0.5, 1.0, 2.0, 5.0)
"""How long a desk waits before opening its live stream again, after each failure in a row
(paces reconnections while the gateway is down; a stream that worked starts over)."""
STATE_BACKSTOP_SECONDS = 10.0
"""Read the agent's state even without news from the stream (frames lost while it was down)."""


@dataclass
class Offer:
    offer_id: str
    interaction_id: str
    agent_id: str
    made_at: float
    case_number: int | None
    closed_at: float | None = None
    accepted: bool = False
    delay: float | None = None
    """Seconds from the offer's ``occurred_at`` (routing made it) to its frame on this desk."""
    refusal: str = ""
    """What the gateway answered an accept that was refused (e.g. the offer had timed out)."""


@dataclass
class Desk:
    """Everything the agents saw, shared by all of them (one event loop)."""

    offers: dict[str, Offer] = field(default_factory=dict)
    assigned: list[tuple[str, str]] = field(default_factory=list)
    """(interaction id, agent id) of every accept the gateway answered with success."""
    surprises: list[str] = field(default_factory=list)
    """States an agent found itself in without asking (connection lost, logged out, ...)."""
    disposed: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def offer_times(self) -> list[float]:
        return sorted(o.made_at for o in self.offers.values())


def _since(occurred_at: Any) -> float | None:
    """Seconds since an event's ``occurred_at`` (ISO 8601), by this machine's clock."""
    try:
        return time.time() - datetime.fromisoformat(str(occurred_at)).timestamp()
    except ValueError:
        return None


class ChaosAgent:
    def __init__(self, stack: Stack, person_id: str, password: str, desk: Desk) -> None:
        self.stack = stack
        self.person_id = person_id
        self._password = password
        self.desk = desk
        self._http = httpx.AsyncClient(base_url=stack.url("gateway"), timeout=15)
        self._token = ""
        self._last_seq: int | None = None
        self._working: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._state_news = asyncio.Event()
        """Set by a state frame of this agent on the live stream: time to look at the state."""
        self._failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        await self._retrying(self._log_in)
        await self._retrying(lambda: self._call("POST", "/me/log-in"))
        await self._retrying(lambda: self._call("POST", "/me/ready"))
        keeper = asyncio.create_task(self._keep_ready(stop))
        try:
            while not stop.is_set():
                try:
                    await self._stream(stop)
                except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                    if stop.is_set():
                        break
                    if "4401" in str(exc):
                        await self._retrying(self._log_in)
                    await self._reconnect_pause()
                except Exception as exc:  # a frame this desk did not understand: keep working
                    self.desk.errors.append(f"{self.person_id}: live stream: {exc!r}")
                    await self._reconnect_pause()
        finally:
            keeper.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(keeper, *self._tasks, return_exceptions=True)
            await self._http.aclose()

    async def _log_in(self) -> None:
        answer = await self._http.post(
            "/auth/login", json={"login": self.person_id, "password": self._password}
        )
        answer.raise_for_status()
        self._token = answer.json()["token"]
        self._http.headers["authorization"] = f"Bearer {self._token}"

    async def _reconnect_pause(self) -> None:
        self._failures += 1
        await asyncio.sleep(RECONNECT_PAUSES[min(self._failures, len(RECONNECT_PAUSES)) - 1])

    async def _stream(self, stop: asyncio.Event) -> None:
        # the session goes in the header: the gateway refuses a token in the URL (logged)
        url = self.stack.url("gateway", "/me/live").replace("http", "ws")
        if self._last_seq is not None:
            url += f"?since={self._last_seq}"
        headers = {"authorization": f"Bearer {self._token}"}
        async with websockets.connect(url, open_timeout=10, additional_headers=headers) as socket:
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(socket.recv(), 1.0)
                except TimeoutError:
                    continue
                self._failures = 0
                self._on_frame(json.loads(raw))

    def _on_frame(self, frame: dict[str, Any]) -> None:
        seq = frame.get("seq")
        if isinstance(seq, int):
            self._last_seq = max(seq, self._last_seq or 0)
        data = frame.get("data") or {}
        event = frame.get("event")
        if event == "hello" and self._last_seq is None:
            self._last_seq = data.get("last_seq")
        elif event == "agent.state_changed" and data.get("agent_id") == self.person_id:
            self._state_news.set()
        elif event == "offer.made" and data.get("agent_id") == self.person_id:
            self._take(data)
        elif event == "snapshot":
            for offer in data.get("offers") or []:
                self._take(offer)
            for held in data.get("assignments") or []:  # the interaction ids held now
                interaction = str(
                    held.get("interaction_id", "") if isinstance(held, dict) else held
                )
                if interaction.startswith("case-") and interaction not in self._working:
                    self._spawn(interaction, self._finish(interaction))
        elif event in ("offer.cancelled", "offer.timed_out", "offer.rejected"):
            offer = self.desk.offers.get(str(data.get("offer_id")))
            if offer is not None and offer.closed_at is None:
                offer.closed_at = time.monotonic()

    def _take(self, data: dict[str, Any]) -> None:
        offer_id = str(data["offer_id"])
        if offer_id in self.desk.offers or not str(data["interaction_id"]).startswith("case-"):
            return  # the mails of this run only (no campaign runs)
        number = (data.get("summary") or {}).get("case_number")
        offer = Offer(
            offer_id,
            str(data["interaction_id"]),
            self.person_id,
            time.monotonic(),
            int(number) if number is not None else None,
            delay=_since(data.get("occurred_at")),
        )
        self.desk.offers[offer_id] = offer
        self._spawn(offer.interaction_id, self._work(offer))

    def _spawn(self, interaction: str, work: Awaitable[None]) -> None:
        self._working.add(interaction)

        async def tracked() -> None:
            try:
                await work
            finally:
                self._working.discard(interaction)

        task = asyncio.create_task(tracked())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, offer: Offer) -> None:
        refusals: list[str] = []
        answer = await self._retrying(
            lambda: self._call("POST", f"/offers/{offer.offer_id}/accept"),
            refusals_ok=True,
            done_if=lambda refusal: "(accepted)" in refusal,
            refusals=refusals,
        )
        offer.closed_at = offer.closed_at or time.monotonic()
        if answer is None:
            offer.refusal = refusals[-1] if refusals else "no answer"
            return
        offer.accepted = True
        self.desk.assigned.append((offer.interaction_id, self.person_id))
        await self._finish(offer.interaction_id)

    async def _finish(self, interaction: str) -> None:
        number = int(interaction.removeprefix("case-").split(".")[0])
        # threading hears of the assignment a moment after routing made it: "not assigned to
        # you" is tried again for a while, as a person would click again
        closed = await self._retrying(
            lambda: self._call(
                "POST",
                f"/cases/{number}/disposition",
                {"disposition": "Resolved", "finish": True},
            ),
            refusals_ok=True,
            refusals_retried_for=90.0,
            done_if=lambda refusal: "not assigned" in refusal,
        )
        if closed is not None:
            self.desk.disposed.add(number)
        else:
            self.desk.errors.append(f"{self.person_id}: case {number} could not be closed")

    async def _keep_ready(self, stop: asyncio.Event) -> None:
        """What a person does at the desktop: back to Ready after wrap-up, and after the system
        made them Not Ready or logged them out (each such surprise is written down)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_news.wait(), STATE_BACKSTOP_SECONDS)
            self._state_news.clear()
            try:
                answer = await self._call("GET", "/me/state")
            except (httpx.HTTPError, AssertionError):
                continue
            mine = [a for a in (answer or {}).get("agents", []) if a.get("agent_id")]
            if not mine:
                continue
            state, reason = mine[0].get("state"), mine[0].get("reason")
            if state == "wrap_up":
                with contextlib.suppress(httpx.HTTPError, AssertionError):
                    await self._call("POST", "/me/ready")
            elif state in ("not_ready", "rona", "logged_out"):
                self.desk.surprises.append(f"{self.person_id}: {state} ({reason})")
                with contextlib.suppress(httpx.HTTPError, AssertionError):
                    if state == "logged_out":
                        await self._call("POST", "/me/log-in")
                    await self._call("POST", "/me/ready")

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = await self._http.request(
            method, path, json=body if body is not None or method == "GET" else {}
        )
        if answer.status_code == 401:
            await self._log_in()
            raise httpx.TransportError("session renewed")
        if answer.status_code >= 500 or answer.status_code == 429:
            raise httpx.TransportError(f"{answer.status_code}: {answer.text[:200]}")
        if answer.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {answer.status_code}: {answer.text[:300]}")
        return answer.json() if answer.content else {}

    async def _retrying(
        self,
        call: Callable[[], Awaitable[Any]],
        *,
        refusals_ok: bool = False,
        refusals_retried_for: float = 0.0,
        done_if: Callable[[str], bool] | None = None,
        refusals: list[str] | None = None,
    ) -> Any:
        """Try again while the gateway or a service behind it is down; a refusal (4xx) ends it
        (after ``refusals_retried_for`` seconds of trying again)."""
        began = time.monotonic()
        deadline = began + RETRY_FOR_SECONDS
        pause = 0.5
        timed_out = False
        while True:
            try:
                return await call()
            except AssertionError as refused:
                if refusals is not None:
                    refusals.append(str(refused))
                if timed_out and done_if is not None and done_if(str(refused)):
                    return {}  # a copy that timed out was carried out: this is its refusal
                if time.monotonic() - began < refusals_retried_for:
                    await asyncio.sleep(1.0)
                    continue
                if refusals_ok:
                    return None
                raise RuntimeError(str(refused)) from refused
            except (httpx.HTTPError, OSError) as exc:
                if "504" in str(exc):
                    # the owner is behind: its queue already holds this command
                    timed_out, pause = True, max(pause, 10.0)
                if time.monotonic() > deadline:
                    self.desk.errors.append(f"{self.person_id}: gave up: {exc!r}")
                    return None
                # a timed-out command may still be carried out: a person waits a little longer
                # each time rather than queueing copy after copy behind it
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)

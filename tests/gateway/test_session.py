"""The browser's session: an HttpOnly cookie, CSRF-safe, the live stream without a token in its
URL, no secret in any log (uvicorn's access log on), and the app served with a strict CSP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets

from switchboard.gateway.app import GatewayRuntime, GatewaySettings, build

from .conftest import PEOPLE, login, next_event, serving

CSRF = {"X-Switchboard-Csrf": "1"}


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>desk</title>", encoding="utf-8")
    (tmp_path / "assets" / "app-1.js").write_text("console.log(1)", encoding="utf-8")
    return tmp_path


@pytest.fixture
async def served(
    gateway_settings: GatewaySettings, dist: Path
) -> AsyncIterator[tuple[GatewayRuntime, str]]:
    runtime = build(gateway_settings.model_copy(update={"web_dist": dist}))
    async with serving(runtime.api) as address:
        yield runtime, address


async def cookie_login(http: httpx.AsyncClient, person: str) -> httpx.Response:
    answer = await http.post(
        "/auth/login", json={"login": person, "password": PEOPLE[person][1], "cookie": True}
    )
    assert answer.status_code == 200, answer.text
    return answer


async def test_a_browser_login_puts_the_session_in_an_httponly_strict_cookie_only(
    served: tuple[GatewayRuntime, str],
) -> None:
    _, address = served
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        answer = await cookie_login(http, "agent-1")
        assert answer.json()["token"] is None, "no page script may read the session token"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert "secure" not in cookie  # plain HTTP here; Secure when the request came over TLS
        assert (await http.get("/me")).json()["id"] == "agent-1"

        refused = await http.post("/auth/logout")
        assert refused.status_code == 403 and refused.json()["code"] == "csrf"
        elsewhere = await http.post(
            "/auth/logout", headers={**CSRF, "Origin": "https://evil.example"}
        )
        assert elsewhere.status_code == 403 and elsewhere.json()["code"] == "csrf"
        assert (await http.get("/me")).status_code == 200, "a refused request changed nothing"

        out = await http.post("/auth/logout", headers={**CSRF, "Origin": f"http://{address}"})
        assert out.status_code == 204
        assert 'sb_session=""' in out.headers["set-cookie"] or "max-age=0" in (
            out.headers["set-cookie"].lower()
        )
        assert (
            await http.get("/me", cookies={"sb_session": answer.cookies["sb_session"]})
        ).status_code == 401

        # scripts keep their bearer token (and need no CSRF header: no cookie involved)
        bearer = await login(http, "agent-2")
        http.cookies.clear()
        assert (await http.post("/auth/logout", headers=bearer)).status_code == 204


async def test_the_live_stream_takes_the_cookie_from_this_origin_and_never_a_token_in_the_url(
    served: tuple[GatewayRuntime, str],
) -> None:
    _, address = served
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        session = (await cookie_login(http, "agent-1")).cookies["sb_session"]
        token = (await login(http, "agent-2"))["Authorization"][7:]

    cookie = {"Cookie": f"sb_session={session}"}
    async with websockets.connect(
        f"ws://{address}/me/live",
        additional_headers={**cookie, "Origin": f"http://{address}"},
        open_timeout=30,  # a loaded machine
    ) as ws:
        assert (await next_event(ws, "hello"))["person_id"] == "agent-1"

    for url, headers in (
        (f"ws://{address}/me/live?token={token}", {}),
        (f"ws://{address}/me/live", {**cookie, "Origin": "https://evil.example"}),
    ):
        async with websockets.connect(url, additional_headers=headers, open_timeout=30) as refused:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await refused.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_no_token_or_password_reaches_any_log_with_the_access_log_on(
    served: tuple[GatewayRuntime, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, address = served
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        answer = await cookie_login(http, "agent-1")
        session = answer.cookies["sb_session"]
        bearer = await login(http, "agent-2")
        await http.get("/me")
        await http.get("/me", headers=bearer)
        async with websockets.connect(
            f"ws://{address}/me/live",
            additional_headers={"Cookie": f"sb_session={session}", "Origin": f"http://{address}"},
        ) as ws:
            await next_event(ws, "hello")
        async with websockets.connect(f"ws://{address}/me/live", additional_headers=bearer) as ws:
            await next_event(ws, "hello")
    access = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert access, "the access log is on in this test"
    # the server's records (this test's own HTTP and WebSocket clients log what they send)
    client_side = ("httpcore", "httpx", "websockets.client")
    server = [r for r in caplog.records if not r.name.startswith(client_side)]
    written = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in server)
    for secret in (
        session,
        bearer["Authorization"][7:],
        PEOPLE["agent-1"][1],
        PEOPLE["agent-2"][1],
    ):
        assert secret not in written


async def test_the_app_is_served_with_a_strict_csp_and_a_fallback_for_its_pages(
    served: tuple[GatewayRuntime, str],
) -> None:
    _, address = served
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        index = await http.get("/")
        assert index.status_code == 200 and "<title>desk</title>" in index.text
        csp = index.headers["content-security-policy"]
        for rule in ("script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"):
            assert rule in csp
        assert "unsafe-inline" not in csp and "http:" not in csp
        asset = await http.get("/assets/app-1.js")
        assert asset.status_code == 200 and asset.text == "console.log(1)"
        assert (await http.get("/assets/..%2Findex.html")).status_code == 404
        page = await http.get("/desk/somewhere", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "<title>desk</title>" in page.text
        api = await http.get("/no/such/route", headers={"Accept": "application/json"})
        assert api.status_code == 404 and api.json()["code"] == "http_404"
        assert (await http.get("/me")).status_code == 401  # the API is not shadowed

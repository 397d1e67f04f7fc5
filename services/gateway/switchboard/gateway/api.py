"""The HTTP and WebSocket API people use (FastAPI), in front of the service runtime.

The FastAPI app is the outermost ASGI app: it serves the API, ``/openapi.json`` and ``/docs``,
and hands ``/metrics`` and ``/health/*`` to the runtime's own app, whose lifespan (broker,
MongoDB, hooks, timers) it runs as its own. The runtime's ``mount`` could not carry this API:
its router matches exact paths and refuses WebSockets.
"""

# No ``from __future__ import annotations``: FastAPI resolves the endpoint annotations.

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path as PathLike
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Route
from starlette.websockets import WebSocketDisconnect, WebSocketState

from switchboard.contracts.agents import AgentHeartbeat
from switchboard.gateway import clients
from switchboard.gateway.access import AccessLog
from switchboard.gateway.actions import ACTIONS
from switchboard.gateway.auth import PERSON_ID, Authenticator, Principal, Role
from switchboard.gateway.errors import ApiError, FieldError, Problem
from switchboard.gateway.files import MailStore, file_router, quarantine_router
from switchboard.gateway.forward import Forwarder
from switchboard.gateway.live import replay, snapshot
from switchboard.gateway.metrics import LOGINS
from switchboard.gateway.push import Connection, PushHub
from switchboard.gateway.reports import report_router
from switchboard.gateway.routes import register
from switchboard.gateway.web import (
    SESSION_COOKIE,
    SecurityHeaders,
    check_csrf,
    clear_session_cookie,
    hide_secret_headers,
    mount_web_app,
    same_origin,
    set_session_cookie,
)
from switchboard.runtime.service import Runtime

log = structlog.get_logger("switchboard.gateway.api")

DESCRIPTION = """\
The agent and supervisor API of Switchboard. Log in with `POST /auth/login`, then send
`Authorization: Bearer <token>` (a browser logs in with `"cookie": true` instead and is
then authenticated by an HttpOnly session cookie; its unsafe requests send
`X-Switchboard-Csrf: 1`). Every action is forwarded to the service that owns it; its
refusal comes back as 403 / 404 / 409 / 422 with `code`, `detail` and `field`; a service that
does not answer in time gives 504. Live events (offers, state changes, new mail on your cases):
WebSocket `GET /me/live` (token in the `Authorization` header, or the session cookie; never in
the URL);
keeping it open is your desktop's heartbeat. An agent's event frames carry a `seq`: reconnect
with `?since=<seq>` (or `Last-Event-ID`) to get what was pushed while away; every connection
then gets a `snapshot` (state, interactions held, open offers).
"""


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: str = Field(min_length=1, max_length=64, description="the person id, e.g. agent-1")
    password: str = Field(min_length=1, max_length=1024)
    cookie: bool = Field(
        default=False,
        description="a browser: keep the session in an HttpOnly cookie, not in the answer",
    )


class PersonView(BaseModel):
    id: str
    name: str
    role: Role


class LoginAnswer(BaseModel):
    token: str | None = Field(
        description="send as Authorization: Bearer <token>; shown only once "
        "(null when the session is in the cookie)"
    )
    token_type: str = "bearer"
    expires_at: datetime
    person: PersonView


class PersonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    role: Role = "agent"
    password: str | None = Field(
        default=None, min_length=8, max_length=1024, description="required for a new person"
    )
    active: bool = True
    teams: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list)


class PersonRecord(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    id: str
    name: str = ""
    role: Role = "agent"
    active: bool = True
    teams: list[str] = Field(default_factory=list)


class Revoked(BaseModel):
    revoked: int = Field(description="how many sessions were ended")


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no token, or an expired or revoked one"},
    403: {"model": Problem, "description": "not allowed"},
}


def _field_of(loc: Any) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or "(request)"


def build_api(
    runtime: Runtime,
    auth: Authenticator,
    forwarder: Forwarder,
    hub: PushHub,
    mail_store: MailStore,
    *,
    heartbeat_seconds: float,
    trusted_proxies: Sequence[clients.Network] = (),
    snapshot_seconds: float = 5.0,
    version: str = "0.1.0",
    web_dist: PathLike | None = None,
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with runtime.app:
            yield

    app = FastAPI(
        title="Switchboard gateway",
        version=version,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Declared once for every operation, so no route advertises FastAPI's own 422 shape.
        responses={422: {"model": Problem, "description": "the request is not valid"}},
    )
    app.add_middleware(AccessLog)
    if runtime.tracer_provider is not None:
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=runtime.tracer_provider, excluded_urls="/metrics,/health"
        )
    bearer = HTTPBearer(auto_error=False, description="the token from POST /auth/login")

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        fields = [_field_of(e.get("loc", ())) for e in errors]
        message = "; ".join(
            f"{f}: {e.get('msg', 'invalid')}" for f, e in zip(fields, errors, strict=True)
        )
        problem = Problem(
            detail=message or "the request is not valid",
            code="invalid",
            field=fields[0] if fields else None,
            errors=[
                FieldError(
                    loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                    msg=str(e.get("msg", "")),
                    type=str(e.get("type", "")),
                )
                for e in errors
            ],
        )
        return JSONResponse(problem.model_dump(mode="json"), status_code=422)

    async def current(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is not None:
            return await auth.authenticate(credentials.credentials)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            check_csrf(request)
        return await auth.authenticate(cookie)

    async def supervisor(principal: Annotated[Principal, Depends(current)]) -> Principal:
        if not principal.is_supervisor:
            raise ApiError(403, "forbidden", "only a supervisor may do this")
        return principal

    def client_address(request: Request) -> str:
        peer = request.client.host if request.client else None
        return clients.client_address(
            peer, request.headers.get("x-forwarded-for", ""), trusted_proxies
        )

    # -- authentication -----------------------------------------------------------------------

    people = APIRouter(tags=["auth"], responses=ERRORS)

    @people.post(
        "/auth/login",
        response_model=LoginAnswer,
        responses={
            401: {"model": Problem, "description": "unknown login or wrong password"},
            429: {"model": Problem, "description": "too many attempts for the account or address"},
        },
        summary="Log in with a password; answers a bearer token",
    )
    async def log_in(body: LoginBody, request: Request, response: Response) -> LoginAnswer:
        try:
            token, principal = await auth.log_in(body.login, body.password, client_address(request))
        except ApiError as exc:
            LOGINS.labels(exc.code).inc()
            raise
        LOGINS.labels("ok").inc()
        if body.cookie:
            max_age = int(
                (principal.expires_at - datetime.now(principal.expires_at.tzinfo)).total_seconds()
            )
            set_session_cookie(response, request, token, max(1, max_age))
        return LoginAnswer(
            token=None if body.cookie else token,
            expires_at=principal.expires_at,
            person=PersonView(id=principal.person_id, name=principal.name, role=principal.role),
        )

    @people.post("/auth/logout", status_code=204, summary="End this session (revoke the token)")
    async def log_out(
        request: Request, principal: Annotated[Principal, Depends(current)]
    ) -> Response:
        await auth.log_out(principal)
        answer = Response(status_code=204)
        clear_session_cookie(answer, request)
        return answer

    @people.get("/me", response_model=PersonView, summary="Who I am")
    async def me(principal: Annotated[Principal, Depends(current)]) -> PersonView:
        return PersonView(id=principal.person_id, name=principal.name, role=principal.role)

    @people.get(
        "/people",
        response_model=list[PersonRecord],
        summary="Everyone who may log in",
        tags=["supervisor"],
    )
    async def list_people(_: Annotated[Principal, Depends(supervisor)]) -> list[PersonRecord]:
        found = await auth.list_people()
        return [PersonRecord.model_validate({**p, "id": p["_id"]}) for p in found]

    @people.put(
        "/people/{person_id}",
        response_model=PersonRecord,
        summary="Create or change a person (a changed role or deactivation ends their sessions)",
        tags=["supervisor"],
    )
    async def put_person(
        person_id: Annotated[str, Path(pattern=PERSON_ID)],
        body: PersonBody,
        response: Response,
        _: Annotated[Principal, Depends(supervisor)],
    ) -> PersonRecord:
        created = await auth.put_person(
            person_id,
            name=body.name or person_id,
            role=body.role,
            password=body.password,
            active=body.active,
            teams=body.teams,
        )
        response.status_code = 201 if created else 200
        return PersonRecord(
            id=person_id,
            name=body.name or person_id,
            role=body.role,
            active=body.active,
            teams=body.teams,
        )

    @people.post(
        "/people/{person_id}/revoke",
        response_model=Revoked,
        summary="End every session of a person (their tokens stop working at once)",
        tags=["supervisor"],
    )
    async def revoke(
        person_id: Annotated[str, Path(min_length=1, max_length=64)],
        _: Annotated[Principal, Depends(supervisor)],
    ) -> Revoked:
        return Revoked(revoked=await auth.revoke_person(person_id))

    app.include_router(people)

    # -- forwarded actions ----------------------------------------------------------------------

    actions = APIRouter()
    for action in ACTIONS:
        register(actions, action, forwarder, current, supervisor)
    app.include_router(actions)
    app.include_router(file_router(forwarder, mail_store, current))
    app.include_router(quarantine_router(mail_store, supervisor))
    app.include_router(report_router(forwarder, supervisor))

    # -- live stream ------------------------------------------------------------------------------

    @app.websocket("/me/live")
    async def live(websocket: WebSocket) -> None:
        header = websocket.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        if token is None and (cookie := websocket.cookies.get(SESSION_COOKIE)):
            # a page of another site may open a socket here: only our own pages use the cookie
            origin = websocket.headers.get("origin")
            if same_origin(origin, websocket.headers.get("host"), websocket.url.scheme):
                token = cookie
        since_text = websocket.query_params.get("since") or websocket.headers.get("last-event-id")
        await websocket.accept()
        try:
            principal = await auth.authenticate(token)
        except ApiError as exc:
            await websocket.close(code=4401, reason=exc.message[:120])
            return
        since: int | None = None
        if since_text is not None and not principal.is_supervisor:
            try:
                since = int(since_text)
            except ValueError:
                await websocket.close(code=4400, reason="since: the seq of a frame (a number)")
                return
        connection = hub.connect(principal.person_id, principal.is_supervisor)
        log.info("live stream opened", person_id=principal.person_id, since=since)
        try:
            hello: dict[str, Any] = {
                "person_id": principal.person_id,
                "role": principal.role,
                "heartbeat_seconds": heartbeat_seconds,
            }
            if not principal.is_supervisor:
                # frames numbered above this are sent live; below it only on ?since=
                connection.last_seq = await hub.journal.last_seq(principal.person_id)
                hello["last_seq"] = connection.last_seq
            await websocket.send_json({"event": "hello", "data": hello})
            if not principal.is_supervisor:
                await _resume(websocket, connection, principal, since)
            await _run_stream(websocket, connection, principal)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            hub.disconnect(connection)
            log.info("live stream closed", person_id=principal.person_id)

    async def _resume(
        websocket: WebSocket, connection: Connection, principal: Principal, since: int | None
    ) -> None:
        """The frames missed since ``since`` (if asked), then the agent's snapshot."""
        agent_id = principal.person_id
        if since is not None:
            missed = await replay(hub.journal, agent_id, since)
            for frame in missed.frames:
                await websocket.send_json(frame.wire())
            connection.last_seq = max(connection.last_seq, missed.last_seq)
            await websocket.send_json(missed.summary(since))
        await websocket.send_json(
            await snapshot(forwarder, hub.journal, agent_id, timeout=snapshot_seconds)
        )

    async def _run_stream(
        websocket: WebSocket, connection: Connection, principal: Principal
    ) -> None:
        async def writer() -> None:
            while True:
                for frame in await connection.next_frames(poll_seconds=heartbeat_seconds):
                    await websocket.send_json(frame)

        async def reader() -> None:
            while True:
                message = await websocket.receive_text()
                if message.strip().lower() in {"ping", '{"type":"ping"}', '{"type": "ping"}'}:
                    connection.offer({"event": "pong", "data": {}})

        async def beat() -> None:
            while True:
                if not await auth.still_valid(principal):
                    await websocket.close(code=4401, reason="session ended; log in again")
                    return
                if connection.overflowed.is_set():
                    await websocket.close(code=1013, reason="too slow to follow the events")
                    return
                if not principal.is_supervisor:
                    await _heartbeat(principal)
                await asyncio.sleep(heartbeat_seconds)

        tasks = [asyncio.create_task(t()) for t in (writer, reader, beat)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not isinstance(
                    result, WebSocketDisconnect | RuntimeError
                ):
                    log.warning("live stream ended with an error", error=repr(result))
            if websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await websocket.close()

    async def _heartbeat(principal: Principal) -> None:
        try:
            await runtime.bus.publish(
                AgentHeartbeat(
                    agent_id=principal.person_id,
                    actor_id=principal.person_id,
                    actor_role="agent",
                )
            )
        except Exception as exc:
            log.warning("heartbeat not delivered", agent_id=principal.person_id, error=repr(exc))

    # -- the runtime's own endpoints --------------------------------------------------------------

    for path in ("/metrics", "/health/live", "/health/ready"):
        app.router.routes.append(Route(path, endpoint=runtime.app, include_in_schema=False))

    mount_web_app(app, web_dist)
    hide_secret_headers()
    app.add_middleware(SecurityHeaders)
    return app

"""Schemathesis against the generated OpenAPI document (in-process ASGI): no server error, and
every answer matches the schema the document declares for it (issue 16: the 422 body too).

Every command the API forwards is answered by a catch-all stand-in (alternately ``ok`` and a
refusal), so the run exercises validation, authentication, forwarding and error mapping of every
operation. Schemathesis calls ASGI apps through Starlette's TestClient, which runs the app on its
own event loop in another thread; the bridge below runs each request on the test's loop, where
the gateway's broker and database connections live.
"""

from __future__ import annotations

import asyncio
import random
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Literal, get_args, get_origin

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from pydantic import BaseModel
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.result import Ok

from switchboard.contracts import Command, ConsumerQueue
from switchboard.contracts.cases import RecordUpload
from switchboard.contracts.reports import (
    AgentReportRequested,
    CampaignReportRequested,
    ServiceReportRequested,
)
from switchboard.gateway.actions import ACTIONS
from switchboard.gateway.app import GatewaySettings, build
from switchboard.runtime.errors import Refused
from switchboard.runtime.types import ASGIApp, Receive, Scope, Send

from .conftest import PEOPLE, StandIns
from .test_files import fake_mail_store

EXAMPLES_PER_OPERATION = 6
BUDGET_SECONDS = 50.0
AT_LEAST = 25
DAY = "2026-03-02T00:00:00Z"
"""Operations that must be covered even on a loaded machine (all are, normally)."""


class AnyCommand(Command):
    """Whatever command arrives (the stand-in only answers it)."""

    NAME = "test.gateway.any_command"


def minimal(model: type[BaseModel]) -> dict[str, Any]:
    """The smallest answer of ``model``'s shape: its required fields, each as plain as it gets."""

    def value(annotation: Any) -> Any:
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is Literal:
            return args[0]
        if origin is list:
            return []
        if origin is dict:
            return {}
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return minimal(annotation)
        return {str: "x", int: 1, float: 0.0, bool: False}.get(annotation)

    return {
        info.alias or name: value(info.annotation)
        for name, info in model.model_fields.items()
        if info.is_required()
    }


def bridge(app: ASGIApp, loop: asyncio.AbstractEventLoop) -> ASGIApp:
    """An ASGI app that runs ``app`` on ``loop`` whatever loop calls it."""

    async def bridged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # the gateway is started by the test, not the client
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"{message['type']}.complete"})
                if kind == "shutdown":
                    return
        here = asyncio.get_running_loop()

        async def receive_there() -> Any:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_co(receive()), here))

        async def send_there(message: Any) -> None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_co(send(message)), here))

        running = asyncio.run_coroutine_threadsafe(_co(app(scope, receive_there, send_there)), loop)
        await asyncio.wrap_future(running)

    return bridged


async def _co(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def test_no_operation_answers_a_server_error(
    gateway_settings: GatewaySettings, stand_ins: StandIns
) -> None:
    settings = gateway_settings.model_copy(
        update={
            "command_timeout_seconds": 30.0,
            "login_address_limit": 100_000,
            "login_account_limit": 100_000,
        }
    )
    runtime = build(settings, mail_transport=httpx.ASGITransport(app=fake_mail_store()))
    answered = {"count": 0}

    def answering(shape: dict[str, Any]) -> Callable[[AnyCommand], Awaitable[dict[str, Any]]]:
        async def answer(command: AnyCommand) -> dict[str, Any]:
            answered["count"] += 1
            if answered["count"] % 2:
                raise Refused("not_yours", "the stand-in refuses every other command", field=None)
            return {**shape, "echo": command.message_id.hex}

        return answer

    # an owner answers in the shape its route declares (typed answers); the others, anything
    typed = {a.command.NAME: minimal(a.answer) for a in ACTIONS if a.answer is not None}
    for name, shape in typed.items():
        stand_ins.answer(ConsumerQueue(f"standin.{name}", (name,)), AnyCommand, answering(shape))
    # every other forwarded command, and the upload record the file route sends threading
    names = {action.command.NAME for action in ACTIONS} | {RecordUpload.NAME}
    rest = tuple(sorted(names - set(typed)))
    stand_ins.answer(ConsumerQueue("standin.everything", rest), AnyCommand, answering({}))

    async def empty_report(command: AnyCommand) -> dict[str, Any]:
        return {"granularity": "day", "start": DAY, "end": DAY, "rows": []}

    reports = (ServiceReportRequested.NAME, AgentReportRequested.NAME, CampaignReportRequested.NAME)
    stand_ins.answer(ConsumerQueue("standin.reports", reports), AnyCommand, empty_report)

    async with stand_ins.runtime.app, runtime.app:
        transport = httpx.ASGITransport(app=runtime.api)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            answer_ = await http.post(
                "/auth/login",
                json={"login": "supervisor-1", "password": PEOPLE["supervisor-1"][1]},
            )
            token = answer_.json()["token"]
        loop = asyncio.get_running_loop()
        app = bridge(runtime.api, loop)
        failures = await asyncio.to_thread(_fuzz, app, token)
    assert not failures, "\n".join(failures)
    assert answered["count"] > 0


def _fuzz(app: ASGIApp, token: str) -> list[str]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    covered: list[str] = []
    started = time.monotonic()
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    assert len(operations) > 40
    random.Random(7).shuffle(operations)  # a stable order that mixes the API's areas
    for operation in operations:
        if time.monotonic() - started > BUDGET_SECONDS:
            warnings.warn(
                f"schemathesis budget used up after {len(covered)} operations", stacklevel=1
            )
            break
        if operation.label in {"POST /auth/logout", "POST /people/{person_id}/revoke"}:
            headers = {"Authorization": "Bearer not-the-real-token"}
        else:
            headers = {"Authorization": f"Bearer {token}"}

        check = _checker(operation, headers)
        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
        if len(failures) > 3:
            break
        covered.append(operation.label)
    if not failures and len(covered) < AT_LEAST:
        failures.append(f"only {len(covered)} operations covered within the budget")
    return failures


def _checker(operation: Any, headers: dict[str, str]) -> Callable[[], None]:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    return check

"""Command endpoints declared as a table: one row per agent or supervisor action.

Each row names the contract command it forwards, the owning service, and where the identity
fields come from. Identity fields (the acting person, the role, ids in the URL) never come from
the request body: the body model is generated from the command with those fields removed and
``extra="forbid"``, so a body that tries to name ``agent_id`` is refused with 422 naming it.
Generating the body from the contract keeps the API in step with the owning service's command.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the generated signatures.

import inspect
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query
from pydantic import BaseModel, ConfigDict, create_model
from pydantic.fields import FieldInfo

from switchboard.contracts import Message
from switchboard.gateway.auth import Principal
from switchboard.gateway.errors import Problem
from switchboard.gateway.forward import Forwarder, build_command

ENVELOPE = frozenset(Message.model_fields)

# Where an identity field's value comes from.
ME = "me"  # the authenticated person's id
ROLE = "role"  # "agent" or "supervisor", from the token
MY_NAME = "my_name"  # the authenticated person's display name (signs reply templates)


@dataclass(frozen=True)
class Const:
    value: Any


@dataclass(frozen=True)
class PathParam:
    name: str
    annotation: Any = str


Source = str | Const | PathParam


@dataclass(frozen=True)
class Action:
    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    command: type[Message]
    owner: str
    summary: str
    fills: Mapping[str, Source] = field(default_factory=dict)
    tag: str = "agent"
    supervisor_only: bool = False
    status_code: int = 200
    answer: type[BaseModel] | None = None  # the owner's result as the OpenAPI document shows it


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no token, or an expired or revoked one"},
    403: {"model": Problem, "description": "not yours (the owning service's reason)"},
    404: {"model": Problem, "description": "the thing named in the URL does not exist"},
    409: {"model": Problem, "description": "refused in the current state"},
    503: {"model": Problem, "description": "the owning service is not running"},
    504: {"model": Problem, "description": "the owning service did not answer in time"},
}

NAMING_QUERY_FIELDS = frozenset(
    {"case_number", "thread_id", "email_id", "record_id", "campaign_id", "offer_id"}
)
"""Query fields of a GET that name the thing asked for, like a path does (not there: 404);
other query fields are filters or options (an unknown value is bad input: 422)."""

IDEMPOTENCY_NAMESPACE = uuid.UUID("0f5d8a3e-6c1b-4f0e-9a55-2d7f3c7b9e10")


def body_model(command: type[Message], exclude: set[str]) -> type[BaseModel] | None:
    """The request body of a command: its own fields minus envelope and identity fields."""
    fields: dict[str, Any] = {}
    for name, info in command.model_fields.items():
        if name in ENVELOPE or name in exclude:
            continue
        fields[name] = (info.annotation, FieldInfo.merge_field_infos(info))
    if not fields:
        return None
    model: type[BaseModel] = create_model(
        f"{command.__name__}Body",
        __config__=ConfigDict(extra="forbid"),
        __doc__=(command.__doc__ or "").strip() or None,
        **fields,
    )
    return model


def _path_annotation(param: PathParam) -> Any:
    if param.annotation is int:
        return Annotated[int, Path(ge=1, le=2**53)]
    return Annotated[str, Path(min_length=1, max_length=200)]


def register(
    router: APIRouter,
    action: Action,
    forwarder: Forwarder,
    current: Callable[..., Any],
    supervisor: Callable[..., Any],
) -> None:
    fills = {k: v for k, v in action.fills.items() if k in action.command.model_fields}
    body = body_model(action.command, set(fills))
    path_params = [v for v in fills.values() if isinstance(v, PathParam)]
    params = [
        inspect.Parameter(
            "principal",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Principal,
            default=Depends(supervisor if action.supervisor_only else current),
        ),
        inspect.Parameter(
            "idempotency_key",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                str | None,
                Header(
                    alias="Idempotency-Key",
                    max_length=200,
                    description="repeat a request with the same key: carried out once",
                ),
            ],
            default=None,
        ),
    ]
    for param in path_params:
        params.append(
            inspect.Parameter(
                param.name, inspect.Parameter.KEYWORD_ONLY, annotation=_path_annotation(param)
            )
        )
    if body is not None:
        annotation = Annotated[body, Query()] if action.method == "GET" else body
        params.append(
            inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
        )
    path_names = {p.name for p in path_params}
    if body is not None and action.method == "GET":
        # what a GET asks for by query (``?case_number=``) is named like a path: not there is 404
        path_names |= set(body.model_fields) & NAMING_QUERY_FIELDS
    identity = {name for name, source in fills.items() if source in (ME, ROLE, MY_NAME)}

    async def endpoint(**kwargs: Any) -> dict[str, Any]:
        principal: Principal = kwargs["principal"]
        values: dict[str, Any] = {}
        payload = kwargs.get("body")
        if payload is not None:
            values.update(payload.model_dump(exclude_unset=True))
        for name, source in fills.items():
            if source == ME:
                values[name] = principal.person_id
            elif source == ROLE:
                values[name] = principal.role
            elif source == MY_NAME:
                values[name] = principal.name
            elif isinstance(source, Const):
                values[name] = source.value
            elif isinstance(source, PathParam):
                values[name] = kwargs[source.name]
        key = kwargs.get("idempotency_key")
        if key:
            values["message_id"] = uuid.uuid5(
                IDEMPOTENCY_NAMESPACE, f"{principal.person_id}:{action.command.NAME}:{key}"
            )
        command = build_command(action.command, **values)
        return await forwarder.send(
            command, owner=action.owner, path_fields=path_names, identity_fields=identity
        )

    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    endpoint.__name__ = action.command.__name__
    router.add_api_route(
        action.path,
        endpoint,
        methods=[action.method],
        summary=action.summary,
        description=(
            f"Forwards `{action.command.NAME}` to {action.owner} and answers its result."
            + ("\n\nSupervisors only." if action.supervisor_only else "")
        ),
        tags=[action.tag],
        responses=ERROR_RESPONSES,
        status_code=action.status_code,
        response_model=action.answer or dict[str, Any],
    )

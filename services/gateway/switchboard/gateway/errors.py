"""Errors the API answers, and how an owning service's refusal becomes an HTTP status."""

from __future__ import annotations

from collections.abc import Collection

from pydantic import BaseModel, Field

from switchboard.contracts import Refusal


class ApiError(Exception):
    """An answer other than success: a status, a stable code, words, and the field at fault."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, str | None]:
        return {"detail": self.message, "code": self.code, "field": self.field}


class FieldError(BaseModel):
    """One thing wrong in a request, as the validator saw it."""

    loc: list[str | int] = Field(description="where: body/query/path, then the field's path")
    msg: str
    type: str


class Problem(BaseModel):
    """Every error answer; a request the API could not read (422) also lists ``errors``."""

    detail: str = Field(description="what went wrong, in words a person can act on")
    code: str = Field(description="stable machine code, e.g. not_yours, timeout, invalid")
    field: str | None = Field(default=None, description="the request field at fault, if any")
    errors: list[FieldError] = Field(
        default_factory=list, description="each validation error, when the request was invalid"
    )


FORBIDDEN_CODES = frozenset(
    {"not_yours", "forbidden", "not_assigned", "not_allowed", "not_permitted", "not_held"}
)
INVALID_CODES = frozenset(
    {
        "invalid",
        "empty",
        "missing",
        "no_recipient",
        "no_target",
        "same_agent",
        "in_the_past",
        "empty_window",
        "duplicate_disposition",
    }
)
NOT_FOUND_PREFIXES = ("unknown_", "no_such_", "not_found")


def status_for(
    refusal: Refusal, path_fields: Collection[str] = (), identity_fields: Collection[str] = ()
) -> int:
    """The HTTP status of an owner's refusal.

    * 403: the person may not do this (``not_yours``, ``forbidden`` ...);
    * 404: the thing named in the URL does not exist (``unknown_offer`` on ``offer_id`` ...);
    * 422: the request's content is wrong (``invalid``, ``bad_*``, ``missing_*``, an unknown
      thing named in the body, such as a service to transfer to);
    * 409: anything else: the request is understood but the current state refuses it
      (``offer_closed``, ``case_closed``, ``stale_draft``, ``queue_empty`` ...).

    A field the gateway filled from the token (``agent_id`` of the acting person ...) is never
    the client's bad input: "routing knows no agent alice" is 403 for alice.
    """
    code = refusal.code
    if code in FORBIDDEN_CODES or code.endswith("_forbidden"):
        return 403
    from_token = refusal.field in identity_fields and refusal.field not in path_fields
    if from_token and (
        code.startswith(NOT_FOUND_PREFIXES)
        or code in INVALID_CODES
        or code.startswith(("bad_", "invalid_", "missing_"))
    ):
        return 403
    if code.startswith(NOT_FOUND_PREFIXES) or code.endswith("_not_found"):
        if refusal.field is None or refusal.field in path_fields:
            return 404
        return 422
    if code in INVALID_CODES or code.startswith(("bad_", "invalid_", "missing_")):
        return 422
    return 409

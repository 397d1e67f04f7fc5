"""The OpenAPI document of the mail edge's HTTP API (served at ``/mail/openapi.json``).

Written by hand because the API is a plain Starlette app on exact paths; the test suite runs
Schemathesis against the running service with it, so a route that answers something the
document does not declare fails there.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ERROR, description)


def _query(name: str, schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


_UNAUTHORISED = {"401": _error("no service token, or a wrong one")}
_ID = _query("id", {"type": "string"})
_GONE = _json(
    {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "case_number": {"type": ["integer", "null"]}},
    },
    "masked in its case: the original is locked",
)
_BYTES = {"type": "string", "format": "binary"}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Switchboard mail edge", "version": "0.1.0"},
    "components": {
        "securitySchemes": {"serviceToken": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
            },
            "Accepted": {
                "type": "object",
                "required": ["email_id", "duplicate", "event", "reason"],
                "properties": {
                    "email_id": {"type": "string"},
                    "duplicate": {"type": "boolean"},
                    "event": {"type": "string"},
                    "reason": {"type": ["string", "null"]},
                },
            },
            "AttachmentRef": {
                "type": "object",
                "required": ["attachment_id", "filename", "content_type", "size"],
                "properties": {
                    "attachment_id": {"type": "string"},
                    "filename": {"type": "string"},
                    "content_type": {"type": "string"},
                    "size": {"type": "integer", "minimum": 0},
                    "content_id": {"type": ["string", "null"]},
                    "inline": {"type": "boolean"},
                },
            },
            "StoredMail": {
                "type": "object",
                "required": ["email_id"],
                "properties": {"email_id": {"type": "string"}},
            },
        },
    },
    "security": [{"serviceToken": []}],
    "paths": {
        "/mail/messages": {
            "post": {
                "summary": "Take in one raw mail (.eml) for a configured mailbox",
                "parameters": [_query("mailbox", {"type": "string"})],
                "requestBody": {
                    "required": True,
                    "content": {"application/octet-stream": {"schema": _BYTES}},
                },
                "responses": {
                    "202": _json({"$ref": "#/components/schemas/Accepted"}, "stored"),
                    "400": _error("empty body"),
                    "404": _error("no such mailbox"),
                    "413": _error("too large"),
                    "503": _error("not stored or not confirmed; try again"),
                    **_UNAUTHORISED,
                },
            },
            "get": {
                "summary": "What is known of one stored mail",
                "parameters": [_ID],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/StoredMail"}, "the record"),
                    "404": _error("no such mail"),
                    **_UNAUTHORISED,
                },
            },
        },
        "/mail/raw": {
            "get": {
                "summary": "The raw bytes of a stored mail",
                "parameters": [_ID],
                "responses": {
                    "200": {
                        "description": "the mail",
                        "content": {"message/rfc822": {"schema": _BYTES}},
                    },
                    "404": _error("no such mail"),
                    "410": _GONE,
                    **_UNAUTHORISED,
                },
            }
        },
        "/mail/blobs": {
            "get": {
                "summary": "An attachment, sanitised HTML or full text",
                "parameters": [_ID],
                "responses": {
                    "200": {"description": "the bytes", "content": {"*/*": {"schema": _BYTES}}},
                    "404": _error("no such blob"),
                    "410": _GONE,
                    **_UNAUTHORISED,
                },
            }
        },
        "/mail/attachments": {
            "post": {
                "summary": "Store a file to attach to an outbound mail",
                "parameters": [
                    _query("filename", {"type": "string", "minLength": 1}),
                    _query("content_type", {"type": "string"}, required=False),
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/octet-stream": {"schema": _BYTES}},
                },
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/AttachmentRef"}, "stored"),
                    "413": _error("too large"),
                    "422": _error("a file name with a line break or control character"),
                    **_UNAUTHORISED,
                },
            }
        },
        "/mail/quarantine": {
            "get": {
                "summary": "Mail that could not be parsed, newest first",
                "parameters": [
                    _query(
                        "limit", {"type": "integer", "minimum": 1, "maximum": 1000}, required=False
                    )
                ],
                "responses": {
                    "200": _json(
                        {"type": "array", "items": {"$ref": "#/components/schemas/StoredMail"}},
                        "the list",
                    ),
                    "422": _error("limit is not a whole number from 1 to 1000"),
                    **_UNAUTHORISED,
                },
            }
        },
    },
}

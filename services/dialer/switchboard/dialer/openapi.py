"""The OpenAPI document of the dialer's HTTP API (served at ``/dialer/openapi.json``).

Written by hand because the API is two plain ASGI endpoints on exact paths; the test suite runs
Schemathesis against the running service with it, so an endpoint that answers something the
document does not declare fails there.
"""

from __future__ import annotations

from typing import Any


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


def _query(name: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


_IMPORT = {"$ref": "#/components/schemas/Import"}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Switchboard campaign dialer", "version": "0.1.0"},
    "components": {
        "securitySchemes": {"serviceToken": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
            },
            "Import": {
                "type": "object",
                "required": ["import_id", "bad_rows"],
                "properties": {
                    "import_id": {"type": "string"},
                    "state": {"type": "string"},
                    "bad_rows": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "line": {"type": "integer"},
                                "reason": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
    "security": [{"serviceToken": []}],
    "paths": {
        "/dialer/imports": {
            "post": {
                "summary": "Import a file of calling records into a campaign (streamed)",
                "parameters": [
                    _query("campaign_id", {"type": "string"}, required=True),
                    _query("format", {"enum": ["csv", "jsonl"]}),
                    _query("region", {"type": "string", "pattern": "^[A-Z]{2}$"}),
                    _query("import_id", {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}),
                ],
                "requestBody": {
                    "required": True,
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
                "responses": {
                    "200": _json(_IMPORT, "the import's summary, bad rows included"),
                    "400": _error("format is not csv or jsonl"),
                    "404": _error("no such campaign"),
                    "422": _error("a parameter is not valid"),
                    "401": _error("no service token, or a wrong one"),
                },
            }
        },
        "/dialer/imports/status": {
            "get": {
                "summary": "Progress of an import and, when done, its result",
                "parameters": [
                    _query("import_id", {"type": "string"}, required=True),
                    _query("errors", {"type": "integer", "minimum": 0, "maximum": 1000}),
                ],
                "responses": {
                    "200": _json(_IMPORT, "the import"),
                    "404": _error("no such import"),
                    "422": _error("errors is not a whole number from 0 to 1000"),
                    "401": _error("no service token, or a wrong one"),
                },
            }
        },
    },
}

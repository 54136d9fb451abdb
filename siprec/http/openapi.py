"""``GET /api/openapi.json``: an OpenAPI 3.1 document generated from the route table.

Every route declared with siprec.http.routing.endpoint has a RouteDoc row;
this module turns the rows into paths and operations, adds the schemas and
security schemes, and serves the result. Nothing here lists routes by hand.
The WebSocket endpoints, which OpenAPI cannot describe, are listed under
``x-websockets``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List

from twisted.web.iweb import IRequest

import siprec
from siprec.http.routing import ROUTES, Access, RouteDoc, endpoint, openapi_path
from siprec.http.errors import write_json

__all__ = ["OpenApiRoutes", "build_document", "SCHEMAS"]

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

_STREAM = {
    "type": "object",
    "properties": {
        "label": {"type": "string"}, "index": {"type": "integer"},
        "codec": {"type": ["string", "null"]}, "port": {"type": ["integer", "null"]},
        "state": {"type": "string"}, "direction": {"type": ["string", "null"]},
        "channel": {"type": "integer"}, "file": {"type": ["string", "null"]},
        "participant": {"type": ["object", "null"]}, "packets": {"type": "integer"},
        "bytes": {"type": "integer"}, "stats": {"type": "object"},
    },
}

SCHEMAS: Dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
    },
    "Session": {
        "type": "object", "required": ["id", "call_id", "state", "started_at", "streams"],
        "properties": {
            "id": {"type": "string", "description": "session id (ours)"},
            "call_id": {"type": "string", "description": "SIP Call-ID of the recording dialog"},
            "state": {"type": "string", "enum": ["setup", "active", "ending", "ended", "failed"]},
            "paused": {"type": "boolean"},
            "started_at": {"type": "string", "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "end_reason": {"type": ["string", "null"]},
            "group_id": {"type": ["string", "null"]},
            "streams": {"type": "array", "items": _STREAM},
            "participants": {"type": "array", "items": {"type": "object"}},
        },
    },
    "SessionDetail": {
        "allOf": [{"$ref": "#/components/schemas/Session"}, {
            "type": "object",
            "properties": {"sip": {"type": "object"}, "metadata": {"type": ["object", "null"]},
                           "pauses": {"type": "array", "items": {"type": "object"}},
                           "files": {"type": "object"}, "tolerances": {"type": "array"},
                           "warnings": {"type": "array"}}}],
    },
    "Transcript": {
        "type": "object", "required": ["id", "call_id", "state", "segments", "partials"],
        "properties": {
            "id": {"type": "string"}, "call_id": {"type": "string"}, "state": {"type": "string"},
            "segments": {"type": "array", "items": {"type": "object"},
                         "description": "Final results in call-timeline order"},
            "partials": {"type": "array", "items": {"type": "object"},
                         "description": "The open utterance of each leg, if any"},
            "legs": {"type": "object", "description": "Per-leg transcription state"}},
    },
    "SessionList": {
        "type": "object", "required": ["sessions", "total", "limit", "offset"],
        "properties": {"sessions": {"type": "array",
                                    "items": {"$ref": "#/components/schemas/Session"}},
                       "total": {"type": "integer"}, "limit": {"type": "integer"},
                       "offset": {"type": "integer"}},
    },
    "PauseScope": {
        "type": "object", "additionalProperties": False,
        "description": "What to pause or resume; both default to true, at least one must be.",
        "properties": {"recording": {"type": "boolean", "default": True},
                       "transcription": {"type": "boolean", "default": True}},
    },
    "PauseStatus": {
        "type": "object",
        "required": ["id", "call_id", "state", "paused", "recording_paused",
                     "transcription_paused", "pauses"],
        "properties": {
            "id": {"type": "string"}, "call_id": {"type": "string"}, "state": {"type": "string"},
            "paused": {"type": "boolean"}, "recording_paused": {"type": "boolean"},
            "transcription_paused": {"type": "boolean"},
            "pauses": {"type": "array", "items": {
                "type": "object",
                "properties": {"start": {"type": "string", "format": "date-time"},
                               "end": {"type": ["string", "null"], "format": "date-time"},
                               "reason": {"type": "string"},
                               "label": {"type": ["string", "null"]}}}},
        },
    },
    "BulkControlResult": {
        "type": "object", "required": ["action", "count", "sessions", "failed"],
        "properties": {"action": {"type": "string", "enum": ["pause", "resume"]},
                       "recording": {"type": "boolean"}, "transcription": {"type": "boolean"},
                       "count": {"type": "integer"},
                       "sessions": {"type": "array", "items": {"type": "string"}},
                       "failed": {"type": "array", "items": {"type": "object"}}},
    },
    "Health": {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["healthy", "unhealthy", "draining"]},
                       "live": {"type": "boolean"}, "ready": {"type": "boolean"},
                       "checks": {"type": "object"}},
    },
    "Status": {
        "type": "object",
        "properties": {"version": {"type": "string"}, "started_at": {"type": "string"},
                       "uptime_seconds": {"type": "number"}, "draining": {"type": "boolean"},
                       "active_calls": {"type": "integer"}},
    },
    "Assurance": {
        "type": "object",
        "required": ["calls_recorded", "calls_refused", "refused_by_reason", "recent_refusals",
                     "calls_incomplete", "recent_incomplete"],
        "properties": {
            "calls_recorded": {"type": "integer", "description": "calls whose files are final"},
            "calls_refused": {"type": "integer", "description": "INVITEs answered with an error"},
            "refused_by_reason": {"type": "object", "additionalProperties": {"type": "integer"}},
            "recent_refusals": {"type": "array", "items": {
                "type": "object", "properties": {
                    "call_id": {"type": "string"}, "status": {"type": "integer"},
                    "reason": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
                    "source": {"type": ["string", "null"]}}}},
            "calls_incomplete": {"type": "integer",
                                 "description": "recorded calls with a gap or a silent leg"},
            "recent_incomplete": {"type": "array", "items": {
                "type": "object", "properties": {
                    "id": {"type": "string"}, "call_id": {"type": "string"},
                    "ended_at": {"type": ["string", "null"], "format": "date-time"},
                    "end_reason": {"type": ["string", "null"]},
                    "problems": {"type": "array", "items": {"type": "string"}}}}},
        },
    },
    "OpenApi": {"type": "object", "description": "this document"},
}

_WEBSOCKETS = {
    "/ws": {"summary": "Every event the caller may see (schema siprec.event/1); a JSON "
                       "subscribe message narrows it by call ids and event types.",
            "permission": "read", "docs": "docs/realtime-transcription.md"},
    "/ws/analytics": {"summary": "Analytics events only (analytics.*).",
                      "permission": "read", "docs": "docs/realtime-transcription.md"},
}

_ROLES_FOR = {Access.READ: ["viewer", "operator", "admin"],
              Access.HEALTH: ["viewer", "operator", "admin"],
              Access.METRICS: ["viewer", "operator", "admin"],
              Access.CONTROL: ["operator", "admin"], Access.ADMIN: ["admin"]}


def build_document(routes: Iterable[RouteDoc] = ROUTES) -> Dict[str, Any]:
    """The OpenAPI document of `routes` (by default every declared route)."""
    paths: Dict[str, Dict[str, Any]] = {}
    for route in routes:
        path = openapi_path(route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "siprec API", "version": siprec.__version__,
                 "description": "REST API of the siprec SIPREC recording server. With "
                                "AUTH_ENABLED, send 'Authorization: Bearer <JWT or API key>' "
                                "or 'X-API-Key: <key>'; roles: viewer (read), operator "
                                "(read, pause/resume, terminate), admin (everything)."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "x-websockets": _WEBSOCKETS,
    }


def _operation(route: RouteDoc, path: str) -> Dict[str, Any]:
    operation: Dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "x-required-role": _ROLES_FOR[route.access],
        "parameters": _parameters(route, path),
        "responses": _responses(route),
    }
    if route.access in (Access.HEALTH, Access.METRICS):
        operation["description"] = (
            "Public when AUTH_PUBLIC_HEALTH=true (the default)." if route.access is Access.HEALTH
            else "Public when AUTH_PUBLIC_METRICS=true.")
        operation["security"] = [{}, {"bearer": []}, {"apiKey": []}]
    if route.body_schema:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{route.body_schema}"}}}}
    return operation


def _parameters(route: RouteDoc, path: str) -> List[Dict[str, Any]]:
    params = [{"name": name, "in": "path", "required": True,
               "schema": {"type": "string", "maxLength": 512},
               "description": "session id or SIP Call-ID"}
              for name in _PARAM.findall(path)]
    for name, kind, description in route.query:
        params.append({"name": name, "in": "query", "required": False,
                       "schema": {"type": kind}, "description": description})
    return params


def _responses(route: RouteDoc) -> Dict[str, Any]:
    success = "202" if route.method == "DELETE" else "200"
    if route.content_type == "application/json":
        schema = ({"$ref": f"#/components/schemas/{route.response_schema}"}
                  if route.response_schema else {"type": "object"})
        content = {"application/json": {"schema": schema}}
    else:
        content = {route.content_type: {"schema": {"type": "string"}}}
    responses: Dict[str, Any] = {success: {"description": "OK", "content": content}}
    for status, description in sorted(route.responses.items()):
        if 200 <= status < 300:
            responses[str(status)] = {"description": description, "content": content}
        else:
            responses[str(status)] = {"description": description,
                                      "content": {"application/json": {"schema": _ERROR_REF}}}
    responses.setdefault("default", {"description": "error",
                                     "content": {"application/json": {"schema": _ERROR_REF}}})
    return responses


class OpenApiRoutes:
    """Mixed into SiprecApi."""

    @endpoint("/api/openapi.json", "GET", access=Access.READ, tag="Meta",
              summary="This API's OpenAPI 3.1 document", response_schema="OpenApi",
              responses={401: "no or invalid credentials"})
    def openapi_document(self, request: IRequest) -> bytes:
        return write_json(request, 200, build_document())

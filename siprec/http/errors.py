"""JSON bodies for the HTTP API, errors included, in one shape.

Every error a client sees is ``{"error": {"code": ..., "message": ...}}`` with
a matching status; messages are fixed texts written here, never exception
text or tracebacks.
"""

from __future__ import annotations

import json
from typing import Iterable, Optional, Tuple

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

JSON_TYPE = b"application/json"

# Fixed fallback if encoding an error ever fails.
_LAST_RESORT = b'{"error":{"code":"internal_error","message":"internal server error"}}'


class ApiError(Exception):
    """An error answer: HTTP status, a stable machine code and a human message."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Iterable[Tuple[bytes, bytes]] = ()) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = tuple(headers)


def encode_json(payload: object) -> bytes:
    """Strict JSON (no NaN or Infinity), UTF-8."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def error_body(code: str, message: str) -> bytes:
    try:
        return encode_json({"error": {"code": code, "message": message}})
    except (TypeError, ValueError):
        return _LAST_RESORT


def set_json_headers(request: IRequest) -> None:
    request.setHeader(b"Content-Type", JSON_TYPE)
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")


def write_json(request: IRequest, status: int, payload: object) -> bytes:
    """Set status and JSON headers; return the encoded body for the caller to send."""
    body = encode_json(payload)
    request.setResponseCode(status)
    set_json_headers(request)
    return body


def write_error(request: IRequest, error: ApiError) -> bytes:
    request.setResponseCode(error.status)
    set_json_headers(request)
    for name, value in error.headers:
        request.setHeader(name, value)
    return error_body(error.code, error.message)


class JsonErrorResource(Resource):
    """A leaf answering every request with one JSON error (used outside Klein)."""

    isLeaf = True

    def __init__(self, error: ApiError) -> None:
        super().__init__()
        self.error = error

    def render(self, request: IRequest) -> bytes:
        return write_error(request, self.error)


def not_found(message: Optional[str] = None) -> ApiError:
    return ApiError(404, "not_found", message or "no such resource")

"""Size limits and body rules for API requests.

`BoundedRequest` (the Site's request class) stops buffering a body once it
passes MAX_BODY, so a huge upload costs bandwidth, not memory; `check_request`
then turns it into a 413. The same check also measures the buffered body, so
it works under any Request class (e.g. treq's StubTreq in tests).
"""

from __future__ import annotations

import json
from typing import Optional

from twisted.web.iweb import IRequest
from twisted.web.server import Request

from siprec.http.errors import JSON_TYPE, ApiError

MAX_BODY = 1024 * 1024          # bytes of request body
MAX_URI = 8192                  # bytes of request target (path and query)


class BoundedRequest(Request):
    """A Request that keeps at most `max_body` bytes of body and flags the rest."""

    max_body = MAX_BODY
    body_too_large = False

    def gotLength(self, length: Optional[int]) -> None:
        self._body_seen = 0
        if length is not None and length > self.max_body:
            self.body_too_large = True
            length = 0  # an in-memory buffer that will stay empty
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_seen += len(data)
        if self._body_seen > self.max_body:
            self.body_too_large = True
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)


def body_size(request: IRequest) -> int:
    content = getattr(request, "content", None)
    if content is None:
        return 0
    position = content.tell()
    try:
        return content.seek(0, 2)
    finally:
        content.seek(position)


def body_too_large(request: IRequest, limit: int = MAX_BODY) -> bool:
    if getattr(request, "body_too_large", False):
        return True
    declared = request.getHeader(b"Content-Length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return True
        except ValueError:
            pass
    return body_size(request) > limit


def too_large() -> ApiError:
    return ApiError(413, "payload_too_large", f"request body over {MAX_BODY} bytes",
                    headers=[(b"Connection", b"close")])


def check_request(request: IRequest) -> None:
    """Reject oversized targets and bodies, and bodies that are not JSON.

    No route takes a body yet; one that is sent anyway must still be JSON, so
    clients get told early instead of having data silently ignored.
    """
    if len(request.uri) > MAX_URI:
        raise ApiError(414, "uri_too_long", f"request target over {MAX_URI} bytes")
    if body_too_large(request):
        raise too_large()
    size = body_size(request)
    if size == 0:
        return
    content_type = (request.getHeader(b"Content-Type") or b"").split(b";")[0].strip().lower()
    if content_type != JSON_TYPE and not content_type.endswith(b"+json"):
        raise ApiError(415, "unsupported_media_type", "request bodies must be application/json")
    request.content.seek(0)
    raw = request.content.read()
    request.content.seek(0)
    try:
        json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON") from None


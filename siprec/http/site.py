"""The web Site: the Klein API at the root, other resources mounted beside it.

`ApiRoot` hands every path to the Klein resource except those mounted with
`mount()` (the WebSocket endpoints /ws and /ws/analytics), and screens each request first so
that even failures outside Klein's routing (oversized body, non-UTF-8 URL)
get a JSON answer.
"""

from __future__ import annotations

from typing import FrozenSet, Mapping, Optional

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from siprec.http.errors import ApiError, JsonErrorResource, not_found
from siprec.http.limits import MAX_URI, BoundedRequest, body_too_large, too_large

IDLE_TIMEOUT = 60  # seconds an idle HTTP connection may stay open


class _Branch(Resource):
    """An intermediate path segment; renders its index child when it has one."""

    def __init__(self, index: Optional[IResource] = None) -> None:
        super().__init__()
        self.index = index

    def getChild(self, name: bytes, request: IRequest) -> IResource:
        if name == b"" and self.index is not None:
            return self.index
        return JsonErrorResource(not_found())

    def render(self, request: IRequest) -> bytes:
        if self.index is not None:
            return self.index.render(request)
        return JsonErrorResource(not_found()).render(request)


def _screen(request: IRequest) -> Optional[ApiError]:
    """Problems to answer before any resource sees the request."""
    if len(request.uri) > MAX_URI:
        return ApiError(414, "uri_too_long", f"request target over {MAX_URI} bytes")
    try:
        for segment in (*request.prepath, *request.postpath):
            segment.decode("utf-8")
        request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return ApiError(400, "bad_request", "request target or Host is not UTF-8")
    if body_too_large(request):
        return too_large()
    return None


class ApiRoot(Resource):
    """Root resource: mounted children first, everything else to the API."""

    def __init__(self, api: IResource, reserved: FrozenSet[str] = frozenset()) -> None:
        super().__init__()
        self.api = api
        self.reserved = reserved

    def mount(self, path: str, resource: IResource) -> None:
        """Serve `resource` at `path` (e.g. "/ws" or "/ws/analytics")."""
        segments = [s for s in path.split("/") if s]
        if not segments:
            raise ValueError("cannot mount at the root: the API lives there")
        if segments[0] in self.reserved:
            raise ValueError(f"/{segments[0]} belongs to the API")
        node: Resource = self
        for segment in segments[:-1]:
            name = segment.encode("utf-8")
            child = node.children.get(name)
            if not isinstance(child, _Branch):
                child = _Branch(index=child)
                node.putChild(name, child)
            node = child
        name = segments[-1].encode("utf-8")
        existing = node.children.get(name)
        if isinstance(existing, _Branch):
            existing.index = resource
        else:
            node.putChild(name, resource)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        problem = _screen(request)
        if problem is not None:
            return JsonErrorResource(problem)
        if name in self.children:
            return self.children[name]
        # Not mounted: give Klein the whole path back to route.
        request.prepath.pop()
        request.postpath.insert(0, name)
        return self.api

    def render(self, request: IRequest) -> bytes:  # only reached with an empty path
        return self.api.render(request)


def make_site(api, *, timeout: float = IDLE_TIMEOUT,
              mounts: Optional[Mapping[str, IResource]] = None) -> Site:
    """A Site serving `api` (a SiprecApi) with bounded requests, ready to listen on.

    `mounts` maps paths to resources served beside the API, e.g. the
    WebSocket endpoints from siprec.realtime.websocket.websocket_resources();
    more can be mounted later with ``site.resource.mount("/ws", resource)``.
    """
    prefixes = frozenset(rule.rule.split("/")[1] for rule in api.app.url_map.iter_rules())
    root = ApiRoot(api.app.resource(), reserved=prefixes)
    for path, resource in (mounts or {}).items():
        root.mount(path, resource)
    site = Site(root, requestFactory=BoundedRequest, timeout=timeout)
    site.displayTracebacks = False
    return site

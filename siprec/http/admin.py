"""Assurance and administration routes.

``GET /api/assurance`` accounts for every INVITE: calls recorded, refusals
by reason with the recent ones listed, and recorded calls whose recording
has a gap or a silent leg. ``POST /api/admin/drain`` starts a drain: from
then on OPTIONS and new INVITEs get 503 with Retry-After (so a load
balancer stops sending calls) while the calls already up go on.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from siprec.http.errors import ApiError, write_json
from siprec.http.routing import Access, endpoint, principal_of

__all__ = ["AdminRoutes"]

log = Logger()

_AUTH = {401: "no or invalid credentials", 403: "role not allowed"}


class AdminRoutes:
    """Mixed into SiprecApi, which provides ``manager``, ``health`` and ``drain``
    (a callable starting the drain, None when this server cannot drain)."""

    manager: Any
    health: Any
    drain: Optional[Callable[[], None]]

    @endpoint("/api/assurance", "GET", access=Access.READ, tag="Assurance",
              summary="Every INVITE accounted for: recorded, refused (why), incomplete (why)",
              response_schema="Assurance", responses=_AUTH)
    def assurance(self, request: IRequest) -> bytes:
        return write_json(request, 200, self.manager.assurance.view())

    @endpoint("/api/admin/drain", "POST", access=Access.ADMIN, tag="Administration",
              summary="Stop taking calls (503 to OPTIONS and INVITE); calls up go on",
              response_schema="Status", responses={409: "this server cannot drain", **_AUTH})
    def admin_drain(self, request: IRequest) -> bytes:
        if self.drain is None:
            raise ApiError(409, "conflict", "draining is not available on this server")
        principal = principal_of(request)
        log.info("Drain requested over the API by {who}",
                 who=principal.subject if principal is not None else "anonymous")
        self.drain()
        return write_json(request, 202, {**self.health.status(),
                                         "active_calls": int(self.manager.active_count)})

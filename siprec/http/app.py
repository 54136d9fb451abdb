"""The REST API: sessions, pause/resume, health probes, status, metrics, OpenAPI.

`SiprecApi` is a Klein class given its collaborators; it is mounted into a Site
by `make_site` (siprec.http.site), never run on its own. Routes are declared
with siprec.http.routing.endpoint (here and in the route modules control.py
and openapi.py, mixed in), which checks access with the Authenticator given
(none: auth off). One error handler turns every failure into
``{"error": {"code", "message"}}`` with the right status; tracebacks go to the
log only.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from siprec.http.admin import AdminRoutes
from siprec.http.errors import ApiError, not_found, write_error, write_json
from siprec.http.control import FINAL_STATES, ControlRoutes, find_session
from siprec.http.limits import body_too_large, too_large
from siprec.http.openapi import OpenApiRoutes
from siprec.http.params import page_params
from siprec.http.routing import Access, endpoint, router
from siprec.http.site import make_site
from siprec.ops.health import Health, Readiness
from siprec.ops.metrics import Metrics
from siprec.security.auth import Authenticator

__all__ = ["SiprecApi", "make_site", "FINAL_STATES"]

log = Logger()

UNMATCHED = "unmatched"  # route label for requests no route took
_AUTH_RESPONSES = {401: "no or invalid credentials", 403: "role not allowed"}
_PAGE_QUERY = (("limit", "integer", "items per page, 0-500 (larger values are capped)"),
               ("offset", "integer", "items to skip, 0-1000000"))


def _printable(raw: bytes, limit: int = 200) -> str:
    """Request data fit for a log line: bounded and escaped."""
    text = raw[:limit].decode("utf-8", "backslashreplace")
    return text + ("..." if len(raw) > limit else "")


class SiprecApi(ControlRoutes, AdminRoutes, OpenApiRoutes):
    """HTTP API over the recording manager, metrics and health registry.

    `auth` decides who may call what (siprec.security.auth); None leaves the
    API open, as with AUTH_ENABLED=false. `drain` starts a drain of the
    server (POST /api/admin/drain); None when there is nothing to drain.
    """

    app = router

    def __init__(self, manager: Any, metrics: Metrics, health: Health,
                 clock: IReactorTime, auth: Optional[Authenticator] = None,
                 drain: Optional[Callable[[], None]] = None) -> None:
        self.manager = manager
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.auth = auth
        self.drain = drain

    # -- health and status -------------------------------------------------------
    @endpoint("/health", "GET", access=Access.HEALTH, tag="Health",
              summary="Liveness, readiness and status; 503 unless ready",
              response_schema="Health", responses={503: "not ready or draining", **_AUTH_RESPONSES})
    def health_aggregate(self, request: IRequest) -> Deferred:
        """Liveness, readiness and status in one answer; 503 unless ready."""

        def answer(readiness: Readiness) -> bytes:
            if readiness.ok:
                status = "healthy"
            else:
                status = "draining" if readiness.draining else "unhealthy"
            body = {**self._status(), **readiness.to_json(),
                    "status": status, "live": True, "ready": readiness.ok}
            return write_json(request, 200 if readiness.ok else 503, body)

        return self.health.ready().addCallback(answer)

    @endpoint("/health/live", "GET", access=Access.HEALTH, tag="Health",
              summary="200 while the process runs", response_schema="Health",
              responses=_AUTH_RESPONSES)
    def health_live(self, request: IRequest) -> bytes:
        return write_json(request, 200, self.health.live())

    @endpoint("/health/ready", "GET", access=Access.HEALTH, tag="Health",
              summary="200 when every check passes; 503 not ready or draining",
              response_schema="Health", responses={503: "not ready or draining", **_AUTH_RESPONSES})
    def health_ready(self, request: IRequest) -> Deferred:
        def answer(readiness: Readiness) -> bytes:
            return write_json(request, 200 if readiness.ok else 503, readiness.to_json())

        return self.health.ready().addCallback(answer)

    @endpoint("/status", "GET", access=Access.HEALTH, tag="Health",
              summary="Version, uptime, draining flag and active calls",
              response_schema="Status", responses=_AUTH_RESPONSES)
    def status(self, request: IRequest) -> bytes:
        return write_json(request, 200, self._status())

    def _status(self) -> dict:
        """The manager is the authority on active calls."""
        return {**self.health.status(), "active_calls": int(self.manager.active_count)}

    # -- sessions --------------------------------------------------------------------
    @endpoint("/api/sessions", "GET", access=Access.READ, tag="Sessions",
              summary="Active sessions, then recently ended ones, a page at a time",
              response_schema="SessionList", query=_PAGE_QUERY,
              responses={400: "bad limit or offset", **_AUTH_RESPONSES})
    def list_sessions(self, request: IRequest) -> bytes:
        page = page_params(request.args)
        sessions = list(self.manager.sessions())
        items = [session.summary() for session in page.slice(sessions)]
        return write_json(request, 200, {"sessions": items, "total": len(sessions),
                                         "limit": page.limit, "offset": page.offset})

    @endpoint("/api/sessions/<path:session_id>/transcript", "GET", access=Access.READ,
              tag="Sessions", summary="The call's transcript so far (during and after the call)",
              response_schema="Transcript", responses={404: "no such session",
                                                       **_AUTH_RESPONSES})
    def get_transcript(self, request: IRequest, session_id: str) -> bytes:
        return write_json(request, 200, self._find(session_id).transcript_view())

    @endpoint("/api/sessions/<path:session_id>", "GET", access=Access.READ, tag="Sessions",
              summary="One session (by session id or Call-ID) with its call record",
              response_schema="SessionDetail", responses={404: "no such session",
                                                          **_AUTH_RESPONSES})
    def get_session(self, request: IRequest, session_id: str) -> bytes:
        return write_json(request, 200, self._find(session_id).detail())

    @endpoint("/api/sessions/<path:session_id>", "DELETE", access=Access.CONTROL,
              tag="Sessions", summary="End a recording: BYE to the SRC, then finalise",
              response_schema="Session",
              responses={200: "the session had already ended", 404: "no such session",
                         **_AUTH_RESPONSES})
    def terminate_session(self, request: IRequest, session_id: str) -> bytes:
        """Ask for a BYE and finalisation; answer without waiting for them (202)."""
        session = self._find(session_id)
        if session.state in FINAL_STATES:
            return write_json(request, 200, session.summary())
        finalised = self.manager.terminate(session_id)
        if finalised is None:  # ended and forgotten since _find
            raise not_found("session not found")
        finalised.addErrback(self._terminate_failed, session.id)
        status = 200 if session.state in FINAL_STATES else 202
        return write_json(request, status, session.summary())

    def _find(self, session_id: str) -> Any:
        return find_session(self.manager, session_id)

    @staticmethod
    def _terminate_failed(failure: Failure, session_id: str) -> None:
        log.failure("Terminating session {session_id} from the API failed", failure,
                    session_id=session_id)

    # -- metrics -----------------------------------------------------------------------
    @endpoint("/metrics", "GET", access=Access.METRICS, tag="Metrics",
              summary="Prometheus text (OpenMetrics when asked for)",
              content_type="text/plain", responses=_AUTH_RESPONSES)
    def prometheus(self, request: IRequest) -> bytes:
        accept = request.getHeader(b"Accept")
        body, content_type = self.metrics.render(accept.decode("latin-1") if accept else None)
        request.setHeader(b"Content-Type", content_type.encode("latin-1"))
        request.setHeader(b"Cache-Control", b"no-store")
        return body

    # -- errors and bookkeeping ------------------------------------------------------------
    @router.handle_errors(Exception)
    def _error(self, request: IRequest, failure: Failure) -> bytes:
        """The one place failures become answers."""
        try:
            error = self._api_error(request, failure)
        except Exception:
            log.failure("Error handler failed")
            error = ApiError(500, "internal_error", "internal server error")
        return write_error(request, error)

    def _api_error(self, request: IRequest, failure: Failure) -> ApiError:
        error = failure.value
        if isinstance(error, ApiError):
            return error
        if isinstance(error, HTTPException):
            # Raised by routing, before any endpoint (and its checks) ran.
            self._observe(request, UNMATCHED)
            if body_too_large(request):
                return too_large()
            if isinstance(error, MethodNotAllowed):
                allowed = ", ".join(sorted(error.valid_methods or ()))
                return ApiError(405, "method_not_allowed", "method not allowed on this resource",
                                headers=[(b"Allow", allowed.encode("ascii"))])
            # NotFound, and redirects to canonical paths (we do not send clients elsewhere).
            return not_found()
        log.failure("Unhandled error answering {method} {path}", failure,
                    method=_printable(request.method), path=_printable(request.uri))
        return ApiError(500, "internal_error", "internal server error")

    def _observe(self, request: IRequest, route: str) -> None:
        """Count and time the request once it is answered."""
        started = self.clock.seconds()

        def done(_: object) -> None:
            self.metrics.http_request(route, request.method.decode("latin-1"), request.code,
                                      self.clock.seconds() - started)

        request.notifyFinish().addBoth(done)

"""The API's one Klein router, and the table of routes it serves.

Route modules (app.py, control.py, openapi.py) declare endpoints with
:func:`endpoint`, which adds what every route needs in one place: request
timing, access control, request checks, and a :class:`RouteDoc` row in
``ROUTES`` from which ``/api/openapi.json`` is generated, so the document
cannot drift from the routes.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from klein import Klein
from twisted.web.iweb import IRequest

from siprec.http.errors import ApiError
from siprec.http.limits import check_request
from siprec.security.auth import DISABLED, AuthError, Authenticator, Permission, Principal

__all__ = ["router", "ROUTES", "RouteDoc", "Access", "endpoint", "openapi_path",
           "auth_error", "principal_of"]

router = Klein()


class Access(enum.Enum):
    """Who may call a route when auth is on."""

    HEALTH = "health"     # public unless AUTH_PUBLIC_HEALTH=false (then: read)
    METRICS = "metrics"   # public when AUTH_PUBLIC_METRICS=true (else: read)
    READ = "read"
    CONTROL = "control"
    ADMIN = "admin"

    def permission(self) -> Permission:
        if self in (Access.HEALTH, Access.METRICS, Access.READ):
            return Permission.READ
        return Permission(self.value)

    def is_public(self, auth: Authenticator) -> bool:
        if not auth.enabled:
            return True
        if self is Access.HEALTH:
            return auth.public_health
        if self is Access.METRICS:
            return auth.public_metrics
        return False


@dataclass(frozen=True)
class RouteDoc:
    """One operation as the OpenAPI document describes it."""

    path: str                      # Werkzeug rule, e.g. /api/sessions/<path:session_id>
    method: str
    access: Access
    summary: str
    operation_id: str
    tag: str
    responses: Mapping[int, str] = field(default_factory=dict)  # status -> description
    response_schema: Optional[str] = None  # component schema name of the 2xx body
    body_schema: Optional[str] = None      # component schema name of the request body
    query: Tuple[Tuple[str, str, str], ...] = ()  # (name, type, description)
    content_type: str = "application/json"


ROUTES: List[RouteDoc] = []
_PARAM = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


def openapi_path(rule: str) -> str:
    """Werkzeug's ``/a/<path:b>`` as OpenAPI's ``/a/{b}``."""
    return _PARAM.sub(r"{\1}", rule)


def endpoint(path: str, method: str, *, access: Access, summary: str, tag: str,
             responses: Optional[Dict[int, str]] = None, response_schema: Optional[str] = None,
             body_schema: Optional[str] = None, query: Tuple[Tuple[str, str, str], ...] = (),
             content_type: str = "application/json") -> Callable:
    """Declare a route of the API class: time it, check access and the request, document it.

    The handler is a method ``(self, request, **path_args)``; ``self`` is the
    API object, which has ``auth``, ``clock`` and ``_observe``.
    """

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def route(self: Any, request: IRequest, **kwargs: Any) -> Any:
            self._observe(request, path)
            _authorize(self.auth or DISABLED, request, access)
            check_request(request)
            return handler(self, request, **kwargs)

        ROUTES.append(RouteDoc(path=path, method=method, access=access, summary=summary,
                               operation_id=handler.__name__, tag=tag,
                               responses=dict(responses or {}),
                               response_schema=response_schema, body_schema=body_schema,
                               query=query, content_type=content_type))
        return router.route(path, methods=[method],
                            endpoint=f"{handler.__module__}.{handler.__qualname__}")(route)

    return decorate


_PRINCIPAL_ATTR = "_siprec_principal"


def _authorize(auth: Authenticator, request: IRequest, access: Access) -> None:
    if access.is_public(auth):
        return
    try:
        principal = auth.check(request, access.permission())
    except AuthError as err:
        raise auth_error(err) from None
    setattr(request, _PRINCIPAL_ATTR, principal)


def principal_of(request: IRequest) -> Optional[Principal]:
    """Who made an authorized request (None on public routes or with auth off)."""
    return getattr(request, _PRINCIPAL_ATTR, None)


def auth_error(err: AuthError) -> ApiError:
    """The JSON error answer of an AuthError, with its challenge on 401."""
    headers = [(b"WWW-Authenticate", err.challenge)] if err.challenge else []
    return ApiError(err.status, err.code, err.message, headers=headers)

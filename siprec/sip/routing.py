"""Via stamping and response routing (RFC 3261 §18.2, RFC 3581), no I/O."""

from __future__ import annotations

from typing import Tuple

from siprec.sip.headers import HeaderError, Via, parse_via
from siprec.sip.message import Request

__all__ = ["stamp_via", "response_address"]


def stamp_via(request: Request, source: Tuple[str, int]) -> Via:
    """Add ``received``/``rport`` to the top Via as RFC 3261 §18.2.1 and RFC 3581 §4 say.

    The request's headers are rewritten so every response copies the
    stamped Via. Returns the stamped Via.
    """
    values = request.headers.get_all("Via")
    if not values:
        raise HeaderError("missing Via")
    via = parse_via(values[0])
    host, port = source
    params = {}
    if via.host != host.lower() or "rport" in via.params:
        params["received"] = host
    if "rport" in via.params:
        params["rport"] = str(port)
    if params:
        via = via.with_params(**params)
        rest = values[1:]
        request.headers.remove("Via")
        request.headers.add("Via", str(via))
        for value in rest:
            request.headers.add("Via", value)
    return via


def response_address(via: Via, source: Tuple[str, int]) -> Tuple[str, int]:
    """Where to send a response over an unreliable transport."""
    received = via.params.get("received")
    rport = via.params.get("rport")
    if rport and rport.isdigit():
        return (received or source[0], int(rport))
    if received:
        return (received, via.sent_by[1])
    return via.sent_by

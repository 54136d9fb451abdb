"""Via stamping and response routing (RFC 3261 §18.2, RFC 3581), no I/O."""

from __future__ import annotations

import ipaddress
from typing import Optional, Tuple

from siprec.sip.headers import HeaderError, Via, parse_via
from siprec.sip.message import Request

__all__ = ["stamp_via", "response_address", "same_host"]


def _as_ip(host: str) -> Optional[ipaddress._BaseAddress]:
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return address


def same_host(sent_by_host: str, source_host: str) -> bool:
    """Whether a Via sent-by host already names the packet's source address.

    IP literals compare as addresses (``2001:DB8::1`` is ``2001:db8:0::1``);
    a domain name never equals an address (RFC 3261 §18.2.1 adds
    ``received`` then).
    """
    a, b = _as_ip(sent_by_host), _as_ip(source_host)
    if a is not None and b is not None:
        return a == b
    return sent_by_host.lower() == source_host.lower()


def stamp_via(request: Request, source: Tuple[str, int]) -> Via:
    """Add ``received``/``rport`` to the top Via as RFC 3261 §18.2.1 and RFC 3581 §4 say.

    ``received`` is added when the sent-by host differs from the source
    address, and always when the client asked for ``rport``, which is then
    filled with the source port. The request's top Via is rewritten in
    place so every response copies the stamped value. Returns the stamped Via.
    """
    values = request.headers.get_all("Via")
    if not values:
        raise HeaderError("missing Via")
    via = parse_via(values[0])
    host, port = source
    received_host = host.split("%", 1)[0]
    mapped = _as_ip(received_host)
    if mapped is not None:
        received_host = str(mapped)
    params = {}
    if "rport" in via.params or not same_host(via.host, host):
        params["received"] = received_host
    if "rport" in via.params:
        params["rport"] = str(port)
    if params:
        via = via.with_params(**params)
        request.headers.replace_first("Via", str(via))
    return via


def response_address(via: Via, source: Tuple[str, int]) -> Tuple[str, int]:
    """Where to send a response over an unreliable transport (RFC 3261 §18.2.2, RFC 3581 §4).

    ``received`` (else the packet's source, else sent-by) with the ``rport``
    port when it has a value; without rport, the sent-by port (5060 by
    default). ``maddr`` is deliberately ignored: honouring it would let any
    sender point our responses at a third party.
    """
    received = via.params.get("received")
    rport = via.params.get("rport")
    if rport and len(rport) <= 5 and rport.isascii() and rport.isdigit() and 0 < int(rport) < 65536:
        return (received or source[0], int(rport))
    if received:
        return (received, via.sent_by[1])
    return via.sent_by

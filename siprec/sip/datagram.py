"""Responses that must fit in one UDP datagram (RFC 3261 §18.1.1, §18.2.2, §21.5.4).

A request whose headers we echo (a long Via set, many Record-Routes) can
make our answer larger than a datagram carries. We then send ``513 Message
Too Large`` with the mandatory headers only, and nothing at all when even
that does not fit. Pure: a response in, what to send out.
"""

from __future__ import annotations

from typing import Optional

from siprec.sip.message import Response

__all__ = ["MAX_DATAGRAM", "fit_datagram"]

#: 65,507 bytes of UDP payload fit in an IPv4 datagram; stay well below it.
MAX_DATAGRAM = 65000

def _too_large(response: Response) -> Response:
    """513 with the response's own Via lines, From, To (tag kept), Call-ID and CSeq."""
    reply = Response(513)
    for name, value in response.headers:
        if name == "Via":
            reply.headers.add(name, value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        reply.headers.add(name, response.headers.get(name, ""))
    return reply


def fit_datagram(response: Response, limit: int = MAX_DATAGRAM) -> Optional[Response]:
    """``response`` when it fits in ``limit`` bytes, else its 513 when that fits, else None."""
    if len(response.to_bytes()) <= limit:
        return response
    reply = _too_large(response)
    if len(reply.to_bytes()) <= limit:
        return reply
    return None

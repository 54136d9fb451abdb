"""What the SIP core needs from a request body, and who reads it.

The core does not know what a recording body looks like: whoever builds it
passes a :data:`BodyReader` (the service passes the recording layer's
SIPREC splitter). The reader raises
:class:`~siprec.sip.mime.UnsupportedBody` (answered 415) or
:class:`~siprec.sip.mime.MultipartError` (answered 400). Without one, the core
reads plain ``application/sdp`` only, which is enough for a SIP stack on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

from siprec.sip.mime import UnsupportedBody, parse_content_type

__all__ = ["ReadBody", "BodyReader", "PlainBody", "read_sdp_only", "SDP_TYPE"]

SDP_TYPE = "application/sdp"


class ReadBody(Protocol):
    """A request body sorted by use."""

    @property
    def sdp(self) -> Optional[bytes]: ...
    @property
    def metadata(self) -> Sequence[bytes]: ...
    @property
    def tolerances(self) -> Sequence[str]: ...


#: (Content-Type, body, Content-Disposition) -> ReadBody; raises UnsupportedBody or MultipartError.
BodyReader = Callable[[Optional[str], bytes, Optional[str]], ReadBody]


@dataclass(frozen=True, slots=True)
class PlainBody:
    """A body that is SDP or nothing."""

    sdp: Optional[bytes] = None
    metadata: tuple = ()
    tolerances: tuple = ()


def read_sdp_only(content_type: Optional[str], body: bytes,
                  content_disposition: Optional[str] = None) -> PlainBody:
    """The default reader: ``application/sdp`` (any case) or an empty body."""
    if not body or not body.strip():
        return PlainBody()
    mime = parse_content_type(content_type or "")[0]
    if mime != SDP_TYPE:
        raise UnsupportedBody(mime)
    return PlainBody(sdp=body)

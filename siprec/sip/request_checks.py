"""Checks the UAS makes on the requests of a call, as values and CallRejected.

Pure: a request in, a refusal (:class:`CallRejected`) or what was read and the
quirks tolerated on the way (sentences for ``session.tolerate``) out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from siprec.sip.bodies import BodyReader, ReadBody
from siprec.sip.capabilities import ACCEPTED_TYPES, SUPPORTED_OPTIONS
from siprec.sip.errors import CallRejected
from siprec.sip.headers import HeaderError, NameAddr, SipURI, parse_name_addr, repair_name_addr
from siprec.sip.message import Request, reason_phrase
from siprec.sip.mime import MultipartError, UnsupportedBody
from siprec.sip.sdp import SdpParseError, SessionDescription, parse_sdp_with_tolerances

__all__ = [
    "Contact",
    "unsupported",
    "check_extensions",
    "read_body",
    "parse_offer",
    "first_contact",
    "header_quirks",
    "siprec_quirks",
]

_IDENTITY_ENCODINGS = frozenset({"", "identity"})


@dataclass(frozen=True, slots=True)
class Contact:
    """The first Contact of a request as far as it could be read."""

    address: Optional[NameAddr]
    note: Optional[str] = None  # set when repaired or unreadable

    @property
    def target(self) -> Optional[SipURI]:
        """Where in-dialog requests go (a sip/sips URI, RFC 3261 §12.1.1); None: the source."""
        if self.address is None or self.address.wildcard or not self.address.uri.is_sip:
            return None
        return self.address.uri

    def has_param(self, name: str) -> bool:
        """A Contact parameter, in the header or (as some SRCs put it) inside the URI."""
        address = self.address
        return address is not None and (name in address.params or name in address.uri.params)


def unsupported(request: Request) -> List[str]:
    """Require option-tags we do not support (RFC 3261 §8.2.2.3); Proxy-Require is not ours."""
    return [t for t in request.option_tags("Require") if t not in SUPPORTED_OPTIONS]


def check_extensions(request: Request) -> None:
    """420 for a Require we lack; 415 for a Content-Encoding we cannot undo (§8.2.3)."""
    missing = unsupported(request)
    if missing:
        raise CallRejected(420, headers=[("Unsupported", ", ".join(missing))])
    encodings = [e for e in request.option_tags("Content-Encoding") if e not in _IDENTITY_ENCODINGS]
    if encodings and request.body:
        raise CallRejected(415, headers=[("Accept", ACCEPTED_TYPES), ("Accept-Encoding", "identity")])


def read_body(reader: BodyReader, request: Request) -> ReadBody:
    """The request body as the reader sorts it; its refusals become 415 and 400."""
    try:
        return reader(request.content_type, request.body, request.headers.get("Content-Disposition"))
    except UnsupportedBody:
        raise CallRejected(415, headers=[("Accept", ACCEPTED_TYPES)])
    except MultipartError as e:
        raise CallRejected(400, reason_phrase(f"Malformed multipart body: {e}"))


def parse_offer(body: ReadBody) -> Tuple[Optional[SessionDescription], Tuple[str, ...]]:
    """The SDP offer of a body (None when there is none) and the SDP quirks tolerated."""
    if body.sdp is None:
        return None, ()
    try:
        return parse_sdp_with_tolerances(body.sdp)
    except SdpParseError as e:
        raise CallRejected(400, reason_phrase(f"Malformed SDP: {e}"))


def first_contact(request: Request) -> Contact:
    """The first Contact, an unclosed ``<`` repaired; never raises."""
    values = request.headers.get_all("Contact")
    if not values:
        return Contact(None)
    try:
        return Contact(parse_name_addr(values[0]))
    except HeaderError as error:
        repaired = repair_name_addr(values[0])
        if repaired is not None:
            return Contact(repaired, f"Contact with an unclosed '<' read as <{repaired.uri}>")
        return Contact(None, f"Unparseable Contact ({error})")


def header_quirks(request: Request) -> List[str]:
    """Header-level liberties the request takes that cost nothing to accept."""
    notes: List[str] = []
    method = request.method
    if "Max-Forwards" not in request.headers:
        notes.append(f"{method} without Max-Forwards accepted")
    raw = (request.headers.get("CSeq") or "").split()
    if len(raw) == 2 and raw[1] != raw[1].upper():
        notes.append(f"CSeq method {raw[1][:20]!r} in lower case accepted")
    if request.cseq.method != method:
        notes.append(f"{method} with 'CSeq: N {request.cseq.method}' accepted in its dialog")
    return notes


def siprec_quirks(request: Request, body: ReadBody, contact: Contact) -> List[str]:
    """How far a new INVITE strays from RFC 7866 §6.1 while still being recordable."""
    notes: List[str] = []
    src = contact.has_param("+sip.src")
    if not src and contact.has_param("src"):
        notes.append("Contact ';src' read as '+sip.src' (the pre-RFC 7866 spelling)")
        src = True
    if body.metadata and "siprec" not in request.option_tags("Require") and not src:
        notes.append("SIPREC INVITE without 'Require: siprec' or '+sip.src'; recognised by its metadata")
    if not body.metadata:
        notes.append("INVITE without recording metadata; recording as a plain call")
    if request.headers.get("Proxy-Require"):
        notes.append("Proxy-Require ignored (it is meant for proxies)")
    return notes

"""SIP messages (RFC 3261 §7, §20): parse and serialise, no I/O.

Headers are kept as received (name canonicalised, value untouched) and
parsed into typed values only on demand, so that a malformed header the
server can do without never costs a call.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Optional, Tuple, Union

from siprec.sip.header_fields import _CTL_IN_VALUE_RE, Headers, canonical_name
from siprec.sip.headers import (
    CSeq,
    HeaderError,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    is_token,
    parse_option_tags,
    parse_uri,
    parse_via,
)

__all__ = [
    "SipParseError",
    "CSeqMethodMismatch",
    "Headers",
    "Request",
    "Response",
    "Message",
    "parse_message",
    "make_response",
    "REASON_PHRASES",
    "canonical_name",
    "reason_phrase",
]


class SipParseError(ValueError):
    """A message that could not be parsed.

    ``request`` is the partially parsed request when enough of it was read
    (Via, From, To, Call-ID, CSeq) to answer it with ``status``; otherwise
    the message can only be dropped. ``reason`` is always one printable
    line of bounded length, fit for a status line as it is.
    """

    def __init__(self, reason: str, status: int = 400, request: "Optional[Request]" = None):
        reason = reason_phrase(reason, REASON_PHRASES.get(status, "Bad Request"))
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.request = request


class CSeqMethodMismatch(SipParseError):
    """A request that is well formed except that its CSeq method is not its own.

    Raised after every other check passed, so ``request`` is complete: the
    UAS may still accept it inside a dialog (BroadWorks sends ``BYE`` and
    ``ACK`` with ``CSeq: N INVITE``) and answers 400 anywhere else.
    """


_REASON_LIMIT = 200
_CTL_RE = re.compile(r"[\x00-\x1f\x7f]+")


def reason_phrase(text: str, default: str = "Bad Request", limit: int = _REASON_LIMIT) -> str:
    """Make free text safe for a status line: one line, printable, bounded."""
    text = _CTL_RE.sub(" ", text)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text or default


class _Base:
    headers: Headers
    body: bytes

    # -- typed accessors (raise HeaderError when malformed) -----------------
    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value or not value.strip():
            raise HeaderError("missing Call-ID")
        return value.strip()

    @property
    def cseq(self) -> CSeq:
        value = self.headers.get("CSeq")
        if value is None:
            raise HeaderError("missing CSeq")
        return parse_cseq(value)

    @property
    def from_(self) -> NameAddr:
        value = self.headers.get("From")
        if value is None:
            raise HeaderError("missing From")
        return parse_name_addr(value)

    @property
    def to(self) -> NameAddr:
        value = self.headers.get("To")
        if value is None:
            raise HeaderError("missing To")
        return parse_name_addr(value)

    @property
    def vias(self) -> List[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise HeaderError("missing Via")
        return parse_via(values[0])

    @property
    def content_type(self) -> Optional[str]:
        return self.headers.get("Content-Type")

    def option_tags(self, name: str) -> List[str]:
        return parse_option_tags(self.headers.get_all(name))

    def contacts(self) -> List[NameAddr]:
        return [parse_name_addr(v) for v in self.headers.get_all("Contact")]

    # -- serialisation ------------------------------------------------------
    def _start_line(self) -> str:  # pragma: no cover - overridden
        raise TypeError

    def to_bytes(self) -> bytes:
        """The wire form; Content-Length is always written, from the body."""
        lines = [self._start_line()]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", errors="replace") + self.body

    __bytes__ = to_bytes


class Request(_Base):
    def __init__(self, method: str, uri: str, headers: Optional[Headers] = None,
                 body: bytes = b"", version: str = "SIP/2.0"):
        self.method = method
        self.uri = uri
        self.version = version
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.headers.get('Call-ID')!r}>"


class Response(_Base):
    def __init__(self, status: int, reason: Optional[str] = None,
                 headers: Optional[Headers] = None, body: bytes = b"",
                 version: str = "SIP/2.0"):
        self.status = status
        default = REASON_PHRASES.get(status, "Unknown")
        # Reasons often carry text from a peer or an exception: keep them one safe line.
        self.reason = default if reason is None else reason_phrase(reason, default)
        self.version = version
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.headers.get('Call-ID')!r}>"


Message = Union[Request, Response]

REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
}

_REQUEST_LINE_RE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+) (\S+) (SIP/[0-9]+\.[0-9]+)")
_STATUS_LINE_RE = re.compile(r"(SIP/[0-9]+\.[0-9]+) ([0-9]{3})(?: (.*))?", re.S)
_DIGITS_RE = re.compile(r"[0-9]+")
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Max-Forwards")
_URI_SCHEMES = ("sip", "sips", "tel")


def _split_head(data: bytes) -> Tuple[bytes, bytes]:
    """Split at the first empty line, accepting CRLF or bare LF endings."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(data))
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return data[:crlf], data[crlf + 4 :]
    if lf >= 0:
        return data[:lf], data[lf + 2 :]
    return data, b""


def _decode(head: bytes) -> str:
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError:
        # Headers must be UTF-8; keep going so the message can still be
        # answered, the offending bytes survive as U+FFFD.
        return head.decode("utf-8", errors="replace")


def _parse_header_lines(lines: List[str]) -> Tuple[Headers, Optional[str]]:
    """Unfold and split header lines; returns (headers, first problem)."""
    headers = Headers()
    items = headers._items
    problem: Optional[str] = None
    fields: List[List[str]] = []  # each field as a list of parts, joined once (no quadratic +=)
    for line in lines:
        if line[:1] in (" ", "\t") and fields:
            fields[-1].append(line.strip())
        else:
            fields.append([line])
    for parts in fields:
        line = parts[0] if len(parts) == 1 else " ".join(p for p in parts if p)
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not is_token(name):
            if problem is None:
                problem = f"Malformed header line {line[:40]!r}"
            continue
        value = value.strip()
        if _CTL_IN_VALUE_RE.search(value):
            if problem is None:
                problem = f"Header {name[:40]} contains control characters"
            value = _CTL_IN_VALUE_RE.sub(" ", value)
        items.append((canonical_name(name), value))
    return headers, problem


def parse_message(data: bytes, *, max_size: Optional[int] = None) -> Message:
    """Parse one complete SIP message (a datagram, or a framed stream message).

    Raises :class:`SipParseError` and nothing else; its ``request`` is set
    when a 400 (or ``status``) can be sent back.
    """
    if max_size is not None and len(data) > max_size:
        raise SipParseError(f"Message larger than {max_size} bytes", status=513)
    data = bytes(data).lstrip(b"\r\n")  # RFC 3261 §7.5: CRLFs before the start line
    if not data:
        raise SipParseError("Empty message")
    head, body = _split_head(data)
    text = _decode(head)
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    headers, header_problem = _parse_header_lines(lines[1:])

    message: Message
    status_match = _STATUS_LINE_RE.fullmatch(start)
    if status_match:
        version, code, reason = status_match.groups()
        if version != "SIP/2.0":
            raise SipParseError(f"SIP version {version} not supported", status=505)
        if not 100 <= int(code) <= 699:
            raise SipParseError(f"Status code {code} out of range")
        message = Response(int(code), reason or "", headers=headers, version=version)
    else:
        request_match = _REQUEST_LINE_RE.fullmatch(start)
        if not request_match and start[:4].upper() == "SIP/":
            # A garbled status line: responses are never answered.
            raise SipParseError(f"Malformed status line {start[:60]!r}")
        if not request_match:
            provisional = Request("", "", headers=headers)
            raise SipParseError(
                f"Malformed request line {start[:60]!r}",
                request=_answerable(provisional),
            )
        method, uri, version = request_match.groups()
        message = Request(method.upper(), uri, headers=headers, version=version)
        if version != "SIP/2.0":
            raise SipParseError(
                f"SIP version {version} not supported", status=505, request=_answerable(message)
            )

    _attach_body(message, body)

    if isinstance(message, Request):
        status = 400
        problem = header_problem or _check_request(message)
        if problem is None:
            problem, status = _check_request_uri(message)
        if problem:
            raise SipParseError(problem, status=status, request=_answerable(message))
        cseq_method = message.cseq.method
        if cseq_method != message.method:
            raise CSeqMethodMismatch(
                f"CSeq method {cseq_method[:20]} does not match request method {message.method[:20]}",
                request=_answerable(message),
            )
    else:
        for name in _MANDATORY:
            if not headers.get(name):
                raise SipParseError(f"Response missing {name}")
    return message


def _attach_body(message: Message, body: bytes) -> None:
    values = message.headers.get_all("Content-Length")
    if not values:
        message.body = body
        return
    request = message if isinstance(message, Request) else None
    length_text = values[0].strip()
    if any(v.strip() != length_text for v in values[1:]):
        message.body = body
        raise SipParseError("Conflicting Content-Length headers", request=_answerable_opt(request))
    if _DIGITS_RE.fullmatch(length_text) is None:
        message.body = body
        raise SipParseError(
            f"Content-Length {length_text[:20]!r} is not a number",
            request=_answerable_opt(request),
        )
    # Compare as text first: int() of thousands of digits is slow (and capped).
    length = int(length_text) if len(length_text) <= 12 else len(body) + 1
    if length > len(body):
        message.body = body
        raise SipParseError(
            f"Content-Length {length_text[:20]} exceeds the {len(body)} body bytes received",
            request=_answerable_opt(request),
        )
    # RFC 3261 §18.3: extra bytes after Content-Length in a datagram are discarded.
    message.body = body[:length]


def _check_request(request: Request) -> Optional[str]:
    headers = request.headers
    for name in _MANDATORY:
        if name not in headers:
            return f"Missing {name} header"
    for name in _SINGLE:
        if headers.count(name) > 1:
            return f"More than one {name} header"
    try:
        request.top_via
    except HeaderError as e:
        return f"Bad Via header: {e}"
    try:
        request.cseq
    except HeaderError as e:
        return f"Bad CSeq header: {e}"
    for name in ("From", "To"):
        try:
            parse_name_addr(headers.get(name) or "")
        except HeaderError as e:
            return f"Bad {name} header: {e}"
    if not (headers.get("Call-ID") or "").strip():
        return "Empty Call-ID header"
    mf = headers.get("Max-Forwards")
    if mf is not None and _DIGITS_RE.fullmatch(mf.strip()) is None:
        return f"Max-Forwards {mf[:20]!r} is not a number"
    return None


def _check_request_uri(request: Request) -> Tuple[Optional[str], int]:
    """RFC 3261 §8.2.2.1: an unknown scheme is 416, a malformed URI 400."""
    try:
        uri = parse_uri(request.uri)
    except HeaderError as e:
        return f"Bad Request-URI: {e}", 400
    if uri.scheme not in _URI_SCHEMES:
        return f"URI scheme {uri.scheme[:20]} not supported", 416
    return None, 400


def _answerable_opt(request: Optional[Request]) -> Optional[Request]:
    return _answerable(request) if request is not None else None


def _answerable(request: Request) -> Optional[Request]:
    """The request if a response can be routed and matched back, else None."""
    headers = request.headers
    for name in _MANDATORY:
        if not (headers.get(name) or "").strip():
            return None  # an empty (or control-character-only) value cannot be copied back
    try:
        request.top_via
        cseq = request.cseq
    except HeaderError:
        return None
    if not request.method:
        request.method = cseq.method
    if not request.uri:
        request.uri = "sip:invalid"  # the request line was unreadable; keep the object printable
    return request


def make_response(
    request: Request,
    status: int,
    reason: Optional[str] = None,
    *,
    to_tag: Optional[str] = None,
    headers: Iterable[Tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response per RFC 3261 §8.2.6: Via, From, To, Call-ID, CSeq copied.

    ``to_tag`` is added to To unless it has one already or the status is 100
    (§8.2.6.2); a 100 copies Timestamp (§8.2.6.1).
    """
    response = Response(status, reason)
    for value in request.headers.get_all("Via"):
        response.headers.add("Via", value)
    response.headers.add("From", request.headers.get("From", ""))
    to_value = request.headers.get("To", "")
    if to_tag and status > 100:
        try:
            to = parse_name_addr(to_value)
        except HeaderError:
            to = None
        if to is not None and to.tag is None:
            to_value = f"{to_value};tag={to_tag}"
    response.headers.add("To", to_value)
    response.headers.add("Call-ID", request.headers.get("Call-ID", ""))
    response.headers.add("CSeq", request.headers.get("CSeq", ""))
    if status == 100 and "Timestamp" in request.headers:
        response.headers.add("Timestamp", request.headers.get("Timestamp", ""))
    for name, value in headers:
        response.headers.add(name, value)
    response.body = body
    return response

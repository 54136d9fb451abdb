"""SIP messages (RFC 3261 §7, §20): parse and serialise, no I/O.

Headers are kept as received (name canonicalised, value untouched) and
parsed into typed values only on demand, so that a malformed header the
server can do without never costs a call.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, List, Optional, Tuple, Union

from siprec.sip.headers import (
    CSeq,
    HeaderError,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_option_tags,
    parse_via,
    split_commas,
)

__all__ = [
    "SipParseError",
    "Headers",
    "Request",
    "Response",
    "Message",
    "parse_message",
    "make_response",
    "REASON_PHRASES",
    "canonical_name",
]


class SipParseError(ValueError):
    """A message that could not be parsed.

    ``request`` is the partially parsed request when enough of it was read
    (Via, From, To, Call-ID, CSeq) to answer it with ``status``; otherwise
    the message can only be dropped.
    """

    def __init__(self, reason: str, status: int = 400, request: "Optional[Request]" = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.request = request


COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_SPECIAL_CASE = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "min-se": "Min-SE",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "session-id": "Session-ID",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
    "user-to-user": "User-to-User",
}

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1).
_LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "Allow-Events",
    )
)

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")


def canonical_name(name: str) -> str:
    """Canonical spelling of a header name (compact forms expanded)."""
    lower = name.strip().lower()
    if lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    if lower in _SPECIAL_CASE:
        return _SPECIAL_CASE[lower]
    return "-".join(part.capitalize() for part in lower.split("-"))


class Headers:
    """An ordered, case-insensitive multi-map of header fields."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Tuple[str, str]] = ()):
        self._items: List[Tuple[str, str]] = [(canonical_name(n), v) for n, v in items]

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        key = canonical_name(name)
        return any(n == key for n, _ in self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> "Headers":
        new = Headers()
        new._items = list(self._items)
        return new

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        key = canonical_name(name)
        for n, v in self._items:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> List[str]:
        """Every value of ``name``; list-valued headers split on commas."""
        key = canonical_name(name)
        values = [v for n, v in self._items if n == key]
        if key.lower() in _LIST_HEADERS:
            out: List[str] = []
            for v in values:
                out.extend(split_commas(v))
            return out
        return values

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), str(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field with one, at the first one's place."""
        key = canonical_name(name)
        for i, (n, _) in enumerate(self._items):
            if n == key:
                self._items[i] = (key, str(value))
                self._items = [
                    item for j, item in enumerate(self._items) if j <= i or item[0] != key
                ]
                return
        self._items.append((key, str(value)))

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [(n, v) for n, v in self._items if n != key]

    def names(self) -> List[str]:
        return [n for n, _ in self._items]


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
        lines = [self._start_line()]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8") + self.body

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
        self.reason = reason if reason is not None else REASON_PHRASES.get(status, "Unknown")
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

_REQUEST_LINE_RE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) (SIP/\d+\.\d+)$")
_STATUS_LINE_RE = re.compile(r"^(SIP/\d+\.\d+) (\d{3})(?: (.*))?$")
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")


def _split_head(data: bytes) -> Tuple[bytes, bytes]:
    """Split at the first empty line, accepting CRLF or bare LF endings."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
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
    problem: Optional[str] = None
    unfolded: List[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    for line in unfolded:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name or not _TOKEN_RE.match(name):
            if problem is None:
                problem = f"Malformed header line {line[:40]!r}"
            continue
        headers.add(name, value.strip())
    return headers, problem


def parse_message(data: bytes, *, max_size: Optional[int] = None) -> Message:
    """Parse one complete SIP message (a datagram, or a framed stream message).

    Raises :class:`SipParseError`; its ``request`` is set when a 400 can
    be sent back.
    """
    if max_size is not None and len(data) > max_size:
        raise SipParseError(f"Message larger than {max_size} bytes", status=513)
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("Empty message")
    head, body = _split_head(data)
    text = _decode(head)
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    headers, header_problem = _parse_header_lines(lines[1:])

    status_match = _STATUS_LINE_RE.match(start)
    if status_match:
        version, code, reason = status_match.groups()
        message: Message = Response(int(code), reason or "", headers=headers, version=version)
        if not 100 <= int(code) <= 699:
            raise SipParseError(f"Status code {code} out of range")
    else:
        request_match = _REQUEST_LINE_RE.match(start)
        provisional = Request("", "", headers=headers)
        if not request_match:
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
        problem = header_problem or _check_request(message)
        if problem:
            raise SipParseError(problem, request=_answerable(message))
    else:
        for name in _MANDATORY:
            if name not in headers:
                raise SipParseError(f"Response missing {name}")
    return message


def _attach_body(message: Message, body: bytes) -> None:
    length_text = message.headers.get("Content-Length")
    if length_text is None:
        message.body = body
        return
    length_text = length_text.strip()
    if not length_text.isdigit():
        message.body = body
        raise SipParseError(
            f"Content-Length {length_text!r} is not a number",
            request=_answerable(message) if isinstance(message, Request) else None,
        )
    length = int(length_text)
    if length > len(body):
        message.body = body
        raise SipParseError(
            f"Content-Length {length} exceeds the {len(body)} body bytes received",
            request=_answerable(message) if isinstance(message, Request) else None,
        )
    # RFC 3261 §18.3: extra bytes after Content-Length in a datagram are discarded.
    message.body = body[:length]


def _check_request(request: Request) -> Optional[str]:
    headers = request.headers
    for name in _MANDATORY:
        if name not in headers:
            return f"Missing {name} header"
    try:
        request.top_via
    except HeaderError as e:
        return f"Bad Via header: {e}"
    try:
        cseq = request.cseq
    except HeaderError as e:
        return f"Bad CSeq header: {e}"
    if cseq.method != request.method:
        return f"CSeq method {cseq.method} does not match request method {request.method}"
    for name in ("From", "To"):
        try:
            parse_name_addr(headers.get(name) or "")
        except HeaderError as e:
            return f"Bad {name} header: {e}"
    if not request.headers.get("Call-ID", "").strip():
        return "Empty Call-ID header"
    uri = request.uri
    if ":" not in uri:
        return f"Request-URI {uri[:60]!r} has no scheme"
    mf = headers.get("Max-Forwards")
    if mf is not None and not mf.strip().isdigit():
        return f"Max-Forwards {mf!r} is not a number"
    return None


def _answerable(request: Request) -> Optional[Request]:
    """The request if a response can be routed and matched back, else None."""
    headers = request.headers
    for name in _MANDATORY:
        if not headers.get(name):
            return None
    try:
        request.top_via
        cseq = request.cseq
    except HeaderError:
        return None
    if not request.method:
        request.method = cseq.method
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
    """Build a response per RFC 3261 §8.2.6: Via, From, To, Call-ID, CSeq copied."""
    response = Response(status, reason)
    for name in ("Via",):
        for value in request.headers.get_all(name):
            response.headers.add(name, value)
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

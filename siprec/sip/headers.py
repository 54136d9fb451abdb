"""Typed values inside SIP headers: URIs, name-addr, Via, CSeq, parameters.

Sans-IO and strict about what they produce; every malformed input raises
:class:`HeaderError` with a short, single-line message that can go into a
400 reason phrase (offending text is quoted and cut to a few dozen
characters, so hostile input cannot inflate or split a status line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Dict, Iterator, List, Optional, Tuple

__all__ = [
    "HeaderError",
    "Params",
    "SipURI",
    "NameAddr",
    "Via",
    "CSeq",
    "split_commas",
    "parse_params",
    "parse_uri",
    "parse_name_addr",
    "repair_name_addr",
    "parse_via",
    "parse_cseq",
    "parse_option_tags",
    "iter_name_addrs",
    "quote_string",
    "format_host",
    "is_token",
    "BRANCH_MAGIC",
]

BRANCH_MAGIC = "z9hG4bK"
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_DIGITS_RE = re.compile(r"[0-9]+")  # str.isdigit() also accepts '²', which int() rejects
_HOST_RE = re.compile(r"[A-Za-z0-9\-._:%]+")
_HOSTISH_RE = re.compile(r"[\[\]A-Za-z0-9:.\-]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_CTL_RE = re.compile(r"[\x00-\x1f\x7f]")
_VIA_RE = re.compile(r"([A-Za-z0-9.\-]+)\s*/\s*([0-9.]+)\s*/\s*([A-Za-z0-9\-]+)\s+(.*)", re.S)


class HeaderError(ValueError):
    """A header value that cannot be understood."""


Params = Dict[str, Optional[str]]


def is_token(text: str) -> bool:
    """RFC 3261 ``token``: what method names, header names and param names are made of."""
    return _TOKEN_RE.fullmatch(text) is not None


def _is_digits(text: str) -> bool:
    return _DIGITS_RE.fullmatch(text) is not None


def _snippet(text: str, limit: int = 40) -> str:
    """Quote hostile text for an error message: bounded, one line."""
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def _scan_unquoted(text: str):
    """(index, char) of every character outside quoted strings (RFC 3261 quoted-pair
    aware); a final (-1, "") when a quote is left open."""
    quoted = False
    escaped = False
    for i, ch in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        else:
            yield i, ch
    if quoted:
        yield -1, ""


def split_unquoted(value: str, separator: str, angle_brackets: bool = False) -> List[str]:
    """Split on ``separator`` outside quoted strings (and ``<>`` when asked); pieces untrimmed."""
    parts: List[str] = []
    depth = 0
    start = 0
    for i, ch in _scan_unquoted(value):
        if angle_brackets and ch == "<":
            depth += 1
        elif angle_brackets and ch == ">":
            depth = max(0, depth - 1)
        elif ch == separator and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


def split_commas(value: str) -> List[str]:
    """Split a header value on commas that are outside quotes and ``<>``."""
    return [p for p in (part.strip() for part in split_unquoted(value, ",", True)) if p]


def _split_semicolons(value: str) -> List[str]:
    return split_unquoted(value, ";")


def parse_params(text: str) -> Params:
    """Parse ``;a=b;c`` (leading semicolon optional) into an ordered dict.

    Names are lower-cased (parameter names are case-insensitive); values
    keep their case, quotes removed. A parameter without a value maps to None.
    """
    params: Params = {}
    text = text.strip()
    if not text:
        return params
    if text.startswith(";"):
        text = text[1:]
    for item in _split_semicolons(text):
        item = item.strip()
        if not item:
            continue
        name, sep, val = item.partition("=")
        name = name.strip().lower()
        value: Optional[str] = None
        if sep:
            value = val.strip()
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = _unquote(value[1:-1])
        if not is_token(name):
            raise HeaderError(f"bad parameter name {_snippet(name)}")
        params[name] = value
    return params


def _unquote(text: str) -> str:
    if "\\" not in text:
        return text
    out = []
    escaped = False
    for ch in text:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


def quote_string(text: str) -> str:
    """A quoted-string for a display name or parameter; control characters become spaces."""
    text = _CTL_RE.sub(" ", text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_params(params: Params) -> str:
    out = []
    for name, val in params.items():
        if val is None:
            out.append(f";{name}")
        elif val == "" or is_token(val) or _HOSTISH_RE.fullmatch(val):
            out.append(f";{name}={val}")
        else:
            out.append(f";{name}={quote_string(val)}")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class SipURI:
    """A ``sip:``/``sips:`` URI.

    Other schemes are kept opaque (``opaque`` is everything after the
    colon, and is what ``str()`` gives back); for ``tel:`` the number is
    also offered as ``user`` and its parameters as ``params``.
    """

    scheme: str
    user: Optional[str] = None
    password: Optional[str] = None
    host: str = ""
    port: Optional[int] = None
    params: Params = field(default_factory=dict)
    headers: Optional[str] = None
    opaque: Optional[str] = None  # for non-SIP schemes: everything after ':'

    def __hash__(self) -> int:  # params is a dict; hash the wire form
        return hash(str(self))

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def transport(self) -> Optional[str]:
        value = self.params.get("transport")
        return value.lower() if value else None

    def with_params(self, **params: Optional[str]) -> "SipURI":
        merged = dict(self.params)
        merged.update(params)
        return replace(self, params=merged)

    def __str__(self) -> str:
        if not self.is_sip:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(format_host(self.host))
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(_format_params(self.params))
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)


def format_host(host: str) -> str:
    """Bracket an IPv6 literal for use in a URI or Via."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _parse_hostport(text: str, what: str) -> Tuple[str, Optional[int]]:
    text = text.strip()
    if not text:
        raise HeaderError(f"{what} has no host")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise HeaderError(f"{what} has an unterminated IPv6 reference")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise HeaderError(f"{what} has text after the IPv6 reference: {_snippet(rest)}")
    else:
        host, sep, rest = text.partition(":")
        rest = sep + rest
    port: Optional[int] = None
    if rest:
        digits = rest[1:]
        if not _is_digits(digits) or len(digits) > 5:
            raise HeaderError(f"{what} has a bad port {_snippet(digits)}")
        port = int(digits)
        if not 0 < port < 65536:
            raise HeaderError(f"{what} port {port} is out of range")
    if not host or _HOST_RE.fullmatch(host) is None:
        raise HeaderError(f"{what} has a bad host {_snippet(host)}")
    return host.lower(), port


def parse_uri(text: str) -> SipURI:
    """Parse a URI; ``sip``/``sips`` fully, other schemes opaquely."""
    text = text.strip()
    if _CTL_RE.search(text):
        raise HeaderError(f"URI {_snippet(text)} contains control characters")
    scheme, sep, rest = text.partition(":")
    if not sep or _SCHEME_RE.fullmatch(scheme) is None:
        raise HeaderError(f"URI {_snippet(text)} has no scheme")
    scheme = scheme.lower()
    if scheme not in ("sip", "sips"):
        if not rest:
            raise HeaderError(f"URI {_snippet(text)} is empty after the scheme")
        if scheme == "tel":
            return _parse_tel(rest)
        return SipURI(scheme=scheme, opaque=rest)
    # '@' may not appear unescaped after the host, but the user part may
    # hold ';' and '?' (RFC 3261 §25.1 user-unreserved), so the first '@'
    # ends the userinfo.
    userinfo: Optional[str] = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
    rest, qmark, headers = rest.partition("?")
    hostport, _, params_text = rest.partition(";")
    host, port = _parse_hostport(hostport, "URI")
    user = password = None
    if userinfo is not None:
        user, sep, pw = userinfo.partition(":")
        password = pw if sep else None
        if not user:
            raise HeaderError(f"URI {_snippet(text)} has an empty user part")
    return SipURI(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=parse_params(params_text),
        headers=headers if qmark else None,
    )


def _parse_tel(rest: str) -> SipURI:
    """RFC 3966: keep it verbatim, but expose the number and parameters."""
    number, _, params_text = rest.partition(";")
    if not number.strip():
        raise HeaderError("tel URI has no number")
    try:
        params = parse_params(params_text)
    except HeaderError:
        params = {}
    return SipURI(scheme="tel", user=number.strip(), params=params, opaque=rest)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From/To/Contact/Route value: optional display name, URI, header params."""

    uri: SipURI
    display_name: Optional[str] = None
    params: Params = field(default_factory=dict)
    wildcard: bool = False

    def __hash__(self) -> int:
        return hash(str(self))

    @property
    def tag(self) -> Optional[str]:
        return self.params.get("tag")

    def with_params(self, **params: Optional[str]) -> "NameAddr":
        merged = dict(self.params)
        merged.update(params)
        return replace(self, params=merged)

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        name = ""
        if self.display_name:
            name = quote_string(self.display_name) + " "
        return f"{name}<{self.uri}>{_format_params(self.params)}"


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``"Name" <uri>;params``, ``Name <uri>``, ``uri;params`` or ``*``."""
    text = text.strip()
    if text == "*":
        return NameAddr(uri=SipURI(scheme="sip", host="*"), wildcard=True)
    if not text:
        raise HeaderError("empty address")
    lt = _find_unquoted(text, "<")
    if lt == -2:
        raise HeaderError("address has an unterminated quoted display name")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise HeaderError("address has '<' without '>'")
        display = _parse_display(text[:lt].strip())
        uri = parse_uri(text[lt + 1 : gt])
        tail = text[gt + 1 :].strip()
        if tail and not tail.startswith(";"):
            raise HeaderError(f"address has text after '>': {_snippet(tail)}")
        return NameAddr(uri=uri, display_name=display or None, params=parse_params(tail))
    # addr-spec: parameters after the URI belong to the header (RFC 3261 §20.10)
    uri_text, _, params_text = text.partition(";")
    if any(ch.isspace() for ch in uri_text.strip()) or '"' in uri_text:
        raise HeaderError(f"address {_snippet(text)} is neither name-addr nor addr-spec")
    return NameAddr(uri=parse_uri(uri_text), params=parse_params(params_text))


def repair_name_addr(text: str) -> Optional[NameAddr]:
    """A name-addr some SRCs send broken, read as meant; None when it is not one of those.

    Known breakage: an unclosed ``<`` (``<sip:src@192.0.2.1;transport=udp``);
    everything after it is taken as the URI when that is a sip/sips URI.
    Callers note the repair.
    """
    text = text.strip()
    lt = _find_unquoted(text, "<")
    if lt < 0 or text.find(">", lt) >= 0:
        return None
    try:
        uri = parse_uri(text[lt + 1 :])
        display = _parse_display(text[:lt].strip()) or None
    except HeaderError:
        return None
    # Only a SIP URI is worth guessing at: 'Require: siprec' also "parses" as a URI.
    return NameAddr(uri=uri, display_name=display) if uri.is_sip else None


def _parse_display(display: str) -> str:
    if not display.startswith('"'):
        return display
    escaped = False
    for i in range(1, len(display)):
        ch = display[i]
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            name = _unquote(display[1:i])
            tail = display[i + 1 :].strip()
            return f"{name} {tail}" if tail else name  # tolerate text after the quotes
    raise HeaderError("address has an unterminated quoted display name")


def _find_unquoted(text: str, needle: str) -> int:
    """Index of ``needle`` outside quotes; -1 if absent, -2 if a quote is left open."""
    for i, ch in _scan_unquoted(text):
        if i < 0:
            return -2
        if ch == needle:
            return i
    return -1


@dataclass(frozen=True, slots=True)
class Via:
    transport: str
    host: str
    port: Optional[int] = None
    params: Params = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    def __hash__(self) -> int:
        return hash(str(self))

    @property
    def branch(self) -> Optional[str]:
        return self.params.get("branch")

    @property
    def rfc3261_branch(self) -> bool:
        branch = self.branch
        return bool(branch) and branch.startswith(BRANCH_MAGIC)

    @property
    def sent_by(self) -> Tuple[str, int]:
        return self.host, self.port or (5061 if self.transport in ("TLS", "WSS") else 5060)

    def with_params(self, **params: Optional[str]) -> "Via":
        merged = dict(self.params)
        merged.update(params)
        return replace(self, params=merged)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return (
            f"{self.protocol}/{self.transport} {format_host(self.host)}{port}"
            f"{_format_params(self.params)}"
        )


def parse_via(text: str) -> Via:
    """One Via value (split a multi-value header with :func:`split_commas` first)."""
    text = text.strip()
    m = _VIA_RE.fullmatch(text)
    if not m:
        raise HeaderError(f"Via {_snippet(text)} is not 'SIP/2.0/<transport> <host>'")
    name, version, transport, rest = m.groups()
    if name.upper() != "SIP" or version != "2.0":
        raise HeaderError(f"Via protocol {_snippet(name + '/' + version)} is not SIP/2.0")
    hostport, _, params_text = rest.partition(";")
    host, port = _parse_hostport(hostport, "Via")
    return Via(transport=transport.upper(), host=host, port=port, params=parse_params(params_text))


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2 or not _is_digits(parts[0]) or not is_token(parts[1]):
        raise HeaderError(f"CSeq {_snippet(text)} is not '<number> <method>'")
    if len(parts[0]) > 10 or int(parts[0]) >= 2**31:
        raise HeaderError(f"CSeq number {_snippet(parts[0])} is too large")
    return CSeq(int(parts[0]), parts[1].upper())


def parse_option_tags(values: List[str]) -> List[str]:
    """Require/Supported/Proxy-Require values into lower-case option tags."""
    tags: List[str] = []
    for value in values:
        for tag in split_commas(value):
            tags.append(tag.strip().lower())
    return tags


def iter_name_addrs(values: List[str]) -> Iterator[NameAddr]:
    for value in values:
        for item in split_commas(value):
            yield parse_name_addr(item)

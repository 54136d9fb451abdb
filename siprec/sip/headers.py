"""Typed values inside SIP headers: URIs, name-addr, Via, CSeq, parameters.

Sans-IO and strict about what they produce; every malformed input raises
:class:`HeaderError` with a message that can go into a 400 reason phrase.
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
    "parse_via",
    "parse_cseq",
    "parse_option_tags",
    "quote_string",
    "BRANCH_MAGIC",
]

BRANCH_MAGIC = "z9hG4bK"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")


class HeaderError(ValueError):
    """A header value that cannot be understood."""


Params = Dict[str, Optional[str]]


def split_commas(value: str) -> List[str]:
    """Split a header value on commas that are outside quotes and ``<>``."""
    parts: List[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for i, ch in enumerate(value):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def _split_semicolons(value: str) -> List[str]:
    parts: List[str] = []
    quoted = False
    start = 0
    for i, ch in enumerate(value):
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


def parse_params(text: str) -> Params:
    """Parse ``;a=b;c`` (leading semicolon optional) into an ordered dict.

    Names are lower-cased (parameter names are case-insensitive); values
    keep their case, quotes removed.
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
        if "=" in item:
            name, _, val = item.partition("=")
            name = name.strip().lower()
            val = val.strip()
            if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
                val = _unquote(val[1:-1])
        else:
            name, val = item.lower(), None
        if not name or not _TOKEN_RE.match(name):
            raise HeaderError(f"bad parameter name {name!r}")
        params[name] = val
    return params


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def quote_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_params(params: Params) -> str:
    out = []
    for name, val in params.items():
        if val is None:
            out.append(f";{name}")
        elif val == "" or _TOKEN_RE.match(val) or _HOSTISH_RE.match(val):
            out.append(f";{name}={val}")
        else:
            out.append(f";{name}={quote_string(val)}")
    return "".join(out)


_HOSTISH_RE = re.compile(r"^[\[\]A-Za-z0-9:.\-]+$")


@dataclass(frozen=True)
class SipURI:
    """A ``sip:``/``sips:`` URI; other schemes (``tel:``) are kept opaque."""

    scheme: str
    user: Optional[str] = None
    password: Optional[str] = None
    host: str = ""
    port: Optional[int] = None
    params: Params = field(default_factory=dict)
    headers: Optional[str] = None
    opaque: Optional[str] = None  # for non-SIP schemes: everything after ':'

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
    else:
        host, sep, rest = text.partition(":")
        rest = sep + rest
    port: Optional[int] = None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit():
            raise HeaderError(f"{what} has a bad port {rest[1:]!r}")
        port = int(rest[1:])
        if not 0 < port < 65536:
            raise HeaderError(f"{what} port {port} is out of range")
    if not host or not re.match(r"^[A-Za-z0-9\-._:%]+$", host):
        raise HeaderError(f"{what} has a bad host {host!r}")
    return host.lower(), port


def parse_uri(text: str) -> SipURI:
    text = text.strip()
    scheme, sep, rest = text.partition(":")
    if not sep or not scheme or not re.match(r"^[A-Za-z][A-Za-z0-9+\-.]*$", scheme):
        raise HeaderError(f"URI {text!r} has no scheme")
    scheme = scheme.lower()
    if scheme not in ("sip", "sips"):
        if not rest:
            raise HeaderError(f"URI {text!r} is empty after the scheme")
        return SipURI(scheme=scheme, opaque=rest)
    headers = None
    if "?" in rest:
        rest, _, headers = rest.partition("?")
    userinfo = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
    hostport, _, params_text = rest.partition(";")
    host, port = _parse_hostport(hostport, "URI")
    user = password = None
    if userinfo is not None:
        user, sep, pw = userinfo.partition(":")
        password = pw if sep else None
        if not user:
            raise HeaderError(f"URI {text!r} has an empty user part")
    return SipURI(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=parse_params(params_text),
        headers=headers,
    )


@dataclass(frozen=True)
class NameAddr:
    """From/To/Contact/Route value: optional display name, URI, header params."""

    uri: SipURI
    display_name: Optional[str] = None
    params: Params = field(default_factory=dict)
    wildcard: bool = False

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
    text = text.strip()
    if text == "*":
        return NameAddr(uri=SipURI(scheme="sip", host="*"), wildcard=True)
    if not text:
        raise HeaderError("empty address")
    lt = _find_unquoted(text, "<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise HeaderError("address has '<' without '>'")
        display = text[:lt].strip()
        if display.startswith('"'):
            if len(display) < 2 or not display.endswith('"'):
                raise HeaderError("address has an unterminated display name")
            display = _unquote(display[1:-1])
        uri = parse_uri(text[lt + 1 : gt])
        params = parse_params(text[gt + 1 :])
        return NameAddr(uri=uri, display_name=display or None, params=params)
    # addr-spec: parameters after the URI belong to the header (RFC 3261 20.10)
    uri_text, sep, params_text = text.partition(";")
    if " " in uri_text.strip():
        raise HeaderError(f"address {text!r} is neither name-addr nor addr-spec")
    return NameAddr(uri=parse_uri(uri_text), params=parse_params(params_text))


def _find_unquoted(text: str, needle: str) -> int:
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif ch == needle and not quoted:
            return i
    return -1


@dataclass(frozen=True)
class Via:
    transport: str
    host: str
    port: Optional[int] = None
    params: Params = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> Optional[str]:
        return self.params.get("branch")

    @property
    def rfc3261_branch(self) -> bool:
        return bool(self.branch) and self.branch.startswith(BRANCH_MAGIC)

    @property
    def sent_by(self) -> Tuple[str, int]:
        return self.host, self.port or (5061 if self.transport == "TLS" else 5060)

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
    text = text.strip()
    m = re.match(r"^([A-Za-z0-9.\-]+)\s*/\s*([0-9.]+)\s*/\s*([A-Za-z0-9\-]+)\s+(.*)$", text, re.S)
    if not m:
        raise HeaderError(f"Via {text!r} is not 'SIP/2.0/<transport> <host>'")
    name, version, transport, rest = m.groups()
    if name.upper() != "SIP" or version != "2.0":
        raise HeaderError(f"Via protocol {name}/{version} is not SIP/2.0")
    hostport, _, params_text = rest.partition(";")
    # tolerate whitespace around the host (but not inside it)
    host, port = _parse_hostport(hostport.strip(), "Via")
    return Via(transport=transport.upper(), host=host, port=port, params=parse_params(params_text))


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise HeaderError(f"CSeq {text!r} is not '<number> <method>'")
    number = int(parts[0])
    if number >= 2**31:
        raise HeaderError(f"CSeq number {number} is too large")
    return CSeq(number, parts[1].upper())


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

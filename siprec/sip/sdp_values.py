"""SDP (RFC 4566 / RFC 8866) values: frozen, validated, serialised canonically.

The parser lives in :mod:`siprec.sip.sdp`, which also re-exports everything
here; import from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from siprec.media.spec import PayloadFormat

Attribute = Tuple[str, Optional[str]]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# RFC 3551 §6, tables 4 and 5: static payload types, used when a payload type
# below 96 appears on the m= line without an a=rtpmap line.
# (encoding, RTP clock rate, channels)
STATIC_PAYLOAD_TYPES: Dict[int, Tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    # G.722 samples at 16 kHz but its RTP clock is 8000 (RFC 3551 §4.5.2).
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
    25: ("CELB", 90000, 1),
    26: ("JPEG", 90000, 1),
    28: ("NV", 90000, 1),
    31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1),
    33: ("MP2T", 90000, 1),
    34: ("H263", 90000, 1),
}

_UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::", "0:0:0:0:0:0:0:0"})
_FORBIDDEN_CHARS = ("\r", "\n", "\x00")


# ---------------------------------------------------------------- helpers


def _is_number(text: str) -> bool:
    """ASCII digits only: ``int()`` would also take '٣', '1_0' and ' 1'."""
    return text.isascii() and text.isdigit()


def _check_token(value: str, what: str) -> None:
    """A field that is one space-separated token on the wire."""
    if not value or any(c.isspace() for c in value) or _has_forbidden(value):
        raise ValueError(f"{what} must be one non-empty token, got {value!r}")


def _has_forbidden(value: str) -> bool:
    return any(c in value for c in _FORBIDDEN_CHARS)


def _find(attributes: Iterable[Attribute], name: str) -> List[Optional[str]]:
    """Values of every attribute called ``name`` (names compared case-insensitively)."""
    wanted = name.lower()
    return [value for key, value in attributes if key.strip().lower() == wanted]


def _direction_of(attributes: Iterable[Attribute]) -> Optional[str]:
    for key, value in attributes:
        if value is None and key.strip().lower() in DIRECTIONS:
            return key.strip().lower()
    return None


# ---------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=``: identifies the session and, by its version, each new offer/answer."""

    username: str
    session_id: str
    session_version: int
    nettype: str
    addrtype: str
    address: str

    def __post_init__(self) -> None:
        for name in ("username", "session_id", "nettype", "addrtype", "address"):
            _check_token(getattr(self, name), f"o= {name}")
        if self.session_version < 0:
            raise ValueError("o= session version must not be negative")

    def bumped(self) -> "Origin":
        """The origin for the next description of the same session (RFC 3264 §8)."""
        return Origin(self.username, self.session_id, self.session_version + 1,
                      self.nettype, self.addrtype, self.address)

    def to_value(self) -> str:
        return (f"{self.username} {self.session_id} {self.session_version} "
                f"{self.nettype} {self.addrtype} {self.address}")


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=``; ``address`` stays raw (it may carry ``/ttl`` or ``/count``)."""

    nettype: str
    addrtype: str
    address: str

    def __post_init__(self) -> None:
        for name in ("nettype", "addrtype", "address"):
            _check_token(getattr(self, name), f"c= {name}")

    @property
    def host(self) -> str:
        """The address without any multicast ``/ttl`` or ``/count`` suffix."""
        return self.address.split("/", 1)[0]

    @property
    def is_unspecified(self) -> bool:
        """0.0.0.0 (or ::) means 'do not send to me': the RFC 2543 style of hold."""
        return self.host in _UNSPECIFIED_HOSTS

    def to_value(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>``."""

    bwtype: str
    bandwidth: int

    def to_value(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class Timing:
    """``t=`` with the ``r=`` lines that follow it (kept raw; we never schedule)."""

    start: int = 0
    stop: int = 0
    repeats: Tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section with its lines, attributes in their original order."""

    media: str
    port: int
    proto: str
    formats: Tuple[str, ...]
    port_count: Optional[int] = None
    information: Optional[str] = None
    connections: Tuple[Connection, ...] = ()
    bandwidths: Tuple[Bandwidth, ...] = ()
    key: Optional[str] = None
    attributes: Tuple[Attribute, ...] = ()
    # Lines of types not defined at media level, kept verbatim (type, value).
    other_lines: Tuple[Tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _check_token(self.media, "m= media")
        _check_token(self.proto, "m= proto")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"m= port {self.port} out of range")
        if self.port_count is not None and self.port_count < 1:
            raise ValueError("m= port count must be at least 1")
        for fmt in self.formats:
            _check_token(fmt, "m= format")

    # -- generic attribute access

    def attribute(self, name: str) -> Optional[str]:
        """Value of the first ``a=name`` (None when absent or a flag)."""
        values = _find(self.attributes, name)
        return values[0] if values else None

    def attribute_values(self, name: str) -> List[Optional[str]]:
        return _find(self.attributes, name)

    def has_attribute(self, name: str) -> bool:
        return bool(_find(self.attributes, name))

    # -- what SIPREC needs

    @property
    def connection(self) -> Optional[Connection]:
        return self.connections[0] if self.connections else None

    @property
    def label(self) -> Optional[str]:
        """``a=label`` (RFC 4574): ties the stream to the recording metadata."""
        return self.attribute("label")

    @property
    def own_direction(self) -> Optional[str]:
        """The direction attribute of this m= section only, if any."""
        return _direction_of(self.attributes)

    def direction(self, session: Optional["SessionDescription"] = None) -> str:
        """Media-level direction, else the session-level one, else sendrecv."""
        own = self.own_direction
        if own is not None:
            return own
        if session is not None and session.direction is not None:
            return session.direction
        return "sendrecv"

    def effective_connection(
        self, session: Optional["SessionDescription"] = None
    ) -> Optional[Connection]:
        """Media ``c=`` if present, else the session's."""
        if self.connection is not None:
            return self.connection
        return session.connection if session is not None else None

    def is_hold(self, session: Optional["SessionDescription"] = None) -> bool:
        """Held either RFC 2543 style (c=0.0.0.0) or RFC 3264 style (inactive)."""
        conn = self.effective_connection(session)
        if conn is not None and conn.is_unspecified:
            return True
        return self.direction(session) == "inactive"

    @property
    def ptime(self) -> Optional[int]:
        """``a=ptime`` in milliseconds, None when absent or unreadable."""
        value = self.attribute("ptime")
        if value is None:
            return None
        value = value.strip()
        whole, _, fraction = value.partition(".")
        if _is_number(whole) and (fraction == "" or _is_number(fraction)):
            return int(whole)
        return None

    @property
    def crypto(self) -> List[str]:
        """Raw ``a=crypto`` values (RFC 4568 SDES), in offered order."""
        return [v for v in _find(self.attributes, "crypto") if v is not None]

    @property
    def rtcp_mux(self) -> bool:
        return self.has_attribute("rtcp-mux")

    def rtpmaps(self) -> Dict[int, PayloadFormat]:
        """The payload formats of this m= line, keyed by payload type, in m= order.

        Explicit ``a=rtpmap`` lines win; payload types below 96 without one
        fall back to RFC 3551's static table; a dynamic type without an
        rtpmap is left out (nothing says what it is). Malformed rtpmap lines
        are ignored rather than failing the whole description.
        """
        explicit: Dict[int, Tuple[str, int, int]] = {}
        for value in _find(self.attributes, "rtpmap"):
            parsed = _parse_rtpmap(value)
            if parsed is not None and parsed[0] not in explicit:
                explicit[parsed[0]] = parsed[1:]
        fmtps: Dict[int, str] = {}
        for value in _find(self.attributes, "fmtp"):
            if value is None:
                continue
            pt_text, _, params = value.strip().partition(" ")
            if _is_number(pt_text) and int(pt_text) not in fmtps:
                fmtps[int(pt_text)] = params.strip()
        result: Dict[int, PayloadFormat] = {}
        for fmt in self.formats:
            if not _is_number(fmt):
                continue
            pt = int(fmt)
            if pt > 127 or pt in result:
                continue
            mapping = explicit.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
            if mapping is None:
                continue
            encoding, clock_rate, channels = mapping
            result[pt] = PayloadFormat(pt, encoding, clock_rate, channels,
                                       fmtps.get(pt) or None)
        return result

    def raw_rtpmap(self, payload_type: int) -> Optional[str]:
        """The offered ``a=rtpmap`` value for ``payload_type``, spelled as sent."""
        for value in _find(self.attributes, "rtpmap"):
            parsed = _parse_rtpmap(value)
            if parsed is not None and parsed[0] == payload_type:
                return value.strip() if value is not None else None
        return None

    def raw_fmtp(self, payload_type: int) -> Optional[str]:
        """The offered ``a=fmtp`` value for ``payload_type``, as sent."""
        for value in _find(self.attributes, "fmtp"):
            if value is None:
                continue
            pt_text, _, params = value.strip().partition(" ")
            if _is_number(pt_text) and int(pt_text) == payload_type and params.strip():
                return value.strip()
        return None

    def to_lines(self) -> List[str]:
        port = str(self.port)
        if self.port_count is not None:
            port += f"/{self.port_count}"
        lines = [_line("m", " ".join([self.media, port, self.proto, *self.formats]))]
        if self.information is not None:
            lines.append(_line("i", self.information))
        lines.extend(_line("c", c.to_value()) for c in self.connections)
        lines.extend(_line("b", b.to_value()) for b in self.bandwidths)
        if self.key is not None:
            lines.append(_line("k", self.key))
        lines.extend(_attribute_line(a) for a in self.attributes)
        lines.extend(_line(t, v) for t, v in self.other_lines)
        return lines


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body. A missing ``s=`` reads as '-', a missing ``t=`` as 0 0."""

    origin: Origin
    version: int = 0
    session_name: str = "-"
    information: Optional[str] = None
    uri: Optional[str] = None
    emails: Tuple[str, ...] = ()
    phones: Tuple[str, ...] = ()
    connection: Optional[Connection] = None
    bandwidths: Tuple[Bandwidth, ...] = ()
    timing: Tuple[Timing, ...] = (Timing(),)
    zone_adjustments: Optional[str] = None
    key: Optional[str] = None
    attributes: Tuple[Attribute, ...] = ()
    media: Tuple[MediaDescription, ...] = ()
    # Lines of types not defined at session level, kept verbatim (type, value).
    other_lines: Tuple[Tuple[str, str], ...] = ()

    def attribute(self, name: str) -> Optional[str]:
        values = _find(self.attributes, name)
        return values[0] if values else None

    def has_attribute(self, name: str) -> bool:
        return bool(_find(self.attributes, name))

    @property
    def direction(self) -> Optional[str]:
        """The session-level direction attribute, the default for every m= line."""
        return _direction_of(self.attributes)

    def to_bytes(self) -> bytes:
        """Canonical CRLF text. Raises ValueError if a value would break a line."""
        lines = [_line("v", str(self.version)), _line("o", self.origin.to_value()),
                 _line("s", self.session_name)]
        if self.information is not None:
            lines.append(_line("i", self.information))
        if self.uri is not None:
            lines.append(_line("u", self.uri))
        lines.extend(_line("e", e) for e in self.emails)
        lines.extend(_line("p", p) for p in self.phones)
        if self.connection is not None:
            lines.append(_line("c", self.connection.to_value()))
        lines.extend(_line("b", b.to_value()) for b in self.bandwidths)
        for timing in self.timing or (Timing(),):
            lines.append(_line("t", f"{timing.start} {timing.stop}"))
            lines.extend(_line("r", r) for r in timing.repeats)
        if self.zone_adjustments is not None:
            lines.append(_line("z", self.zone_adjustments))
        if self.key is not None:
            lines.append(_line("k", self.key))
        lines.extend(_attribute_line(a) for a in self.attributes)
        lines.extend(_line(t, v) for t, v in self.other_lines)
        for media in self.media:
            lines.extend(media.to_lines())
        return "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape")

    __bytes__ = to_bytes


def _line(kind: str, value: str) -> str:
    if _has_forbidden(value):
        raise ValueError(f"SDP {kind}= value contains CR, LF or NUL: {value!r}")
    return f"{kind}={value}"


def _attribute_line(attribute: Attribute) -> str:
    name, value = attribute
    if not name.strip() or ":" in name:
        raise ValueError(f"bad SDP attribute name {name!r}")
    return _line("a", name if value is None else f"{name}:{value}")


def _parse_rtpmap(value: Optional[str]) -> Optional[Tuple[int, str, int, int]]:
    """'<pt> <encoding>/<clock>[/<channels>]' -> (pt, ENCODING, clock, channels)."""
    if value is None:
        return None
    pt_text, _, rest = value.strip().partition(" ")
    parts = rest.strip().split("/")
    if not _is_number(pt_text) or int(pt_text) > 127 or len(parts) not in (2, 3):
        return None
    encoding, clock = parts[0].strip(), parts[1].strip()
    channels = parts[2].strip() if len(parts) == 3 else "1"
    if not encoding or not _is_number(clock) or not _is_number(channels):
        return None
    if int(clock) == 0 or int(channels) == 0:
        return None
    return int(pt_text), encoding.upper(), int(clock), int(channels)

"""SDP (RFC 4566 / RFC 8866) as frozen values: parse bytes, serialise bytes.

Sans-IO. The parser is tolerant of what recording clients really send (LF-only
line ends, stray whitespace, blank lines, unknown line types, missing ``s=`` or
``t=``, stray text after a complete description) and strict about what would
make the description meaningless (no ``v=`` line, bad ``o=``/``c=``/``m=``
lines). Every refusal is an :class:`SdpParseError` naming the offending line;
what was tolerated comes back as sentences from
:func:`parse_sdp_with_tolerances`.

Serialisation is canonical (CRLF, RFC order ``v o s i u e p c b t r z k a``
then the media sections ``m i c b k a``), and ``parse_sdp(d.to_bytes()) == d``
holds for every parsed description. Bytes that are not UTF-8 survive the
round trip (``surrogateescape``), since ``a=charset`` may legally change the
character set of text fields.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple, Union

from siprec.sip.sdp_values import (
    DIRECTIONS,
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
    _is_number,
)

__all__ = [
    "Attribute",
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "Origin",
    "Connection",
    "Bandwidth",
    "Timing",
    "MediaDescription",
    "SessionDescription",
    "SdpParseError",
    "parse_sdp",
    "parse_sdp_with_tolerances",
]

_MAX_LINE_IN_ERROR = 80


class SdpParseError(ValueError):
    """The SDP cannot be understood; the message names the bad line."""

    def __init__(self, reason: str, line_number: Optional[int] = None,
                 line: Optional[str] = None) -> None:
        self.reason = reason
        self.line_number = line_number
        self.line = line
        if line_number is None:
            message = reason
        else:
            shown = line if line is not None else ""
            if len(shown) > _MAX_LINE_IN_ERROR:
                shown = shown[:_MAX_LINE_IN_ERROR] + "..."
            message = f"SDP line {line_number} {shown!r}: {reason}"
        super().__init__(message)


# ---------------------------------------------------------------- parser

# Session-level line types that may appear once only.
_SESSION_SINGLE = frozenset("osiuczk")


class _MediaBuilder:
    """Collects the lines of one m= section."""

    def __init__(self, m_value: str, number: int, line: str) -> None:
        tokens = m_value.split()
        if len(tokens) < 4:
            what = "no formats" if len(tokens) == 3 else "too few fields"
            raise SdpParseError(f"m= line has {what} (need <media> <port> <proto> <fmt>...)",
                                number, line)
        media, port_text, proto, *formats = tokens
        port_part, slash, count_part = port_text.partition("/")
        if not _is_number(port_part):
            raise SdpParseError("m= port is not a number", number, line)
        if int(port_part) > 65535:
            raise SdpParseError("m= port is out of range", number, line)
        port_count: Optional[int] = None
        if slash:
            if not _is_number(count_part) or int(count_part) < 1:
                raise SdpParseError("m= port count is not a positive number", number, line)
            port_count = int(count_part)
        self.media, self.port, self.proto = media, int(port_part), proto
        self.formats = tuple(formats)
        self.port_count = port_count
        self.information: Optional[str] = None
        self.key: Optional[str] = None
        self.connections: List[Connection] = []
        self.bandwidths: List[Bandwidth] = []
        self.attributes: List[Attribute] = []
        self.other: List[Tuple[str, str]] = []

    def add(self, kind: str, value: str, number: int, line: str) -> None:
        if kind == "i":
            if self.information is not None:
                raise SdpParseError("duplicate i= line in a media section", number, line)
            self.information = value
        elif kind == "k":
            if self.key is not None:
                raise SdpParseError("duplicate k= line in a media section", number, line)
            self.key = value
        elif kind == "c":
            self.connections.append(_parse_connection(value, number, line))
        elif kind == "b":
            self.bandwidths.append(_parse_bandwidth(value, number, line))
        elif kind == "a":
            self.attributes.append(_parse_attribute(value, number, line))
        else:
            self.other.append((kind, value))

    def build(self) -> MediaDescription:
        return MediaDescription(
            media=self.media, port=self.port, proto=self.proto, formats=self.formats,
            port_count=self.port_count, information=self.information,
            connections=tuple(self.connections), bandwidths=tuple(self.bandwidths),
            key=self.key, attributes=tuple(self.attributes), other_lines=tuple(self.other))


def _parse_connection(value: str, number: int, line: str) -> Connection:
    tokens = value.split()
    if len(tokens) != 3:
        raise SdpParseError("c= needs <nettype> <addrtype> <address>", number, line)
    return Connection(*tokens)


def _parse_bandwidth(value: str, number: int, line: str) -> Bandwidth:
    bwtype, colon, amount = value.partition(":")
    bwtype, amount = bwtype.strip(), amount.strip()
    if not colon or not bwtype or not _is_number(amount):
        raise SdpParseError("b= needs <bwtype>:<number>", number, line)
    return Bandwidth(bwtype, int(amount))


def _parse_attribute(value: str, number: int, line: str) -> Attribute:
    name, colon, rest = value.partition(":")
    if not name.strip():
        raise SdpParseError("a= line has no attribute name", number, line)
    return (name, rest if colon else None)


def _parse_origin(value: str, number: int, line: str) -> Origin:
    tokens = value.split()
    if len(tokens) != 6:
        raise SdpParseError(
            "o= needs <username> <sess-id> <sess-version> <nettype> <addrtype> <address>",
            number, line)
    if not _is_number(tokens[2]):
        raise SdpParseError("o= session version is not a number", number, line)
    return Origin(tokens[0], tokens[1], int(tokens[2]), tokens[3], tokens[4], tokens[5])


def _parse_timing(value: str, number: int, line: str) -> Timing:
    tokens = value.split()
    if len(tokens) != 2 or not all(_is_number(t) for t in tokens):
        raise SdpParseError("t= needs <start-time> <stop-time> as numbers", number, line)
    return Timing(int(tokens[0]), int(tokens[1]))


def _split_lines(text: str) -> Iterable[Tuple[int, str]]:
    """Number and clean each line: CRLF or bare LF, surrounding blanks dropped.

    Blank lines come through as "" so that the parser can tell where a
    session description ends.
    """
    for number, raw in enumerate(text.split("\n"), 1):
        yield number, raw.strip(" \t\r")


def _is_typed(line: str) -> bool:
    """A ``<type>=<value>`` line: one ASCII letter, then '='."""
    return len(line) >= 2 and line[1] == "=" and line[0].isascii() and line[0].isalpha()


def _end_note(number: int, line: str, after_blank: bool) -> str:
    what = "a second v= line" if _is_typed(line) else f"stray text {line[:30]!r}"
    where = ", after a blank line" if after_blank else ""
    return f"SDP ended before line {number} ({what}{where}); the rest of the body was ignored"


def parse_sdp(data: Union[bytes, bytearray, memoryview, str]) -> SessionDescription:
    """Parse an SDP body into a :class:`SessionDescription`.

    Raises :class:`SdpParseError` (and nothing else) for input that is not a
    usable session description. Text after a complete description is
    ignored; :func:`parse_sdp_with_tolerances` says when that happened.
    """
    return parse_sdp_with_tolerances(data)[0]


def parse_sdp_with_tolerances(
    data: Union[bytes, bytearray, memoryview, str]
) -> Tuple[SessionDescription, Tuple[str, ...]]:
    """Like :func:`parse_sdp`, also returning the quirks that were accepted.

    Some SBCs (Oracle's among them) leave a blank line and a second,
    differently bounded SDP block before the next MIME boundary. The first
    complete description (``v=`` and ``o=`` read) ends at a second ``v=``
    line or at a line that is not ``<type>=<value>``; the rest is ignored
    and reported as one sentence. Blank lines between ``<type>=<value>``
    lines are skipped as before.
    """
    if isinstance(data, str):
        text = data
        try:
            text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as error:
            raise SdpParseError(f"text holds a character that is not UTF-8: {error.reason}")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        text = bytes(data).decode("utf-8", "surrogateescape")
    else:
        raise TypeError(f"parse_sdp wants bytes or str, not {type(data).__name__}")

    notes: List[str] = []
    session: Dict[str, str] = {}
    emails: List[str] = []
    phones: List[str] = []
    bandwidths: List[Bandwidth] = []
    timing: List[Timing] = []
    attributes: List[Attribute] = []
    other: List[Tuple[str, str]] = []
    media: List[_MediaBuilder] = []
    origin: Optional[Origin] = None
    connection: Optional[Connection] = None
    version: Optional[int] = None

    after_blank = False
    for number, line in _split_lines(text):
        if not line:
            after_blank = True
            continue
        if origin is not None and (not _is_typed(line) or line[0] == "v"):
            notes.append(_end_note(number, line, after_blank))
            break
        after_blank = False
        if "\r" in line or "\x00" in line:
            raise SdpParseError("stray CR or NUL inside a line", number, line)
        if not _is_typed(line):
            raise SdpParseError("not a <type>=<value> line", number, line)
        kind, value = line[0], line[2:]

        if version is None:
            if kind != "v":
                raise SdpParseError("SDP must start with a v= line", number, line)
            if not _is_number(value.strip()):
                raise SdpParseError("v= is not a number", number, line)
            version = int(value.strip())
            continue
        if kind == "v":
            raise SdpParseError("duplicate v= line", number, line)
        if kind == "m":
            media.append(_MediaBuilder(value, number, line))
            continue
        if media:
            media[-1].add(kind, value, number, line)
            continue

        # Session level.
        if kind in _SESSION_SINGLE:
            if kind in session:
                raise SdpParseError(f"duplicate {kind}= line", number, line)
            session[kind] = value
            if kind == "o":
                origin = _parse_origin(value, number, line)
            elif kind == "c":
                connection = _parse_connection(value, number, line)
        elif kind == "e":
            emails.append(value)
        elif kind == "p":
            phones.append(value)
        elif kind == "b":
            bandwidths.append(_parse_bandwidth(value, number, line))
        elif kind == "t":
            timing.append(_parse_timing(value, number, line))
        elif kind == "r":
            if not timing:
                raise SdpParseError("r= line without a preceding t= line", number, line)
            last = timing[-1]
            timing[-1] = Timing(last.start, last.stop, last.repeats + (value,))
        elif kind == "a":
            attributes.append(_parse_attribute(value, number, line))
        else:
            other.append((kind, value))

    if version is None:
        raise SdpParseError("empty SDP: no v= line")
    if origin is None:
        raise SdpParseError("SDP has no o= line")
    session_name = session.get("s", "").strip()
    built_media = tuple(m.build() for m in media)
    description = SessionDescription(
        origin=origin, version=version, session_name=session_name or "-",
        information=session.get("i"), uri=session.get("u"),
        emails=tuple(emails), phones=tuple(phones), connection=connection,
        bandwidths=tuple(bandwidths), timing=tuple(timing) or (Timing(),),
        zone_adjustments=session.get("z"), key=session.get("k"),
        attributes=tuple(attributes), media=built_media, other_lines=tuple(other))
    return description, tuple(notes)

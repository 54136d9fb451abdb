"""SIPREC request bodies: MIME multipart (RFC 2046) and the SDP/metadata split.

Sans-IO: bytes and header values in, frozen values out.  A SIPREC INVITE
carries SDP and RFC 7865 metadata, usually as ``multipart/mixed``; recording
clients bend the MIME rules in small ways (LF-only line ends, no closing
delimiter, no Content-Type at all), so the parser accepts those and reports
each accepted quirk as a human sentence, while anything it cannot make sense
of raises :class:`MultipartError` or :class:`UnsupportedBody`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from siprec.sip.headers import split_unquoted

__all__ = [
    "METADATA_TYPES",
    "SDP_TYPE",
    "BodyPart",
    "MultipartError",
    "SiprecBody",
    "UnsupportedBody",
    "parse_content_type",
    "parse_multipart",
    "parse_multipart_with_tolerances",
    "split_siprec_body",
]

SDP_TYPE = "application/sdp"
METADATA_TYPES = frozenset({"application/rs-metadata+xml", "application/rs-metadata"})
RECORDING_DISPOSITION = "recording-session"
#: XML types some clients label metadata with; accepted only when the root is <recording>.
_GENERIC_XML_TYPES = frozenset({"application/xml", "text/xml"})
#: RFC 2046 §5.1: a part without Content-Type is text/plain.
_DEFAULT_PART_TYPE = "text/plain"
#: Nested multiparts deeper than this stay opaque parts.
_MAX_NESTING = 1


class MultipartError(ValueError):
    """A multipart body that cannot be split into parts."""


class UnsupportedBody(ValueError):
    """A body type a recording server cannot use; the UAS answers 415."""

    def __init__(self, content_type: str, reason: str | None = None) -> None:
        self.content_type = content_type
        super().__init__(reason or f"unsupported body type {content_type!r}")


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One MIME part, headers as received and the exact body bytes."""

    content_type: str
    params: dict[str, str]
    disposition: str | None
    disposition_params: dict[str, str]
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """First value of a header, by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


@dataclass(frozen=True, slots=True)
class SiprecBody:
    """What a SIPREC request carried, sorted by use."""

    sdp: bytes | None = None
    metadata: tuple[bytes, ...] = ()
    other: tuple[BodyPart, ...] = ()
    tolerances: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# Content-Type / Content-Disposition values

def _split_params(text: str) -> list[str]:
    """Split on ';' outside double quotes (RFC 2045 / RFC 3261 quoted-string)."""
    return split_unquoted(text, ";")


def _unquote(value: str) -> str:
    """Remove surrounding quotes and resolve quoted-pairs."""
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)
    if value.startswith('"'):
        # Unterminated quote: keep what follows it rather than failing.
        return re.sub(r"\\(.)", r"\1", value[1:], flags=re.DOTALL)
    return value


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type (or Content-Disposition) value into type and parameters.

    The type and parameter names are lower-cased, quoted values unquoted,
    spaces around ``/``, ``;`` and ``=`` ignored.  Parameters without ``=``
    are dropped and the first of a repeated name wins.  Never raises: callers
    decide whether what came back is usable.
    """
    pieces = _split_params(value or "")
    mime = re.sub(r"\s*/\s*", "/", pieces[0].strip()).lower()
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, sep, raw = piece.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            continue
        params.setdefault(name, _unquote(raw))
    return mime, params


# ---------------------------------------------------------------------------
# multipart

_HEADER_LINE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*:")


def _delimiter_pattern(boundary: str) -> re.Pattern[bytes]:
    # A delimiter line: "--boundary", "--" if it closes, transport padding, EOL.
    raw = boundary.encode("utf-8", "surrogateescape")
    return re.compile(rb"(?m)^--" + re.escape(raw) + rb"(--)?[ \t]*\r?$")


def _strip_eol_before(body: bytes, end: int, start: int) -> int:
    """The line end before a delimiter belongs to the delimiter (RFC 2046 §5.1.1)."""
    if end > start and body[end - 1 : end] == b"\n":
        end -= 1
        if end > start and body[end - 1 : end] == b"\r":
            end -= 1
    return end


def _skip_eol(body: bytes, pos: int) -> int:
    if body[pos : pos + 2] == b"\r\n":
        return pos + 2
    if body[pos : pos + 1] == b"\n":
        return pos + 1
    return pos


def _decode_header(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _parse_part(content: bytes, number: int, notes: list[str]) -> BodyPart:
    """Read part headers (with folding) up to the blank line; the rest is body."""
    headers: list[tuple[str, str]] = []
    pos = 0
    body_start: int | None = None
    while pos < len(content):
        newline = content.find(b"\n", pos)
        line_end = len(content) if newline < 0 else newline
        next_pos = len(content) if newline < 0 else newline + 1
        line = content[pos:line_end].rstrip(b"\r")
        if not line:
            body_start = next_pos
            break
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {_decode_header(line.strip())}".strip())
        elif _HEADER_LINE.match(line):
            name, _, value = _decode_header(line).partition(":")
            headers.append((name.strip(), value.strip()))
        else:
            notes.append(
                f"body part {number} has no blank line after its headers; "
                "its content was read from the first non-header line"
            )
            body_start = pos
            break
        pos = next_pos
    body = b"" if body_start is None else content[body_start:]

    content_type: str | None = None
    params: dict[str, str] = {}
    disposition: str | None = None
    disposition_params: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-type" and content_type is None:
            content_type, params = parse_content_type(value)
        elif lowered == "content-disposition" and disposition is None:
            token, disposition_params = parse_content_type(value)
            disposition = token or None
    content_type = content_type or _DEFAULT_PART_TYPE
    return BodyPart(content_type, params, disposition, disposition_params, headers, body)


def parse_multipart_with_tolerances(
    content_type_value: str, body: bytes
) -> tuple[list[BodyPart], tuple[str, ...]]:
    """Like :func:`parse_multipart`, also returning the quirks that were accepted."""
    mime, params = parse_content_type(content_type_value)
    boundary = params.get("boundary", "")
    if not boundary:
        raise MultipartError(
            f"Content-Type {content_type_value!r} has no boundary parameter"
        )
    notes: list[str] = []
    matches = list(_delimiter_pattern(boundary).finditer(body))
    if not matches:
        raise MultipartError(f"no delimiter line '--{boundary}' found in the body")

    parts: list[BodyPart] = []
    closed = False
    for index, match in enumerate(matches):
        if match.group(1):  # close delimiter: the epilogue follows
            closed = True
            break
        start = _skip_eol(body, match.end())
        if index + 1 < len(matches):
            end = _strip_eol_before(body, matches[index + 1].start(), start)
        else:
            end = len(body)
        content = body[start:end]
        number = len(parts) + 1
        if not content.strip():
            notes.append(f"empty body part {number} was ignored")
            continue
        parts.append(_parse_part(content, number, notes))
    if not parts:
        raise MultipartError(f"multipart body with boundary {boundary!r} has no parts")
    if not closed:
        notes.append(f"multipart body has no closing delimiter '--{boundary}--'")
    if not mime.startswith("multipart/"):
        notes.append(f"body of type {mime!r} was read as multipart")
    return parts, tuple(notes)


def parse_multipart(content_type_value: str, body: bytes) -> list[BodyPart]:
    """Split a multipart body (RFC 2046) into its parts.

    Preamble and epilogue are ignored; CRLF, LF-only and mixed line ends are
    accepted, as are padding after delimiters, folded part headers and a
    missing close delimiter.  Nested multiparts come back as one part whose
    body can be parsed again.
    """
    return parse_multipart_with_tolerances(content_type_value, body)[0]


# ---------------------------------------------------------------------------
# SIPREC split

_XML_RECORDING_ROOT = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*"
    rb"<(?:[A-Za-z_][\w.-]*:)?recording[\s/>]",
    re.DOTALL,
)


def _looks_like_sdp(body: bytes) -> bool:
    return body.lstrip().startswith(b"v=0")


def _looks_like_metadata(body: bytes) -> bool:
    return _XML_RECORDING_ROOT.match(body) is not None


def _sniffed_boundary(body: bytes) -> str | None:
    """The boundary of a multipart body whose first line is a delimiter."""
    first = body.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r \t")
    if first.startswith(b"--") and len(first) > 2:
        candidate = first[2:]
        if candidate.endswith(b"--"):
            candidate = candidate[:-2]
        if candidate and len(candidate) <= 200:
            return candidate.decode("utf-8", "surrogateescape")
    return None


class _Collector:
    """Sorts parts into SDP / metadata / other while noting tolerances."""

    def __init__(self) -> None:
        self.sdp: bytes | None = None
        self.metadata: list[bytes] = []
        self.other: list[BodyPart] = []
        self.notes: list[str] = []

    def add_sdp(self, body: bytes, part: BodyPart | None = None) -> None:
        if self.sdp is None:
            self.sdp = body
            return
        self.notes.append("more than one SDP body part; the first one was used")
        if part is not None:
            self.other.append(part)

    def add_part(self, part: BodyPart, has_type: bool, depth: int) -> None:
        mime = part.content_type
        if mime == SDP_TYPE:
            self.add_sdp(part.body, part)
        elif mime in METADATA_TYPES:
            self.metadata.append(part.body)
        elif mime.startswith("multipart/") and depth < _MAX_NESTING:
            self._add_nested(part, depth)
        elif part.disposition == RECORDING_DISPOSITION:
            self.notes.append(
                f"metadata part of type {mime!r} recognised by its "
                "Content-Disposition recording-session"
            )
            self.metadata.append(part.body)
        elif not has_type and _looks_like_sdp(part.body):
            self.notes.append("body part without Content-Type read as SDP")
            self.add_sdp(part.body, part)
        elif not has_type and _looks_like_metadata(part.body):
            self.notes.append("body part without Content-Type read as recording metadata")
            self.metadata.append(part.body)
        elif mime in _GENERIC_XML_TYPES and _looks_like_metadata(part.body):
            self.notes.append(f"recording metadata labelled {mime!r} accepted")
            self.metadata.append(part.body)
        else:
            self.other.append(part)

    def _add_nested(self, part: BodyPart, depth: int) -> None:
        value = part.header("Content-Type") or part.content_type
        try:
            inner, notes = parse_multipart_with_tolerances(value, part.body)
        except MultipartError as error:
            self.notes.append(f"nested {part.content_type} part kept unparsed: {error}")
            self.other.append(part)
            return
        self.notes.extend(f"nested multipart: {note}" for note in notes)
        for child in inner:
            self.add_part(child, child.header("Content-Type") is not None, depth + 1)

    def add_multipart(self, content_type: str, body: bytes) -> None:
        mime, params = parse_content_type(content_type)
        if mime != "multipart/mixed":
            self.notes.append(f"{mime} body read as multipart/mixed")
        if not params.get("boundary"):
            boundary = _sniffed_boundary(body)
            if boundary is None:
                raise MultipartError(
                    f"Content-Type {content_type!r} has no boundary parameter"
                )
            self.notes.append(
                f"multipart Content-Type without boundary; used {boundary!r} "
                "from the first body line"
            )
            content_type = f'{mime}; boundary="{_quote(boundary)}"'
        parts, notes = parse_multipart_with_tolerances(content_type, body)
        self.notes.extend(notes)
        for part in parts:
            self.add_part(part, part.header("Content-Type") is not None, 0)

    def result(self) -> SiprecBody:
        return SiprecBody(
            self.sdp, tuple(self.metadata), tuple(self.other), tuple(dict.fromkeys(self.notes))
        )


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def split_siprec_body(
    content_type: str | None, body: bytes, content_disposition: str | None = None
) -> SiprecBody:
    """Sort a SIPREC request body into SDP, metadata documents and other parts.

    Accepts standalone ``application/sdp`` or rs-metadata, and
    ``multipart/mixed`` holding them plus anything else (kept in ``other``).
    A body without Content-Type is sniffed (SDP, ``<recording>`` XML or a
    multipart whose first line is a delimiter).  Raises
    :class:`UnsupportedBody` for a body of no usable type and
    :class:`MultipartError` for a multipart that cannot be split.
    """
    collector = _Collector()
    if not body or not body.strip():
        return collector.result()
    disposition = parse_content_type(content_disposition or "")[0] or None
    mime = parse_content_type(content_type or "")[0]

    if not mime:
        if _looks_like_sdp(body):
            collector.notes.append("body without Content-Type read as SDP")
            collector.add_sdp(body)
        elif _looks_like_metadata(body):
            collector.notes.append("body without Content-Type read as recording metadata")
            collector.metadata.append(body)
        elif (boundary := _sniffed_boundary(body)) is not None:
            collector.notes.append(
                f"body without Content-Type read as multipart with boundary {boundary!r}"
            )
            collector.add_multipart(f'multipart/mixed; boundary="{_quote(boundary)}"', body)
        else:
            raise UnsupportedBody("", "request body has no Content-Type and is neither SDP nor metadata")
    elif mime == SDP_TYPE:
        collector.add_sdp(body)
    elif mime in METADATA_TYPES:
        collector.metadata.append(body)
    elif mime.startswith("multipart/"):
        collector.add_multipart(content_type or "", body)
    elif disposition == RECORDING_DISPOSITION:
        collector.notes.append(
            f"metadata of type {mime!r} recognised by its Content-Disposition recording-session"
        )
        collector.metadata.append(body)
    elif mime in _GENERIC_XML_TYPES and _looks_like_metadata(body):
        collector.notes.append(f"recording metadata labelled {mime!r} accepted")
        collector.metadata.append(body)
    else:
        raise UnsupportedBody(mime)
    return collector.result()

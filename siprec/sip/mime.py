"""MIME bodies (RFC 2045 / RFC 2046): Content-Type values and multipart splitting.

Sans-IO: a header value and bytes in, frozen parts out. Senders bend the
MIME rules in small ways (LF-only line ends, no closing delimiter, parts
without Content-Type), so the parser accepts those and reports each accepted
quirk as a human sentence; what it cannot make sense of raises
:class:`MultipartError`. Nothing here knows what the parts mean: sorting them
(SDP, recording metadata) is the caller's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from siprec.sip.headers import split_unquoted

__all__ = [
    "BodyPart",
    "MultipartError",
    "UnsupportedBody",
    "parse_content_type",
    "parse_multipart",
    "parse_multipart_with_tolerances",
]

#: RFC 2046 §5.1: a part without Content-Type is text/plain.
_DEFAULT_PART_TYPE = "text/plain"


class MultipartError(ValueError):
    """A multipart body that cannot be split into parts; the UAS answers 400."""


class UnsupportedBody(ValueError):
    """A body of a type the receiver cannot use; the UAS answers 415."""

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

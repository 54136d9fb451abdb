"""SIPREC request bodies: which part is the SDP, which the RFC 7865 metadata.

Sans-IO. A SIPREC INVITE carries SDP and recording metadata, usually as
``multipart/mixed`` (split by :mod:`siprec.sip.mime`); this module sorts the
parts by use and sniffs what recording clients leave unlabelled. Each
accepted quirk is reported as a sentence in ``tolerances``; what cannot be
used raises the SIP core's own :class:`~siprec.sip.mime.UnsupportedBody`
(415) or :class:`~siprec.sip.mime.MultipartError` (400), so that
:func:`split_siprec_body` can be handed to the core as its body reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from siprec.sip.mime import (
    BodyPart,
    MultipartError,
    UnsupportedBody,
    parse_content_type,
    parse_multipart,
    parse_multipart_with_tolerances,
)

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
#: XML types some clients label metadata with; accepted only when the root is a recording.
_GENERIC_XML_TYPES = frozenset({"application/xml", "text/xml"})
#: Nested multiparts deeper than this stay opaque parts.
_MAX_NESTING = 1


@dataclass(frozen=True, slots=True)
class SiprecBody:
    """What a SIPREC request carried, sorted by use."""

    sdp: bytes | None = None
    metadata: tuple[bytes, ...] = ()
    other: tuple[BodyPart, ...] = ()
    tolerances: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# sniffing

# <recording> (RFC 7865), or <recording_metadata> (the pre-RFC dialect of
# BroadWorks and Webex Calling), with or without a namespace prefix.
_XML_RECORDING_ROOT = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*"
    rb"<(?:[A-Za-z_][\w.-]*:)?recording(?:_metadata)?[\s/>]",
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
    A body without Content-Type is sniffed (SDP, ``<recording>`` or
    ``<recording_metadata>`` XML, or a multipart whose first line is a
    delimiter).  Raises
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

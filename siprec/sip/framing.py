"""Frame SIP messages out of a TCP/TLS byte stream (RFC 3261 §18.3), no I/O.

Content-Length delimits the body; CRLF keep-alives (RFC 5626 §3.5.1)
between messages are reported so the transport can answer a ping.

Each byte is looked at a bounded number of times whatever the chunking:
the search for the end of the header section resumes where the last one
stopped, and once a head is complete its expected length is remembered
so body bytes only have to be counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Union

__all__ = ["StreamFramer", "FramingError", "Frame", "KeepAlive", "DEFAULT_MAX_SIZE"]

DEFAULT_MAX_SIZE = 65536
_CONTENT_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)
_DIGITS_RE = re.compile(rb"[0-9]+")
_PING = b"\r\n\r\n"
_HEAD_EXCERPT = 4096


class FramingError(ValueError):
    """The stream can no longer be framed; the connection should be closed.

    ``head`` holds header bytes read so far (whole lines only), so a
    response (513 or 400) can still be attempted.
    """

    def __init__(self, reason: str, status: int = 400, head: bytes = b""):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.head = head


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete message's bytes, ready for ``parse_message``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLF keep-alive: ``ping`` (double CRLF) wants a single CRLF back."""

    ping: bool


Event = Union[Frame, KeepAlive]


class StreamFramer:
    """h11-style reader: ``feed(bytes)`` returns the frames and keep-alives now complete."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE):
        self.max_size = max_size
        self._buffer = bytearray()
        self._scan_from = 0  # where the search for the blank line resumes
        self._total: Optional[int] = None  # length of the message whose head is complete
        self._error: Optional[FramingError] = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> List[Event]:
        """Add bytes; raises :class:`FramingError` (and keeps raising it) once the stream is unframable."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        out: List[Event] = []
        try:
            while True:
                item = self._next()
                if item is None:
                    return out
                out.append(item)
        except FramingError as error:
            self._error = error
            self._buffer = bytearray()
            raise

    def _next(self) -> Optional[Event]:
        buf = self._buffer
        if self._total is None:
            if self._scan_from == 0:
                # Between messages: keep-alives and stray line ends.
                while buf[:1] in (b"\r", b"\n"):
                    if buf[:4] == _PING:
                        del buf[:4]
                        return KeepAlive(ping=True)
                    if len(buf) < 4 and _PING.startswith(bytes(buf)):
                        return None  # maybe the start of a ping; wait
                    if buf[:2] == b"\r\n":
                        del buf[:2]
                        return KeepAlive(ping=False)
                    del buf[:1]  # a lone CR or LF: skip it
                if not buf:
                    return None
            end = self._find_head_end()
            if end is None:
                if len(buf) > self.max_size:
                    raise FramingError(
                        f"Header section larger than {self.max_size} bytes", 513, self._excerpt()
                    )
                return None
            head_len, body_start = end
            length = self._content_length(bytes(buf[:head_len]))
            self._total = body_start + length
            if self._total > self.max_size:
                raise FramingError(
                    f"Message of {self._total} bytes exceeds {self.max_size}",
                    513,
                    self._excerpt(head_len),
                )
        if len(buf) < self._total:
            return None
        frame = bytes(buf[: self._total])
        del buf[: self._total]
        self._total = None
        self._scan_from = 0
        return Frame(frame)

    def _find_head_end(self) -> Optional[tuple]:
        """(head length, body offset) of the first blank line (CRLF or bare LF), resuming the scan."""
        buf = self._buffer
        size = len(buf)
        i = self._scan_from
        while True:
            nl = buf.find(b"\n", i)
            if nl < 0:
                self._scan_from = size
                return None
            after = nl + 1
            if after >= size or (buf[after] == 0x0D and after + 1 >= size):
                self._scan_from = nl  # the blank line may be completed by the next feed
                return None
            if buf[after] == 0x0A:
                return self._head_len(nl), after + 1
            if buf[after] == 0x0D and buf[after + 1] == 0x0A:
                return self._head_len(nl), after + 2
            i = after

    def _head_len(self, nl: int) -> int:
        return nl - 1 if nl > 0 and self._buffer[nl - 1] == 0x0D else nl

    def _content_length(self, head: bytes) -> int:
        match = _CONTENT_LENGTH_RE.search(head)
        if match is None:
            return 0  # RFC 3261 §18.3 requires it on streams; treat its absence as no body
        value = match.group(1).strip()
        if _DIGITS_RE.fullmatch(value) is None:
            raise FramingError(f"Content-Length {value[:20]!r} is not a number", 400, head)
        if len(value) > 12:
            raise FramingError(
                f"Content-Length {value[:20].decode()}... exceeds {self.max_size}", 513, head
            )
        return int(value)

    def _excerpt(self, head_len: Optional[int] = None) -> bytes:
        """The first header lines (whole lines only) for answering an unframable message."""
        if head_len is not None and head_len <= _HEAD_EXCERPT:
            return bytes(self._buffer[:head_len])
        chunk = bytes(self._buffer[:_HEAD_EXCERPT])
        cut = chunk.rfind(b"\n")
        return chunk[:cut].rstrip(b"\r") if cut >= 0 else b""

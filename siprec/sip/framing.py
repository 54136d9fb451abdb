"""Frame SIP messages out of a TCP/TLS byte stream (RFC 3261 §18.3), no I/O.

Content-Length delimits the body; CRLF keep-alives (RFC 5626 §3.5.1)
between messages are reported so the transport can answer a ping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Union

__all__ = ["StreamFramer", "FramingError", "Frame", "KeepAlive"]

_CONTENT_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)", re.I | re.M)


class FramingError(ValueError):
    """The stream can no longer be framed; the connection should be closed.

    ``head`` holds the header bytes read so far, so a response (413/513
    or 400) can still be attempted.
    """

    def __init__(self, reason: str, status: int = 400, head: bytes = b""):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.head = head


@dataclass(frozen=True)
class Frame:
    data: bytes


@dataclass(frozen=True)
class KeepAlive:
    """A CRLF keep-alive: ``ping`` (double CRLF) wants a single CRLF back."""

    ping: bool


class StreamFramer:
    def __init__(self, max_size: int = 65536):
        self.max_size = max_size
        self._buffer = bytearray()
        self._scan_from = 0

    def feed(self, data: bytes) -> List[Union[Frame, KeepAlive]]:
        self._buffer += data
        out: List[Union[Frame, KeepAlive]] = []
        while True:
            item = self._next()
            if item is None:
                return out
            out.append(item)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _next(self):
        buf = self._buffer
        if buf[:4] == b"\r\n\r\n":
            del buf[:4]
            self._scan_from = 0
            return KeepAlive(ping=True)
        if buf[:2] == b"\r\n" and (len(buf) >= 4 or buf[2:3] not in (b"\r", b"")):
            del buf[:2]
            self._scan_from = 0
            return KeepAlive(ping=False)
        if buf[:1] in (b"\r", b"\n") and len(buf) < 4:
            return None  # maybe the start of a keep-alive; wait
        if buf[:1] == b"\n":
            del buf[:1]
            self._scan_from = 0
            return self._next()
        end = buf.find(b"\r\n\r\n", max(0, self._scan_from - 3))
        sep = 4
        if end < 0:
            lf = buf.find(b"\n\n", max(0, self._scan_from - 1))
            if lf >= 0:
                end, sep = lf, 2
        if end < 0:
            self._scan_from = len(buf)
            if len(buf) > self.max_size:
                raise FramingError(
                    f"Header section larger than {self.max_size} bytes", 513, bytes(buf[:4096])
                )
            return None
        head = bytes(buf[:end])
        match = _CONTENT_LENGTH_RE.search(head)
        length = 0
        if match:
            value = match.group(1)
            if not value.isdigit():
                raise FramingError(f"Content-Length {value[:20]!r} is not a number", 400, head)
            length = int(value)
        total = end + sep + length
        if total > self.max_size:
            raise FramingError(f"Message of {total} bytes exceeds {self.max_size}", 513, head)
        if len(buf) < total:
            return None
        frame = bytes(buf[:total])
        del buf[:total]
        self._scan_from = 0
        return Frame(frame)

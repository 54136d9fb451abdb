"""AWS event stream encoding (application/vnd.amazon.eventstream), sans-IO.

Each message: total length (u32), headers length (u32), CRC32 of those 8
bytes, headers, payload, CRC32 of everything before it. A header is a name
(u8 length + bytes), a type byte and a typed value; Transcribe uses string
headers (type 7: u16 length + UTF-8) such as ``:message-type``,
``:event-type``, ``:content-type`` and ``:exception-type``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["EventStreamError", "Message", "MessageDecoder", "encode_message"]

_PRELUDE = 12
_MAX_MESSAGE = 16 * 1024 * 1024
_FIXED = {2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}  # type -> value size
_INT = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


class EventStreamError(ValueError):
    """Bytes that are not a valid event stream message."""


@dataclass(frozen=True, slots=True)
class Message:
    headers: Mapping[str, Any]
    payload: bytes


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message with string headers."""
    encoded = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        if len(raw_name) > 255 or len(raw_value) > 65535:
            raise EventStreamError(f"header {name!r} is too long")
        encoded += struct.pack(">B", len(raw_name)) + raw_name
        encoded += struct.pack(">BH", 7, len(raw_value)) + raw_value
    total = _PRELUDE + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + bytes(encoded) + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    i = 0
    while i < len(data):
        size = data[i]
        i += 1
        if i + size + 1 > len(data):
            raise EventStreamError("truncated header name")
        name = data[i:i + size].decode("utf-8", "replace")
        i += size
        kind = data[i]
        i += 1
        if kind in (0, 1):
            value: Any = kind == 0
        elif kind in (6, 7):
            if i + 2 > len(data):
                raise EventStreamError(f"truncated header {name!r}")
            (length,) = struct.unpack_from(">H", data, i)
            i += 2
            if i + length > len(data):
                raise EventStreamError(f"truncated header {name!r}")
            raw = data[i:i + length]
            value = raw.decode("utf-8", "replace") if kind == 7 else bytes(raw)
            i += length
        elif kind in _FIXED:
            size = _FIXED[kind]
            if i + size > len(data):
                raise EventStreamError(f"truncated header {name!r}")
            raw = data[i:i + size]
            value = struct.unpack(_INT[kind], raw)[0] if kind in _INT else bytes(raw)
            i += size
        else:
            raise EventStreamError(f"header {name!r} has unknown type {kind}")
        headers[name] = value
    return headers


class MessageDecoder:
    """Feed bytes (a WebSocket frame may hold one or more messages); get Messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= _PRELUDE:
            total, header_length, prelude_crc = struct.unpack_from(">III", self._buffer)
            if zlib.crc32(bytes(self._buffer[:8])) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch")
            if total > _MAX_MESSAGE or total < _PRELUDE + 4 + header_length:
                raise EventStreamError(f"bad message length {total}")
            if len(self._buffer) < total:
                break
            raw = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack_from(">I", raw, total - 4)
            if zlib.crc32(raw[:-4]) != message_crc:
                raise EventStreamError("message CRC mismatch")
            headers = _headers(raw[_PRELUDE:_PRELUDE + header_length])
            messages.append(Message(headers, raw[_PRELUDE + header_length:-4]))
        return messages

    @property
    def pending(self) -> int:
        return len(self._buffer)

"""RTP packets (RFC 3550) as bytes in, values out; no sockets, no reactor.

Only the fixed header, CSRC list, one header extension and padding are
handled here; what the payload means is the codecs' business.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Tuple

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
EXTENSION_HEADER_SIZE = 4
MAX_CSRC = 15
MAX_PAYLOAD_TYPE = 127

# RFC 5761 section 4: with rtcp-mux, a second octet of 192..223 is RTCP.
# Read as RTP that would be marker=1 with payload type 64..95, which
# RFC 5761 forbids RTP from using, so the ranges never overlap.
RTCP_PACKET_TYPE_MIN = 192
RTCP_PACKET_TYPE_MAX = 223

SEQ_MODULO = 1 << 16
TS_MODULO = 1 << 32

_FIXED = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")


class RtpParseError(ValueError):
    """A datagram that is not a well-formed RTP packet."""


@dataclass(slots=True)
class RtpPacket:
    """One parsed RTP packet; payload has its padding already stripped.

    Slotted but not frozen: a frozen dataclass costs several times more to
    build, and one of these is built per received packet.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: Tuple[int, ...] = ()
    extension_profile: int | None = None
    extension_data: bytes = b""
    padding_size: int = 0  # padding octets on the wire, count octet included
    version: int = RTP_VERSION

    @property
    def padding(self) -> bool:
        return self.padding_size > 0

    @property
    def extension(self) -> bool:
        return self.extension_profile is not None

    def __bytes__(self) -> bytes:
        return serialize(self)


# RtpHeader is the same value: the header fields travel with the payload.
RtpHeader = RtpPacket


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one datagram, raising RtpParseError naming what is wrong."""
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise RtpParseError(
            f"RTP packet too short: {size} bytes, the fixed header needs {RTP_HEADER_SIZE}"
        )
    first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    version = first >> 6
    if version != RTP_VERSION:
        raise RtpParseError(f"RTP version must be 2, got {version}")
    has_padding = first & 0x20
    has_extension = first & 0x10
    csrc_count = first & 0x0F

    offset = RTP_HEADER_SIZE
    csrc: Tuple[int, ...] = ()
    if csrc_count:
        end = offset + 4 * csrc_count
        if end > size:
            raise RtpParseError(
                f"RTP packet truncated in CSRC list: {csrc_count} CSRCs need "
                f"{end} bytes, got {size}"
            )
        csrc = struct.unpack_from(f"!{csrc_count}I", data, offset)
        offset = end

    extension_profile = None
    extension_data = b""
    if has_extension:
        if offset + EXTENSION_HEADER_SIZE > size:
            raise RtpParseError(
                f"RTP packet truncated in extension header: needs "
                f"{offset + EXTENSION_HEADER_SIZE} bytes, got {size}"
            )
        extension_profile, words = _EXT.unpack_from(data, offset)
        offset += EXTENSION_HEADER_SIZE
        end = offset + 4 * words
        if end > size:
            raise RtpParseError(
                f"RTP header extension of {words} words needs {end} bytes, got {size}"
            )
        extension_data = bytes(data[offset:end])
        offset = end

    end = size
    padding_size = 0
    if has_padding:
        if end <= offset:
            raise RtpParseError("RTP padding flag set but no octets follow the header")
        padding_size = data[-1]
        if padding_size == 0:
            raise RtpParseError("RTP padding count is zero")
        if padding_size > end - offset:
            raise RtpParseError(
                f"RTP padding count {padding_size} exceeds the {end - offset} "
                "octets after the header"
            )
        end -= padding_size

    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(second & 0x80),
        csrc=csrc,
        extension_profile=extension_profile,
        extension_data=extension_data,
        padding_size=padding_size,
        version=version,
    )


def serialize(packet: RtpPacket) -> bytes:
    """Build the wire form (for tests, tools and the test client)."""
    if not 0 <= packet.payload_type <= MAX_PAYLOAD_TYPE:
        raise ValueError(f"payload type {packet.payload_type} is not 0..127")
    if len(packet.csrc) > MAX_CSRC:
        raise ValueError(f"at most {MAX_CSRC} CSRCs fit in a header, got {len(packet.csrc)}")
    if len(packet.extension_data) % 4:
        raise ValueError("header extension data must be a whole number of 32-bit words")
    if not 0 <= packet.padding_size <= 255:
        raise ValueError(f"padding size {packet.padding_size} is not 0..255")
    first = (
        (packet.version << 6)
        | (0x20 if packet.padding_size else 0)
        | (0x10 if packet.extension_profile is not None else 0)
        | len(packet.csrc)
    )
    second = (0x80 if packet.marker else 0) | packet.payload_type
    parts = [
        _FIXED.pack(
            first,
            second,
            packet.sequence % SEQ_MODULO,
            packet.timestamp % TS_MODULO,
            packet.ssrc,
        )
    ]
    if packet.csrc:
        parts.append(struct.pack(f"!{len(packet.csrc)}I", *packet.csrc))
    if packet.extension_profile is not None:
        parts.append(_EXT.pack(packet.extension_profile, len(packet.extension_data) // 4))
        parts.append(packet.extension_data)
    parts.append(packet.payload)
    if packet.padding_size:
        parts.append(bytes(packet.padding_size - 1) + bytes((packet.padding_size,)))
    return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """True when a datagram on a muxed port is RTCP (RFC 5761 section 4)."""
    return len(data) >= 2 and RTCP_PACKET_TYPE_MIN <= data[1] <= RTCP_PACKET_TYPE_MAX


def seq_delta(a: int, b: int) -> int:
    """``a - b`` for 16-bit sequence numbers, wrapped into -32768..32767.

    Positive when ``a`` comes after ``b``.
    """
    return (a - b + 0x8000) % SEQ_MODULO - 0x8000


def ts_delta(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, wrapped into -2**31..2**31-1."""
    return (a - b + 0x80000000) % TS_MODULO - 0x80000000

"""RTCP compound packets (RFC 3550 section 6) as bytes in, values out.

SR, RR, SDES and BYE are parsed into frozen values; other packet types
(APP, XR, feedback) come back as ``UnknownRtcp`` with their body, so one
strange packet does not hide the rest of a compound. Every way a packet
can be cut short raises RtcpParseError saying where. Serialisers exist
for tests and tools.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List, Tuple, Union

RTCP_VERSION = 2
HEADER_SIZE = 4
REPORT_BLOCK_SIZE = 24

SR = 200
RR = 201
SDES = 202
BYE = 203
APP = 204

# SDES item types (RFC 3550 section 6.5)
SDES_END = 0
SDES_CNAME = 1
SDES_NAME = 2
SDES_EMAIL = 3
SDES_PHONE = 4
SDES_LOC = 5
SDES_TOOL = 6
SDES_NOTE = 7
SDES_PRIV = 8

_HEADER = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IIIIII")  # SSRC, NTP sec, NTP frac, RTP ts, packets, octets
_BLOCK = struct.Struct("!IIIIII")  # SSRC, fraction+cumulative, ext seq, jitter, LSR, DLSR
_U32 = struct.Struct("!I")


class RtcpParseError(ValueError):
    """Bytes that are not a well-formed RTCP compound packet."""


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """A reception report about one source (RFC 3550 section 6.4.1)."""

    ssrc: int
    fraction_lost: int  # 0..255, fraction * 256
    packets_lost: int  # cumulative, signed 24-bit
    highest_sequence: int  # extended highest sequence number received
    jitter: int  # interarrival jitter, RTP timestamp units
    last_sr: int  # middle 32 bits of the last SR's NTP timestamp
    delay_since_last_sr: int  # 1/65536 seconds


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: Tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    packet_type = SR

    @property
    def ntp_seconds(self) -> float:
        """The NTP timestamp as seconds since 1900."""
        return self.ntp_timestamp / (1 << 32)

    @property
    def compact_ntp(self) -> int:
        """Middle 32 bits: what a later report's LSR field echoes."""
        return (self.ntp_timestamp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: Tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    packet_type = RR


@dataclass(frozen=True, slots=True)
class SdesChunk:
    ssrc: int
    items: Tuple[Tuple[int, bytes], ...]  # (item type, value)

    def get(self, item_type: int) -> bytes | None:
        for kind, value in self.items:
            if kind == item_type:
                return value
        return None

    @property
    def cname(self) -> str | None:
        value = self.get(SDES_CNAME)
        return value.decode("utf-8", "replace") if value is not None else None


@dataclass(frozen=True, slots=True)
class SourceDescription:
    chunks: Tuple[SdesChunk, ...]

    packet_type = SDES


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: Tuple[int, ...]
    reason: str = ""

    packet_type = BYE


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """Any other packet type (APP, XR, RTPFB, PSFB ...), body kept as is."""

    packet_type: int
    count: int  # the 5-bit count/subtype field
    body: bytes


RtcpPacket = Union[SenderReport, ReceiverReport, SourceDescription, Bye, UnknownRtcp]


def parse_rtcp(data: bytes) -> List[RtcpPacket]:
    """Parse a compound RTCP packet into its packets, in order."""
    if len(data) < HEADER_SIZE:
        raise RtcpParseError(f"RTCP packet too short: {len(data)} bytes, a header needs {HEADER_SIZE}")
    packets: List[RtcpPacket] = []
    offset = 0
    size = len(data)
    while offset < size:
        if size - offset < HEADER_SIZE:
            raise RtcpParseError(
                f"RTCP packet {len(packets)} truncated in its header: {size - offset} bytes at offset {offset}"
            )
        first, packet_type, words = _HEADER.unpack_from(data, offset)
        version = first >> 6
        if version != RTCP_VERSION:
            raise RtcpParseError(f"RTCP packet {len(packets)} has version {version}, not 2")
        length = 4 * (words + 1)
        end = offset + length
        if end > size:
            raise RtcpParseError(
                f"RTCP packet {len(packets)} (type {packet_type}) claims {length} bytes, "
                f"{size - offset} left"
            )
        body_end = end
        if first & 0x20:
            if end != size:
                raise RtcpParseError(f"RTCP packet {len(packets)} has padding but is not the last in the compound")
            pad = data[end - 1]
            if pad == 0 or pad > length - HEADER_SIZE:
                raise RtcpParseError(f"RTCP padding count {pad} does not fit packet {len(packets)}")
            body_end -= pad
        count = first & 0x1F
        body = bytes(data[offset + HEADER_SIZE : body_end])
        packets.append(_parse_one(packet_type, count, body, len(packets)))
        offset = end
    return packets


def _parse_one(packet_type: int, count: int, body: bytes, index: int) -> RtcpPacket:
    where = f"RTCP packet {index}"
    if packet_type == SR:
        if len(body) < _SR_INFO.size:
            raise RtcpParseError(f"{where} (SR) truncated in sender info: {len(body)} of {_SR_INFO.size} bytes")
        ssrc, ntp_hi, ntp_lo, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
        reports, rest = _report_blocks(body, _SR_INFO.size, count, f"{where} (SR)")
        return SenderReport(ssrc, ntp_hi << 32 | ntp_lo, rtp_ts, packets, octets, reports, rest)
    if packet_type == RR:
        if len(body) < 4:
            raise RtcpParseError(f"{where} (RR) truncated before the reporter SSRC")
        (ssrc,) = _U32.unpack_from(body)
        reports, rest = _report_blocks(body, 4, count, f"{where} (RR)")
        return ReceiverReport(ssrc, reports, rest)
    if packet_type == SDES:
        return SourceDescription(_sdes_chunks(body, count, f"{where} (SDES)"))
    if packet_type == BYE:
        return _bye(body, count, f"{where} (BYE)")
    return UnknownRtcp(packet_type, count, body)


def _report_blocks(body: bytes, offset: int, count: int, where: str) -> Tuple[Tuple[ReportBlock, ...], bytes]:
    needed = offset + count * REPORT_BLOCK_SIZE
    if needed > len(body):
        raise RtcpParseError(
            f"{where} truncated in report blocks: {count} blocks need {needed + HEADER_SIZE} bytes, "
            f"got {len(body) + HEADER_SIZE}"
        )
    blocks = []
    for i in range(count):
        ssrc, loss, ext_seq, jitter, lsr, dlsr = _BLOCK.unpack_from(body, offset + i * REPORT_BLOCK_SIZE)
        lost = loss & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        blocks.append(ReportBlock(ssrc, loss >> 24, lost, ext_seq, jitter, lsr, dlsr))
    return tuple(blocks), bytes(body[needed:])


def _sdes_chunks(body: bytes, count: int, where: str) -> Tuple[SdesChunk, ...]:
    chunks = []
    offset = 0
    for index in range(count):
        if offset + 4 > len(body):
            raise RtcpParseError(f"{where} truncated in chunk {index}: no room for its SSRC")
        (ssrc,) = _U32.unpack_from(body, offset)
        offset += 4
        items: List[Tuple[int, bytes]] = []
        while True:
            if offset >= len(body):
                raise RtcpParseError(f"{where} chunk {index} has no end item")
            kind = body[offset]
            if kind == SDES_END:
                offset += 1
                offset += -offset % 4  # null octets up to the next 32-bit boundary
                if offset > len(body):
                    raise RtcpParseError(f"{where} chunk {index} truncated in its end padding")
                break
            if offset + 2 > len(body):
                raise RtcpParseError(f"{where} chunk {index} truncated in an item header")
            length = body[offset + 1]
            if offset + 2 + length > len(body):
                raise RtcpParseError(
                    f"{where} chunk {index} item type {kind} claims {length} octets, "
                    f"{len(body) - offset - 2} left"
                )
            items.append((kind, bytes(body[offset + 2 : offset + 2 + length])))
            offset += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return tuple(chunks)


def _bye(body: bytes, count: int, where: str) -> Bye:
    needed = 4 * count
    if needed > len(body):
        raise RtcpParseError(f"{where} truncated in its SSRC list: {count} SSRCs need {needed} bytes, got {len(body)}")
    ssrcs = struct.unpack_from(f"!{count}I", body)
    reason = ""
    if len(body) > needed:
        length = body[needed]
        if needed + 1 + length > len(body):
            raise RtcpParseError(f"{where} reason claims {length} octets, {len(body) - needed - 1} left")
        reason = body[needed + 1 : needed + 1 + length].decode("utf-8", "replace")
    return Bye(tuple(ssrcs), reason)


# -- serialisers (tests, tools) ------------------------------------------------


def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        body += bytes(-len(body) % 4)
    if not 0 <= count <= 31:
        raise ValueError(f"RTCP count {count} is not 0..31")
    return _HEADER.pack(RTCP_VERSION << 6 | count, packet_type, len(body) // 4) + body


def _blocks(reports: Tuple[ReportBlock, ...]) -> bytes:
    return b"".join(
        _BLOCK.pack(
            r.ssrc,
            (r.fraction_lost & 0xFF) << 24 | (r.packets_lost & 0xFFFFFF),
            r.highest_sequence,
            r.jitter,
            r.last_sr,
            r.delay_since_last_sr,
        )
        for r in reports
    )


def serialize(packet: RtcpPacket) -> bytes:
    """One packet's wire form (no padding)."""
    if isinstance(packet, SenderReport):
        info = _SR_INFO.pack(
            packet.ssrc,
            packet.ntp_timestamp >> 32,
            packet.ntp_timestamp & 0xFFFFFFFF,
            packet.rtp_timestamp,
            packet.packet_count,
            packet.octet_count,
        )
        return _packet(SR, len(packet.reports), info + _blocks(packet.reports) + packet.extension)
    if isinstance(packet, ReceiverReport):
        return _packet(RR, len(packet.reports), _U32.pack(packet.ssrc) + _blocks(packet.reports) + packet.extension)
    if isinstance(packet, SourceDescription):
        body = b""
        for chunk in packet.chunks:
            part = _U32.pack(chunk.ssrc)
            for kind, value in chunk.items:
                part += bytes((kind, len(value))) + value
            part += b"\x00"
            part += bytes(-len(part) % 4)
            body += part
        return _packet(SDES, len(packet.chunks), body)
    if isinstance(packet, Bye):
        body = struct.pack(f"!{len(packet.ssrcs)}I", *packet.ssrcs)
        if packet.reason:
            reason = packet.reason.encode("utf-8")
            body += bytes((len(reason),)) + reason
        return _packet(BYE, len(packet.ssrcs), body)
    return _packet(packet.packet_type, packet.count, packet.body)


def serialize_compound(packets: List[RtcpPacket]) -> bytes:
    return b"".join(serialize(p) for p in packets)

"""Raw RTP kept as a libpcap capture (RECORD_RAW_RTP=true).

Whatever a stream receives can be written next to its WAV as a classic
pcap file, so audio we cannot decode (or decode wrongly) is never lost
and can be replayed in Wireshark or any RTP tool. Datagrams get
synthesised IPv4 or IPv6 and UDP headers (LINKTYPE_RAW: the link layer
is the IP packet itself), with the sender's and our addresses and ports.

The building blocks are pure (bytes in, bytes out); ``PcapWriter`` only
buffers records and appends them on ``flush()``, which the stream calls
from its batch timer, never per packet.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, Optional, Tuple

PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps
VERSION = (2, 4)
LINKTYPE_RAW = 101
DEFAULT_SNAPLEN = 65535
IPPROTO_UDP = 17

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")

Address = Tuple[str, int]


class PcapError(ValueError):
    """A pcap file or packet that cannot be read or built."""


def global_header(linktype: int = LINKTYPE_RAW, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    return _GLOBAL.pack(PCAP_MAGIC, VERSION[0], VERSION[1], 0, 0, snaplen, linktype)


def record(timestamp: float, packet: bytes, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    """One record header and (at most ``snaplen`` octets of) the packet."""
    seconds = int(timestamp)
    micros = int(round((timestamp - seconds) * 1_000_000))
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    captured = packet[:snaplen]
    return _RECORD.pack(seconds, micros, len(captured), len(packet)) + captured


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_datagram(source: Address, destination: Address, payload: bytes, ident: int = 0) -> bytes:
    """An IPv4 or IPv6 packet carrying ``payload`` in UDP from ``source`` to ``destination``."""
    try:
        src = ipaddress.ip_address(source[0])
        dst = ipaddress.ip_address(destination[0])
    except ValueError as e:
        raise PcapError(f"not an IP address: {e}") from e
    if src.version != dst.version:
        # Mixed families (an IPv4-mapped peer on a v6 socket): map both to v6.
        src = ipaddress.IPv6Address(f"::ffff:{src}") if src.version == 4 else src
        dst = ipaddress.IPv6Address(f"::ffff:{dst}") if dst.version == 4 else dst
    length = _UDP.size + len(payload)
    if length > 0xFFFF:
        raise PcapError(f"a UDP datagram cannot carry {len(payload)} octets")
    if src.version == 4:
        udp = _UDP.pack(source[1], destination[1], length, 0) + payload  # checksum optional in IPv4
        header = _IPV4.pack(0x45, 0, 20 + length, ident & 0xFFFF, 0x4000, 64, IPPROTO_UDP, 0, src.packed, dst.packed)
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return header + udp
    pseudo = src.packed + dst.packed + struct.pack("!IxxxB", length, IPPROTO_UDP)
    checksum = _checksum(pseudo + _UDP.pack(source[1], destination[1], length, 0) + payload) or 0xFFFF
    udp = _UDP.pack(source[1], destination[1], length, checksum) + payload
    return _IPV6.pack(6 << 28, length, IPPROTO_UDP, 64, src.packed, dst.packed) + udp


@dataclass(frozen=True, slots=True)
class PcapRecord:
    timestamp: float
    data: bytes
    original_length: int


def read_pcap(data: bytes) -> Tuple[int, List[PcapRecord]]:
    """Parse a whole classic pcap file: (linktype, records). For tests and tools."""
    if len(data) < _GLOBAL.size:
        raise PcapError(f"pcap file too short for its {_GLOBAL.size}-octet header: {len(data)} octets")
    magic = struct.unpack_from("<I", data)[0]
    if magic == PCAP_MAGIC:
        endian = "<"
    elif magic == 0xD4C3B2A1:
        endian = ">"
    else:
        raise PcapError(f"not a microsecond pcap file (magic {magic:#010x})")
    _, major, minor, _, _, _, linktype = struct.unpack_from(endian + "IHHiIII", data)
    if (major, minor) != VERSION:
        raise PcapError(f"pcap version {major}.{minor} is not 2.4")
    records = []
    offset = _GLOBAL.size
    while offset < len(data):
        if offset + _RECORD.size > len(data):
            raise PcapError(f"pcap record {len(records)} truncated in its header")
        seconds, micros, captured, original = struct.unpack_from(endian + "IIII", data, offset)
        offset += _RECORD.size
        if offset + captured > len(data):
            raise PcapError(f"pcap record {len(records)} claims {captured} octets, {len(data) - offset} left")
        records.append(PcapRecord(seconds + micros / 1_000_000, data[offset : offset + captured], original))
        offset += captured
    return linktype, records


def parse_udp_datagram(packet: bytes) -> Tuple[Address, Address, bytes]:
    """(source, destination, payload) of an IPv4/IPv6 UDP packet as written above."""
    if not packet:
        raise PcapError("empty IP packet")
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20 + _UDP.size:
            raise PcapError("IPv4 packet too short for its headers")
        ihl = (packet[0] & 0x0F) * 4
        fields = _IPV4.unpack_from(packet)
        if fields[6] != IPPROTO_UDP:
            raise PcapError(f"IP protocol {fields[6]} is not UDP")
        src, dst = str(ipaddress.IPv4Address(fields[8])), str(ipaddress.IPv4Address(fields[9]))
        udp_at = ihl
    elif version == 6:
        if len(packet) < 40 + _UDP.size:
            raise PcapError("IPv6 packet too short for its headers")
        fields = _IPV6.unpack_from(packet)
        if fields[2] != IPPROTO_UDP:
            raise PcapError(f"IPv6 next header {fields[2]} is not UDP")
        src, dst = str(ipaddress.IPv6Address(fields[4])), str(ipaddress.IPv6Address(fields[5]))
        udp_at = 40
    else:
        raise PcapError(f"IP version {version} is neither 4 nor 6")
    sport, dport, length, _ = _UDP.unpack_from(packet, udp_at)
    payload = packet[udp_at + _UDP.size : udp_at + length]
    if len(payload) != length - _UDP.size:
        raise PcapError(f"UDP length {length} exceeds the packet")
    return (src, sport), (dst, dport), payload


class PcapWriter:
    """Buffers datagrams and appends them to a pcap file on ``flush()``."""

    def __init__(self, path: str, local: Address, snaplen: int = DEFAULT_SNAPLEN) -> None:
        self.path = path
        self.local = local
        self.snaplen = snaplen
        self.packets = 0
        self.bytes = 0
        self.errors = 0
        self._ident = 0
        self._pending: List[bytes] = []
        self._file: Optional[BinaryIO] = open(path, "wb")
        self._file.write(global_header(LINKTYPE_RAW, snaplen))
        self._file.flush()

    @property
    def closed(self) -> bool:
        return self._file is None

    def add(self, timestamp: float, source: Address, datagram: bytes) -> None:
        """Queue one received datagram (written on the next flush)."""
        try:
            packet = udp_datagram(source, self.local, datagram, self._ident)
        except PcapError:
            self.errors += 1
            return
        self._ident = (self._ident + 1) & 0xFFFF
        self._pending.append(record(timestamp, packet, self.snaplen))

    def flush(self) -> None:
        """Append everything queued in one write."""
        if self._file is None or not self._pending:
            return
        data = b"".join(self._pending)
        self.packets += len(self._pending)
        self.bytes += len(data)
        self._pending = []
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            self._file.close()
            self._file = None


def iter_rtp(path: str) -> Iterator[Tuple[float, Address, Address, bytes]]:
    """(time, source, destination, UDP payload) for each record of a file we wrote."""
    with open(path, "rb") as f:
        linktype, records = read_pcap(f.read())
    if linktype != LINKTYPE_RAW:
        raise PcapError(f"link type {linktype} is not LINKTYPE_RAW")
    for rec in records:
        source, destination, payload = parse_udp_datagram(rec.data)
        yield rec.timestamp, source, destination, payload

"""Tests for siprec.media.pcap: captures written and read back."""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from siprec.media.pcap import (
    LINKTYPE_RAW,
    PcapError,
    PcapWriter,
    _checksum,
    global_header,
    iter_rtp,
    parse_udp_datagram,
    read_pcap,
    record,
    udp_datagram,
)
from siprec.media.rtp import RtpPacket, serialize

LOCAL = ("127.0.0.1", 30000)
SRC = ("192.0.2.10", 40000)


def rtp(seq: int) -> bytes:
    return serialize(RtpPacket(0, seq, seq * 160, 0x1234, bytes([seq & 0xFF]) * 160))


class BuildTests(SynchronousTestCase):
    def test_ipv4_headers(self) -> None:
        """IPv4: version/IHL 0x45, total length, UDP, a valid header checksum, the ports."""
        packet = udp_datagram(SRC, LOCAL, b"hello", ident=7)
        self.assertEqual(packet[0], 0x45)
        self.assertEqual(struct.unpack("!H", packet[2:4])[0], 20 + 8 + 5)
        self.assertEqual(packet[9], 17)
        self.assertEqual(_checksum(packet[:20]), 0)  # a correct checksum sums to 0xFFFF
        self.assertEqual(parse_udp_datagram(packet), (SRC, LOCAL, b"hello"))

    def test_ipv6_with_udp_checksum(self) -> None:
        """IPv6 needs a UDP checksum: over the pseudo-header it verifies to zero."""
        src, dst = ("2001:db8::1", 5004), ("2001:db8::2", 30000)
        packet = udp_datagram(src, dst, b"odd")
        self.assertEqual(packet[0] >> 4, 6)
        pseudo = packet[8:40] + struct.pack("!IxxxB", 11, 17)
        self.assertEqual(_checksum(pseudo + packet[40:]), 0)
        self.assertEqual(parse_udp_datagram(packet), (src, dst, b"odd"))

    def test_mixed_families_mapped(self) -> None:
        (src, _), (dst, _), _ = parse_udp_datagram(udp_datagram(("2001:db8::1", 1), LOCAL, b"x"))
        self.assertEqual(dst, "::ffff:7f00:1")

    def test_record_timestamp_and_snaplen(self) -> None:
        rec = record(12.9999996, b"abcdef", snaplen=4)
        self.assertEqual(struct.unpack("<IIII", rec[:16]), (13, 0, 4, 6))
        self.assertEqual(rec[16:], b"abcd")

    def test_bad_addresses(self) -> None:
        self.assertRaises(PcapError, udp_datagram, ("not-an-ip", 1), LOCAL, b"")
        self.assertRaises(PcapError, udp_datagram, SRC, LOCAL, bytes(70000))


class WriterTests(SynchronousTestCase):
    def test_written_then_read_back(self) -> None:
        """Datagrams appear only after flush, in order, with times and addresses."""
        path = self.mktemp()
        writer = PcapWriter(path, LOCAL)
        for seq in range(5):
            writer.add(100.0 + seq * 0.02, SRC, rtp(seq))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), global_header())
        writer.flush()
        for seq in range(5, 8):
            writer.add(100.0 + seq * 0.02, SRC, rtp(seq))
        writer.close()
        writer.close()
        packets = list(iter_rtp(path))
        self.assertEqual([p[3] for p in packets], [rtp(s) for s in range(8)])
        self.assertEqual({(p[1], p[2]) for p in packets}, {(SRC, LOCAL)})
        self.assertAlmostEqual(packets[7][0], 100.14, places=5)
        self.assertEqual((writer.packets, writer.closed), (8, True))

    def test_unusable_source_counted(self) -> None:
        path = self.mktemp()
        writer = PcapWriter(path, LOCAL)
        writer.add(1.0, ("bogus", 1), b"x")
        writer.close()
        self.assertEqual((writer.errors, list(iter_rtp(path))), (1, []))

    def test_readable_by_dpkt(self) -> None:
        """An independent reader (dpkt, when installed) sees the same UDP payloads."""
        try:
            import dpkt
        except ImportError:
            raise self.skipTest("dpkt is not installed")
        path = self.mktemp()
        writer = PcapWriter(path, LOCAL)
        for seq in range(3):
            writer.add(seq, SRC, rtp(seq))
        writer.close()
        with open(path, "rb") as f:
            reader = dpkt.pcap.Reader(f)
            self.assertEqual(reader.datalink(), LINKTYPE_RAW)
            payloads = [bytes(dpkt.ip.IP(buf).data.data) for _, buf in reader]
        self.assertEqual(payloads, [rtp(s) for s in range(3)])


class ReaderErrorTests(SynchronousTestCase):
    def test_truncations(self) -> None:
        """Every cut inside a record or the global header raises PcapError."""
        path = self.mktemp()
        writer = PcapWriter(path, LOCAL)
        writer.add(1.0, SRC, b"payload")
        writer.close()
        with open(path, "rb") as f:
            data = f.read()
        for cut in range(len(data)):
            if cut == 24:
                self.assertEqual(read_pcap(data[:cut]), (LINKTYPE_RAW, []))
                continue
            with self.assertRaises(PcapError):
                read_pcap(data[:cut])

    def test_bad_magic_and_packets(self) -> None:
        self.assertRaisesRegex(PcapError, "magic", read_pcap, bytes(24))
        self.assertRaisesRegex(PcapError, "version 5", parse_udp_datagram, b"\x50" + bytes(40))
        self.assertRaisesRegex(PcapError, "not UDP", parse_udp_datagram, b"\x45" + bytes(8) + b"\x06" + bytes(20))
        self.assertRaises(PcapError, parse_udp_datagram, b"")

"""Tests for siprec.media.rtcp: compound RTCP parsing on bytes."""

from __future__ import annotations

import struct

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.rtcp import (
    SDES_CNAME,
    SDES_TOOL,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    parse_rtcp,
    serialize,
    serialize_compound,
)

BLOCK = ReportBlock(
    ssrc=0x11223344, fraction_lost=25, packets_lost=-3, highest_sequence=70000, jitter=42, last_sr=0xABCD1234, delay_since_last_sr=65536
)
SR_PACKET = SenderReport(
    ssrc=0xDEADBEEF, ntp_timestamp=(3_900_000_000 << 32) | 0x80000000, rtp_timestamp=160000, packet_count=1000, octet_count=160000, reports=(BLOCK,)
)
SDES_PACKET = SourceDescription((SdesChunk(0xDEADBEEF, ((SDES_CNAME, b"src@example"), (SDES_TOOL, b"sbc"))),))
COMPOUND = serialize_compound([SR_PACKET, SDES_PACKET])

# Written out by hand from RFC 3550 sections 6.4.2, 6.5 and 6.6.
HAND_MADE = bytes.fromhex(
    "81c90007" "00000001"  # RR, RC=1, length 7 words, reporter SSRC 1
    "00000002" "0a000005" "00010010" "00000020" "00000000" "00000000"  # block about SSRC 2
    "81ca0003" "00000001" "0103616263" "000000"  # SDES, one chunk: CNAME "abc", end, pad
    "81cb0002" "00000001" "03627965"  # BYE SSRC 1, reason "bye"
)


class ParseTests(SynchronousTestCase):
    def test_hand_made_compound(self) -> None:
        """RR + SDES + BYE written by hand parse to the fields the RFC defines."""
        rr, sdes, bye = parse_rtcp(HAND_MADE)
        self.assertEqual(rr, ReceiverReport(1, (ReportBlock(2, 10, 5, 0x10010, 0x20, 0, 0),)))
        self.assertEqual(sdes.chunks[0].cname, "abc")
        self.assertEqual(bye, Bye((1,), "bye"))

    def test_round_trip(self) -> None:
        """Serialising and parsing gives the same values, compound order kept."""
        packets = [SR_PACKET, SDES_PACKET, Bye((1, 2), "gone"), UnknownRtcp(204, 3, b"nameDATA")]
        self.assertEqual(parse_rtcp(serialize_compound(packets)), packets)

    def test_sender_report_fields(self) -> None:
        (sr, sdes) = parse_rtcp(COMPOUND)
        self.assertEqual(sr.ntp_seconds, 3_900_000_000.5)
        self.assertEqual(sr.compact_ntp, (3_900_000_000 & 0xFFFF) << 16 | 0x8000)
        self.assertEqual(sr.reports[0].packets_lost, -3)
        self.assertEqual(sdes.chunks[0].get(SDES_TOOL), b"sbc")

    def test_negative_and_large_cumulative_loss(self) -> None:
        """Cumulative loss is a signed 24-bit field."""
        for lost in (-(1 << 23), -1, 0, (1 << 23) - 1):
            rr = ReceiverReport(1, (ReportBlock(2, 0, lost, 0, 0, 0, 0),))
            self.assertEqual(parse_rtcp(serialize(rr))[0].reports[0].packets_lost, lost)

    def test_profile_extension_kept(self) -> None:
        rr = ReceiverReport(1, (), b"EXT!")
        self.assertEqual(parse_rtcp(serialize(rr))[0].extension, b"EXT!")

    def test_padding_on_last_packet(self) -> None:
        """The P bit on the last packet strips its padding."""
        bye = bytearray(serialize(Bye((7,))))
        bye[0] |= 0x20
        bye[3] += 1
        padded = bytes(bye) + b"\x00\x00\x00\x04"
        self.assertEqual(parse_rtcp(padded), [Bye((7,))])

    def test_empty_sdes_and_rr(self) -> None:
        self.assertEqual(parse_rtcp(bytes.fromhex("80ca0000")), [SourceDescription(())])
        self.assertEqual(parse_rtcp(bytes.fromhex("80c9000100000009")), [ReceiverReport(9)])


class MalformedTests(SynchronousTestCase):
    def test_every_truncation(self) -> None:
        """Each prefix of a compound packet that is not a packet boundary raises RtcpParseError."""
        for data, boundaries in ((COMPOUND, {len(serialize(SR_PACKET))}), (HAND_MADE, {32, 48})):
            for cut in range(len(data)):
                if cut in boundaries:
                    self.assertTrue(parse_rtcp(data[:cut]))
                    continue
                with self.assertRaises(RtcpParseError):
                    parse_rtcp(data[:cut])

    def test_messages_name_the_problem(self) -> None:
        cases = [
            (b"\x80", "too short"),
            (bytes.fromhex("40c80000"), "version 1"),
            (bytes.fromhex("80c80006") + bytes(20), "claims 28 bytes"),
            (bytes.fromhex("80c80001") + bytes(4), "sender info"),
            (bytes.fromhex("81c90001") + bytes(4), "report blocks"),
            (bytes.fromhex("80c90000"), "reporter SSRC"),
            (bytes.fromhex("81ca0001") + bytes.fromhex("00000001"), "no end item"),
            (bytes.fromhex("81ca0002") + bytes.fromhex("00000001") + bytes.fromhex("01090000"), "claims 9 octets"),
            (bytes.fromhex("82cb0001") + bytes(4), "SSRC list"),
            (bytes.fromhex("81cb0002") + bytes(4) + bytes.fromhex("09000000"), "reason claims 9"),
            (bytes.fromhex("a0cb0000"), "padding count 0"),
            (bytes.fromhex("a0cb0000") + bytes.fromhex("80cb0000"), "not the last"),
        ]
        for data, message in cases:
            with self.assertRaisesRegex(RtcpParseError, message):
                parse_rtcp(data)

    def test_fuzz(self) -> None:
        """Random bytes with a plausible header give packets or RtcpParseError only."""
        rng = np.random.default_rng(3550)
        for _ in range(3000):
            size = int(rng.integers(4, 64))
            data = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
            data[0] = 0x80 | (data[0] & 0x3F)
            data[1] = int(rng.choice([200, 201, 202, 203, 204, 207]))
            struct.pack_into("!H", data, 2, int(rng.integers(0, size // 4 + 1)))
            try:
                parse_rtcp(bytes(data))
            except RtcpParseError:
                pass

"""Tests for siprec.media.rtp: RTP packets on bytes."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.rtp import (
    RtpPacket,
    RtpParseError,
    is_rtcp,
    parse_rtp,
    seq_delta,
    serialize,
    ts_delta,
)

# V=2, no padding/extension/CSRC, M=1, PT=0, seq 0x1234, ts 0xdeadbeef, SSRC 0x01020304.
SIMPLE = bytes.fromhex("8080 1234 deadbeef 01020304") + b"\x01\x02\x03"

# V=2, P=1, X=1, CC=2, PT=96, seq 65535, ts 1, SSRC 7, two CSRCs,
# extension profile 0xBEDE with 2 words, 20 payload octets of 0xFF and
# 4 padding octets. Every truncation of it is malformed.
FULL = (
    bytes([0x80 | 0x20 | 0x10 | 2, 96])
    + struct.pack("!HII", 65535, 1, 7)
    + struct.pack("!II", 0x11111111, 0x22222222)
    + struct.pack("!HH", 0xBEDE, 2)
    + bytes(range(1, 9))
    + b"\xff" * 20
    + b"\x00\x00\x00\x04"
)


class ParseTests(SynchronousTestCase):
    def test_simple_fields(self) -> None:
        """Every fixed-header field is read from its place on the wire."""
        p = parse_rtp(SIMPLE)
        self.assertEqual(p.version, 2)
        self.assertTrue(p.marker)
        self.assertEqual(p.payload_type, 0)
        self.assertEqual(p.sequence, 0x1234)
        self.assertEqual(p.timestamp, 0xDEADBEEF)
        self.assertEqual(p.ssrc, 0x01020304)
        self.assertEqual(p.csrc, ())
        self.assertFalse(p.extension)
        self.assertFalse(p.padding)
        self.assertEqual(p.payload, b"\x01\x02\x03")

    def test_full_fields(self) -> None:
        """CSRCs, the header extension and padding are parsed; padding is stripped."""
        p = parse_rtp(FULL)
        self.assertFalse(p.marker)
        self.assertEqual(p.payload_type, 96)
        self.assertEqual(p.sequence, 65535)
        self.assertEqual(p.csrc, (0x11111111, 0x22222222))
        self.assertEqual(p.extension_profile, 0xBEDE)
        self.assertEqual(p.extension_data, bytes(range(1, 9)))
        self.assertEqual(p.payload, b"\xff" * 20)
        self.assertEqual(p.padding_size, 4)
        self.assertTrue(p.padding and p.extension)

    def test_round_trip(self) -> None:
        """Serializing a parsed packet gives back the same bytes."""
        for data in (SIMPLE, FULL):
            self.assertEqual(serialize(parse_rtp(data)), data)
            self.assertEqual(bytes(parse_rtp(data)), data)

    def test_empty_payload(self) -> None:
        """A bare 12-byte header is a valid packet with no payload."""
        self.assertEqual(parse_rtp(SIMPLE[:12]).payload, b"")

    def test_every_truncation_raises(self) -> None:
        """Cutting the full packet anywhere gives RtpParseError, never another error."""
        for length in range(len(FULL)):
            with self.assertRaises(RtpParseError, msg=f"length {length}"):
                parse_rtp(FULL[:length])

    def _error(self, data: bytes) -> str:
        with self.assertRaises(RtpParseError) as cm:
            parse_rtp(data)
        return str(cm.exception)

    def test_error_messages(self) -> None:
        """Each malformation has its own message."""
        self.assertIn("too short: 11 bytes", self._error(SIMPLE[:11]))
        self.assertIn("version must be 2, got 1", self._error(bytes([0x40]) + SIMPLE[1:]))
        self.assertIn("truncated in CSRC list", self._error(FULL[:15]))
        self.assertIn("truncated in extension header", self._error(FULL[:22]))
        self.assertIn("extension of 2 words", self._error(FULL[:30]))
        self.assertIn("no octets follow the header", self._error(FULL[:32]))
        self.assertIn("exceeds the", self._error(FULL[:40]))
        self.assertIn("padding count is zero", self._error(FULL[:-1]))

    def test_padding_may_fill_everything(self) -> None:
        """Padding may take every octet after the header: empty payload."""
        data = bytes([0xA0]) + SIMPLE[1:12] + b"\x00\x00\x03"
        p = parse_rtp(data)
        self.assertEqual((p.payload, p.padding_size), (b"", 3))

    @given(st.binary(max_size=120))
    @settings(max_examples=500)
    def test_hostile_bytes(self, data: bytes) -> None:
        """Garbage either parses or raises RtpParseError."""
        try:
            p = parse_rtp(data)
        except RtpParseError:
            return
        self.assertEqual(len(serialize(p)), len(data))

    @given(
        pt=st.integers(0, 127),
        seq=st.integers(0, 65535),
        ts=st.integers(0, 2**32 - 1),
        ssrc=st.integers(0, 2**32 - 1),
        payload=st.binary(max_size=64),
        marker=st.booleans(),
        csrc=st.lists(st.integers(0, 2**32 - 1), max_size=15),
        ext=st.one_of(st.none(), st.tuples(st.integers(0, 65535), st.binary(max_size=12))),
        padding=st.integers(0, 255),
    )
    def test_serialize_parse(self, pt, seq, ts, ssrc, payload, marker, csrc, ext, padding) -> None:
        """Any packet we can serialize parses back to the same value."""
        profile, data = ext if ext is not None else (None, b"")
        data = data[: len(data) // 4 * 4]
        packet = RtpPacket(pt, seq, ts, ssrc, payload, marker, tuple(csrc), profile, data, padding)
        self.assertEqual(parse_rtp(serialize(packet)), packet)

    def test_serialize_rejects_impossible(self) -> None:
        """Values the header cannot carry are refused when serializing."""
        for packet in (
            RtpPacket(128, 0, 0, 0),
            RtpPacket(0, 0, 0, 0, csrc=tuple(range(16))),
            RtpPacket(0, 0, 0, 0, extension_profile=1, extension_data=b"abc"),
            RtpPacket(0, 0, 0, 0, padding_size=256),
        ):
            self.assertRaises(ValueError, serialize, packet)


class DemuxTests(SynchronousTestCase):
    def test_rtcp_types(self) -> None:
        """RTCP packet types 192..223 (SR 200, RR 201, ..., XR 207) are RTCP."""
        for second in (192, 200, 201, 202, 203, 204, 205, 206, 207, 223):
            self.assertTrue(is_rtcp(bytes([0x80, second, 0, 1])), second)

    def test_rtp_types(self) -> None:
        """RTP payload types usable with rtcp-mux, with or without marker, are RTP."""
        for pt in list(range(0, 64)) + list(range(96, 128)):
            for marker in (0, 0x80):
                self.assertFalse(is_rtcp(bytes([0x80, marker | pt]) + bytes(10)), (pt, marker))

    def test_short(self) -> None:
        """Too short to tell: not RTCP."""
        self.assertFalse(is_rtcp(b""))
        self.assertFalse(is_rtcp(b"\x80"))


class WraparoundTests(SynchronousTestCase):
    def test_seq_delta(self) -> None:
        """Sequence differences wrap at 2**16 and keep their sign."""
        self.assertEqual(seq_delta(5, 3), 2)
        self.assertEqual(seq_delta(3, 5), -2)
        self.assertEqual(seq_delta(0, 65535), 1)
        self.assertEqual(seq_delta(65535, 0), -1)
        self.assertEqual(seq_delta(10, 65530), 16)
        self.assertEqual(seq_delta(32767, 0), 32767)
        self.assertEqual(seq_delta(32768, 0), -32768)

    def test_ts_delta(self) -> None:
        """Timestamp differences wrap at 2**32 and keep their sign."""
        self.assertEqual(ts_delta(160, 0), 160)
        self.assertEqual(ts_delta(0, 2**32 - 160), 160)
        self.assertEqual(ts_delta(2**32 - 160, 0), -160)
        self.assertEqual(ts_delta(2**31 - 1, 0), 2**31 - 1)
        self.assertEqual(ts_delta(2**31, 0), -(2**31))

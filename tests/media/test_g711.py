"""Tests for siprec.media.codecs.g711: G.711 tables and encoders."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.codecs.g711 import (
    ALAW_TO_PCM,
    ULAW_TO_PCM,
    PcmaDecoder,
    PcmuDecoder,
    encode_alaw,
    encode_ulaw,
)

ALL_CODES = np.arange(256, dtype=np.uint8)


def _codes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def _sine(freq: float, rate: int, seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    ref = reference.astype(np.float64)
    noise = decoded.astype(np.float64) - ref
    return 10 * np.log10(np.sum(ref**2) / np.sum(noise**2))


class UlawTableTests(SynchronousTestCase):
    def test_known_values(self) -> None:
        """µ-law: 0xFF and 0x7F are (±)0, 0x80/0x00 are the extremes ±32124."""
        self.assertEqual(int(ULAW_TO_PCM[0xFF]), 0)
        self.assertEqual(int(ULAW_TO_PCM[0x7F]), 0)
        self.assertEqual(int(ULAW_TO_PCM[0x80]), 32124)
        self.assertEqual(int(ULAW_TO_PCM[0x00]), -32124)
        self.assertEqual(int(ULAW_TO_PCM[0xFE]), 8)
        self.assertEqual(int(ULAW_TO_PCM[0x7E]), -8)
        self.assertEqual(int(ULAW_TO_PCM[0xEF]), 132)  # segment 1, mantissa 0

    def test_symmetric_and_monotonic(self) -> None:
        """Codes 0x80..0xFF fall from +32124 to 0; 0x00..0x7F mirror them."""
        positive = ULAW_TO_PCM[0x80:].astype(int)
        self.assertTrue(np.all(np.diff(positive) < 0))
        np.testing.assert_array_equal(ULAW_TO_PCM[:0x80].astype(int), -positive)

    def test_encode_inverts_decode(self) -> None:
        """Encoding each decoded value gives its code back (0x7F, -0, becomes 0xFF)."""
        codes = _codes(encode_ulaw(ULAW_TO_PCM))
        expected = ALL_CODES.copy()
        expected[0x7F] = 0xFF
        np.testing.assert_array_equal(codes, expected)

    def test_quantisation_error_bound(self) -> None:
        """Every 16-bit input decodes within half a step of its segment."""
        x = np.arange(-32635, 32636)
        error = np.abs(ULAW_TO_PCM[_codes(encode_ulaw(x))].astype(int) - x)
        self.assertTrue(np.all(error <= (np.abs(x) + 132) / 32))

    def test_clipping(self) -> None:
        """Inputs beyond the µ-law range saturate at the extremes."""
        codes = _codes(encode_ulaw(np.array([32767, -32768], dtype=np.int16)))
        self.assertEqual(list(ULAW_TO_PCM[codes]), [32124, -32124])

    def test_sine_round_trip(self) -> None:
        """A 1 kHz sine survives with G.711-grade SNR (well above 30 dB)."""
        sine = _sine(1000, 8000, 1.0, 16000)
        decoded = PcmuDecoder().decode(encode_ulaw(sine))
        self.assertEqual(decoded.dtype, np.int16)
        self.assertEqual(len(decoded), len(sine))
        self.assertGreater(_snr_db(sine, decoded), 33)


class AlawTableTests(SynchronousTestCase):
    def test_known_values(self) -> None:
        """A-law: 0xD5 is +8, 0x55 is -8, 0xAA/0x2A are the extremes ±32256."""
        self.assertEqual(int(ALAW_TO_PCM[0xD5]), 8)
        self.assertEqual(int(ALAW_TO_PCM[0x55]), -8)
        self.assertEqual(int(ALAW_TO_PCM[0xAA]), 32256)
        self.assertEqual(int(ALAW_TO_PCM[0x2A]), -32256)
        self.assertEqual(int(ALAW_TO_PCM[0xD4]), 24)
        self.assertEqual(int(ALAW_TO_PCM[0xC5]), 264)

    def test_symmetric(self) -> None:
        """The sign bit alone flips the value."""
        np.testing.assert_array_equal(ALAW_TO_PCM[:0x80].astype(int), -ALAW_TO_PCM[0x80:].astype(int))

    def test_encode_inverts_decode(self) -> None:
        """Encoding each decoded value gives its code back for all 256 codes."""
        np.testing.assert_array_equal(_codes(encode_alaw(ALAW_TO_PCM)), ALL_CODES)

    def test_quantisation_error_bound(self) -> None:
        """Every 16-bit input decodes within half a step of its segment."""
        x = np.arange(-32256, 32257)
        error = np.abs(ALAW_TO_PCM[_codes(encode_alaw(x))].astype(int) - x)
        self.assertTrue(np.all(error <= np.abs(x) / 32 + 8))

    def test_clipping(self) -> None:
        """Inputs beyond the A-law range saturate at the extremes."""
        codes = _codes(encode_alaw(np.array([32767, -32768], dtype=np.int16)))
        self.assertEqual(list(ALAW_TO_PCM[codes]), [32256, -32256])

    def test_sine_round_trip(self) -> None:
        """A 440 Hz sine survives with G.711-grade SNR."""
        sine = _sine(440, 8000, 1.0, 12000)
        decoded = PcmaDecoder().decode(encode_alaw(sine))
        self.assertGreater(_snr_db(sine, decoded), 33)


class DecoderTests(SynchronousTestCase):
    def test_attributes(self) -> None:
        """G.711 is 8 kHz mono, one output sample per RTP tick."""
        for decoder, name in ((PcmuDecoder(), "PCMU"), (PcmaDecoder(), "PCMA")):
            self.assertEqual(decoder.encoding, name)
            self.assertEqual((decoder.clock_rate, decoder.sample_rate, decoder.channels), (8000, 8000, 1))
            self.assertEqual(decoder.samples_per_tick, 1.0)

    def test_decode_empty(self) -> None:
        """An empty payload decodes to no samples."""
        self.assertEqual(len(PcmuDecoder().decode(b"")), 0)

    def test_decode_uses_table(self) -> None:
        """decode is the table lookup, byte by byte."""
        payload = bytes([0xFF, 0x80, 0x00, 0x7E])
        self.assertEqual(list(PcmuDecoder().decode(payload)), [0, 32124, -32124, -8])
        self.assertEqual(list(PcmaDecoder().decode(b"\xd5\x55")), [8, -8])

"""Tests for siprec.media.codecs: the registry and the Decoder ABC."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media import codecs
from siprec.media.codecs import Decoder, can_decode, get_decoder, register_decoder
from siprec.media.codecs.g711 import PcmaDecoder, PcmuDecoder
from siprec.media.spec import PayloadFormat


class _Wideband(Decoder):
    encoding = "WIDE"
    clock_rate = 8000
    sample_rate = 16000

    def decode(self, payload: bytes) -> np.ndarray:
        return np.zeros(2 * len(payload), dtype=np.int16)


class RegistryTests(SynchronousTestCase):
    def test_by_name_not_number(self) -> None:
        """The rtpmap name picks the decoder, whatever the payload number."""
        self.assertIsInstance(get_decoder(PayloadFormat(0, "PCMU", 8000)), PcmuDecoder)
        self.assertIsInstance(get_decoder(PayloadFormat(8, "PCMA", 8000)), PcmaDecoder)
        self.assertIsInstance(get_decoder(PayloadFormat(96, "PCMU", 8000)), PcmuDecoder)
        self.assertIsInstance(get_decoder(PayloadFormat(0, "PCMA", 8000)), PcmaDecoder)

    def test_case_insensitive(self) -> None:
        """Encoding names compare without case."""
        self.assertIsInstance(get_decoder(PayloadFormat(0, "pcmu", 8000)), PcmuDecoder)

    def test_unknown(self) -> None:
        """Formats without a decoder give None / False."""
        for fmt in (
            PayloadFormat(110, "EVS", 16000),
            PayloadFormat(97, "SPEEX", 8000),
            PayloadFormat(98, "X-NOT-A-CODEC", 8000),
            PayloadFormat(101, "TELEPHONE-EVENT", 8000),
            PayloadFormat(0, "PCMU", 16000),
            PayloadFormat(0, "PCMU", 8000, channels=2),
        ):
            self.assertIsNone(get_decoder(fmt), fmt)
            self.assertFalse(can_decode(fmt), fmt)
        self.assertTrue(can_decode(PayloadFormat(0, "PCMU", 8000)))

    def test_fresh_instances(self) -> None:
        """Each stream gets its own decoder instance (decoders may keep state)."""
        fmt = PayloadFormat(0, "PCMU", 8000)
        self.assertIsNot(get_decoder(fmt), get_decoder(fmt))

    def test_register(self) -> None:
        """A registered factory is found by name; samples_per_tick follows the rates."""
        saved = dict(codecs._REGISTRY)
        self.addCleanup(lambda: (codecs._REGISTRY.clear(), codecs._REGISTRY.update(saved)))
        register_decoder("wide", lambda fmt, options: _Wideband())
        decoder = get_decoder(PayloadFormat(9, "WIDE", 8000))
        self.assertIsInstance(decoder, _Wideband)
        self.assertEqual(decoder.samples_per_tick, 2.0)

    def test_abstract(self) -> None:
        """Decoder cannot be used without a decode method."""
        self.assertRaises(TypeError, Decoder)

"""PayloadRoute: one payload type's packets brought to the leg's format (sans-IO)."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.codecs import get_decoder
from siprec.media.codecs.g711 import encode_ulaw
from siprec.media.codecs.route import LegFormat, PayloadRoute, format_name
from siprec.media.spec import PayloadFormat
from tests.media.av_encode import encode
from tests.media.signals import dominant_frequency, sine

PCMU = PayloadFormat(0, "PCMU", 8000)
OPUS_STEREO = PayloadFormat(111, "OPUS", 48000, 2, "sprop-stereo=1")


def route(fmt: PayloadFormat, rate: int, channels: int = 1) -> PayloadRoute:
    decoder = get_decoder(fmt)
    assert decoder is not None
    return PayloadRoute(fmt, decoder, LegFormat(rate, channels))


class RouteTests(SynchronousTestCase):
    def test_same_format_passes_through(self) -> None:
        r = route(PCMU, 8000)
        self.assertFalse(r.converts)
        self.assertEqual((r.samples_per_tick, r.name), (1.0, "PCMU/8000"))
        self.assertIsNotNone(r.table)
        self.assertEqual(len(r.decode(encode_ulaw(sine(400, 8000, 0.02)), 0, False)), 160)

    def test_stereo_opus_on_a_mono_8k_leg(self) -> None:
        """Mixed down, then resampled: 160 samples a packet, the tone kept; a tick is 1/6 frame."""
        left = sine(500, 48000, 0.5)
        payloads = encode("libopus", np.stack([left, left], axis=1).reshape(-1), 48000, channels=2, bit_rate=64000)
        r = route(OPUS_STEREO, 8000)
        self.assertEqual((r.resamples, r.remixes, r.samples_per_tick, r.table), (True, True, 8000 / 48000, None))
        out = [r.decode(p, seq, False) for seq, p in enumerate(payloads)]
        self.assertEqual({len(o) for o in out}, {160})
        self.assertLess(abs(dominant_frequency(np.concatenate(out)[800:], 8000) - 500), 5)
        self.assertIn("resampled from 48000 to 8000 Hz and mixed down to mono", r.tolerance("PCMU/8000"))

    def test_a_break_restarts_the_resampler(self) -> None:
        """After another type's packets or a sequence gap the old signal's tail is not carried over."""
        r = route(PCMU, 48000)
        payload = encode_ulaw(np.full(160, 8000, dtype=np.int16))
        first = r.decode(payload, 10, False)
        self.assertFalse(first[:100].any())  # the resampler's start-up silence
        self.assertTrue(r.decode(payload, 11, False)[:100].all())  # continuous: no new silence
        self.assertFalse(r.decode(payload, 12, True)[:100].any())  # interrupted: starts afresh
        self.assertFalse(r.decode(payload, 20, False)[:100].any())  # a gap: afresh too
        self.assertEqual(r.samples_per_tick, 6.0)
        self.assertIsNotNone(r.table)  # whole frames per tick: runs can be decoded at once

    def test_names(self) -> None:
        self.assertEqual(format_name(PayloadFormat(111, "opus", 48000, 2)), "OPUS/48000/2")
        self.assertRaises(ValueError, LegFormat, 0, 1)

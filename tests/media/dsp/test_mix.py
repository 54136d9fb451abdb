"""Mono mix-down: headroom, alignment by offset, resampling, streaming."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.dsp.base import DspError
from siprec.media.dsp.mix import LegInput, MixConfig, Mixer, StreamResampler, mix_down, resample, soft_limit
from tests.media.dsp.signals import chunked


def _collect(chunks: list) -> dict:
    """Chunks as {offset: value} so tests can compare exact timelines."""
    out = {}
    for c in chunks:
        for i, v in enumerate(c.pcm.tolist()):
            assert c.offset + i not in out, "overlapping output"
            out[c.offset + i] = v
    return out


class SoftLimitTests(SynchronousTestCase):
    def test_below_knee_unchanged(self) -> None:
        x = np.array([-0.7, -0.3, 0.0, 0.5, 0.7])
        self.assertEqual(soft_limit(x, 0.7).tolist(), x.tolist())

    def test_above_knee_follows_tanh(self) -> None:
        out = soft_limit(np.array([0.9, -1.3]), 0.5)
        self.assertAlmostEqual(out[0], 0.5 + 0.5 * np.tanh(0.4 / 0.5), places=15)
        self.assertAlmostEqual(out[1], -(0.5 + 0.5 * np.tanh(0.8 / 0.5)), places=15)

    def test_never_reaches_full_scale(self) -> None:
        out = soft_limit(np.array([1.0, 2.0, 4.0, -4.0]), 0.7)
        self.assertTrue(np.all(np.abs(out) < 1.0))
        self.assertTrue(np.all(np.diff(out[:3]) > 0))  # still monotonic

    def test_continuous_at_knee(self) -> None:
        eps = 1e-9
        out = soft_limit(np.array([0.7 - eps, 0.7 + eps]), 0.7)
        self.assertAlmostEqual(out[1] - out[0], 2 * eps, places=12)

    def test_bad_knee(self) -> None:
        for knee in (0.0, 1.0, -0.2, 1.5):
            with self.assertRaises(DspError):
                soft_limit(np.zeros(2), knee)


class MixDownTests(SynchronousTestCase):
    def test_average_exact(self) -> None:
        start, out = mix_down([np.array([0.5, 0.5, -1.0]), np.array([0.5, -0.5, -1.0])], headroom="average")
        self.assertEqual(start, 0)
        self.assertEqual(out.tolist(), [0.5, 0.0, -1.0])
        self.assertEqual(out.dtype, np.float32)

    def test_limit_sums_below_knee(self) -> None:
        _, out = mix_down([np.array([0.25, 0.125]), np.array([0.25, -0.125])], headroom="limit", knee=0.7)
        self.assertEqual(out.tolist(), [0.5, 0.0])

    def test_limit_never_clips(self) -> None:
        """Two full-scale legs in phase stay below full scale."""
        _, out = mix_down([np.full(4, 32767, dtype=np.int16)] * 2, headroom="limit")
        self.assertTrue(np.all(out < 1.0))
        self.assertTrue(np.all(out > 0.95))

    def test_offsets_align(self) -> None:
        """Leg b starts 2 samples after leg a; the mix spans both."""
        start, out = mix_down(
            [np.array([0.25, 0.25, 0.25]), np.array([0.125, 0.125, 0.125])], offsets=[10, 12], headroom="limit"
        )
        self.assertEqual(start, 10)
        self.assertEqual(out.tolist(), [0.25, 0.25, 0.375, 0.125, 0.125])

    def test_int16_legs(self) -> None:
        _, out = mix_down([np.array([16384, -16384], dtype=np.int16), np.array([8192, 0], dtype=np.int16)], knee=0.9)
        self.assertEqual(out.tolist(), [0.5 + 0.25, -0.5])

    def test_errors(self) -> None:
        with self.assertRaises(DspError):
            mix_down([])
        with self.assertRaises(DspError):
            mix_down([np.zeros(2)], offsets=[0, 1])
        with self.assertRaises(DspError):
            mix_down([np.zeros(2)], offsets=[-1])
        with self.assertRaises(DspError) as ctx:
            mix_down([np.zeros(2)], headroom="clip")
        self.assertIn("headroom", str(ctx.exception))
        with self.assertRaises(DspError):
            mix_down([np.zeros(2, dtype=np.int32)])


class ResamplerTests(SynchronousTestCase):
    PAIRS = ((8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (48000, 44100), (44100, 16000))

    def test_sine_accuracy(self) -> None:
        """A 440 Hz tone comes out as the same tone at the new rate (error below -60 dB)."""
        for src, dst in self.PAIRS:
            t = np.arange(src) / src
            y = resample(0.5 * np.sin(2 * np.pi * 440 * t), src, dst)
            self.assertEqual(len(y), -(-src * dst // src))
            ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(y)) / dst)
            mid = slice(len(y) // 10, -len(y) // 10)
            self.assertLess(np.max(np.abs(y[mid] - ref[mid])), 5e-4, (src, dst))

    def test_stop_band(self) -> None:
        """Downsampling removes what the new rate cannot carry (a 6 kHz tone from 48 to 8 kHz)."""
        t = np.arange(48000) / 48000
        y = resample(0.5 * np.sin(2 * np.pi * 6000 * t), 48000, 8000)
        self.assertLess(np.sqrt(np.mean(y[800:-800].astype(np.float64) ** 2)), 0.5 * 10 ** (-60 / 20))

    def test_chunking_does_not_change_output(self) -> None:
        rng = np.random.default_rng(3)
        x = rng.standard_normal(20000) * 0.1
        for src, dst in self.PAIRS:
            whole = StreamResampler(src, dst)
            expected = np.concatenate([whole.process(x), whole.flush()])
            pieces = StreamResampler(src, dst)
            got = np.concatenate([pieces.process(c) for c in chunked(x, rng)] + [pieces.flush()])
            self.assertTrue(np.array_equal(got, expected), (src, dst))

    def test_timeline_alignment(self) -> None:
        """An impulse at input sample 800 lands at output sample 800 * dst / src."""
        for src, dst in ((8000, 16000), (16000, 8000), (8000, 48000)):
            x = np.zeros(2000)
            x[800] = 1.0
            r = StreamResampler(src, dst, start=0)
            y = np.concatenate([r.process(x), r.flush()])
            self.assertEqual(int(np.argmax(y)), 800 * dst // src, (src, dst))

    def test_start_offset(self) -> None:
        """A stream starting at input sample 1000 starts at output sample 2000 (8 -> 16 kHz)."""
        r = StreamResampler(8000, 16000, start=1000)
        self.assertEqual(r.position, 2000)
        r.process(np.zeros(100))
        r.flush()
        self.assertEqual(r.position, 2200)

    def test_flushed_resampler_refuses_more(self) -> None:
        r = StreamResampler(8000, 16000)
        r.flush()
        with self.assertRaises(DspError):
            r.process(np.zeros(10))


class LegInputTests(SynchronousTestCase):
    def test_rate_change_is_an_error(self) -> None:
        leg = LegInput("a", None, 100.0)
        leg.feed(np.zeros(80, dtype=np.int16), 8000, 0)
        with self.assertRaises(DspError) as ctx:
            leg.feed(np.zeros(160, dtype=np.int16), 16000, 80)
        self.assertIn("changed from 8000 to 16000", str(ctx.exception))

    def test_bad_offset(self) -> None:
        leg = LegInput("a", None, 100.0)
        for bad in (-1, 1.5, "0", None):
            with self.assertRaises(DspError):
                leg.feed(np.zeros(8, dtype=np.int16), 8000, bad)

    def test_resampled_offsets_follow_the_timeline(self) -> None:
        """A 16 kHz leg mixed at 8 kHz: offset 1600 becomes 800; a long gap restarts there."""
        leg = LegInput("a", 8000, gap_fill_ms=10.0)
        runs = leg.feed(np.ones(1600, dtype=np.float32) * 0.1, 16000, 1600)
        runs += leg.feed(np.ones(1600, dtype=np.float32) * 0.1, 16000, 16000)
        runs += leg.flush()
        starts = [(r.offset, r.restart) for r in runs if r.restart]
        self.assertEqual(starts, [(800, True), (8000, True)])
        total = sum(len(r.samples) for r in runs)
        self.assertEqual(total, 1600)


class MixerTests(SynchronousTestCase):
    def test_two_legs_exact(self) -> None:
        """Legs fed at their offsets mix sample by sample."""
        m = Mixer(("a", "b"), MixConfig(headroom="average"))
        out = m.feed("a", np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32), 8000, 0)
        self.assertEqual(out, [])  # waits for b
        out += m.feed("b", np.array([0.25, 0.25], dtype=np.float32), 8000, 1)
        out += m.flush()
        self.assertEqual(_collect(out), {0: 0.25, 1: 0.375, 2: 0.375, 3: 0.25})

    def test_feed_order_and_chunking_do_not_matter(self) -> None:
        rng = np.random.default_rng(5)
        a = (rng.standard_normal(4000) * 3000).astype(np.int16)
        b = (rng.standard_normal(3000) * 3000).astype(np.int16)

        def run(size_a: int, size_b: int, b_first: bool) -> dict:
            m = Mixer(("a", "b"))
            out = []
            feeds_a = [("a", a[i : i + size_a], 100 + i) for i in range(0, len(a), size_a)]
            feeds_b = [("b", b[i : i + size_b], 600 + i) for i in range(0, len(b), size_b)]
            order = []
            for k in range(max(len(feeds_a), len(feeds_b))):
                pair = [feeds_a[k:k + 1], feeds_b[k:k + 1]]
                order.extend((pair[1] + pair[0]) if b_first else (pair[0] + pair[1]))
            for label, pcm, offset in order:
                out += m.feed(label, pcm, 8000, offset)
            return _collect(out + m.flush())

        expected = run(4000, 3000, False)
        self.assertEqual(sorted(expected), list(range(100, 4100)))
        self.assertEqual(run(160, 160, False), expected)
        self.assertEqual(run(333, 97, True), expected)

    def test_long_gap_leaves_a_hole(self) -> None:
        """Two seconds with no audio on any leg are left out, not filled."""
        m = Mixer(("a",), MixConfig(gap_fill_ms=100.0))
        out = m.feed("a", np.full(80, 0.25, dtype=np.float32), 8000, 0)
        out += m.feed("a", np.full(80, 0.25, dtype=np.float32), 8000, 16080)
        out += m.flush()
        self.assertEqual([(c.offset, len(c.pcm)) for c in out], [(0, 80), (16080, 80)])

    def test_short_gap_is_silence(self) -> None:
        m = Mixer(("a",), MixConfig(gap_fill_ms=100.0))
        out = m.feed("a", np.full(80, 0.25, dtype=np.float32), 8000, 0)
        out += m.feed("a", np.full(80, 0.25, dtype=np.float32), 8000, 160)
        out += m.flush()
        timeline = _collect(out)
        self.assertEqual(sorted(timeline), list(range(240)))
        self.assertEqual({timeline[i] for i in range(80, 160)}, {0.0})

    def test_silent_leg_does_not_stall(self) -> None:
        """With b never fed, a's audio comes out once it is max_lag ahead."""
        m = Mixer(("a", "b"), MixConfig(max_lag_ms=100.0))
        out = m.feed("a", np.full(1600, 0.25, dtype=np.float32), 8000, 0)
        self.assertEqual(sum(len(c.pcm) for c in out), 800)

    def test_close_releases(self) -> None:
        m = Mixer(("a", "b"))
        out = m.feed("a", np.full(100, 0.25, dtype=np.float32), 8000, 0)
        self.assertEqual(out, [])
        out = m.close("b")
        self.assertEqual(sum(len(c.pcm) for c in out), 100)

    def test_different_rates(self) -> None:
        """An 8 kHz leg and a 16 kHz leg mixed at 16 kHz: the 8 kHz tone is resampled in place."""
        t8 = np.arange(8000) / 8000
        a = (0.25 * np.sin(2 * np.pi * 300 * t8)).astype(np.float32)
        m = Mixer(("a", "b"), MixConfig(sample_rate=16000))
        out = m.feed("a", a, 8000, 8000)  # starts at 1 s
        out += m.feed("b", np.zeros(16000, dtype=np.float32), 16000, 16000)
        out += m.flush()
        timeline = _collect(out)
        self.assertEqual(min(timeline), 16000)
        y = np.array([timeline[k] for k in range(17000, 31000)])
        ref = 0.25 * np.sin(2 * np.pi * 300 * (np.arange(17000, 31000) / 16000 - 1.0))
        self.assertLess(np.max(np.abs(y - ref)), 1e-3)

    def test_errors(self) -> None:
        with self.assertRaises(DspError):
            Mixer(())
        with self.assertRaises(DspError):
            Mixer(("a", "a"))
        m = Mixer(("a",))
        with self.assertRaises(DspError):
            m.feed("b", np.zeros(8, dtype=np.int16), 8000, 0)
        with self.assertRaises(DspError):
            m.feed("a", np.zeros(8, dtype=np.int16), 7000, 0)
        for bad in ({"headroom": "loud"}, {"knee": 1.0}, {"max_lag_ms": 0}, {"gap_fill_ms": -1}, {"sample_rate": 1}):
            with self.assertRaises(DspError):
                MixConfig(**bad)  # type: ignore[arg-type]

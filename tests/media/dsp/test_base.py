"""Shared pieces: sample conversion, continuity of a leg, alignment of several legs."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.dsp.base import Aligner, Continuity, DspError, as_float, check_rate, mono, to_int16


class ConversionTests(SynchronousTestCase):
    def test_int16_full_scale_is_one(self) -> None:
        """int16 is scaled by 1/32768 so -32768 maps to exactly -1.0."""
        out = as_float(np.array([-32768, 0, 16384, 32767], dtype=np.int16))
        self.assertEqual(out.tolist(), [-1.0, 0.0, 0.5, 32767 / 32768])

    def test_float_passes_unscaled(self) -> None:
        out = as_float(np.array([0.25, -1.5], dtype=np.float32))
        self.assertEqual(out.dtype, np.float64)
        self.assertEqual(out.tolist(), [0.25, -1.5])

    def test_to_int16_rounds_and_clips(self) -> None:
        out = to_int16(np.array([0.5, -1.0, 1.0, 2.0, -3.0, 1.4 / 32768]))
        self.assertEqual(out.tolist(), [16384, -32768, 32767, 32767, -32768, 1])

    def test_round_trip_int16(self) -> None:
        x = np.arange(-32768, 32768, 7, dtype=np.int16)
        self.assertTrue(np.array_equal(to_int16(as_float(x)), x))

    def test_stereo_is_averaged(self) -> None:
        """A (frames, 2) span becomes the mean of its channels."""
        pcm = np.array([[100, 300], [-200, 200]], dtype=np.int16)
        self.assertEqual((mono(pcm) * 32768).tolist(), [200.0, 0.0])

    def test_bad_inputs(self) -> None:
        """Each unusable input is a DspError naming the problem."""
        cases = [
            ([1, 2, 3], "numpy array"),
            (np.zeros((2, 2, 2), dtype=np.int16), "one-dimensional"),
            (np.zeros(4, dtype=np.int32), "int16 or float32"),
            (np.zeros(4, dtype=np.complex64), "int16 or float32"),
            (np.array([0.0, np.nan], dtype=np.float32), "non-finite"),
            (np.array([np.inf], dtype=np.float64), "non-finite"),
            (np.array(["a"]), "int16 or float32"),
            (np.array([0.5, 1e6], dtype=np.float32), "full scale"),
        ]
        for value, message in cases:
            with self.assertRaises(DspError) as ctx:
                as_float(value)
            self.assertIn(message, str(ctx.exception))
        with self.assertRaises(DspError):
            mono(np.zeros((3, 0), dtype=np.int16))

    def test_rates(self) -> None:
        for rate in (8000, 16000, 48000, 44100):
            self.assertEqual(check_rate(rate), rate)
        for bad in (0, -8000, 11025, 8000.0, "8000", True, None):
            with self.assertRaises(DspError) as ctx:
                check_rate(bad)
            self.assertIn("sample rate", str(ctx.exception))


class ContinuityTests(SynchronousTestCase):
    def test_first_span_starts_a_run(self) -> None:
        c = Continuity(10)
        p = c.place(100, 5)
        self.assertEqual((p.start, p.fill, p.skip, p.restart), (100, 0, 0, True))

    def test_short_gap_is_filled(self) -> None:
        c = Continuity(10)
        c.place(0, 5)
        p = c.place(12, 5)
        self.assertEqual((p.start, p.fill, p.skip, p.restart), (5, 7, 0, False))

    def test_long_gap_restarts(self) -> None:
        c = Continuity(10)
        c.place(0, 5)
        p = c.place(16, 5)
        self.assertEqual((p.start, p.fill, p.skip, p.restart), (16, 0, 0, True))

    def test_overlap_is_skipped_and_counted(self) -> None:
        c = Continuity(10)
        c.place(0, 10)
        p = c.place(6, 10)
        self.assertEqual((p.start, p.fill, p.skip, p.restart), (10, 0, 4, False))
        p = c.place(2, 3)  # entirely old
        self.assertEqual(p.skip, 3)
        self.assertEqual(c.overlapped, 7)
        self.assertEqual(c.end, 16)


class AlignerTests(SynchronousTestCase):
    def _drain(self, aligner: Aligner, final: bool = False) -> list:
        return [(b.start, b.frames, {k: v.tolist() for k, v in b.legs.items()}, b.restart) for b in aligner.take(final)]

    def test_waits_for_every_leg(self) -> None:
        """Audio is released only up to where both legs have arrived."""
        a = Aligner(("a", "b"), max_lag=100, gap_fill=10)
        a.put("a", 0, np.array([1.0, 2.0, 3.0]))
        self.assertEqual(self._drain(a), [])
        a.put("b", 0, np.array([10.0, 20.0]))
        self.assertEqual(self._drain(a), [(0, 2, {"a": [1.0, 2.0], "b": [10.0, 20.0]}, True)])
        a.put("b", 2, np.array([30.0, 40.0]))
        self.assertEqual(self._drain(a), [(2, 1, {"a": [3.0], "b": [30.0]}, False)])
        self.assertEqual(self._drain(a, final=True), [(3, 1, {"a": [0.0], "b": [40.0]}, False)])

    def test_offsets_line_up(self) -> None:
        """A leg starting later reads as zeros before its first sample."""
        a = Aligner(("a", "b"), max_lag=100, gap_fill=10)
        a.put("a", 5, np.array([1.0, 1.0, 1.0, 1.0]))
        a.put("b", 7, np.array([2.0, 2.0]))
        self.assertEqual(self._drain(a), [(5, 4, {"a": [1.0] * 4, "b": [0.0, 0.0, 2.0, 2.0]}, True)])

    def test_leg_with_earlier_audio_arriving_second(self) -> None:
        """The first take waits: the leg not heard from yet may start earlier."""
        a = Aligner(("a", "b"), max_lag=100, gap_fill=10)
        a.put("b", 6, np.ones(3))
        self.assertEqual(self._drain(a), [])
        a.put("a", 2, np.full(3, 2.0))
        self.assertEqual(self._drain(a), [(2, 3, {"a": [2.0] * 3, "b": [0.0] * 3}, True)])
        self.assertEqual(a.late, 0)

    def test_dead_leg_does_not_stall(self) -> None:
        """A leg more than max_lag behind counts as silent; its late audio is dropped."""
        a = Aligner(("a", "b"), max_lag=3, gap_fill=10)
        a.put("a", 0, np.ones(8))
        self.assertEqual(self._drain(a), [(0, 5, {"a": [1.0] * 5, "b": [0.0] * 5}, True)])
        a.put("b", 0, np.full(8, 2.0))
        self.assertEqual(a.late, 5)
        self.assertEqual(self._drain(a), [(5, 3, {"a": [1.0] * 3, "b": [2.0] * 3}, False)])

    def test_closed_leg_is_not_waited_for(self) -> None:
        a = Aligner(("a", "b"), max_lag=100, gap_fill=10)
        a.put("a", 0, np.ones(4))
        a.close("b")
        self.assertEqual(self._drain(a), [(0, 4, {"a": [1.0] * 4, "b": [0.0] * 4}, True)])
        with self.assertRaises(DspError):
            a.put("b", 4, np.ones(2))

    def test_long_common_gap_restarts(self) -> None:
        """Where no leg has audio for longer than gap_fill, a new run starts."""
        a = Aligner(("a", "b"), max_lag=100, gap_fill=3)
        a.put("a", 0, np.ones(2))
        a.put("b", 0, np.ones(2))
        a.put("a", 10, np.ones(2))
        a.put("b", 10, np.ones(2))
        blocks = self._drain(a)
        self.assertEqual([(b[0], b[1], b[3]) for b in blocks], [(0, 2, True), (10, 2, True)])

    def test_short_common_gap_is_filled(self) -> None:
        a = Aligner(("a", "b"), max_lag=100, gap_fill=3)
        a.put("a", 0, np.ones(2))
        a.put("b", 0, np.ones(2))
        a.put("a", 5, np.ones(2))
        a.put("b", 5, np.ones(2))
        blocks = self._drain(a)
        self.assertEqual([(b[0], b[1], b[3]) for b in blocks], [(0, 7, True)])
        self.assertEqual(blocks[0][2]["a"], [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0])

    def test_overlap_counted(self) -> None:
        a = Aligner(("a",), max_lag=100, gap_fill=3)
        a.put("a", 0, np.ones(4))
        a.put("a", 2, np.full(4, 2.0))
        self.assertEqual(a.overlapped, 2)
        self.assertEqual(self._drain(a)[0][2]["a"], [1.0, 1.0, 1.0, 1.0, 2.0, 2.0])

    def test_bad_labels(self) -> None:
        for labels in ((), ("a", "a")):
            with self.assertRaises(DspError):
                Aligner(labels, 10, 10)
        a = Aligner(("a",), 10, 10)
        with self.assertRaises(DspError) as ctx:
            a.put("z", 0, np.ones(1))
        self.assertIn("unknown leg 'z'", str(ctx.exception))

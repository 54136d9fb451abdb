"""Echo cancellation between legs: ERLE after convergence, double talk, streaming.

Measured ERLE (echo power over residual power, seconds 6-12 of a 12 s
speech-like far leg; near-end noise at -65 dBFS left out of both):

    8 kHz:  10 ms / 6 dB: 22.5 dB   60 ms / 10 dB: 21.7 dB   120 ms / 20 dB: 20.6 dB
    16 kHz: 10 ms / 6 dB: 20.3 dB   60 ms / 10 dB: 18.1 dB   120 ms / 20 dB: 18.9 dB
    48 kHz: 10 ms / 6 dB: 21.9 dB   60 ms / 10 dB: 18.8 dB   120 ms / 20 dB: 18.7 dB

With a white-noise far leg the filter converges deeper and faster (about
10 dB per second). Double talk (the near party as loud as the far one,
3.5 s): with the detector the misalignment stays near -11 dB and ERLE
afterwards is 17 dB; without it the filter drifts to about -3 dB and ERLE
afterwards is about 0 dB.
"""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.dsp.base import DspError
from siprec.media.dsp.echo import EchoCanceller, EchoConfig
from tests.media.dsp import signals as S

FAR_PATTERN = [(0.2, 2.5), (3.0, 3.0), (6.5, 2.0), (9.0, 2.5)]


def cancel(near: np.ndarray, far: np.ndarray, rate: int, config: EchoConfig = EchoConfig()) -> tuple:
    ec = EchoCanceller(rate, config)
    out = np.concatenate([ec.process(near, far), ec.flush()]).astype(np.float64)
    return out, ec


def erle_db(echo: np.ndarray, residual: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(echo**2) / np.sum(residual**2)))


def scenario(rate: int, delay_ms: float, attenuation_db: float, seconds: float = 12.0) -> tuple:
    """A speech-like far leg, its echo in the near leg, and near-end noise."""
    pattern = [(start, min(length, seconds - start - 0.2)) for start, length in FAR_PATTERN if start < seconds - 0.5]
    far = S.conversation(rate, pattern, seed=4, total=seconds, f0=180).samples
    far = far + S.white(rate, len(far), seed=9) * 1e-4
    echo = np.convolve(far, S.echo_path(rate, delay_ms, attenuation_db))[: len(far)]
    noise = S.white(rate, len(far), seed=11) * 10 ** (-65 / 20)
    return far, echo, noise


class ConvergenceTests(SynchronousTestCase):
    def _erle_after(self, rate: int, delay: float, attenuation: float) -> float:
        far, echo, noise = scenario(rate, delay, attenuation)
        out, ec = cancel(echo + noise, far, rate)
        self.assertEqual(len(out), len(far))
        self.assertEqual(ec.resets, 0)
        late = slice(6 * rate, None)
        return erle_db(echo[late], out[late] - noise[late])

    def test_erle_8k(self) -> None:
        """Delays of 10, 60 and 120 ms, 6 to 20 dB down: at least 17 dB ERLE after 6 s."""
        for delay, attenuation in ((10, 6), (60, 10), (120, 20)):
            self.assertGreater(self._erle_after(8000, delay, attenuation), 17.0, (delay, attenuation))

    def test_erle_16k_48k(self) -> None:
        for rate in (16000, 48000):
            self.assertGreater(self._erle_after(rate, 120, 20), 15.0, rate)
        self.assertGreater(self._erle_after(16000, 10, 6), 15.0)

    def test_white_far_leg_converges_deep(self) -> None:
        rate = 8000
        far = S.white(rate, rate * 4, seed=4) * 0.05
        echo = np.convolve(far, S.echo_path(rate, 60, 10))[: len(far)]
        out, _ = cancel(echo, far, rate)
        self.assertGreater(erle_db(echo[3 * rate :], out[3 * rate :]), 28.0)

    def test_learns_the_path(self) -> None:
        """The filter's main tap sits at the echo's delay."""
        rate = 8000
        far = S.white(rate, rate * 3, seed=4) * 0.05
        path = S.echo_path(rate, 75, 10)
        _, ec = cancel(np.convolve(far, path)[: len(far)], far, rate)
        taps = ec.impulse_response()
        self.assertEqual(len(taps), ec.partitions * ec.block)
        self.assertEqual(int(np.argmax(np.abs(taps))), int(np.argmax(np.abs(path))))
        misalignment = np.sum((taps[: len(path)] - path) ** 2) / np.sum(path**2)
        self.assertLess(10 * np.log10(misalignment), -25.0)

    def test_echo_longer_than_tail_is_not_cancelled(self) -> None:
        """A 150 ms echo with a 100 ms tail cannot be learned: ERLE stays near 0 (and nothing blows up)."""
        rate = 8000
        far = S.white(rate, rate * 3, seed=4) * 0.05
        echo = np.convolve(far, S.echo_path(rate, 150, 10))[: len(far)]
        out, _ = cancel(echo, far, rate, EchoConfig(tail_ms=100.0))
        self.assertLess(abs(erle_db(echo[rate:], out[rate:])), 1.0)

    def test_path_change_reconverges(self) -> None:
        """The echo path jumps from 30 to 90 ms mid-call; ERLE recovers within seconds."""
        rate = 8000
        far = S.white(rate, rate * 8, seed=4) * 0.05
        first = np.convolve(far, S.echo_path(rate, 30, 10))[: len(far)]
        second = np.convolve(far, S.echo_path(rate, 90, 10, seed=5))[: len(far)]
        echo = np.concatenate([first[: 4 * rate], second[4 * rate :]])
        out, _ = cancel(echo, far, rate)
        self.assertGreater(erle_db(echo[7 * rate :], out[7 * rate :]), 20.0)


class DoubleTalkTests(SynchronousTestCase):
    def _call(self, config: EchoConfig) -> tuple:
        rate = 8000
        seconds = 14
        far = S.conversation(rate, [(0.2, 3.0), (3.5, 3.0), (7.0, 3.0), (10.5, 3.0)], seed=4, total=seconds, f0=180).samples
        path = S.echo_path(rate, 60, 10)
        echo = np.convolve(far, path)[: len(far)]
        talk = S.conversation(rate, [(6.0, 3.5)], seed=8, total=seconds, f0=110, level=0.3).samples
        noise = S.white(rate, len(far), seed=11) * 10 ** (-65 / 20)
        ec = EchoCanceller(rate, config)
        misalignment = []
        pieces = []
        for i in range(0, len(far), rate // 2):
            pieces.append(ec.process(echo[i : i + rate // 2] + talk[i : i + rate // 2] + noise[i : i + rate // 2], far[i : i + rate // 2]))
            taps = ec.impulse_response()[: len(path)]
            misalignment.append(10 * np.log10(np.sum((taps - path) ** 2) / np.sum(path**2)))
        out = np.concatenate(pieces + [ec.flush()]).astype(np.float64)
        residual = out - talk - noise
        after = slice(10 * rate, None)
        return np.array(misalignment), erle_db(echo[after], residual[after]), ec

    def test_no_divergence_during_double_talk(self) -> None:
        """Through 3.5 s of double talk the filter stays converged and ERLE afterwards holds."""
        misalignment, erle_after, ec = self._call(EchoConfig())
        before = misalignment[11]  # at 6 s, as the near party starts
        self.assertLess(before, -9.0)
        self.assertLess(np.max(misalignment[12:20]), before + 1.0)  # 6-10 s: no drift
        self.assertGreater(erle_after, 15.0)
        self.assertGreater(ec.double_talk_blocks, 3 * 8000 // ec.block)

    def test_without_detector_the_filter_drifts(self) -> None:
        """The same call with the detector disabled loses the echo path: the detector is what holds it."""
        misalignment, erle_after, _ = self._call(EchoConfig(dtd_threshold=1e6))
        self.assertGreater(np.max(misalignment[12:20]), -6.0)
        self.assertLess(erle_after, 6.0)


class ResidualMaskTests(SynchronousTestCase):
    def test_mask_marks_residual_not_the_near_party(self) -> None:
        """After convergence a far-only turn is marked as residual echo; the near party's turn is not."""
        rate = 8000
        far = S.conversation(rate, [(0.2, 3.0), (3.5, 2.0), (10.5, 3.0)], seed=4, total=14, f0=180).samples
        echo = np.convolve(far, S.echo_path(rate, 60, 10))[: len(far)]
        talk = S.conversation(rate, [(6.0, 3.5)], seed=8, total=14, f0=110, level=0.3).samples
        noise = S.white(rate, len(far), seed=11) * 10 ** (-55 / 20)
        ec = EchoCanceller(rate)
        masks = []
        for i in range(0, len(far), 1000):
            ec.process(echo[i : i + 1000] + talk[i : i + 1000] + noise[i : i + 1000], far[i : i + 1000])
            masks.append(ec.last_echo_mask)
        ec.flush()
        masks.append(ec.last_echo_mask)
        mask = np.concatenate(masks)
        self.assertEqual(len(mask), len(far))
        self.assertGreater(mask[int(10.8 * rate) : int(13.3 * rate)].mean(), 0.85)
        self.assertLess(mask[int(6.2 * rate) : int(9.3 * rate)].mean(), 0.02)

    def test_mask_follows_each_call(self) -> None:
        ec = EchoCanceller(8000)
        ec.process(np.zeros(100), np.zeros(100))
        self.assertEqual(len(ec.last_echo_mask), 64)
        self.assertEqual(len(ec.flush()), 36)
        self.assertEqual(len(ec.last_echo_mask), 36)
        with self.assertRaises(DspError):
            EchoConfig(residual_db=3.0)


class StreamingTests(SynchronousTestCase):
    def test_chunking_does_not_change_output(self) -> None:
        rate = 16000
        far, echo, noise = scenario(rate, 60, 10, seconds=4.0)
        near = echo + noise
        expected, _ = cancel(near, far, rate)
        ec = EchoCanceller(rate)
        rng = np.random.default_rng(6)
        pieces, i = [], 0
        while i < len(far):
            n = int(rng.integers(1, 900))
            pieces.append(ec.process(near[i : i + n], far[i : i + n]))
            i += n
        got = np.concatenate(pieces + [ec.flush()]).astype(np.float64)
        self.assertTrue(np.array_equal(got, expected))

    def test_silent_far_leg_leaves_near_untouched(self) -> None:
        near = (np.random.default_rng(1).standard_normal(4000) * 3000).astype(np.int16)
        out, ec = cancel(near, np.zeros(4000, dtype=np.int16), 8000)
        self.assertTrue(np.array_equal(out, (near.astype(np.float64) / 32768).astype(np.float32)))
        self.assertEqual(ec.adapted_blocks, 0)

    def test_disabled_is_a_pass_through(self) -> None:
        near = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
        ec = EchoCanceller(8000, EchoConfig(enabled=False))
        self.assertTrue(np.array_equal(ec.process(near, near), near))
        self.assertEqual(len(ec.flush()), 0)

    def test_flush_keeps_the_path(self) -> None:
        """After a gap (flush) the learned filter still cancels at once."""
        rate = 8000
        far = S.white(rate, rate * 4, seed=4) * 0.05
        echo = np.convolve(far, S.echo_path(rate, 40, 10))[: len(far)]
        ec = EchoCanceller(rate)
        ec.process(echo[: 3 * rate], far[: 3 * rate])
        ec.flush()
        # A new run: its first 40 ms hold no echo of the old one, as after a real gap.
        new_far = S.white(rate, rate, seed=12) * 0.05
        new_echo = np.convolve(new_far, S.echo_path(rate, 40, 10))[:rate]
        out = np.concatenate([ec.process(new_echo, new_far), ec.flush()]).astype(np.float64)
        self.assertGreater(erle_db(new_echo[800:], out[800:]), 25.0)

    def test_geometry(self) -> None:
        for rate, block in ((8000, 64), (16000, 128), (48000, 384)):
            ec = EchoCanceller(rate)
            self.assertEqual(ec.block, block)
            self.assertGreaterEqual(ec.partitions * ec.block, rate * 200 // 1000)


class ErrorTests(SynchronousTestCase):
    def test_bad_settings(self) -> None:
        for bad in (
            {"block_ms": 1.0},
            {"tail_ms": 2.0},
            {"tail_ms": 5000.0},
            {"step": 0.0},
            {"step": 1.5},
            {"dtd_threshold": 0.0},
            {"dtd_hold_ms": -1.0},
        ):
            with self.assertRaises(DspError):
                EchoConfig(**bad)  # type: ignore[arg-type]

    def test_bad_input(self) -> None:
        ec = EchoCanceller(8000)
        with self.assertRaises(DspError) as ctx:
            ec.process(np.zeros(10), np.zeros(12))
        self.assertIn("differ in length", str(ctx.exception))
        with self.assertRaises(DspError):
            ec.process(np.zeros(10, dtype=np.int64), np.zeros(10))
        with self.assertRaises(DspError):
            ec.process(np.zeros(10), np.full(10, np.nan))
        with self.assertRaises(DspError):
            EchoCanceller(7000)

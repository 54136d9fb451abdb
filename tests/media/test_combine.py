"""Tests for siprec.media.combine: aligning leg WAVs into one file."""

from __future__ import annotations

import os
import wave

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.combine import CombineError, combine_legs
from siprec.media.wav import WavWriter, read_wav


def sine(freq: float, rate: int, frames: int) -> np.ndarray:
    return np.round(8000 * np.sin(2 * np.pi * freq * np.arange(frames) / rate)).astype(np.int16)


class CombineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.out = os.path.join(self.dir, "call.wav")

    def leg(self, name: str, samples: np.ndarray, rate: int = 8000, channels: int = 1) -> str:
        path = os.path.join(self.dir, name)
        writer = WavWriter(path, rate, channels)
        writer.write(samples.astype(np.int16).reshape(-1))
        writer.close()
        return path

    def combined(self) -> tuple[int, np.ndarray]:
        rate, channels, data = read_wav(self.out)
        return rate, data.reshape(-1, channels)

    def test_alignment(self) -> None:
        """Each leg starts at its offset in its own channel; the rest is silence."""
        a = self.leg("a.wav", np.arange(1, 101))  # 100 frames from offset 30
        b = self.leg("b.wav", -np.arange(1, 51))  # 50 frames from offset 120
        frames = combine_legs([(a, 30), (b, 120)], self.out, 8000, block_frames=7)
        rate, data = self.combined()
        self.assertEqual((rate, frames, data.shape), (8000, 170, (170, 2)))
        self.assertFalse(data[:30, 0].any())
        np.testing.assert_array_equal(data[30:130, 0], np.arange(1, 101))
        self.assertFalse(data[130:, 0].any())
        self.assertFalse(data[:120, 1].any())
        np.testing.assert_array_equal(data[120:170, 1], -np.arange(1, 51))

    def test_block_size_does_not_matter(self) -> None:
        """Any block size gives the same bytes."""
        rng = np.random.default_rng(3)
        a = self.leg("a.wav", rng.integers(-30000, 30000, 1000))
        b = self.leg("b.wav", rng.integers(-30000, 30000, 700))
        outputs = []
        for block in (1, 13, 256, 100000):
            combine_legs([(a, 5), (b, 333)], self.out, 8000, block_frames=block)
            outputs.append(self.combined()[1])
        for other in outputs[1:]:
            np.testing.assert_array_equal(outputs[0], other)

    def test_stereo_leg_and_order(self) -> None:
        """A stereo leg gives two channels, in the order legs are given."""
        stereo = np.column_stack([np.full(10, 1), np.full(10, 2)])
        s = self.leg("s.wav", stereo, channels=2)
        m = self.leg("m.wav", np.full(10, 3))
        combine_legs([(m, 0), (s, 0)], self.out, 8000)
        _, data = self.combined()
        self.assertEqual(data.shape, (10, 3))
        self.assertEqual(data[0].tolist(), [3, 1, 2])

    def test_silent_leg(self) -> None:
        """A leg given as None (no audio ever) still gets its silent channel."""
        a = self.leg("a.wav", np.full(20, 5))
        combine_legs([(None, 0), (a, 10)], self.out, 8000)
        _, data = self.combined()
        self.assertEqual(data.shape, (30, 2))
        self.assertFalse(data[:, 0].any())
        self.assertEqual(data[10:, 1].tolist(), [5] * 20)

    def test_resample_down(self) -> None:
        """A 16 kHz leg is resampled to 8 kHz (a tone stays that tone); its offset is converted too."""
        wide = self.leg("w.wav", sine(1000, 16000, 1600), rate=16000)  # 100 ms
        narrow = self.leg("n.wav", np.full(400, 7))
        combine_legs([(narrow, 0), (wide, 200)], self.out, 8000, block_frames=64)
        _, data = self.combined()
        self.assertEqual(data.shape, (100 + 800, 2))
        self.assertFalse(data[:100, 1].any())
        inner = slice(100 + 40, 900 - 40)  # away from the leg's own edges
        error = data[inner, 1].astype(np.int32) - sine(1000, 8000, 800)[40:-40]
        self.assertLessEqual(int(np.abs(error).max()), 2)

    def test_resample_up(self) -> None:
        """An 8 kHz leg reaches 48 kHz as the same tone, at its converted offset, with no images."""
        narrow = self.leg("n.wav", sine(440, 8000, 800))  # 100 ms
        combine_legs([(narrow, 10)], self.out, 48000, block_frames=50)
        rate, data = self.combined()
        self.assertEqual((rate, data.shape), (48000, (60 + 4800, 1)))
        self.assertFalse(data[:60, 0].any())
        error = data[60 + 300 : -300, 0].astype(np.int32) - sine(440, 48000, 4800)[300:-300]
        self.assertLessEqual(int(np.abs(error).max()), 2)

    def test_resampled_block_size_does_not_matter(self) -> None:
        """Resampling legs in blocks of any size gives the same bytes, stereo legs included."""
        rng = np.random.default_rng(4)
        a = self.leg("a.wav", rng.integers(-20000, 20000, 1601), rate=16000)
        b = self.leg("b.wav", rng.integers(-20000, 20000, (700, 2)), channels=2)
        outputs = []
        for block in (1, 13, 256, 100000):
            combine_legs([(a, 17), (b, 3)], self.out, 48000, block_frames=block)
            outputs.append(self.combined()[1])
        self.assertEqual(outputs[0].shape, (max(17 * 3 + 4803, 3 * 6 + 4200), 3))
        for other in outputs[1:]:
            np.testing.assert_array_equal(outputs[0], other)

    def test_stdlib_reads_result(self) -> None:
        """The combined file is a plain RIFF/WAVE the stdlib can read."""
        a = self.leg("a.wav", np.full(10, 1))
        combine_legs([(a, 0), (a, 5)], self.out, 8000)
        with wave.open(self.out, "rb") as w:
            self.assertEqual((w.getnchannels(), w.getframerate(), w.getnframes()), (2, 8000, 15))

    def test_bad_inputs(self) -> None:
        """Unusable legs and arguments raise CombineError with the path."""
        junk = os.path.join(self.dir, "junk.wav")
        with open(junk, "wb") as f:
            f.write(b"not a wav at all")
        eight_bit = os.path.join(self.dir, "8bit.wav")
        with wave.open(eight_bit, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(1)
            w.setframerate(8000)
            w.writeframes(b"\x80" * 4)
        good = self.leg("a.wav", np.ones(4))
        for legs in ([(junk, 0)], [(eight_bit, 0)], [(good, -1)], []):
            with self.assertRaises(CombineError):
                combine_legs(legs, self.out, 8000)
        self.assertRaises(CombineError, combine_legs, [(good, 0)], self.out, 0)
        self.assertRaises(FileNotFoundError, combine_legs, [(os.path.join(self.dir, "missing.wav"), 0)], self.out, 8000)

    def test_truncated_leg(self) -> None:
        """A leg shorter than its header claims (crash) is padded with silence."""
        path = self.leg("a.wav", np.full(100, 9))
        with open(path, "r+b") as f:
            f.truncate(44 + 2 * 60)
        combine_legs([(path, 0)], self.out, 8000, block_frames=16)
        _, data = self.combined()
        self.assertEqual(data.shape, (100, 1))
        self.assertEqual(data[:60, 0].tolist(), [9] * 60)
        self.assertFalse(data[60:].any())

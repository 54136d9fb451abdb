"""The one resampler (siprec.media.resample): accuracy, alignment, streaming, packets."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.resample import PacketResampler, ResampleError, StreamResampler, resample

PAIRS = ((8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (44100, 16000))


def sine(freq: float, rate: int, frames: int, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(frames) / rate)


def level_db(x: np.ndarray, reference: float) -> float:
    return float(20 * np.log10(max(np.sqrt(np.mean(np.square(x))), 1e-12) / reference))


def pieces(x: np.ndarray, rng: np.random.Generator, most: int = 700) -> list:
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, most))
        out.append(x[i : i + n])
        i += n
    return out


class AccuracyTests(SynchronousTestCase):
    def test_tone_in_band(self) -> None:
        """A 1 kHz tone comes out as the exact tone at the new rate (error below -90 dB), ceil(n * dst / src) long."""
        for src, dst in PAIRS:
            y = resample(sine(1000, src, src), src, dst)
            self.assertEqual((len(y), y.dtype), (dst, np.float64), (src, dst))
            mid = slice(dst // 10, -dst // 10)
            self.assertLess(level_db(y[mid] - sine(1000, dst, dst)[mid], 0.5 / np.sqrt(2)), -90, (src, dst))

    def test_speech_band_is_flat(self) -> None:
        """The top of the telephone band (3.4 kHz) passes within 0.1 dB."""
        for src, dst in ((8000, 48000), (48000, 8000), (16000, 8000)):
            y = resample(sine(3400, src, src), src, dst)
            self.assertLess(abs(level_db(y[dst // 10 : -dst // 10], 0.5 / np.sqrt(2))), 0.1, (src, dst))

    def test_no_aliasing_going_down(self) -> None:
        """What the lower rate cannot carry is removed, even just above its Nyquist frequency."""
        for freq in (4200, 6000, 20000):
            y = resample(sine(freq, 48000, 48000), 48000, 8000)
            self.assertLess(level_db(y[800:-800], 0.5 / np.sqrt(2)), -80, freq)

    def test_no_images_going_up(self) -> None:
        """Upsampling a 3.4 kHz tone adds nothing above the old Nyquist frequency."""
        y = resample(sine(3400, 8000, 8000), 8000, 48000)[4800:-4800]
        spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
        freqs = np.fft.rfftfreq(len(y), 1 / 48000)
        self.assertLess(10 * np.log10(spectrum[freqs > 4100].sum() / spectrum.sum()), -80)

    def test_int16_in_int16_out(self) -> None:
        """int16 is rounded and clipped by the resampler and stays int16."""
        x = np.round(sine(440, 8000, 8000, 30000)).astype(np.int16)
        y = resample(x, 8000, 16000)
        self.assertEqual((y.dtype, len(y)), (np.int16, 16000))
        error = y[1600:-1600].astype(np.int32) - np.round(sine(440, 16000, 16000, 30000)).astype(np.int32)[1600:-1600]
        self.assertLessEqual(int(np.abs(error).max()), 1)

    def test_same_rate_is_a_copy(self) -> None:
        x = np.arange(10, dtype=np.int16)
        y = resample(x, 8000, 8000)
        np.testing.assert_array_equal(x, y)
        self.assertIsNot(x, y)


class StreamingTests(SynchronousTestCase):
    def test_chunking_does_not_change_output(self) -> None:
        """Any chunking gives the same samples as one piece, float and int16, mono and stereo."""
        rng = np.random.default_rng(3)
        for src, dst in PAIRS:
            for channels, dtype in ((1, np.float64), (2, np.int16)):
                x = rng.standard_normal(9001 * channels) * 3000
                x = x.astype(dtype)
                whole = StreamResampler(src, dst, channels)
                expected = np.concatenate([whole.process(x), whole.flush()])
                chunked = StreamResampler(src, dst, channels)
                frames = [p for p in pieces(x.reshape(-1, channels), rng)]
                got = np.concatenate([chunked.process(p.reshape(-1)) for p in frames] + [chunked.flush()])
                np.testing.assert_array_equal(got, expected, err_msg=f"{src}->{dst} x{channels}")
                self.assertEqual(len(got) // channels, -(-9001 * dst // src))

    def test_impulse_lands_where_it_belongs(self) -> None:
        """An impulse at input sample 800 peaks at output sample 800 * dst / src."""
        for src, dst in ((8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000)):
            x = np.zeros(2000)
            x[800] = 1.0
            r = StreamResampler(src, dst)
            y = np.concatenate([r.process(x), r.flush()])
            self.assertEqual(int(np.argmax(y)), 800 * dst // src, (src, dst))

    def test_start_and_position(self) -> None:
        """Positions count on the caller's timeline: input 1000 at 8 kHz is output 2000 at 16 kHz."""
        r = StreamResampler(8000, 16000, start=1000)
        self.assertEqual((r.start_out, r.position), (2000, 2000))
        out = len(r.process(np.zeros(100)))
        self.assertEqual(r.position, 2000 + out)
        out += len(r.flush())
        self.assertEqual((out, r.position), (200, 2200))

    def test_two_dimensional_and_stereo(self) -> None:
        """(frames, channels) input gives (frames, channels) output; channels stay apart."""
        left = np.round(sine(500, 16000, 3200, 10000)).astype(np.int16)
        stereo = np.stack([left, np.zeros_like(left)], axis=1)
        y = resample(stereo, 16000, 8000, channels=2)
        self.assertEqual(y.shape, (1600, 2))
        self.assertFalse(y[:, 1].any())
        self.assertGreater(np.abs(y[:, 0]).max(), 9000)

    def test_flushed_refuses_more(self) -> None:
        r = StreamResampler(8000, 16000)
        r.process(np.zeros(10))
        self.assertEqual(len(r.flush()), 20)
        self.assertEqual(len(r.flush()), 0)
        self.assertRaises(ResampleError, r.process, np.zeros(10))

    def test_bad_input(self) -> None:
        """Each unusable argument is a ResampleError saying what is wrong."""
        for args in ((0, 8000), (8000, -1), (8000.5, 16000), (True, 8000)):
            self.assertRaises(ResampleError, StreamResampler, *args)
        self.assertRaises(ResampleError, StreamResampler, 8000, 16000, 9)
        self.assertRaises(ResampleError, StreamResampler, 8000, 16000, 1, -5)
        r = StreamResampler(8000, 16000, 2)
        with self.assertRaises(ResampleError) as ctx:
            r.process(np.zeros(3, dtype=np.int16))
        self.assertIn("2-channel", str(ctx.exception))
        self.assertRaises(ResampleError, r.process, np.zeros((4, 3)))
        r.process(np.zeros(4, dtype=np.int16))
        self.assertRaises(ResampleError, r.process, np.zeros(4))  # float after int16
        self.assertRaises(ResampleError, r.process, np.array(["a", "b"]))


class PacketTests(SynchronousTestCase):
    def test_exact_share_per_packet(self) -> None:
        """Every packet gets exactly its cumulative share, whatever the packet sizes."""
        rng = np.random.default_rng(9)
        for src, dst, channels in ((8000, 48000, 1), (16000, 8000, 1), (44100, 8000, 1), (48000, 16000, 2)):
            p = PacketResampler(src, dst, channels)
            fed = made = 0
            for _ in range(300):
                n = int(rng.integers(1, 1000))
                out = p.process(np.zeros(n * channels, dtype=np.int16))
                fed += n
                made += len(out) // channels
                self.assertEqual(made, fed * dst // src, (src, dst))

    def test_same_audio_as_the_stream_delayed(self) -> None:
        """The packet output is the streaming output, late by ``delay`` frames of silence."""
        x = np.round(sine(700, 8000, 8000, 12000)).astype(np.int16)
        p = PacketResampler(8000, 48000)
        packets = np.concatenate([p.process(x[i : i + 160]) for i in range(0, len(x), 160)])
        self.assertEqual(len(packets), 48000)
        self.assertGreater(p.delay, 0)
        self.assertLess(p.delay, 48 * 10)  # under 10 ms
        stream = resample(x, 8000, 48000)
        self.assertFalse(packets[: p.delay].any())
        np.testing.assert_array_equal(packets[p.delay :], stream[: 48000 - p.delay])

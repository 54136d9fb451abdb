"""Tests for siprec.media.wav: WAV files valid while being written."""

from __future__ import annotations

import os
import struct
import wave

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.wav import MAX_DATA_BYTES, WavError, WavWriter, read_wav, wav_header


def _frames_seen_by_wave(path: str) -> tuple[int, bytes]:
    with wave.open(path, "rb") as w:
        return w.getnframes(), w.readframes(w.getnframes())


class WavWriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "leg.wav")

    def test_valid_when_opened(self) -> None:
        """Opening writes a complete header at once: an empty, playable file."""
        writer = WavWriter(self.path, 8000, 1)
        self.addCleanup(writer.close)
        self.assertEqual(os.path.getsize(self.path), 44)
        with wave.open(self.path, "rb") as w:
            self.assertEqual((w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()), (1, 2, 8000, 0))

    def test_header_fields(self) -> None:
        """The RIFF and data sizes and the format block are those of RIFF/WAVE PCM."""
        header = wav_header(16000, 2, 400)
        fields = struct.unpack("<4sI4s4sIHHIIHH4sI", header)
        self.assertEqual(
            fields, (b"RIFF", 436, b"WAVE", b"fmt ", 16, 1, 2, 16000, 64000, 4, 16, b"data", 400)
        )

    def test_readable_mid_write(self) -> None:
        """Before close, the stdlib reader sees every header_interval of audio."""
        writer = WavWriter(self.path, 8000, 1, header_interval=1.0)
        self.addCleanup(writer.close)
        samples = (np.arange(12000) % 2000 - 1000).astype(np.int16)
        for start in range(0, 12000, 800):  # 0.1 s per write
            writer.write(samples[start : start + 800])
        frames, data = _frames_seen_by_wave(self.path)
        self.assertEqual(frames, 8000)  # header last rewritten after 1.0 s
        np.testing.assert_array_equal(np.frombuffer(data, "<i2"), samples[:8000])
        writer.flush()
        frames, data = _frames_seen_by_wave(self.path)
        self.assertEqual(frames, 12000)
        np.testing.assert_array_equal(np.frombuffer(data, "<i2"), samples)

    def test_close_finalises(self) -> None:
        """After close the file holds every sample, and read_wav agrees with wave."""
        writer = WavWriter(self.path, 8000, 1, header_interval=10.0)
        samples = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
        writer.write(samples)
        writer.close()
        writer.close()  # harmless
        self.assertTrue(writer.closed)
        rate, channels, data = read_wav(self.path)
        self.assertEqual((rate, channels), (8000, 1))
        np.testing.assert_array_equal(data, samples)
        self.assertEqual(os.path.getsize(self.path), 44 + 10)
        with open(self.path, "rb") as f:
            self.assertEqual(struct.unpack("<I", f.read(8)[4:])[0], 36 + 10)

    def test_stereo_interleaved(self) -> None:
        """Stereo samples are written interleaved, frames counted per pair."""
        writer = WavWriter(self.path, 16000, 2)
        left, right = np.arange(10, dtype=np.int16), -np.arange(10, dtype=np.int16)
        writer.write(np.column_stack([left, right]).reshape(-1))
        self.assertEqual(writer.frames, 10)
        writer.close()
        rate, channels, data = read_wav(self.path)
        self.assertEqual((rate, channels), (16000, 2))
        np.testing.assert_array_equal(data.reshape(-1, 2)[:, 1], right)

    def test_silence(self) -> None:
        """write_silence appends zero frames, also more than one block's worth."""
        writer = WavWriter(self.path, 8000, 2)
        writer.write(np.array([5, 6], dtype=np.int16))
        writer.write_silence(70000)
        writer.write(np.array([7, 8], dtype=np.int16))
        writer.close()
        _, _, data = read_wav(self.path)
        self.assertEqual(len(data), 2 * 70002)
        self.assertEqual(list(data[:2]), [5, 6])
        self.assertEqual(list(data[-2:]), [7, 8])
        self.assertFalse(data[2:-2].any())

    def test_refuses_bad_samples(self) -> None:
        """Wrong dtype, partial frames and writes after close raise WavError."""
        writer = WavWriter(self.path, 8000, 2)
        self.assertRaises(WavError, writer.write, np.zeros(4, dtype=np.float32))
        self.assertRaises(WavError, writer.write, np.zeros(3, dtype=np.int16))
        writer.close()
        self.assertRaises(WavError, writer.write, np.zeros(2, dtype=np.int16))
        self.assertRaises(WavError, writer.write_silence, 1)

    def test_refuses_bad_format(self) -> None:
        """Non-positive rates and channel counts are refused before creating a file."""
        self.assertRaises(WavError, WavWriter, self.path, 0, 1)
        self.assertRaises(WavError, WavWriter, self.path, 8000, 0)
        self.assertFalse(os.path.exists(self.path))

    def test_size_limit(self) -> None:
        """At the RIFF limit the writer stops, counts what it drops and stays valid."""
        self.assertEqual(MAX_DATA_BYTES, 2**32 - 1 - 36)
        writer = WavWriter(self.path, 8000, 1, max_data_bytes=101)  # 50 frames fit
        writer.write(np.ones(40, dtype=np.int16))
        self.assertFalse(writer.full)
        writer.write(np.ones(30, dtype=np.int16))
        writer.write_silence(5)
        self.assertTrue(writer.full)
        self.assertEqual(writer.frames, 50)
        self.assertEqual(writer.dropped_frames, 25)
        frames, _ = _frames_seen_by_wave(self.path)  # header already final
        self.assertEqual(frames, 50)
        writer.close()
        self.assertEqual(read_wav(self.path)[2].size, 50)

    def test_read_wav_rejects_8bit(self) -> None:
        """read_wav only accepts 16-bit PCM."""
        with wave.open(self.path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(1)
            w.setframerate(8000)
            w.writeframes(b"\x80" * 8)
        self.assertRaises(WavError, read_wav, self.path)


class WavAppendTests(SynchronousTestCase):
    """Continuing a leg file an earlier writer left (a stream offered again)."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "leg.wav")

    def first_part(self, samples: np.ndarray, rate: int = 8000, channels: int = 1) -> None:
        writer = WavWriter(self.path, rate, channels)
        writer.write(samples)
        writer.close()

    def test_continues_after_the_earlier_audio(self) -> None:
        """The new samples follow the old ones; the header counts both at once."""
        self.first_part(np.arange(100, dtype=np.int16))
        writer = WavWriter(self.path, 8000, 1, append=True)
        self.assertEqual((writer.appended_to, writer.frames), (100, 100))
        self.assertEqual(_frames_seen_by_wave(self.path)[0], 100)
        writer.write_silence(10)
        writer.write(-np.arange(5, dtype=np.int16))
        writer.close()
        rate, channels, data = read_wav(self.path)
        self.assertEqual((rate, channels, len(data)), (8000, 1, 115))
        np.testing.assert_array_equal(data[:100], np.arange(100))
        self.assertFalse(data[100:110].any())
        np.testing.assert_array_equal(data[110:], -np.arange(5))

    def test_header_kept_current_while_appending(self) -> None:
        """The crash-safe header rewrites go on after appending."""
        self.first_part(np.zeros(8000, dtype=np.int16))
        writer = WavWriter(self.path, 8000, 1, header_interval=0.5, append=True)
        self.addCleanup(writer.close)
        writer.write(np.ones(4000, dtype=np.int16))
        self.assertEqual(_frames_seen_by_wave(self.path)[0], 12000)

    def test_wrong_format_is_refused_untouched(self) -> None:
        """Another rate or channel count, or a file not written here, is a WavError; the file stays as it was."""
        self.first_part(np.arange(20, dtype=np.int16).reshape(-1), rate=16000, channels=2)
        before = open(self.path, "rb").read()
        for rate, channels in ((8000, 2), (16000, 1)):
            with self.assertRaises(WavError) as ctx:
                WavWriter(self.path, rate, channels, append=True)
            self.assertIn("16000 Hz 2-channel", str(ctx.exception))
        eight_bit = os.path.join(self.dir, "8bit.wav")
        with wave.open(eight_bit, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(1)
            w.setframerate(8000)
            w.writeframes(b"\x80" * 4)
        junk = os.path.join(self.dir, "junk.wav")
        with open(junk, "wb") as f:
            f.write(b"RIFF" + bytes(20))
        for path in (eight_bit, junk):
            self.assertRaises(WavError, WavWriter, path, 8000, 1, append=True)
        self.assertEqual(open(self.path, "rb").read(), before)
        self.assertRaises(FileNotFoundError, WavWriter, os.path.join(self.dir, "none.wav"), 8000, 1, append=True)

    def test_data_on_disk_counts_not_the_header(self) -> None:
        """Samples past a stale header (a crash) are kept; a partial last frame is cut off."""
        data = np.arange(15, dtype="<i2").tobytes()
        with open(self.path, "wb") as f:
            f.write(wav_header(8000, 1, 20) + data + b"\x01")  # header says 10 frames
        writer = WavWriter(self.path, 8000, 1, append=True)
        writer.write(np.full(3, 7, dtype=np.int16))
        writer.close()
        _, _, samples = read_wav(self.path)
        np.testing.assert_array_equal(samples, np.r_[np.arange(15), [7, 7, 7]])
        self.assertEqual(writer.appended_to, 15)

    def test_size_limit_counts_the_earlier_audio(self) -> None:
        """A continued file that is already at the limit takes nothing more."""
        self.first_part(np.zeros(10, dtype=np.int16))
        writer = WavWriter(self.path, 8000, 1, max_data_bytes=24, append=True)
        writer.write(np.ones(4, dtype=np.int16))
        writer.close()
        self.assertEqual((writer.frames, writer.dropped_frames, writer.full), (12, 2, True))

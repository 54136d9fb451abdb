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

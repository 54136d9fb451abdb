"""PCM helpers for transcription: resampling, WAV bytes, stream-to-call time.

Pure numpy, no I/O. Resampling is the product's one resampler
(siprec.media.resample): the telephone rates we receive (8 kHz G.711,
16 kHz G.722, 48 kHz Opus) must reach the 16 kHz that Whisper-family
models expect without the aliasing a linear interpolation adds, which
measurably hurts recognition.
"""

from __future__ import annotations

import io
import struct
import wave
from bisect import bisect_right

import numpy as np

from siprec.media import resample as one_resampler
from siprec.media.resample import ResampleError

__all__ = [
    "AudioError",
    "StreamResampler",
    "TimeMap",
    "as_int16",
    "int16_to_float",
    "resample",
    "wav_bytes",
]


class AudioError(ValueError):
    """Audio handed to the transcription layer is not usable."""


def as_int16(pcm: object) -> np.ndarray:
    """Check and return mono int16 samples (a 1-D array), without copying."""
    if not isinstance(pcm, np.ndarray):
        raise AudioError(f"PCM must be a numpy array, not {type(pcm).__name__}")
    if pcm.dtype != np.int16:
        raise AudioError(f"PCM must be int16, not {pcm.dtype}")
    if pcm.ndim != 1:
        raise AudioError(f"PCM must be mono (1-D), not shape {pcm.shape}")
    return pcm


def int16_to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 samples as float32 in [-1, 1)."""
    return pcm.astype(np.float32) / 32768.0


def resample(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Resample a whole mono signal (float or int) to float32 at ``dst`` Hz."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise AudioError(f"audio must be mono (1-D), not shape {x.shape}")
    try:
        return one_resampler.resample(x, src, dst).astype(np.float32)
    except ResampleError as err:
        raise AudioError(str(err)) from None


class StreamResampler:
    """Resample a signal that arrives in chunks, as if it came in one piece.

    The product's one resampler (siprec.media.resample) seen from here:
    float32 out whatever comes in, AudioError for bad rates. ``flush()``
    returns the tail the last outputs were waiting for.
    """

    def __init__(self, src: int, dst: int) -> None:
        try:
            self._resampler = one_resampler.StreamResampler(src, dst)
        except ResampleError as err:
            raise AudioError(str(err)) from None
        self.src, self.dst = src, dst

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk; returns the float32 outputs now complete."""
        return self._resampler.process(np.asarray(samples, dtype=np.float64)).astype(np.float32)

    def flush(self) -> np.ndarray:
        """Outputs still owed for the input received so far."""
        return self._resampler.flush().astype(np.float32)


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """A mono 16-bit WAV file in memory (for vendors that take files)."""
    pcm = as_int16(pcm)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm.astype("<i2").tobytes())
    return buffer.getvalue()


def pcm_bytes(pcm: np.ndarray) -> bytes:
    """Little-endian 16-bit bytes, the raw format streaming vendors take."""
    return as_int16(pcm).astype("<i2").tobytes()


class TimeMap:
    """Maps a vendor's stream clock onto the call timeline.

    Streaming vendors count time from the first byte they were sent, but a
    leg can have gaps (pauses, lost packets); each chunk sent records where
    it sits on both clocks, and a stream time is mapped through the chunk
    that holds it.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._stream: list[int] = []  # stream sample index where an anchor starts
        self._call: list[int] = []  # call-timeline sample of that index
        self.sent = 0

    def add(self, offset: int, count: int) -> None:
        """Record that ``count`` samples at call offset ``offset`` were sent."""
        if not self._stream or self._call[-1] + (self.sent - self._stream[-1]) != offset:
            self._stream.append(self.sent)
            self._call.append(offset)
        self.sent += count

    def to_call(self, stream_seconds: float) -> float:
        """Call-timeline seconds of a position in the stream (seconds)."""
        position = stream_seconds * self.sample_rate
        if not self._stream:
            return stream_seconds
        i = max(0, bisect_right(self._stream, position) - 1)
        return (self._call[i] + position - self._stream[i]) / self.sample_rate


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono int16 samples and rate of a 16-bit PCM WAV; AudioError otherwise."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError, struct.error) as err:
        raise AudioError(f"not a readable WAV file ({err})") from None
    if width != 2:
        raise AudioError(f"WAV must be 16-bit PCM, not {8 * width}-bit")
    samples = np.frombuffer(frames[: len(frames) // 2 * 2], dtype="<i2").astype(np.int16)
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels)
        samples = samples.mean(axis=1).astype(np.int16)
    return samples, rate

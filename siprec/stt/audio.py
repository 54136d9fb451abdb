"""PCM helpers for transcription: resampling, WAV bytes, stream-to-call time.

Pure numpy, no I/O. The resampler is a windowed-sinc polyphase filter: the
telephone rates we receive (8 kHz G.711, 16 kHz G.722, 48 kHz Opus) must
reach the 16 kHz that Whisper-family models expect without the aliasing a
linear interpolation adds, which measurably hurts recognition.
"""

from __future__ import annotations

import io
import struct
import wave
from bisect import bisect_right
from functools import lru_cache
from math import gcd

import numpy as np

__all__ = [
    "AudioError",
    "StreamResampler",
    "TimeMap",
    "as_int16",
    "int16_to_float",
    "resample",
    "wav_bytes",
]

_HALF_TAPS = 16  # zero crossings of the sinc kept on each side
_KAISER_BETA = 8.0
_PASSBAND = 0.95  # fraction of the lower Nyquist frequency kept


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


@lru_cache(maxsize=32)
def _filter_bank(src: int, dst: int) -> tuple[int, int, int, np.ndarray]:
    """(up, down, half width, taps per phase) for src -> dst."""
    g = gcd(src, dst)
    up, down = dst // g, src // g
    cutoff = min(1.0, dst / src) * _PASSBAND  # in cycles per input sample * 2
    width = int(np.ceil(_HALF_TAPS / cutoff))
    phase = np.arange(up)[:, None] / up
    taps = np.arange(2 * width)[None, :] - width + 1
    distance = phase - taps
    window = np.i0(_KAISER_BETA * np.sqrt(np.clip(1 - (distance / width) ** 2, 0, None)))
    bank = cutoff * np.sinc(cutoff * distance) * window / np.i0(_KAISER_BETA)
    bank.setflags(write=False)
    return up, down, width, bank


def _apply(x: np.ndarray, first_out: int, count: int, up: int, down: int,
           width: int, bank: np.ndarray, x_origin: int) -> np.ndarray:
    """Outputs first_out..first_out+count-1 from input x whose sample 0 is
    input index ``x_origin``; x must hold every input the kernels touch."""
    if count <= 0:
        return np.zeros(0, dtype=np.float32)
    position = (np.arange(first_out, first_out + count, dtype=np.int64)) * down
    base = position // up
    phase = position % up
    index = base[:, None] + np.arange(2 * width)[None, :] - width + 1 - x_origin
    return (x[index] * bank[phase]).sum(axis=1).astype(np.float32)


def resample(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Resample a whole signal (float or int) to float32 at ``dst`` Hz."""
    if src <= 0 or dst <= 0:
        raise AudioError(f"sample rates must be positive ({src} -> {dst})")
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise AudioError(f"audio must be mono (1-D), not shape {x.shape}")
    if src == dst:
        return x.astype(np.float32)
    up, down, width, bank = _filter_bank(src, dst)
    count = (len(x) * up) // down
    padded = np.concatenate([np.zeros(width), x, np.zeros(width + 1)])
    return _apply(padded, 0, count, up, down, width, bank, -width)


class StreamResampler:
    """Resample a signal that arrives in chunks, as if it came in one piece.

    Keeps the filter's history between chunks; ``flush()`` returns the tail
    the last kernels were waiting for.
    """

    def __init__(self, src: int, dst: int) -> None:
        if src <= 0 or dst <= 0:
            raise AudioError(f"sample rates must be positive ({src} -> {dst})")
        self.src, self.dst = src, dst
        self._up, self._down, self._width, self._bank = _filter_bank(src, dst)
        self._history = np.zeros(self._width, dtype=np.float64)  # zeros before the start
        self._origin = -self._width  # input index of _history[0]
        self._received = 0  # input samples seen
        self._emitted = 0  # output samples produced

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk; returns the float32 outputs now complete."""
        x = np.asarray(samples, dtype=np.float64)
        if self.src == self.dst:
            self._received += len(x)
            self._emitted += len(x)
            return x.astype(np.float32)
        self._history = np.concatenate([self._history, x])
        self._received += len(x)
        # Output n needs inputs up to floor(n*down/up) + width.
        last_ready = ((self._received - self._width) * self._up - 1) // self._down
        return self._produce(last_ready + 1)

    def flush(self) -> np.ndarray:
        """Outputs still owed for the input received so far (zero-padded)."""
        if self.src == self.dst:
            return np.zeros(0, dtype=np.float32)
        self._history = np.concatenate([self._history, np.zeros(self._width + 1)])
        return self._produce((self._received * self._up) // self._down)

    def _produce(self, end: int) -> np.ndarray:
        count = end - self._emitted
        out = _apply(self._history, self._emitted, count, self._up, self._down,
                     self._width, self._bank, self._origin)
        self._emitted = max(self._emitted, end)
        # Keep only the inputs future kernels can still touch.
        keep_from = (self._emitted * self._down) // self._up - self._width + 1
        drop = max(0, keep_from - self._origin)
        if drop:
            self._history = self._history[drop:]
            self._origin += drop
        return out


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

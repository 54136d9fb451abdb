"""The one sample-rate converter of the product: FFmpeg's libswresample via PyAV.

Every rate change goes through here: a packet decoded at another rate than
its leg (G.722 on a G.711 leg, PCMA on an Opus leg), Opus recorded below
48 kHz, legs combined at one rate, the analysis mix-down, and audio handed
to speech engines at 16 kHz.

Why libswresample with 64 taps and a 0.95 cut-off (``FILTER_SIZE``,
``CUTOFF``): ``bench/resample.py`` measured it against the numpy
windowed-sinc filter siprec had (the baseline), linear interpolation, and
FFmpeg's defaults (figures in docs/media.md). At every telephone rate
pair it keeps a sine at better than 100 dB SNR, the speech band flat to
0.01 dB, and aliases and images below -90 dB, for about a fifth of the
numpy filter's CPU on whole signals and half of it on 20 ms packets.
FFmpeg's default (32 taps, 0.97) is a little cheaper but lets a tone just
above the new Nyquist frequency alias back at -22 dB and leaves images at
-52 dB; its 32 taps with the cut-off lowered to 0.91 lose 1 to 2.6 dB at
the top of the speech band instead. Linear interpolation is cheapest and
leaves images at -6 dB.

Two shapes over the same filter:

- :class:`StreamResampler`: output sample ``j`` sits at input time
  ``j * src / dst`` (counted from ``start``); outputs come out once the
  filter has seen the input after them (a latency of ``filter_size / 2``
  input samples, more when downsampling) and ``flush()`` returns the
  rest. Chunking never changes the result, sample for sample.
- :class:`PacketResampler`: every call returns exactly its share of the
  output (cumulatively rounded down), so a packet keeps its length on a
  leg's timeline; the price is that the audio comes out late by the
  filter latency (about 4 ms at telephone rates), padded with silence
  once at the start.

int16 goes in and out as int16 (FFmpeg rounds and clips); any float goes
in as float64 and comes out as float64 (no clipping, any scale). Samples
are 1-D (interleaved when there are several channels) or 2-D
``(frames, channels)``; the output has the input's shape.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

__all__ = [
    "CUTOFF",
    "FILTER_SIZE",
    "PacketResampler",
    "ResampleError",
    "StreamResampler",
    "check_rate",
    "resample",
]

FILTER_SIZE = 64  # taps at the lower rate (FFmpeg's default is 32)
CUTOFF = 0.95  # of the lower Nyquist frequency (FFmpeg's default is 0.97)
MAX_CHANNELS = 8
# Extra silence PacketResampler puts before the first output, so the
# filter's hold-back varying by a sample between calls never leaves it short.
_PACKET_SLACK = 2

_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
_OPTIONS: Dict[str, str] = {"filter_size": str(FILTER_SIZE), "cutoff": str(CUTOFF)}
_av: Any = None


class ResampleError(ValueError):
    """A rate, channel count or sample array the resampler cannot take."""


def check_rate(rate: object) -> int:
    """A sample rate as a positive int, or ResampleError naming it."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ResampleError(f"sample rate must be a positive integer, got {rate!r}")
    return int(rate)


def _import_av() -> Any:
    global _av
    if _av is None:
        import av  # noqa: PLC0415 - heavy import, only once something is resampled

        _av = av
    return _av


class StreamResampler:
    """Converts one continuous signal that arrives in chunks.

    ``start`` is the input index of the first sample fed, on whatever
    timeline the caller keeps (a leg's call-timeline offset, say); the
    first output then has index ``start_out = ceil(start * dst / src)``
    and ``position`` is the index of the next output. Outputs are aligned
    to the run's first input sample, so an offset that does not divide
    evenly is placed within one output sample. After ``flush()`` the run
    is over: exactly the outputs whose time falls inside the input have
    been returned, and feeding more is an error.
    """

    def __init__(self, src: int, dst: int, channels: int = 1, start: int = 0) -> None:
        self.src = check_rate(src)
        self.dst = check_rate(dst)
        if channels not in _LAYOUTS:
            raise ResampleError(f"channel count must be 1..{MAX_CHANNELS}, got {channels!r}")
        if not isinstance(start, (int, np.integer)) or start < 0:
            raise ResampleError(f"start must be a non-negative integer, got {start!r}")
        self.channels = channels
        self.start = int(start)
        self.start_out = -(-self.start * self.dst // self.src)
        self.position = self.start_out
        self.received = 0  # input frames fed
        self.flushed = False
        self._layout = _LAYOUTS[channels]
        self._format: Optional[str] = None  # "s16" or "dbl", fixed by the first chunk
        self._resampler: Any = None
        self._two_d = False

    # -- public -------------------------------------------------------------

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed the next chunk; returns the outputs it completed."""
        if self.flushed:
            raise ResampleError("this resampler was flushed; start a new one for a new run")
        x = self._take(samples)
        frames = x.size // self.channels
        self.received += frames
        if self.src == self.dst:
            self.position += frames
            return self._shaped(x.copy())
        if frames == 0:
            return self._shaped(self._empty())
        out = self._run(x)
        return self._shaped(self._clamped(out))

    def flush(self) -> np.ndarray:
        """The outputs still owed for everything fed; the run ends here."""
        if self.flushed:
            return self._shaped(self._empty())
        self.flushed = True
        if self.src == self.dst or self._resampler is None:
            return self._shaped(self._empty())
        tail = self._run(None)
        want = (self._end_out() - self.position) * self.channels
        if tail.size < want:  # the filter rounded the total down
            tail = np.concatenate([tail, np.zeros(want - tail.size, dtype=tail.dtype)])
        tail = tail[: max(0, want)]
        self.position += tail.size // self.channels
        return self._shaped(tail)

    # -- internals ----------------------------------------------------------

    def _end_out(self) -> int:
        """Index after the last output whose time lies inside the input."""
        return -(-(self.start + self.received) * self.dst // self.src)

    def _take(self, samples: np.ndarray) -> np.ndarray:
        if not isinstance(samples, np.ndarray):
            samples = np.asarray(samples)
        if samples.ndim == 2:
            if samples.shape[1] != self.channels:
                raise ResampleError(f"expected {self.channels} channel column(s), got shape {samples.shape}")
            self._two_d = True
        elif samples.ndim != 1:
            raise ResampleError(f"samples must be 1-D or (frames, channels), got shape {samples.shape}")
        if samples.dtype == np.int16:
            fmt = "s16"
        elif samples.dtype.kind in "fiu":
            fmt = "dbl"
        else:
            raise ResampleError(f"samples must be int16 or numbers, got {samples.dtype}")
        if self._format is None:
            self._format = fmt
        elif fmt != self._format:
            raise ResampleError(f"this resampler takes {'int16' if self._format == 's16' else 'float'} samples")
        flat = samples.reshape(-1)
        if flat.size % self.channels:
            raise ResampleError(f"{flat.size} samples is not a whole number of {self.channels}-channel frames")
        dtype = np.int16 if fmt == "s16" else np.float64
        return np.ascontiguousarray(flat, dtype=dtype)

    def _empty(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int16 if self._format == "s16" else np.float64)

    def _shaped(self, out: np.ndarray) -> np.ndarray:
        return out.reshape(-1, self.channels) if self._two_d else out

    def _run(self, x: Optional[np.ndarray]) -> np.ndarray:
        av = _import_av()
        if self._resampler is None:
            self._resampler = av.AudioResampler(
                format=self._format, layout=self._layout, rate=self.dst, options=_OPTIONS
            )
        frame = None
        if x is not None:
            frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format=self._format, layout=self._layout)
            frame.sample_rate = self.src
        parts: List[np.ndarray] = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if not parts:
            return self._empty()
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _clamped(self, out: np.ndarray) -> np.ndarray:
        """Never more outputs than the input so far can own (FFmpeg rounds)."""
        room = (self._end_out() - self.position) * self.channels
        if out.size > room:
            out = out[: max(0, room)]
        self.position += out.size // self.channels
        return out


class PacketResampler:
    """Exactly ``in * dst / src`` outputs per call (cumulatively rounded down).

    For the decode path: a packet's audio must fill exactly its span on
    the leg's timeline. The filter's hold-back is paid for once with
    leading silence (``delay`` output frames), so the audio is that much
    late: about 4 ms at telephone rates. Start a new one after a break in
    the signal (a lost packet, another codec in between), or the old
    signal's last few ms would come out at the start of the new one.
    """

    def __init__(self, src: int, dst: int, channels: int = 1) -> None:
        self._stream = StreamResampler(src, dst, channels)
        self.src, self.dst, self.channels = self._stream.src, self._stream.dst, channels
        self.delay = 0  # output frames of leading silence added
        self._in = 0
        self._out = 0
        self._carry: Optional[np.ndarray] = None

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample one packet's samples (1-D, interleaved); returns its exact share."""
        if samples.ndim != 1:
            raise ResampleError(f"packet samples must be 1-D (interleaved), got shape {samples.shape}")
        got = self._stream.process(samples)
        if self._carry is not None and self._carry.size:
            got = np.concatenate([self._carry, got])
        self._in += samples.size // self.channels
        target = self._in * self.dst // self.src
        want = (target - self._out) * self.channels
        self._out = target
        if got.size < want:
            pad = want - got.size + (_PACKET_SLACK * self.channels if self.delay == 0 else 0)
            self.delay += pad // self.channels
            got = np.concatenate([np.zeros(pad, dtype=got.dtype), got])
        self._carry = got[want:]
        return got[:want]


def resample(samples: np.ndarray, src: int, dst: int, channels: int = 1) -> np.ndarray:
    """A whole signal at another rate: ``ceil(frames * dst / src)`` frames, aligned."""
    r = StreamResampler(src, dst, channels)
    head = r.process(samples)
    tail = r.flush()
    return np.concatenate([head, tail]) if len(tail) else head

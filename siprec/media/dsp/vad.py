"""Frame-level voice activity detection for analysis (talk time, overtalk, silence).

Each 10, 20 or 30 ms frame is split into bands between 200 and 3800 Hz
(the same bands at every rate, so 8, 16 and 48 kHz legs are judged alike).
Per band a noise floor follows the lower envelope of the smoothed band
energy: it drops at once when the energy does and creeps up a few dB per
second otherwise, faster while the frame looks like noise, so it adapts to
a noisier room without ever needing a silence-only start. A frame is
speech when its mean band SNR (each band clipped to 0..30 dB) passes the
threshold, its SNR is uneven enough across bands to have speech's spectral
shape (formants, not a louder flat noise), and it is above an absolute
level; a hangover keeps the decision up through the short dips between
syllables, but only after a burst long enough to be speech. The first
100 ms only set the floor (their average), and for half a second after
that it may climb fast, so an odd start (a fade-in, a noise reducer
settling) does not read as speech. Frames the caller vetoes (residual
echo of the other leg) are non-speech and leave the floor alone.

This is the analysis path's VAD. Utterance segmentation for STT
(``siprec.stt.vad``) classifies frames with WebRTC's VAD instead, because
``bench/vad.py`` measured the two jobs wanting different detectors (see
docs/media.md); the parts both need live here once: ``Framer`` (fixed
frames from any chunking), ``mean_power`` / ``dbfs_to_power`` (what a level
in dBFS means) and ``Hangover``. Input int16 or float (full scale 1.0);
decisions are one bool per frame, frames counted from the first sample fed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import List, Optional, Sequence

import numpy as np

from siprec.media.dsp.base import DspError, as_float, check_numbers, check_rate

__all__ = [
    "FRAME_MS",
    "Framer",
    "Hangover",
    "SegmentTracker",
    "SpeechSegment",
    "VadConfig",
    "VoiceActivityDetector",
    "dbfs_to_power",
    "mean_power",
    "overlap_samples",
    "power_to_dbfs",
    "segments_from_decisions",
]

FRAME_MS = (10, 20, 30)

_LOW_HZ = 200.0
_HIGH_HZ = 3800.0
_BANDS = 14
_FLOOR_ENERGY = 1e-12  # -120 dBFS: digital silence has a floor to compare with
_SETTLE_MS = 100
_WARMUP_MS = 500
_WARMUP_RISE_DB_PER_S = 100.0
_INT16_FULL_SCALE = 32768.0


def mean_power(frame: np.ndarray) -> float:
    """Mean square at full scale 1.0 (int16 counts 32768 as full scale); 0 for no samples.

    One definition of a frame's level for every detector: a full-scale sine
    is -3 dBFS whether it arrives as int16 or float.
    """
    if not len(frame):
        return 0.0
    if frame.dtype == np.int16:
        x = frame.astype(np.float64)
        return float(np.dot(x, x)) / (len(x) * _INT16_FULL_SCALE * _INT16_FULL_SCALE)
    return float(np.dot(frame, frame)) / len(frame)


def dbfs_to_power(dbfs: float) -> float:
    """The mean power (as ``mean_power`` gives it) of a level in dBFS."""
    return float(10 ** (dbfs / 10))


def power_to_dbfs(power: float) -> float:
    """A mean power in dBFS, floored at -120 dBFS so digital silence has a level."""
    return float(10 * np.log10(max(power, _FLOOR_ENERGY)))


class Framer:
    """Fixed frames of ``size`` samples out of a stream fed in any chunks.

    ``push`` returns the frames now complete as the rows of one array; the
    rest waits for the next chunk, so where frames fall never depends on
    how the stream was cut. ``flush`` hands out the partial frame
    zero-padded and starts a new grid.
    """

    def __init__(self, size: int, dtype: type = np.float64) -> None:
        if size < 1:
            raise DspError(f"frame size must be at least 1 sample, got {size}")
        self.size = size
        self._rest = np.zeros(0, dtype=dtype)

    @property
    def pending(self) -> int:
        """Samples waiting for the rest of their frame."""
        return len(self._rest)

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = np.concatenate([self._rest, samples]) if len(self._rest) else samples
        count = len(x) // self.size
        self._rest = x[count * self.size :].copy()
        return x[: count * self.size].reshape(count, self.size)

    def flush(self) -> Optional[np.ndarray]:
        """The waiting samples padded to a frame with zeros, or None when none wait."""
        if not len(self._rest):
            return None
        frame = np.zeros(self.size, dtype=self._rest.dtype)
        frame[: len(self._rest)] = self._rest
        self.clear()
        return frame

    def clear(self) -> None:
        """Forget the waiting samples (a gap follows)."""
        self._rest = self._rest[:0]


class Hangover:
    """Speech held for ``hold`` frames after a burst of at least ``burst`` speech frames.

    The dips between syllables stay speech, while a click shorter than a
    burst is reported as it is and not stretched into talk time.
    """

    __slots__ = ("hold", "burst", "_run", "_left")

    def __init__(self, hold: int, burst: int) -> None:
        self.hold = max(0, hold)
        self.burst = max(1, burst)
        self._run = 0
        self._left = 0

    def __call__(self, raw: bool) -> bool:
        if raw:
            self._run += 1
            if self._run >= self.burst:
                self._left = self.hold
            return True
        self._run = 0
        if self._left:
            self._left -= 1
            return True
        return False

    def reset(self) -> None:
        self._run = 0
        self._left = 0


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Settings of the detector; the defaults suit telephone speech.

    ``threshold_db``: mean band SNR a frame needs. ``spread_db``: standard
    deviation of the band SNRs it needs (flat noise has little).
    ``hangover_ms``: speech kept after the last speech frame of a burst of
    at least ``min_burst_ms``. ``min_level_dbfs``: quieter frames are never
    speech. ``rise_db_per_s`` / ``noise_rise_db_per_s``: how fast the noise
    floor may climb during speech-like / noise-like frames.
    """

    frame_ms: int = 20
    threshold_db: float = 3.0
    spread_db: float = 2.0
    hangover_ms: int = 200
    min_burst_ms: int = 60
    min_level_dbfs: float = -60.0
    rise_db_per_s: float = 5.0
    noise_rise_db_per_s: float = 20.0

    def __post_init__(self) -> None:
        check_numbers("VAD", self, [f.name for f in fields(self)])
        if self.frame_ms not in FRAME_MS:
            raise DspError(f"VAD frame_ms must be one of {FRAME_MS}, got {self.frame_ms!r}")
        for name in ("hangover_ms", "min_burst_ms", "rise_db_per_s", "noise_rise_db_per_s", "spread_db"):
            if not getattr(self, name) >= 0:
                raise DspError(f"VAD {name} must be >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    """Speech over samples ``[start, end)`` at ``sample_rate``."""

    start: int
    end: int
    sample_rate: int

    @property
    def duration(self) -> float:
        return (self.end - self.start) / self.sample_rate


def _band_edges(rate: int, n_fft: int) -> np.ndarray:
    """First FFT bin of each band (mel-spaced), plus the end bin."""
    def mel(f: float) -> float:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    mels = np.linspace(mel(_LOW_HZ), mel(_HIGH_HZ), _BANDS + 1)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.round(hz * n_fft / rate).astype(int)
    for i in range(1, len(bins)):  # at least one bin per band, even with 10 ms frames at 8 kHz
        bins[i] = max(bins[i], bins[i - 1] + 1)
    return bins


class VoiceActivityDetector:
    """Speech/non-speech per frame over a continuous stream fed in any chunks.

    Feeding a signal whole or in pieces gives the same decisions. ``flush``
    decides the last partial frame (zero-padded) and starts a new frame
    grid, keeping the learned noise floor, for the next run after a gap.
    """

    def __init__(self, sample_rate: int, config: VadConfig = VadConfig()) -> None:
        self.rate = check_rate(sample_rate)
        self.config = config
        self.frame = self.rate * config.frame_ms // 1000
        # Decisions come every frame, but the spectrum looks at least 20 ms
        # back: 10 ms gives too few bins per band at 8 kHz to be steady.
        self._span = max(self.frame, self.rate // 50)
        self._n_fft = 1 << (self._span - 1).bit_length()
        self._window = np.hanning(self._span + 2)[1:-1]
        self._smoothing = 0.5 ** (config.frame_ms / 20.0)
        self._scale = 1.0 / (np.sum(self._window**2) * self._n_fft)
        edges = _band_edges(self.rate, self._n_fft)
        self._starts = edges[:-1]
        self._counts = np.diff(edges).astype(np.float64)
        self._lo, self._hi = int(edges[0]), int(edges[-1])
        frames_per_s = 1000.0 / config.frame_ms
        self._rise = 10 ** (config.rise_db_per_s / frames_per_s / 10)
        self._noise_rise = 10 ** (config.noise_rise_db_per_s / frames_per_s / 10)
        self._warmup_rise = 10 ** (_WARMUP_RISE_DB_PER_S / frames_per_s / 10)
        self._hangover = Hangover(
            int(round(config.hangover_ms / config.frame_ms)), int(round(config.min_burst_ms / config.frame_ms))
        )
        self._min_energy = dbfs_to_power(config.min_level_dbfs)
        # Band energy of a flat signal at min_level_dbfs: the spread is measured
        # against a floor no lower than that, so speech after digital silence
        # (gap-filled zeros) is not clipped flat and mistaken for a noise jump.
        self._band_floor = self._min_energy / (2.0 * float(np.sum(self._counts)))
        self._samples = Framer(self.frame)
        self._vetoes = Framer(self.frame, bool)  # the veto travels with its samples
        self._history = np.zeros(self._span - self.frame, dtype=np.float64)
        self._smooth: Optional[np.ndarray] = None
        self._noise: Optional[np.ndarray] = None
        # The first frames set the floor; for half a second after them it
        # may climb fast (the start may have been quieter than the noise).
        self._warmup = int(round(_WARMUP_MS / config.frame_ms))
        self._settle_total = self._settle = max(1, int(round(_SETTLE_MS / config.frame_ms)))
        self.frames = 0  # decided so far
        self.speech_frames = 0
        self.vetoed_frames = 0

    @property
    def noise_level_dbfs(self) -> Optional[float]:
        """Current noise floor over the speech band (dBFS, per-sample power), None before any frame."""
        if self._noise is None:
            return None
        return power_to_dbfs(2.0 * float(np.sum(self._noise * self._counts)))  # both halves of the spectrum

    def process(self, samples: object, veto: Optional[np.ndarray] = None) -> np.ndarray:
        """Decisions (bool) for the frames completed by ``samples``.

        ``veto`` (one bool per sample) marks audio known not to be this
        leg's speech, such as residual echo of the other leg: a frame that
        is mostly vetoed is non-speech and leaves the noise floor alone.
        """
        x = as_float(samples, "samples")
        if veto is None:
            v = np.zeros(len(x), dtype=bool)
        else:
            try:
                v = np.asarray(veto, dtype=bool)
            except (TypeError, ValueError) as e:
                raise DspError(f"veto must be booleans, one per sample ({e})") from e
            if v.shape != x.shape:
                raise DspError(f"veto has {v.shape} entries for {x.shape} samples")
        frames, vetoes = self._samples.push(x), self._vetoes.push(v)
        out = np.zeros(len(frames), dtype=bool)
        for i in range(len(frames)):
            out[i] = self._decide(frames[i], 2 * int(np.count_nonzero(vetoes[i])) > self.frame)
        return out

    def flush(self) -> np.ndarray:
        """The partial frame's decision (if any samples wait), then a fresh frame grid."""
        out = np.zeros(0, dtype=bool)
        frame, veto = self._samples.flush(), self._vetoes.flush()
        if frame is not None and veto is not None:
            out = np.array([self._decide(frame, 2 * int(np.count_nonzero(veto)) > self.frame)], dtype=bool)
        self._history = np.zeros(self._span - self.frame, dtype=np.float64)
        self._hangover.reset()
        return out

    def _decide(self, frame: np.ndarray, vetoed: bool = False) -> bool:
        if len(self._history):
            span = np.concatenate([self._history, frame])
            self._history = span[len(span) - len(self._history) :]
        else:
            span = frame
        spectrum = np.fft.rfft(span * self._window, self._n_fft)
        power = (spectrum.real**2 + spectrum.imag**2)[self._lo : self._hi] * self._scale
        bands = np.add.reduceat(power, self._starts - self._lo) / self._counts + _FLOOR_ENERGY
        level = mean_power(frame)
        if self._smooth is None or self._noise is None:
            self._smooth = bands.copy()
            self._noise = bands.copy()
        else:
            self._smooth = self._smoothing * self._smooth + (1.0 - self._smoothing) * bands
        if self._settle:
            # The first frames set the floor to their average and are never
            # speech: one odd first frame (a fade-in, a noise reducer's start)
            # must not become the reference.
            seen = self._settle_total - self._settle + 1
            self._noise = self._noise + (bands - self._noise) / seen
            self._settle -= 1
            self.frames += 1
            return False
        # The mean SNR reacts within a frame; the spread is taken from the
        # smoothed bands, where a louder flat noise is flat and formants stand out.
        # (Written out rather than np.mean/np.std: this runs 50-100 times a second per leg.)
        snr = np.log10(bands / self._noise)
        snr *= 10.0
        np.clip(snr, 0.0, 30.0, out=snr)
        mean = float(snr.sum()) / _BANDS
        smooth = np.log10(self._smooth / np.maximum(self._noise, self._band_floor))
        smooth *= 10.0
        np.clip(smooth, 0.0, 60.0, out=smooth)
        centre = float(smooth.sum()) / _BANDS
        spread = max(0.0, float(smooth.dot(smooth)) / _BANDS - centre * centre) ** 0.5
        raw = mean >= self.config.threshold_db and spread >= self.config.spread_db and level >= self._min_energy
        if vetoed:
            raw = False
            self.vetoed_frames += 1
        else:
            rise = self._warmup_rise if self._warmup else self._rise if raw else self._noise_rise
            self._noise = np.minimum(self._noise * rise, self._smooth)
            self._warmup = max(0, self._warmup - 1)
        decision = self._hangover(raw)
        self.frames += 1
        self.speech_frames += decision
        return decision


def segments_from_decisions(
    decisions: Sequence[bool], frame: int, start: int, sample_rate: int
) -> List[SpeechSegment]:
    """Runs of speech frames as segments; frame ``i`` covers ``start + i*frame`` onwards."""
    d = np.concatenate([[False], np.asarray(decisions, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(d.astype(np.int8)))
    return [
        SpeechSegment(start + int(a) * frame, start + int(b) * frame, sample_rate)
        for a, b in zip(edges[::2], edges[1::2])
    ]


class SegmentTracker:
    """Streaming version of ``segments_from_decisions``: segments as they close.

    ``add`` takes the decisions of consecutive frames starting at sample
    ``start``; a segment is returned once a non-speech frame (or a jump in
    position, or ``close``) ends it. ``limit`` clips the end of a segment
    closed at a run's end (the zero-padded last frame must not count past
    the audio).
    """

    def __init__(self, frame: int, sample_rate: int) -> None:
        self.frame = frame
        self.rate = sample_rate
        self._open: Optional[int] = None
        self._next: Optional[int] = None  # sample after the last frame seen

    def add(self, start: int, decisions: np.ndarray) -> List[SpeechSegment]:
        closed: List[SpeechSegment] = []
        if self._next is not None and start != self._next:
            closed.extend(self.close())
        position = start
        for speech in decisions:
            if speech and self._open is None:
                self._open = position
            elif not speech and self._open is not None:
                closed.append(SpeechSegment(self._open, position, self.rate))
                self._open = None
            position += self.frame
        self._next = position
        return closed

    def close(self, limit: Optional[int] = None) -> List[SpeechSegment]:
        """End the open segment (at ``limit`` if given and earlier)."""
        closed: List[SpeechSegment] = []
        if self._open is not None and self._next is not None:
            end = self._next if limit is None else min(self._next, limit)
            if end > self._open:
                closed.append(SpeechSegment(self._open, end, self.rate))
        self._open = None
        self._next = None
        return closed


def overlap_samples(a: Sequence[SpeechSegment], b: Sequence[SpeechSegment]) -> int:
    """Samples where both lists have speech (overtalk), both at the same rate and sorted."""
    total, i, j = 0, 0, 0
    while i < len(a) and j < len(b):
        if a[i].sample_rate != b[j].sample_rate:
            raise DspError("overtalk needs segments at one sample rate")
        lo, hi = max(a[i].start, b[j].start), min(a[i].end, b[j].end)
        total += max(0, hi - lo)
        if a[i].end < b[j].end:
            i += 1
        else:
            j += 1
    return total

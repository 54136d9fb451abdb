"""What every analysis-path stage shares: sample formats, rates, errors, chunks.

Samples come in as int16 (full scale 32768, as the media layer hands them
over) or float32/float64 (full scale 1.0) and leave as float32 with full
scale 1.0; ``to_int16`` converts back with rounding and clipping. Stages
compute in float64 so results do not depend on how the input was chunked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "SAMPLE_RATES",
    "Aligner",
    "Block",
    "Chunk",
    "Continuity",
    "DspError",
    "as_float",
    "check_rate",
    "mono",
    "to_int16",
]

#: Rates every stage accepts: the codecs' output rates (G.711/G.722/Opus
#: settings) and CD audio. Each has a whole number of samples per 10 ms.
SAMPLE_RATES = frozenset({8000, 12000, 16000, 24000, 32000, 44100, 48000})


#: Float input beyond this (60 dB over full scale) is garbage, not audio:
#: refused before it can overflow a stage's running estimates.
MAX_FLOAT = 1000.0


class DspError(ValueError):
    """Input or settings an analysis-path stage cannot use."""


@dataclass(frozen=True, slots=True, eq=False)
class Chunk:
    """Processed audio placed on the call timeline.

    ``offset`` counts samples at ``sample_rate`` from the start of the call
    timeline, like the media layer's ``offset_samples``.
    """

    offset: int
    pcm: np.ndarray
    sample_rate: int

    @property
    def end(self) -> int:
        return self.offset + len(self.pcm)


def check_rate(rate: object) -> int:
    """The rate as an int, or DspError naming the accepted ones."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or int(rate) not in SAMPLE_RATES:
        raise DspError(f"unsupported sample rate {rate!r}; expected one of {sorted(SAMPLE_RATES)}")
    return int(rate)


def as_float(pcm: object, name: str = "pcm") -> np.ndarray:
    """One-dimensional float64 samples at full scale 1.0 from int16 or float input."""
    if not isinstance(pcm, np.ndarray):
        raise DspError(f"{name} must be a numpy array, not {type(pcm).__name__}")
    if pcm.ndim != 1:
        raise DspError(f"{name} must be one-dimensional (mono), got shape {pcm.shape}")
    if pcm.dtype == np.int16:
        return pcm.astype(np.float64) / 32768.0
    if pcm.dtype in (np.float32, np.float64):
        out = pcm.astype(np.float64)
        if not np.all(np.isfinite(out)):
            raise DspError(f"{name} holds non-finite samples (NaN or infinity)")
        if len(out) and float(np.max(np.abs(out))) > MAX_FLOAT:
            raise DspError(f"{name} is not float audio at full scale 1.0 (a sample exceeds {MAX_FLOAT:g})")
        return out
    raise DspError(f"{name} must be int16 or float32/float64 samples, not {pcm.dtype}")


def mono(pcm: object, name: str = "pcm") -> np.ndarray:
    """Float64 mono from mono or ``(frames, channels)`` input (channels averaged).

    A stereo Opus leg is analysed as one voice; the archived WAV keeps both channels.
    """
    if isinstance(pcm, np.ndarray) and pcm.ndim == 2:
        if pcm.shape[1] < 1:
            raise DspError(f"{name} has no channels (shape {pcm.shape})")
        columns = [as_float(np.ascontiguousarray(pcm[:, c]), name) for c in range(pcm.shape[1])]
        return columns[0] if len(columns) == 1 else np.mean(columns, axis=0)
    return as_float(pcm, name)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples (full scale 1.0) as int16, rounded and clipped."""
    return np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def check_numbers(owner: str, settings: object, names: Sequence[str]) -> None:
    """Each named setting is a finite real number (not a bool, not a string)."""
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise DspError(f"{owner} {name} must be a number, got {value!r}")
        if not np.isfinite(value):
            raise DspError(f"{owner} {name} must be finite, got {value!r}")


def check_offset(offset: object) -> int:
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or int(offset) < 0:
        raise DspError(f"offset_samples must be a non-negative integer, got {offset!r}")
    return int(offset)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a fed span goes relative to what came before.

    ``fill`` zero samples precede it (a short gap), ``skip`` of its first
    samples were already seen (an overlap) and are dropped, and ``restart``
    says a long gap came first: stages flush and start a new run at ``start``.
    """

    start: int
    fill: int
    skip: int
    restart: bool


class Continuity:
    """Turns ``(offset, length)`` spans of one leg into continuous runs.

    Gaps up to ``gap_fill`` samples (lost packets, short silence suppression)
    become zeros so the stages see one stream; a longer gap (a pause, a long
    hold) restarts the run so no stage burns CPU on minutes of zeros.
    Depends only on offsets, never on how the audio was chunked.
    """

    def __init__(self, gap_fill: int) -> None:
        if gap_fill < 0:
            raise DspError(f"gap_fill must be >= 0, got {gap_fill}")
        self.gap_fill = gap_fill
        self.end: Optional[int] = None
        self.overlapped = 0

    def place(self, offset: int, length: int) -> Placement:
        if self.end is None:
            self.end = offset + length
            return Placement(offset, 0, 0, True)
        if offset >= self.end:
            gap = offset - self.end
            self.end = offset + length
            if gap <= self.gap_fill:
                return Placement(offset - gap, gap, 0, False)
            return Placement(offset, 0, 0, True)
        skip = min(self.end - offset, length)
        self.overlapped += skip
        start = self.end
        self.end = max(self.end, offset + length)
        return Placement(start, 0, skip, False)


@dataclass(frozen=True, slots=True, eq=False)
class Block:
    """Aligned audio of every leg over ``[start, start + frames)``.

    ``restart`` says no leg had audio for longer than the gap limit before
    ``start``: stages flush and begin a new run. Legs without audio in part
    of the block read as zeros there.
    """

    start: int
    frames: int
    legs: Mapping[str, np.ndarray]
    restart: bool


class Aligner:
    """Lines several legs up on the call timeline so they can be processed together.

    Audio is released up to the point every leg has reached, so a leg that
    arrives a flush later still lines up; a leg more than ``max_lag``
    samples behind the leader is treated as silent up to that lag (its late
    audio is dropped and counted in ``late``), so one dead leg cannot stall
    the others. Stretches where no leg has audio for more than ``gap_fill``
    samples are skipped with a restart instead of filled.
    """

    def __init__(self, labels: Sequence[str], max_lag: int, gap_fill: int) -> None:
        if len(set(labels)) != len(labels) or not labels:
            raise DspError(f"leg labels must be distinct and non-empty, got {list(labels)}")
        if max_lag < 1:
            raise DspError(f"max_lag must be >= 1 sample, got {max_lag}")
        self.labels: Tuple[str, ...] = tuple(labels)
        self.max_lag = max_lag
        self.gap_fill = gap_fill
        self.position: Optional[int] = None  # next sample to release
        self._pending: Dict[str, List[Tuple[int, np.ndarray]]] = {label: [] for label in labels}
        self._end: Dict[str, int] = {label: 0 for label in labels}
        self._closed: Dict[str, bool] = {label: False for label in labels}
        self.late = 0
        self.overlapped = 0
        self._restart = False

    def check_label(self, label: str) -> None:
        if label not in self._pending:
            raise DspError(f"unknown leg {label!r}; expected one of {list(self.labels)}")

    def put(self, label: str, offset: int, samples: np.ndarray) -> None:
        """Queue a leg's samples starting at ``offset`` (overlaps and late audio dropped)."""
        self.check_label(label)
        if self._closed[label]:
            raise DspError(f"leg {label!r} was closed; no more audio can be fed to it")
        end = offset + len(samples)
        seen = self._end[label]
        overlap = max(0, min(seen, end) - offset)
        cut = max(seen, self.position if self.position is not None else 0)
        drop = max(0, min(cut, end) - offset)
        self.overlapped += overlap
        self.late += drop - overlap
        if drop < len(samples):
            self._pending[label].append((offset + drop, samples[drop:]))
            self._end[label] = end

    def close(self, label: str) -> None:
        """The leg has ended: the others no longer wait for it."""
        self.check_label(label)
        self._closed[label] = True

    def take(self, final: bool = False) -> List[Block]:
        """Blocks ready for processing; ``final`` releases everything queued.

        Released up to the lowest end among open legs (or ``max_lag`` behind
        the leader); that point always lies in some leg's audio, so whether
        a hole is filled or skipped never depends on what arrives later.
        """
        runs = sorted(
            (offset, offset + len(samples)) for label in self.labels for offset, samples in self._pending[label]
        )
        if not runs:
            return []
        leader = max(self._end.values())
        open_ends = [self._end[label] for label in self.labels if not self._closed[label]]
        limit = leader if final or not open_ends else max(min(open_ends), leader - self.max_lag)
        merged: List[List[int]] = []
        for lo, hi in runs:
            if merged and lo - merged[-1][1] <= self.gap_fill:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        blocks: List[Block] = []
        if self.position is None:
            if merged[0][0] >= limit:
                return blocks  # a leg that has not started yet may still bring earlier audio
            self.position = merged[0][0]
            self._restart = True
        for lo, hi in merged:
            if lo >= limit:
                break
            hi = min(hi, limit)
            if hi <= self.position:
                continue
            if lo - self.position > self.gap_fill:
                self.position = lo
                self._restart = True
            blocks.append(self._cut(self.position, hi, self._restart))
            self._restart = False
            self.position = hi
        return blocks

    def _cut(self, start: int, stop: int, restart: bool) -> Block:
        frames = stop - start
        legs: Dict[str, np.ndarray] = {}
        for label in self.labels:
            out = np.zeros(frames, dtype=np.float64)
            keep: List[Tuple[int, np.ndarray]] = []
            for offset, samples in self._pending[label]:
                end = offset + len(samples)
                lo, hi = max(offset, start), min(end, stop)
                if hi > lo:
                    out[lo - start : hi - start] = samples[lo - offset : hi - offset]
                if end > stop:
                    keep.append((max(offset, stop), samples[max(0, stop - offset) :]))
            self._pending[label] = keep
            legs[label] = out
        return Block(start, frames, legs, restart)

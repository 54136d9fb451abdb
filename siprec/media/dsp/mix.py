"""Mono mix-down of N legs for the analysis path, with headroom and resampling.

Legs arrive as spans placed on the call timeline by sample offset, possibly
at different rates (a G.722 leg at 16 kHz next to a G.711 one at 8 kHz).
Each leg is resampled to the mix rate by the product's one streaming
resampler (siprec.media.resample), lined up by offset, summed and kept inside full scale either by
averaging (``headroom="average"``: the sum divided by the number of legs,
which can never clip) or by a soft limiter (``headroom="limit"``: samples
below the knee pass unchanged, louder ones bend smoothly towards but never
reach full scale). Input int16 or float; output float32, full scale 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from siprec.media import resample as one_resampler
from siprec.media.dsp.base import (
    Aligner,
    Chunk,
    Continuity,
    DspError,
    as_float,
    check_numbers,
    check_offset,
    check_rate,
    mono,
)

__all__ = [
    "HEADROOM_MODES",
    "LegInput",
    "MixConfig",
    "Mixer",
    "Run",
    "StreamResampler",
    "mix_down",
    "resample",
    "soft_limit",
]

HEADROOM_MODES = ("limit", "average")


def soft_limit(x: np.ndarray, knee: float = 0.7) -> np.ndarray:
    """Identity below ``knee``; above it a tanh curve with slope 1 at the knee that stays below 1.0."""
    if not 0.0 < knee < 1.0:
        raise DspError(f"limiter knee must be between 0 and 1 (exclusive), got {knee}")
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    over = np.abs(x) > knee
    if np.any(over):
        span = 1.0 - knee
        out[over] = np.sign(x[over]) * (knee + span * np.tanh((np.abs(x[over]) - knee) / span))
    return out


def _check_headroom(headroom: str, knee: float) -> None:
    if headroom not in HEADROOM_MODES:
        raise DspError(f"unknown headroom mode {headroom!r}; expected one of {list(HEADROOM_MODES)}")
    if not 0.0 < knee < 1.0:
        raise DspError(f"limiter knee must be between 0 and 1 (exclusive), got {knee}")


def _combine(legs: Sequence[np.ndarray], headroom: str, knee: float) -> np.ndarray:
    total = np.sum(legs, axis=0) if len(legs) > 1 else np.asarray(legs[0], dtype=np.float64).copy()
    if headroom == "average":
        return total / len(legs)
    return soft_limit(total, knee)


def mix_down(
    legs: Sequence[np.ndarray],
    offsets: Optional[Sequence[int]] = None,
    headroom: str = "limit",
    knee: float = 0.7,
) -> Tuple[int, np.ndarray]:
    """Mix whole legs at one rate: ``(start offset, float32 mix)``.

    Leg ``i`` starts at ``offsets[i]`` (all 0 by default); the mix spans
    from the earliest start to the latest end, zeros where a leg is absent.
    """
    if not legs:
        raise DspError("nothing to mix: no legs given")
    _check_headroom(headroom, knee)
    samples = [as_float(leg, f"leg {i}") for i, leg in enumerate(legs)]
    if offsets is None:
        offsets = [0] * len(samples)
    if len(offsets) != len(samples):
        raise DspError(f"{len(samples)} legs but {len(offsets)} offsets")
    starts = [check_offset(o) for o in offsets]
    start = min(starts)
    end = max(s + len(x) for s, x in zip(starts, samples))
    placed = []
    for s, x in zip(starts, samples):
        row = np.zeros(end - start, dtype=np.float64)
        row[s - start : s - start + len(x)] = x
        placed.append(row)
    return start, _combine(placed, headroom, knee).astype(np.float32)


class StreamResampler(one_resampler.StreamResampler):
    """The product's one resampler (siprec.media.resample) on the DSP's terms.

    Rates must be ones the DSP supports, samples come out as float64
    whatever goes in, and feeding after ``flush`` is a DspError. Output
    sample ``j`` sits at input time ``j * src / dst`` on the same absolute
    timeline as the input (``start`` is the input position of the first
    sample fed), so offsets convert and legs stay aligned.
    """

    def __init__(self, src: int, dst: int, start: int = 0) -> None:
        super().__init__(check_rate(src), check_rate(dst), 1, check_offset(start))

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed input samples (float, full scale 1.0); returns the outputs now complete."""
        if self.flushed:
            raise DspError("resampler was flushed; start a new one for a new run")
        return super().process(np.asarray(samples, dtype=np.float64))


def resample(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    """A whole signal at another rate (float32, ``ceil(len * dst / src)`` samples)."""
    x = as_float(samples, "samples")
    if check_rate(src) == check_rate(dst):
        return x.astype(np.float32)
    return one_resampler.resample(x, src, dst).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Run:
    """Contiguous samples of one leg at the processing rate.

    ``restart`` says a long gap (or the leg's start) precedes it: stages
    flush what they hold and begin anew at ``offset``.
    """

    offset: int
    samples: np.ndarray
    restart: bool


class LegInput:
    """One leg's spans as the media layer hands them over, turned into runs.

    Converts to float mono, checks the rate (it must not change within a
    leg), fills short gaps with zeros, restarts after long ones, drops
    overlaps, and resamples to ``target_rate`` when that differs.
    """

    def __init__(self, name: str, target_rate: Optional[int], gap_fill_ms: float) -> None:
        self.name = name
        self.target_rate = None if target_rate is None else check_rate(target_rate)
        self.gap_fill_ms = gap_fill_ms
        self.rate: Optional[int] = None
        self._continuity: Optional[Continuity] = None
        self._resampler: Optional[StreamResampler] = None
        self._pending_restart = False

    @property
    def overlapped(self) -> int:
        return 0 if self._continuity is None else self._continuity.overlapped

    def feed(self, pcm: object, sample_rate: object, offset_samples: object) -> List[Run]:
        rate = check_rate(sample_rate)
        offset = check_offset(offset_samples)
        samples = mono(pcm, f"pcm of leg {self.name!r}")
        if self.rate is None:
            self.rate = rate
            if self.target_rate is None:
                self.target_rate = rate
            self._continuity = Continuity(int(round(self.gap_fill_ms * rate / 1000.0)))
        elif rate != self.rate:
            raise DspError(f"sample rate of leg {self.name!r} changed from {self.rate} to {rate}")
        assert self._continuity is not None
        if not len(samples):
            return []
        place = self._continuity.place(offset, len(samples))
        samples = samples[place.skip :]
        if not len(samples):
            return []
        if place.fill:
            samples = np.concatenate([np.zeros(place.fill, dtype=np.float64), samples])
        return self._emit(place.start, samples, place.restart)

    def flush(self) -> List[Run]:
        """Whatever the resampler still holds; the next span starts a new run."""
        runs = self._flush_resampler()
        if self._continuity is not None:
            self._continuity.end = None
        return runs

    def _flush_resampler(self) -> List[Run]:
        runs: List[Run] = []
        if self._resampler is not None:
            tail = self._resampler.flush()
            if len(tail):
                runs.append(Run(self._resampler.position - len(tail), tail, self._pending_restart))
                self._pending_restart = False
            self._resampler = None
        return runs

    def _emit(self, start: int, samples: np.ndarray, restart: bool) -> List[Run]:
        assert self.rate is not None and self.target_rate is not None
        if self.rate == self.target_rate:
            return [Run(start, samples, restart)]
        runs: List[Run] = []
        if restart or self._resampler is None:
            runs.extend(self._flush_resampler())
            self._resampler = StreamResampler(self.rate, self.target_rate, start)
            self._pending_restart = True
        before = self._resampler.position
        out = self._resampler.process(samples)
        if len(out):
            runs.append(Run(before, out, self._pending_restart))
            self._pending_restart = False
        return runs


@dataclass(frozen=True, slots=True)
class MixConfig:
    """How the mix is made. ``sample_rate`` None: the first leg's rate."""

    sample_rate: Optional[int] = None
    headroom: str = "limit"
    knee: float = 0.7
    max_lag_ms: float = 1000.0
    gap_fill_ms: float = 1000.0

    def __post_init__(self) -> None:
        check_numbers("mix", self, ("knee", "max_lag_ms", "gap_fill_ms"))
        _check_headroom(self.headroom, self.knee)
        if self.sample_rate is not None:
            check_rate(self.sample_rate)
        if not self.max_lag_ms > 0:
            raise DspError(f"max_lag_ms must be > 0, got {self.max_lag_ms}")
        if not self.gap_fill_ms >= 0:
            raise DspError(f"gap_fill_ms must be >= 0, got {self.gap_fill_ms}")


class Mixer:
    """Streaming mono mix of named legs, fed spans as the media layer produces them.

    ``feed`` returns the mixed chunks that became complete: audio is held
    until every open leg has reached it (or lags by more than
    ``max_lag_ms``). Stretches where no leg has audio are left out of the
    mix rather than filled with zeros, so chunk offsets can jump.
    """

    def __init__(self, labels: Sequence[str], config: MixConfig = MixConfig()) -> None:
        if not labels or len(set(labels)) != len(labels):
            raise DspError(f"a mix needs distinct leg labels, got {list(labels)}")
        self.config = config
        self.labels = tuple(labels)
        self.rate: Optional[int] = config.sample_rate
        self._inputs: Dict[str, LegInput] = {}
        self._aligner: Optional[Aligner] = None
        if self.rate is not None:
            self._start(self.rate)

    def _start(self, rate: int) -> None:
        self.rate = rate
        self._inputs = {
            label: LegInput(label, rate, self.config.gap_fill_ms) for label in self.labels
        }
        self._aligner = Aligner(
            self.labels,
            max(1, int(round(self.config.max_lag_ms * rate / 1000.0))),
            int(round(self.config.gap_fill_ms * rate / 1000.0)),
        )

    @property
    def late_samples(self) -> int:
        """Samples dropped because they came after the mix had passed them."""
        return 0 if self._aligner is None else self._aligner.late

    def feed(self, label: str, pcm: object, sample_rate: object, offset_samples: object) -> List[Chunk]:
        if label not in self.labels:
            raise DspError(f"unknown leg {label!r}; expected one of {list(self.labels)}")
        if self._aligner is None:
            self._start(check_rate(sample_rate))
        assert self._aligner is not None
        for run in self._inputs[label].feed(pcm, sample_rate, offset_samples):
            self._aligner.put(label, run.offset, run.samples)
        return self._mix(self._aligner.take())

    def add_runs(self, runs: Sequence[Tuple[str, int, np.ndarray]]) -> List[Chunk]:
        """Already-processed ``(label, offset, float samples)`` at the mix rate (the pair's path)."""
        if self._aligner is None:
            raise DspError("add_runs needs a mixer created with a sample_rate")
        for label, offset, samples in runs:
            self._aligner.put(label, offset, samples)
        return self._mix(self._aligner.take())

    def close(self, label: str) -> List[Chunk]:
        """The leg ended: flush its resampler and stop waiting for it."""
        if self._aligner is None:
            return []
        for run in self._inputs[label].flush():
            self._aligner.put(label, run.offset, run.samples)
        self._aligner.close(label)
        return self._mix(self._aligner.take())

    def flush(self) -> List[Chunk]:
        """Everything still held, as if all legs had ended."""
        if self._aligner is None:
            return []
        for label in self.labels:
            for run in self._inputs[label].flush():
                self._aligner.put(label, run.offset, run.samples)
        return self._mix(self._aligner.take(final=True))

    def _mix(self, blocks: list) -> List[Chunk]:
        assert self.rate is not None
        chunks = []
        for block in blocks:
            legs = [block.legs[label] for label in self.labels]
            mixed = _combine(legs, self.config.headroom, self.config.knee).astype(np.float32)
            chunks.append(Chunk(block.start, mixed, self.rate))
        return chunks

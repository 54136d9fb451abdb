"""Analysis-path processing of one leg or a pair of legs, fed as the media layer hands audio over.

``LegProcessor``: noise reduction and VAD for one leg. ``PairProcessor``:
the far leg's echo removed from the near leg, each leg then through its
own noise reduction and VAD, and both mixed to mono. Both are fed with
``feed(pcm, sample_rate, offset_samples)`` (the pair also takes the leg's
label), exactly what ``MediaStream``'s ``audio_sink`` receives, and return
processed chunks placed on the call timeline plus the speech segments
that closed. They work on copies of the samples: the archived WAVs are
written by the media layer before the sink is called and never touched.

Configuration is plain data (``from_dict``/``to_dict``) so a worker
process can build the same pipeline. Short gaps in a leg (lost packets)
are filled with zeros; gaps longer than ``gap_fill_ms`` end a run (the
stages flush, keep what they learned, and restart at the next audio).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar

import numpy as np

from siprec.media.dsp.base import Aligner, Block, Chunk, DspError, check_rate, to_int16
from siprec.media.dsp.echo import EchoCanceller, EchoConfig
from siprec.media.dsp.mix import LegInput, MixConfig, Mixer, Run
from siprec.media.dsp.noise import NoiseConfig, NoiseReducer
from siprec.media.dsp.vad import SegmentTracker, SpeechSegment, VadConfig, VoiceActivityDetector

__all__ = [
    "LegConfig",
    "LegOutput",
    "LegProcessor",
    "LegStats",
    "PairConfig",
    "PairOutput",
    "PairProcessor",
    "PairStats",
]

OUTPUTS = ("float32", "int16")
VAD_SOURCES = ("input", "denoised")
_NO_LAG_LIMIT_MS = 1e12

T = TypeVar("T")


def _build(cls: Type[T], data: Any, where: str, nested: Optional[Mapping[str, type]] = None) -> T:
    """A config dataclass from a mapping: unknown keys and bad values are DspErrors."""
    nested = nested or {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise DspError(f"{where} must be a mapping, not {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        raise DspError(f"unknown {where} setting(s): {', '.join(unknown)}")
    values: Dict[str, Any] = {}
    for key, value in data.items():
        if key in nested and value is not None:
            value = _build(nested[key], value, f"{where}.{key}")
        values[key] = value
    try:
        return cls(**values)
    except DspError:
        raise
    except (TypeError, ValueError) as e:
        raise DspError(f"bad {where} settings: {e}") from e


@dataclass(frozen=True, slots=True)
class LegConfig:
    """One leg's analysis processing.

    ``sample_rate``: processing rate (None: the leg's own). ``noise`` /
    ``vad``: stage settings, None to leave the stage out. ``vad_source``:
    "denoised" (default) judges speech after noise reduction, which keeps
    recall above 0.9 down to 0 dB SNR where the raw leg gives 0.5-0.9;
    "input" judges the leg as received (after echo cancellation in a
    pair); without noise reduction it is always "input". ``output``: dtype of the
    processed chunks. ``gap_fill_ms``: longest gap filled with zeros.
    """

    sample_rate: Optional[int] = None
    noise: Optional[NoiseConfig] = NoiseConfig()
    vad: Optional[VadConfig] = VadConfig()
    vad_source: str = "denoised"
    output: str = "float32"
    gap_fill_ms: float = 1000.0

    def __post_init__(self) -> None:
        if self.sample_rate is not None:
            check_rate(self.sample_rate)
        if self.vad_source not in VAD_SOURCES:
            raise DspError(f"vad_source must be one of {list(VAD_SOURCES)}, got {self.vad_source!r}")
        if self.output not in OUTPUTS:
            raise DspError(f"output must be one of {list(OUTPUTS)}, got {self.output!r}")
        if not isinstance(self.gap_fill_ms, (int, float)) or not self.gap_fill_ms >= 0:
            raise DspError(f"gap_fill_ms must be >= 0, got {self.gap_fill_ms!r}")
        if self.noise is not None and not isinstance(self.noise, NoiseConfig):
            raise DspError("noise must be a NoiseConfig or None")
        if self.vad is not None and not isinstance(self.vad, VadConfig):
            raise DspError("vad must be a VadConfig or None")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LegConfig":
        return _build(cls, data, "leg", {"noise": NoiseConfig, "vad": VadConfig})

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class LegStats:
    """Running figures of a leg: audio processed and speech found (samples at ``sample_rate``)."""

    sample_rate: Optional[int]
    processed_samples: int
    speech_samples: int
    segments: int
    noise_level_dbfs: Optional[float]
    overlapped_samples: int

    @property
    def talk_seconds(self) -> float:
        return self.speech_samples / self.sample_rate if self.sample_rate else 0.0

    @property
    def silence_ratio(self) -> float:
        """Share of the processed audio without speech."""
        if not self.processed_samples:
            return 0.0
        return 1.0 - self.speech_samples / self.processed_samples


@dataclass(frozen=True, slots=True)
class LegOutput:
    """What one call produced: processed chunks and the speech segments that closed."""

    chunks: Tuple[Chunk, ...] = ()
    segments: Tuple[SpeechSegment, ...] = ()


def _merge(outputs: Sequence[LegOutput]) -> LegOutput:
    return LegOutput(
        tuple(c for o in outputs for c in o.chunks), tuple(s for o in outputs for s in o.segments)
    )


class _LegCore:
    """Noise reduction and VAD over runs at one rate, tracking timeline positions."""

    def __init__(self, rate: int, config: LegConfig) -> None:
        self.rate = rate
        self.config = config
        self._noise = NoiseReducer(rate, config.noise) if config.noise is not None else None
        self._vad = VoiceActivityDetector(rate, config.vad) if config.vad is not None else None
        self._segments = SegmentTracker(self._vad.frame, rate) if self._vad is not None else None
        self._start: Optional[int] = None  # run start on the timeline
        self._fed = 0  # samples of this run fed
        self._out = 0  # samples of this run delivered
        self._vad_frames = 0  # frames of this run decided
        self._veto = np.zeros(0, dtype=bool)  # vetoes waiting for denoised audio
        self.processed = 0
        self.speech = 0
        self.segment_count = 0

    @property
    def noise_level_dbfs(self) -> Optional[float]:
        return None if self._vad is None else self._vad.noise_level_dbfs

    def stats(self, overlapped: int) -> LegStats:
        return LegStats(
            self.rate, self.processed, self.speech, self.segment_count, self.noise_level_dbfs, overlapped
        )

    def run(self, run: Run, veto: Optional[np.ndarray] = None) -> LegOutput:
        """Process a run; ``veto`` marks its samples that cannot be this leg's speech."""
        outputs = []
        if run.restart or self._start is None:
            outputs.append(self.end_run())
            self._start = run.offset
        elif run.offset != self._start + self._fed:
            raise DspError(f"run at {run.offset} does not continue the run ending at {self._start + self._fed}")
        self._fed += len(run.samples)
        self.processed += len(run.samples)
        cleaned = self._noise.process(run.samples) if self._noise is not None else run.samples
        segments: List[SpeechSegment] = []
        if self._vad is not None:
            if veto is None:
                veto = np.zeros(len(run.samples), dtype=bool)
            if self.config.vad_source == "denoised" and self._noise is not None:
                # The denoised audio comes out later: keep the veto until it does.
                self._veto = np.concatenate([self._veto, veto])
                segments = self._decide(self._vad.process(cleaned, self._veto[: len(cleaned)]))
                self._veto = self._veto[len(cleaned) :]
            else:
                segments = self._decide(self._vad.process(run.samples, veto))
        outputs.append(LegOutput(self._chunks(cleaned), tuple(segments)))
        return _merge(outputs)

    def end_run(self) -> LegOutput:
        """Flush every stage; the next run starts afresh (learned state kept)."""
        if self._start is None:
            return LegOutput()
        end = self._start + self._fed
        cleaned = self._noise.flush() if self._noise is not None else np.zeros(0)
        segments: List[SpeechSegment] = []
        if self._vad is not None and self._segments is not None:
            if self.config.vad_source == "denoised" and len(cleaned):
                segments.extend(self._decide(self._vad.process(cleaned, self._veto[: len(cleaned)])))
            segments.extend(self._decide(self._vad.flush()))
            segments.extend(self._count(self._segments.close(limit=end)))
        out = LegOutput(self._chunks(cleaned), tuple(segments))
        self._start, self._fed, self._out, self._vad_frames = None, 0, 0, 0
        self._veto = np.zeros(0, dtype=bool)
        return out

    def _decide(self, decisions: np.ndarray) -> List[SpeechSegment]:
        assert self._vad is not None and self._segments is not None and self._start is not None
        at = self._start + self._vad_frames * self._vad.frame
        self._vad_frames += len(decisions)
        return self._count(self._segments.add(at, decisions))

    def _count(self, segments: List[SpeechSegment]) -> List[SpeechSegment]:
        for s in segments:
            self.speech += s.end - s.start
            self.segment_count += 1
        return segments

    def _chunks(self, samples: np.ndarray) -> Tuple[Chunk, ...]:
        if not len(samples) or self._start is None:
            return ()
        at = self._start + self._out
        self._out += len(samples)
        pcm = to_int16(samples) if self.config.output == "int16" else np.asarray(samples, dtype=np.float32)
        return (Chunk(at, pcm, self.rate),)


class LegProcessor:
    """Noise reduction and VAD for one leg; sans-IO, fed ``(pcm, sample_rate, offset_samples)``.

    ``pcm`` is int16 or float, mono or ``(frames, channels)`` (averaged);
    the rate must stay the same for the leg. Returned chunks are at the
    processing rate, aligned with the input timeline and delivered a
    noise-reduction hop late; ``flush`` at the end of the leg delivers the rest.
    """

    def __init__(self, config: LegConfig = LegConfig(), name: str = "leg") -> None:
        if not isinstance(config, LegConfig):
            raise DspError("config must be a LegConfig (use LegConfig.from_dict for plain data)")
        self.config = config
        self.name = name
        self._input = LegInput(name, config.sample_rate, config.gap_fill_ms)
        self._core: Optional[_LegCore] = None

    def feed(self, pcm: object, sample_rate: object, offset_samples: object) -> LegOutput:
        runs = self._input.feed(pcm, sample_rate, offset_samples)
        if self._core is None:
            assert self._input.target_rate is not None
            self._core = _LegCore(self._input.target_rate, self.config)
        return _merge([self._core.run(run) for run in runs])

    def flush(self) -> LegOutput:
        """Everything still held (end of the leg, or before a known long pause)."""
        if self._core is None:
            return LegOutput()
        outputs = [self._core.run(run) for run in self._input.flush()]
        outputs.append(self._core.end_run())
        return _merge(outputs)

    def stats(self) -> LegStats:
        if self._core is None:
            return LegStats(None, 0, 0, 0, None, 0)
        return self._core.stats(self._input.overlapped)


@dataclass(frozen=True, slots=True)
class PairConfig:
    """Processing of a near leg that hears the far one.

    ``sample_rate``: one rate for both (None: the first leg fed). ``echo``:
    None leaves echo cancellation out. ``near`` / ``far``: each leg's noise
    reduction and VAD (their ``sample_rate`` must be None). ``mix``: None
    leaves the mix out (its ``sample_rate`` must be None; its ``max_lag_ms``
    and ``gap_fill_ms`` are the pair's own). ``echo_gate``: frames the
    canceller marks as residual echo are never the near party's speech.
    ``max_lag_ms``:
    how far one leg may run ahead before the other counts as silent.
    """

    sample_rate: Optional[int] = None
    echo: Optional[EchoConfig] = EchoConfig()
    near: LegConfig = LegConfig()
    far: LegConfig = LegConfig()
    mix: Optional[MixConfig] = MixConfig()
    echo_gate: bool = True
    output: str = "float32"
    max_lag_ms: float = 1000.0
    gap_fill_ms: float = 1000.0

    def __post_init__(self) -> None:
        if self.sample_rate is not None:
            check_rate(self.sample_rate)
        for name in ("near", "far"):
            leg = getattr(self, name)
            if not isinstance(leg, LegConfig):
                raise DspError(f"{name} must be a LegConfig")
            if leg.sample_rate is not None:
                raise DspError(f"{name}.sample_rate must be None in a pair; set the pair's sample_rate")
        if self.echo is not None and not isinstance(self.echo, EchoConfig):
            raise DspError("echo must be an EchoConfig or None")
        if self.mix is not None and (not isinstance(self.mix, MixConfig) or self.mix.sample_rate is not None):
            raise DspError("mix must be a MixConfig without a sample_rate, or None")
        if self.output not in OUTPUTS:
            raise DspError(f"output must be one of {list(OUTPUTS)}, got {self.output!r}")
        if not isinstance(self.echo_gate, bool):
            raise DspError(f"echo_gate must be true or false, got {self.echo_gate!r}")
        for name in ("max_lag_ms", "gap_fill_ms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise DspError(f"{name} must be > 0, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PairConfig":
        if isinstance(data, Mapping):
            data = dict(data)
            for name in ("near", "far"):
                if isinstance(data.get(name), Mapping):
                    data[name] = LegConfig.from_dict(data[name])
        return _build(cls, data, "pair", {"echo": EchoConfig, "mix": MixConfig})

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class PairOutput:
    near: LegOutput = LegOutput()
    far: LegOutput = LegOutput()
    mix: Tuple[Chunk, ...] = ()


@dataclass(frozen=True, slots=True)
class PairStats:
    """Running figures of a pair. ``late_samples``: audio dropped because its
    leg lagged more than ``max_lag_ms``; ``echo_resets``: canceller restarts."""

    sample_rate: Optional[int]
    legs: Mapping[str, LegStats]
    overtalk_samples: int
    late_samples: int
    echo_resets: int

    @property
    def overtalk_seconds(self) -> float:
        return self.overtalk_samples / self.sample_rate if self.sample_rate else 0.0


@dataclass
class _Overtalk:
    """Samples where both legs speak, counted as segments close (each overlap once)."""

    closed: Dict[str, List[SpeechSegment]] = field(default_factory=dict)
    samples: int = 0

    def add(self, label: str, other: str, segments: Sequence[SpeechSegment]) -> None:
        mine = self.closed.setdefault(label, [])
        theirs = self.closed.setdefault(other, [])
        for s in segments:
            for t in theirs:
                self.samples += max(0, min(s.end, t.end) - max(s.start, t.start))
            mine.append(s)
        # Segments close in order per leg: drop what can no longer overlap a later one.
        if mine and theirs:
            horizon = min(mine[-1].end, theirs[-1].end)
            self.closed[label] = [s for s in mine if s.end > horizon] or mine[-1:]
            self.closed[other] = [t for t in theirs if t.end > horizon] or theirs[-1:]


class PairProcessor:
    """Echo cancellation of ``far`` from ``near``, then per-leg processing and a mono mix.

    ``feed(label, pcm, sample_rate, offset_samples)`` with label ``near``
    or ``far`` as given. The legs are lined up on the timeline (audio is
    held until both have reached it, or one lags by ``max_lag_ms``), so
    feeding them alternately per media flush gives the same result as
    feeding each whole. ``close(label)`` when a leg ends, ``flush()`` at the
    end of the call.
    """

    def __init__(self, near: str, far: str, config: PairConfig = PairConfig()) -> None:
        if not isinstance(config, PairConfig):
            raise DspError("config must be a PairConfig (use PairConfig.from_dict for plain data)")
        if near == far:
            raise DspError(f"near and far legs must differ, both are {near!r}")
        self.config = config
        self.near, self.far = near, far
        self.rate: Optional[int] = config.sample_rate
        self._inputs: Dict[str, LegInput] = {}
        self._aligner: Optional[Aligner] = None
        self._echo: Optional[EchoCanceller] = None
        self._echo_start: Optional[int] = None
        self._echo_out = 0
        self._cores: Dict[str, _LegCore] = {}
        self._mixer: Optional[Mixer] = None
        self._overtalk = _Overtalk()
        if self.rate is not None:
            self._start(self.rate)

    def _start(self, rate: int) -> None:
        cfg = self.config
        self.rate = rate
        self._inputs = {label: LegInput(label, rate, cfg.gap_fill_ms) for label in (self.near, self.far)}
        self._aligner = Aligner(
            (self.near, self.far),
            max(1, int(round(cfg.max_lag_ms * rate / 1000.0))),
            int(round(cfg.gap_fill_ms * rate / 1000.0)),
        )
        self._echo = EchoCanceller(rate, cfg.echo) if cfg.echo is not None else None
        self._cores = {self.near: _LegCore(rate, cfg.near), self.far: _LegCore(rate, cfg.far)}
        if cfg.mix is not None:
            # Both legs' outputs come from the same aligned blocks, so the
            # mixer never has to give up on one: no lag limit here.
            self._mixer = Mixer(
                (self.near, self.far),
                dataclasses.replace(cfg.mix, sample_rate=rate, max_lag_ms=_NO_LAG_LIMIT_MS, gap_fill_ms=cfg.gap_fill_ms),
            )

    def feed(self, label: str, pcm: object, sample_rate: object, offset_samples: object) -> PairOutput:
        if label not in (self.near, self.far):
            raise DspError(f"unknown leg {label!r}; expected {self.near!r} or {self.far!r}")
        if self._aligner is None:
            self._start(check_rate(sample_rate))
        assert self._aligner is not None
        for run in self._inputs[label].feed(pcm, sample_rate, offset_samples):
            self._aligner.put(label, run.offset, run.samples)
        return self._process(self._aligner.take(), final=False)

    def close(self, label: str) -> PairOutput:
        """The leg ended: stop waiting for it."""
        if label not in (self.near, self.far):
            raise DspError(f"unknown leg {label!r}; expected {self.near!r} or {self.far!r}")
        if self._aligner is None:
            return PairOutput()
        for run in self._inputs[label].flush():
            self._aligner.put(label, run.offset, run.samples)
        self._aligner.close(label)
        return self._process(self._aligner.take(), final=False)

    def flush(self) -> PairOutput:
        """Everything still held, as at the end of the call."""
        if self._aligner is None:
            return PairOutput()
        for label in (self.near, self.far):
            for run in self._inputs[label].flush():
                self._aligner.put(label, run.offset, run.samples)
        return self._process(self._aligner.take(final=True), final=True)

    def stats(self) -> PairStats:
        """Per-leg figures and the overtalk between the legs (samples at the pair's rate)."""
        legs = {label: core.stats(self._inputs[label].overlapped) for label, core in self._cores.items()}
        return PairStats(
            self.rate,
            legs,
            self._overtalk.samples,
            self._aligner.late if self._aligner else 0,
            self._echo.resets if self._echo else 0,
        )

    def _process(self, blocks: List[Block], final: bool) -> PairOutput:
        near_out: List[LegOutput] = []
        far_out: List[LegOutput] = []
        for block in blocks:
            near_out.extend(self._near_block(block))
            far_out.append(self._cores[self.far].run(Run(block.start, block.legs[self.far], block.restart)))
        if final:
            near_out.extend(self._near_end())
            far_out.append(self._cores[self.far].end_run())
        near, far = _merge(near_out), _merge(far_out)
        if self._cores:
            self._overtalk.add(self.near, self.far, near.segments)
            self._overtalk.add(self.far, self.near, far.segments)
        mix: List[Chunk] = []
        if self._mixer is not None:
            mix.extend(
                self._mixer.add_runs(
                    [(label, c.offset, _float(c.pcm)) for label, out in ((self.near, near), (self.far, far)) for c in out.chunks]
                )
            )
            if final:
                mix.extend(self._mixer.flush())
            if self.config.output == "int16":
                mix = [Chunk(c.offset, to_int16(c.pcm), c.sample_rate) for c in mix]
        return PairOutput(near, far, tuple(mix))

    def _near_block(self, block: Block) -> List[LegOutput]:
        core = self._cores[self.near]
        near = block.legs[self.near]
        if self._echo is None:
            return [core.run(Run(block.start, near, block.restart))]
        outputs = []
        if block.restart or self._echo_start is None:
            outputs.extend(self._near_end())
            self._echo_start, self._echo_out = block.start, 0
        cleaned = self._echo.process(near, block.legs[self.far]).astype(np.float64)
        outputs.append(self._near_run(cleaned, self._echo.last_echo_mask))
        return outputs

    def _near_run(self, cleaned: np.ndarray, mask: np.ndarray) -> LegOutput:
        assert self._echo_start is not None
        if not len(cleaned):
            return LegOutput()
        run = Run(self._echo_start + self._echo_out, cleaned, self._echo_out == 0)
        self._echo_out += len(cleaned)
        return self._cores[self.near].run(run, mask if self.config.echo_gate else None)

    def _near_end(self) -> List[LegOutput]:
        """Flush the canceller into the near leg's processing, then end that run."""
        if self._echo is None or self._echo_start is None:
            return []
        tail = self._echo.flush().astype(np.float64)
        outputs = [self._near_run(tail, self._echo.last_echo_mask)]
        outputs.append(self._cores[self.near].end_run())
        self._echo_start = None
        return outputs


def _float(pcm: np.ndarray) -> np.ndarray:
    if pcm.dtype == np.int16:
        return pcm.astype(np.float64) / 32768.0
    return pcm.astype(np.float64)

"""Voice-activity segmentation of one leg into utterances (sans-IO).

Whisper-family engines and per-request vendors transcribe whole utterances,
so a leg's audio is cut at pauses: a frame classifier (WebRTC's VAD by
default) labels 30 ms frames, a window of frames with enough speech opens an
utterance (its frames become the pre-roll so the first syllable is kept), a
long enough run of silence closes it, and an utterance that never pauses is
cut at ``max_utterance`` so results keep flowing. Gaps in the leg's timeline
count as silence. No clock, no threads: feed samples, get utterances.

Why WebRTC's VAD here and the analysis path's detector
(``siprec.media.dsp.vad``) there: ``bench/vad.py`` measured both on both
jobs. For utterances a lost word cannot be won back, and WebRTC's VAD lost
none even at 0 dB SNR, at an eighth to a fourteenth of the analysis
detector's CPU per frame; that detector is the better judge of talk time
in noise but drops speech the recognizer needs. Figures in docs/stt.md. What both need is shared with it:
frames cut by its ``Framer``, levels as its ``mean_power``, and the call
timeline (overlaps dropped, short holes filled) kept by
``siprec.media.dsp.base.Continuity``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from siprec.media.dsp.base import Continuity
from siprec.media.dsp.vad import Framer, dbfs_to_power, mean_power
from siprec.stt.audio import AudioError, as_int16

__all__ = [
    "FrameClassifier",
    "Segmenter",
    "SegmenterSettings",
    "Utterance",
    "WEBRTC_RATES",
    "energy_classifier",
    "webrtc_classifier",
]

WEBRTC_RATES = frozenset({8000, 16000, 32000, 48000})

FrameClassifier = Callable[[np.ndarray, int], bool]


def webrtc_classifier(aggressiveness: int = 2) -> FrameClassifier:
    """WebRTC's VAD as a frame classifier (10/20/30 ms frames, WEBRTC_RATES)."""
    import webrtcvad  # deferred: only engines that segment need it

    vad = webrtcvad.Vad(aggressiveness)

    def classify(frame: np.ndarray, rate: int) -> bool:
        return bool(vad.is_speech(frame.astype("<i2").tobytes(), rate))

    return classify


def energy_classifier(threshold_dbfs: float = -40.0) -> FrameClassifier:
    """Speech when the frame's RMS level is above ``threshold_dbfs``.

    A fallback and a predictable classifier for tests; WebRTC's VAD is far
    better at telling speech from noise.
    """
    limit = dbfs_to_power(threshold_dbfs)

    def classify(frame: np.ndarray, rate: int) -> bool:
        return mean_power(frame) > limit

    return classify


@dataclass(frozen=True, slots=True)
class SegmenterSettings:
    """Timing of the segmenter, in milliseconds / seconds."""

    frame_ms: int = 30
    start_window_ms: int = 300  # speech must fill start_ratio of this window
    start_ratio: float = 0.5
    end_silence_ms: int = 600  # this much silence closes an utterance
    keep_tail_ms: int = 240  # silence left at the end of a closed utterance
    min_speech_ms: int = 150  # utterances with less voiced audio are dropped
    max_utterance: float = 20.0  # seconds; longer speech is cut here

    def __post_init__(self) -> None:
        if self.frame_ms not in (10, 20, 30):
            raise ValueError(f"frame_ms must be 10, 20 or 30, not {self.frame_ms}")
        if not 0 < self.start_ratio <= 1:
            raise ValueError(f"start_ratio must be in (0, 1], not {self.start_ratio}")
        if self.max_utterance * 1000 <= self.start_window_ms:
            raise ValueError("max_utterance must be longer than the start window")


@dataclass(frozen=True, slots=True, eq=False)
class Utterance:
    """Contiguous audio of one stretch of speech on the call timeline."""

    seq: int
    samples: np.ndarray  # int16 mono
    sample_rate: int
    start: int  # call-timeline offset of samples[0], in samples
    voiced_frames: int = field(default=0)

    @property
    def end(self) -> int:
        return self.start + len(self.samples)

    @property
    def start_seconds(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_seconds(self) -> float:
        return self.end / self.sample_rate

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class Segmenter:
    """Cuts one leg's audio into utterances; see the module docstring."""

    def __init__(
        self,
        sample_rate: int,
        classifier: FrameClassifier | None = None,
        settings: SegmenterSettings = SegmenterSettings(),
    ) -> None:
        if classifier is None:
            if sample_rate not in WEBRTC_RATES:
                raise AudioError(
                    f"WebRTC VAD needs one of {sorted(WEBRTC_RATES)} Hz, not {sample_rate}"
                )
            classifier = webrtc_classifier()
        self.sample_rate = sample_rate
        self.settings = settings
        self._classify = classifier
        self._frame = sample_rate * settings.frame_ms // 1000
        self._window = max(1, settings.start_window_ms // settings.frame_ms)
        self._end_frames = max(1, settings.end_silence_ms // settings.frame_ms)
        self._tail_frames = min(self._end_frames, settings.keep_tail_ms // settings.frame_ms)
        self._min_voiced = max(1, settings.min_speech_ms // settings.frame_ms)
        self._max_frames = int(settings.max_utterance * 1000) // settings.frame_ms
        self._framer = Framer(self._frame, np.int16)
        # A hole shorter than the silence that closes an utterance is filled inside speech.
        self._timeline = Continuity(self._end_frames * self._frame - 1)
        self._recent: deque[tuple[np.ndarray, int, bool]] = deque(maxlen=self._window)
        self._frames: list[np.ndarray] = []  # open utterance
        self._start = 0
        self._voiced = 0
        self._silent_run = 0
        self._seq = 0
        self.frames_seen = 0

    # -- state ---------------------------------------------------------------

    @property
    def in_speech(self) -> bool:
        return bool(self._frames)

    @property
    def position(self) -> int | None:
        """Call offset of the next sample expected (None before any audio)."""
        return self._timeline.end

    def open_utterance(self) -> Utterance | None:
        """The utterance in progress so far (for partial results), or None."""
        if not self._frames:
            return None
        return Utterance(self._seq + 1, np.concatenate(self._frames), self.sample_rate,
                         self._start, self._voiced)

    @property
    def open_seconds(self) -> float:
        """Duration of the utterance in progress (0 when none)."""
        return len(self._frames) * self._frame / self.sample_rate

    # -- input ---------------------------------------------------------------

    def feed(self, pcm: np.ndarray, offset: int) -> list[Utterance]:
        """Add samples at call offset ``offset``; returns utterances closed."""
        pcm = as_int16(pcm)
        if offset < 0:
            raise AudioError(f"offset must not be negative, not {offset}")
        place = self._timeline.place(offset, len(pcm))  # audio already seen is skipped
        done: list[Utterance] = []
        if place.fill and self._frames:
            # A short hole inside speech: zeros keep the utterance contiguous.
            done.extend(self._run(np.zeros(place.fill, dtype=np.int16), place.start))
        elif place.fill or place.restart:
            # A hole outside speech, or a long one: it is silence, start afresh.
            done.extend(self._close(trim=True))
            self._recent.clear()
            self._framer.clear()
        done.extend(self._run(pcm[place.skip:], place.start + place.fill))
        return done

    def flush(self) -> list[Utterance]:
        """End of the leg: close the open utterance (if it holds speech)."""
        frame = self._framer.flush()
        if frame is not None and self._frames:
            self._frames.append(frame)
        done = self._close(trim=True)
        self._recent.clear()
        return done

    # -- internals -----------------------------------------------------------

    def _run(self, pcm: np.ndarray, start: int) -> list[Utterance]:
        """Contiguous samples at call offset ``start``, after those the framer holds."""
        first = start - self._framer.pending
        done: list[Utterance] = []
        for i, frame in enumerate(self._framer.push(pcm)):
            done.extend(self._frame_in(frame, first + i * self._frame))
        return done

    def _frame_in(self, frame: np.ndarray, offset: int) -> list[Utterance]:
        self.frames_seen += 1
        voiced = self._classify(frame, self.sample_rate)
        if not self._frames:
            self._recent.append((frame, offset, voiced))
            speech = sum(1 for _, _, v in self._recent if v)
            if voiced and speech >= self.settings.start_ratio * self._window:
                # Open with the window as pre-roll.
                self._start = self._recent[0][1]
                self._frames = [f for f, _, _ in self._recent]
                self._voiced = speech
                self._silent_run = 0
                self._recent.clear()
            return []
        self._frames.append(frame)
        if voiced:
            self._voiced += 1
            self._silent_run = 0
        else:
            self._silent_run += 1
        if self._silent_run >= self._end_frames:
            return self._close(trim=True)
        if len(self._frames) >= self._max_frames:
            # Cut without trimming; speech goes on in a new utterance.
            done = self._close(trim=False)
            return done
        return []

    def _close(self, trim: bool) -> list[Utterance]:
        if not self._frames:
            return []
        frames = self._frames
        if trim and self._silent_run > self._tail_frames:
            frames = frames[: len(frames) - (self._silent_run - self._tail_frames)]
        voiced = self._voiced
        start = self._start
        self._frames = []
        self._voiced = 0
        self._silent_run = 0
        if not trim:
            # A cut inside speech: the next utterance opens on the frames
            # that follow, through the start window as usual.
            self._recent.clear()
        if voiced < self._min_voiced or not frames:
            return []
        self._seq += 1
        return [Utterance(self._seq, np.concatenate(frames), self.sample_rate, start, voiced)]

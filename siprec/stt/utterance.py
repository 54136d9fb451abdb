"""Streams for engines that transcribe whole utterances.

The offline engine, OpenAI, ElevenLabs, Azure's short-audio REST API, Google's
``recognize`` and both Whisper flavours take a finished piece of audio and
return its text. ``UtteranceStream`` turns such a recognizer into a live
stream: a VAD ``Segmenter`` cuts the leg, finals are recognised one at a
time in order, partials (when the recognizer is cheap enough to re-run, as
the offline engine is) re-decode the open utterance every
``partial_interval`` seconds of audio, and a leg whose waiting audio grows
past ``max_lag`` reports overload instead of falling behind silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from siprec.stt.base import Hypothesis, LegSpec, SttError, StreamListener, Word
from siprec.stt.vad import FrameClassifier, Segmenter, SegmenterSettings, Utterance

__all__ = ["Recognition", "UtteranceRecognizer", "UtteranceStream", "primary_language"]

log = Logger()


def primary_language(language: str | None) -> str | None:
    """``en-US`` -> ``en``; what Whisper-style APIs take."""
    if not language:
        return None
    return language.replace("_", "-").split("-")[0].lower() or None


@dataclass(frozen=True, slots=True)
class Recognition:
    """Text of one utterance; word times are seconds from the utterance start."""

    text: str
    confidence: float | None = None
    language: str | None = None
    words: tuple[Word, ...] = ()


class UtteranceRecognizer(Protocol):
    """Transcribes one utterance (the per-vendor part)."""

    def recognize(self, utterance: Utterance, language: str, final: bool) -> Deferred:
        """Fires with a Recognition, or errbacks with SttError."""


class UtteranceStream:
    """A ProviderStream over an UtteranceRecognizer; see the module docstring."""

    def __init__(
        self,
        provider: str,
        leg: LegSpec,
        listener: StreamListener,
        recognizer: UtteranceRecognizer,
        classifier: FrameClassifier | None = None,
        segmenter_settings: SegmenterSettings = SegmenterSettings(),
        partial_interval: float | None = None,
        max_lag: float | None = None,
        partial_allowed: Callable[[], bool] = lambda: True,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.provider = provider
        self.leg = leg
        self._listener = listener
        self._recognizer = recognizer
        self._segmenter = Segmenter(leg.sample_rate, classifier, segmenter_settings)
        self._partial_interval = partial_interval if leg.live else None
        self._max_lag = max_lag if leg.live else None
        self._partial_allowed = partial_allowed
        self._on_done = on_done
        self._waiting: list[Utterance] = []  # closed, not yet recognised
        self._busy = False  # a final recognition is in flight
        self._partial_busy = False
        self._partial_mark = 0.0  # open-utterance seconds at the last partial
        self._finalised_seq = 0
        self._finishing: Deferred | None = None
        self._dead = False  # failed, overloaded or aborted
        self.finals = 0
        self.partials = 0

    # -- ProviderStream ------------------------------------------------------

    def feed(self, pcm: np.ndarray, offset: int) -> None:
        if self._dead or self._finishing is not None:
            return
        for utterance in self._segmenter.feed(pcm, offset):
            self._waiting.append(utterance)
        if self._check_lag():
            return
        self._pump()
        self._maybe_partial()

    def finish(self) -> Deferred:
        if self._finishing is None:
            self._finishing = Deferred()
            if not self._dead:
                self._waiting.extend(self._segmenter.flush())
                self._pump()
            self._maybe_done()
        return self._finishing

    def abort(self) -> None:
        if not self._dead:
            self._dead = True
            self._waiting.clear()
            self._release()
            self._maybe_done()

    @property
    def backlog_seconds(self) -> float:
        """Audio closed into utterances but not yet recognised."""
        return sum(u.duration for u in self._waiting)

    # -- internals -----------------------------------------------------------

    def _check_lag(self) -> bool:
        if self._max_lag is None:
            return False
        lag = self.backlog_seconds + self._segmenter.open_seconds * (1 if self._busy else 0)
        if lag <= self._max_lag:
            return False
        self._dead = True
        self._waiting.clear()
        self._release()
        self._listener.overloaded(
            f"{lag:.1f}s of audio waiting for {self.provider} (STT_MAX_LAG "
            f"{self._max_lag:g}s)"
        )
        self._maybe_done()
        return True

    def _pump(self) -> None:
        if self._busy or self._dead or not self._waiting:
            return
        utterance = self._waiting.pop(0)
        self._busy = True
        try:
            d = self._recognizer.recognize(utterance, self.leg.language, True)
        except Exception:  # a recognizer bug must not escape into feed()
            d = _failed()
        d.addCallbacks(self._final_done, self._final_failed,
                       callbackArgs=(utterance,))

    def _final_done(self, recognition: Recognition, utterance: Utterance) -> None:
        self._busy = False
        if self._dead:
            self._maybe_done()
            return
        self._finalised_seq = max(self._finalised_seq, utterance.seq)
        self._emit(recognition, utterance, final=True)
        self._pump()
        self._maybe_done()

    def _final_failed(self, failure: Failure) -> None:
        self._busy = False
        if not self._dead:
            self._dead = True
            self._waiting.clear()
            self._release()
            self._listener.failed(_as_stt_error(self.provider, failure))
        self._maybe_done()

    def _maybe_partial(self) -> None:
        if (
            self._partial_interval is None
            or self._partial_busy
            or self._busy
            or self._waiting
            or not self._segmenter.in_speech
        ):
            if not self._segmenter.in_speech:
                self._partial_mark = 0.0
            return
        open_seconds = self._segmenter.open_seconds
        if open_seconds - self._partial_mark < self._partial_interval:
            return
        if not self._partial_allowed():
            return
        utterance = self._segmenter.open_utterance()
        if utterance is None:
            return
        self._partial_mark = open_seconds
        self._partial_busy = True
        try:
            d = self._recognizer.recognize(utterance, self.leg.language, False)
        except Exception:
            d = _failed()
        d.addCallbacks(self._partial_done, self._partial_failed, callbackArgs=(utterance,))

    def _partial_done(self, recognition: Recognition, utterance: Utterance) -> None:
        self._partial_busy = False
        if not self._dead and utterance.seq > self._finalised_seq:
            self._emit(recognition, utterance, final=False)
        self._maybe_done()

    def _partial_failed(self, failure: Failure) -> None:
        # A partial is a preview: the final of the same audio will report
        # the problem if the engine is really broken.
        self._partial_busy = False
        log.debug("{provider} partial failed: {error}", provider=self.provider,
                  error=failure.getErrorMessage())
        self._maybe_done()

    def _emit(self, recognition: Recognition, utterance: Utterance, final: bool) -> None:
        text = recognition.text.strip()
        if not text:
            return
        offset = utterance.start_seconds
        words = tuple(
            Word(w.word, round(offset + w.start, 3), round(offset + w.end, 3), w.confidence)
            for w in recognition.words
        )
        if final:
            self.finals += 1
        else:
            self.partials += 1
        self._listener.hypothesis(Hypothesis(
            text=text,
            is_final=final,
            start=round(utterance.start_seconds, 3),
            end=round(utterance.end_seconds, 3),
            confidence=recognition.confidence,
            language=recognition.language or self.leg.language,
            words=words,
        ))

    def _maybe_done(self) -> None:
        if self._finishing is None or self._finishing.called:
            return
        if self._busy or self._partial_busy or (self._waiting and not self._dead):
            return
        self._release()
        self._finishing.callback(None)

    def _release(self) -> None:
        """Tell the owner (once) that this stream holds no capacity any more."""
        if self._on_done is not None:
            on_done, self._on_done = self._on_done, None
            on_done()


def _failed() -> Deferred:
    d: Deferred = Deferred()
    d.errback(Failure())
    return d


def _as_stt_error(provider: str, failure: Failure) -> SttError:
    if isinstance(failure.value, SttError):
        return failure.value
    log.failure("{provider} recognizer raised", failure, provider=provider)
    return SttError(provider, f"unexpected error: {failure.getErrorMessage()}")


def recognized(recognition: Recognition) -> Deferred:
    """A fired Deferred, for recognizers that answer synchronously."""
    return succeed(recognition)

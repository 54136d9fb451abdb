"""Base of providers that transcribe one utterance per request."""

from __future__ import annotations

from abc import ABC, abstractmethod

from typing import Any

from twisted.internet.defer import Deferred

from siprec.stt.base import LegSpec, StreamListener
from siprec.stt.utterance import UtteranceStream
from siprec.stt.vad import FrameClassifier, SegmenterSettings, Utterance

__all__ = ["UtteranceProvider"]


class UtteranceProvider(ABC):
    """A provider whose streams cut legs with the VAD and send utterances.

    Subclasses implement ``recognize``; no partials (each would be a paid
    request), no overload cut-off (the vendor scales, the breaker guards).
    """

    name = "?"

    def __init__(self, classifier: FrameClassifier | None = None,
                 segmenter_settings: SegmenterSettings = SegmenterSettings()) -> None:
        self._classifier = classifier
        self._segmenter_settings = segmenter_settings
        self.requests = 0
        self.errors = 0

    def supports_language(self, language: str) -> bool:
        return True

    def open_stream(self, leg: LegSpec, listener: StreamListener) -> UtteranceStream:
        return UtteranceStream(self.name, leg, listener, self, classifier=self._classifier,
                               segmenter_settings=self._segmenter_settings)

    def recognize(self, utterance: Utterance, language: str, final: bool) -> Deferred:
        self.requests += 1
        d = self._recognize(utterance, language)
        d.addErrback(self._count_error)
        return d

    def _count_error(self, failure: Any) -> Any:
        self.errors += 1
        return failure

    @abstractmethod
    def _recognize(self, utterance: Utterance, language: str) -> Deferred:
        """One request to the vendor for one utterance; fires with a Recognition."""

    def stats(self) -> dict[str, int]:
        return {"requests": self.requests, "errors": self.errors}

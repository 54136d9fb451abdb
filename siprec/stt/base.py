"""What every speech-to-text provider and its callers agree on.

A *provider* (one per vendor, plus the embedded offline engine) opens one
*stream* per call leg. The stream is fed decoded PCM in call-timeline order
and reports through a *listener*: hypotheses (partial or final), failure, and
overload. Providers know nothing about routing, failover or results storage;
the router (``siprec.stt.router``) adds call identity and turns hypotheses
into ``TranscriptResult`` values for the rest of the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np
from twisted.internet.defer import Deferred

from siprec.stt.audio import AudioError

__all__ = [
    "Hypothesis",
    "LegSpec",
    "ProviderStream",
    "SttAuthError",
    "SttError",
    "SttOverloaded",
    "SttProtocolError",
    "SttProvider",
    "SttUnavailable",
    "StreamListener",
    "TranscriptResult",
    "Word",
]


class SttError(Exception):
    """A provider cannot (or can no longer) transcribe a stream.

    ``retryable`` says whether trying again later may help (a dropped
    connection) or not (bad credentials, unsupported audio).
    """

    retryable: bool = True

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


class SttAuthError(SttError):
    """The vendor refused the credentials."""

    retryable = False


class SttProtocolError(SttError):
    """The vendor (or a local fake of it) sent something we cannot read."""


class SttUnavailable(SttError):
    """The provider is not configured or its engine cannot load."""

    retryable = False


class SttOverloaded(SttError):
    """The provider has no capacity for another live leg right now.

    Not a fault of the provider: the router queues the leg for post-call
    transcription instead of counting a breaker failure.
    """


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word with its position on the call timeline (seconds)."""

    word: str
    start: float
    end: float
    confidence: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": self.start, "end": self.end,
                "confidence": self.confidence}


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """What a provider stream reports: text for a span of the call timeline.

    Times are seconds on the call timeline (the stream maps its own clock
    onto it). A partial is replaced by later hypotheses; a final is not.
    """

    text: str
    is_final: bool
    start: float
    end: float
    confidence: float | None = None
    language: str | None = None
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class LegSpec:
    """The leg a stream transcribes, as plain data.

    ``sample_rate`` is the rate of the PCM the stream will be fed (the router
    may have converted the leg's own rate). ``live`` is False for post-call
    jobs: no partials and no overload checks, since audio arrives faster
    than real time on purpose.
    """

    call_id: str
    leg: str
    sample_rate: int
    language: str = "en-US"
    participant: Mapping[str, Any] | None = None
    live: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise AudioError(f"sample rate must be a positive integer, not {self.sample_rate!r}")
        if self.participant is not None and not isinstance(self.participant, MappingProxyType):
            object.__setattr__(self, "participant", MappingProxyType(dict(self.participant)))


@dataclass(frozen=True, slots=True)
class TranscriptResult:
    """A transcript event for one leg of one call, ready to publish or store.

    ``start``/``end`` are seconds on the call timeline; ``post_call`` marks
    results of a post-call job rather than live transcription.
    """

    call_id: str
    leg: str
    participant: Mapping[str, Any] | None
    text: str
    is_final: bool
    start: float
    end: float
    confidence: float | None
    language: str | None
    provider: str
    words: tuple[Word, ...] = field(default=())
    post_call: bool = False

    @property
    def segment_id(self) -> str:
        """Shared by the partials and the final of one utterance: leg and start in ms."""
        return f"{self.leg}@{int(round(self.start * 1000))}"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (for events, the API and the job database)."""
        return {
            "call_id": self.call_id,
            "leg": self.leg,
            "participant": dict(self.participant) if self.participant is not None else None,
            "text": self.text,
            "is_final": self.is_final,
            "start": self.start,
            "end": self.end,
            "confidence": self.confidence,
            "language": self.language,
            "provider": self.provider,
            "words": [word.as_dict() for word in self.words],
            "post_call": self.post_call,
        }


class StreamListener(Protocol):
    """Where a provider stream reports. Called on the reactor thread only."""

    def hypothesis(self, hyp: Hypothesis) -> None:
        """A partial or final result."""

    def failed(self, error: SttError) -> None:
        """The stream is dead; no more calls will follow."""

    def overloaded(self, reason: str) -> None:
        """The stream cannot keep up live; it stops and expects no more audio."""


class ProviderStream(Protocol):
    """One leg's transcription session with one provider."""

    def feed(self, pcm: np.ndarray, offset: int) -> None:
        """Mono int16 samples at ``LegSpec.sample_rate``; ``offset`` is the
        position of the first sample on the call timeline, in samples."""

    def finish(self) -> Deferred:
        """No more audio: fires (None) when the last finals are out. A
        failure is reported through ``listener.failed`` first, and the
        Deferred still fires None. Never called twice."""

    def abort(self) -> None:
        """Drop the stream now (failover, shutdown); no more listener calls."""


@runtime_checkable
class SttProvider(Protocol):
    """A vendor or engine that can transcribe legs."""

    name: str

    def open_stream(self, leg: LegSpec, listener: StreamListener) -> ProviderStream:
        """Start transcribing a leg. May raise SttError at once."""

    def supports_language(self, language: str) -> bool:
        """Whether this provider can transcribe ``language`` (BCP 47)."""

"""Scriptable providers for router and queue tests."""

from __future__ import annotations

import numpy as np
from twisted.internet.defer import Deferred, succeed

from siprec.stt.base import Hypothesis, SttAuthError, SttError, SttOverloaded


class FakeStream:
    def __init__(self, provider: "FakeProvider", leg, listener) -> None:
        self.provider = provider
        self.leg = leg
        self.listener = listener
        self.fed: list[tuple[np.ndarray, int]] = []
        self.finishing: Deferred | None = None
        self.aborted = False

    @property
    def samples(self) -> int:
        return sum(len(pcm) for pcm, _ in self.fed)

    @property
    def first_offset(self) -> int | None:
        return self.fed[0][1] if self.fed else None

    def feed(self, pcm, offset) -> None:
        if self.provider.feed_raises:
            raise RuntimeError("boom")
        self.fed.append((pcm, offset))

    def finish(self) -> Deferred:
        self.finishing = Deferred() if self.provider.hold_finish else succeed(None)
        return self.finishing

    def abort(self) -> None:
        self.aborted = True

    # test controls
    def final(self, text: str, start: float, end: float) -> None:
        self.listener.hypothesis(Hypothesis(text, True, start, end, 0.9, "en-US"))

    def partial(self, text: str, start: float, end: float) -> None:
        self.listener.hypothesis(Hypothesis(text, False, start, end, None, "en-US"))

    def fail(self, message: str = "connection lost") -> None:
        self.listener.failed(SttError(self.provider.name, message))


class FakeProvider:
    def __init__(self, name: str, languages: tuple[str, ...] | None = None) -> None:
        self.name = name
        self.languages = languages
        self.streams: list[FakeStream] = []
        self.open_error: Exception | None = None
        self.feed_raises = False
        self.hold_finish = False

    def supports_language(self, language: str) -> bool:
        return self.languages is None or language.split("-")[0].lower() in self.languages

    def open_stream(self, leg, listener) -> FakeStream:
        if self.open_error is not None:
            raise self.open_error
        stream = FakeStream(self, leg, listener)
        self.streams.append(stream)
        return stream

    @property
    def last(self) -> FakeStream:
        return self.streams[-1]


__all__ = ["FakeProvider", "FakeStream", "SttAuthError", "SttOverloaded"]

"""Helpers for adapter tests: local servers, a collecting listener, speech-like audio."""

from __future__ import annotations

import numpy as np
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from siprec.stt.base import LegSpec

RATE = 8000


def speech(seconds: float, rate: int = RATE) -> np.ndarray:
    n = int(seconds * rate)
    return (4000 * np.sin(np.arange(n) * 2 * np.pi * 300 / rate)).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def talk(*spoken: float, rate: int = RATE) -> np.ndarray:
    """Speech of the given lengths with a second of silence around each."""
    parts = [silence(0.5, rate)]
    for seconds in spoken:
        parts += [speech(seconds, rate), silence(1.0, rate)]
    return np.concatenate(parts)


class Collector:
    """A StreamListener that keeps everything it is told."""

    def __init__(self) -> None:
        self.hypotheses, self.failures, self.overloads = [], [], []

    def hypothesis(self, hyp) -> None:
        self.hypotheses.append(hyp)

    def failed(self, error) -> None:
        self.failures.append(error)

    def overloaded(self, reason) -> None:
        self.overloads.append(reason)

    @property
    def finals(self):
        return [h for h in self.hypotheses if h.is_final]


@inlineCallbacks
def drive(provider, audio: np.ndarray, start: float = 0.0, rate: int = RATE,
          language: str = "en-US", pace: float = 0.0, listener: Collector | None = None):
    """Open a stream, feed 20 ms packets (yielding to the reactor every 200 ms
    of audio, waiting ``pace`` seconds), finish; fires with the Collector."""
    listener = listener or Collector()
    stream = provider.open_stream(LegSpec("call-1", "caller", rate, language), listener)
    step = rate // 50
    first = int(start * rate)
    for position in range(0, len(audio), step):
        stream.feed(audio[position:position + step], first + position)
        if position % (step * 10) == 0:
            yield deferLater(reactor, pace, lambda: None)
    yield stream.finish()
    return listener


def listen_tcp(test, site) -> int:
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    return port.getHost().port


@inlineCallbacks
def settle_autobahn(limit: float = 3.0):
    """Wait for Autobahn's batched handshake timers to run out, so trial finds
    a clean reactor (cancelled timers linger in their batch until it fires)."""
    waited = 0.0
    while waited < limit:
        pending = [call for call in reactor.getDelayedCalls()
                   if "_BatchedTimer" in repr(call) or "_notify_bucket" in repr(call)]
        if not pending:
            return
        yield deferLater(reactor, 0.05, lambda: None)
        waited += 0.05

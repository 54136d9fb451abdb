"""The STT router: which provider transcribes a leg, and what happens when it fails.

For each leg the router plans a chain of providers: the vendors
STT_LANGUAGE_ROUTES names for the leg's language, then
DEFAULT_SPEECH_VENDOR, then (with STT_FAILOVER) the other
STT_SUPPORTED_VENDORS and finally the offline engine. A provider whose
circuit breaker is open is skipped. The leg keeps the audio it sent since
the last final result; when its provider fails mid-call the next provider
in the chain gets that audio replayed first, so the transcript has no hole.
When the chain runs out, the router logs the Go server's line ``STT provider
exited early; transcription will be disabled`` and drops the leg's audio
from transcription; recording is not the router's business and goes on.

When the offline engine cannot keep up live, the leg is *deferred*: its
audio (the replay buffer and everything after) is spooled to a WAV file
and a post-call job is queued (``siprec.stt.queue``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import os
import re
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from siprec.stt.audio import AudioError, StreamResampler, as_int16
from siprec.stt.base import (
    Hypothesis, LegSpec, ProviderStream, SttError, SttOverloaded, SttProvider,
    TranscriptResult,
)
from siprec.stt.breaker import BreakerSettings, BreakerState, CircuitBreaker
from siprec.stt.vad import WEBRTC_RATES

__all__ = [
    "EXITED_EARLY",
    "LegTranscriber",
    "RouterSettings",
    "SttRouter",
    "parse_language_routes",
]

log = Logger()

EXITED_EARLY = "STT provider exited early; transcription will be disabled"
OFFLINE = "offline"
WORK_RATE_FALLBACK = 16000

Sink = Callable[[TranscriptResult], None]
Deferrer = Callable[["LegTranscriber", str], "Spool | None"]

_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*")


def parse_language_routes(text: str, vendors: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``es=google,de=azure|deepgram`` -> {"es": ("google",), "de": ("azure", "deepgram")}.

    Raises ValueError with the problem (the caller names the setting).
    """
    routes: dict[str, tuple[str, ...]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        language, sep, names = item.partition("=")
        language = language.strip().replace("_", "-").lower()
        if not sep or not _LANGUAGE.fullmatch(language):
            raise ValueError(f"{item!r} is not language=vendor")
        chosen = tuple(name.strip().lower() for name in names.split("|") if name.strip())
        if not chosen:
            raise ValueError(f"{item!r} names no vendor")
        for name in chosen:
            if name not in vendors:
                raise ValueError(f"{name!r} is not one of {', '.join(vendors)}")
        if language in routes:
            raise ValueError(f"language {language!r} is listed twice")
        routes[language] = chosen
    return routes


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """Routing policy (from DEFAULT_SPEECH_VENDOR, STT_* settings)."""

    default_vendor: str = OFFLINE
    supported: tuple[str, ...] = ()
    language_routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_language: str = "en-US"
    failover: bool = True
    replay_limit: float = 60.0
    close_timeout: float = 120.0
    breaker: BreakerSettings = BreakerSettings()

    def __post_init__(self) -> None:
        object.__setattr__(self, "language_routes",
                           MappingProxyType(dict(self.language_routes)))


def _work_rate(rate: int) -> int:
    """The rate a leg is transcribed at: its own when the VAD takes it."""
    return rate if rate in WEBRTC_RATES else WORK_RATE_FALLBACK


@dataclass(slots=True)
class _ProviderCounters:
    legs_total: int = 0
    legs_active: int = 0
    failures_total: int = 0
    results_final: int = 0
    results_partial: int = 0


class SttRouter:
    """Plans, opens, fails over and reports on every leg's transcription."""

    def __init__(
        self,
        providers: Mapping[str, SttProvider],
        sink: Sink,
        clock: IReactorTime,
        settings: RouterSettings = RouterSettings(),
        deferrer: Deferrer | None = None,
    ) -> None:
        self.providers = dict(providers)
        self.settings = settings
        self._sink = sink
        self._clock = clock
        self._deferrer = deferrer
        self.breakers = {
            name: CircuitBreaker(name, clock, settings.breaker, self._breaker_changed)
            for name in self.providers
        }
        self._counters = {name: _ProviderCounters() for name in self.providers}
        self.legs: set[LegTranscriber] = set()
        self.totals = {
            "legs": 0, "legs_disabled": 0, "legs_deferred": 0, "failovers": 0,
            "overloads": 0, "replay_truncated": 0, "sink_errors": 0,
        }

    # -- planning ------------------------------------------------------------

    def chain_for(self, language: str | None) -> list[str]:
        """Providers to try for a leg in ``language``, best first."""
        language = (language or self.settings.default_language).replace("_", "-")
        lowered = language.lower()
        names: list[str] = []
        routes = self.settings.language_routes
        names.extend(routes.get(lowered, ()))
        names.extend(routes.get(lowered.split("-")[0], ()))
        names.append(self.settings.default_vendor)
        if self.settings.failover:
            names.extend(self.settings.supported)
            names.append(OFFLINE)
        chain: list[str] = []
        for name in names:
            provider = self.providers.get(name)
            if name in chain or provider is None:
                continue
            if not provider.supports_language(language):
                continue
            chain.append(name)
        return chain

    # -- legs ----------------------------------------------------------------

    def defer_to(self, deferrer: Deferrer | None) -> None:
        """Where legs that no provider can take live are spooled: the post-call
        queue, which is built on this router and so can only be given afterwards."""
        self._deferrer = deferrer

    def open_leg(
        self,
        call_id: str,
        leg_label: str,
        participant: Mapping[str, Any] | None = None,
        language: str | None = None,
        sample_rate: int = 8000,
        live: bool = True,
    ) -> LegTranscriber:
        """Start transcribing one leg; feed it with ``feed``, end with ``close``."""
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise AudioError(f"sample rate must be a positive integer, not {sample_rate!r}")
        language = language or self.settings.default_language
        spec = LegSpec(call_id, leg_label, _work_rate(sample_rate), language,
                       participant, live)
        leg = LegTranscriber(self, spec, sample_rate, self.chain_for(language))
        self.legs.add(leg)
        self.totals["legs"] += 1
        leg._start()
        return leg

    def stop(self) -> Deferred:
        """Close every open leg (shutdown); fires when all are done."""
        from twisted.internet.defer import gatherResults

        return gatherResults([leg.close() for leg in list(self.legs)]).addCallback(
            lambda _: None)

    # -- status --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Per-provider breaker state and counters, as plain data."""
        providers = {}
        for name, provider in self.providers.items():
            counters = self._counters[name]
            entry: dict[str, Any] = {
                "breaker": self.breakers[name].snapshot(),
                "legs_total": counters.legs_total,
                "legs_active": counters.legs_active,
                "failures_total": counters.failures_total,
                "results_final": counters.results_final,
                "results_partial": counters.results_partial,
            }
            stats = getattr(provider, "stats", None)
            if callable(stats):
                entry["engine"] = stats()
            providers[name] = entry
        return {
            "default_vendor": self.settings.default_vendor,
            "failover": self.settings.failover,
            "legs_active": len(self.legs),
            "providers": providers,
            **{f"{key}_total": value for key, value in self.totals.items()},
        }

    def healthy(self) -> bool:
        """Whether a new leg in the default language would find a provider."""
        return any(self.breakers[name].would_allow() for name in self.chain_for(None))

    # -- used by legs ---------------------------------------------------------

    def _breaker_changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        if new is BreakerState.OPEN:
            log.warn("STT circuit breaker for {provider} opened (was {old}); new legs "
                     "skip it for {seconds:g}s", provider=name, old=str(old),
                     seconds=self.settings.breaker.reset_timeout)
        else:
            log.info("STT circuit breaker for {provider}: {old} -> {new}",
                     provider=name, old=str(old), new=str(new))

    def _deliver(self, result: TranscriptResult) -> None:
        counters = self._counters.get(result.provider)
        if counters is not None:
            if result.is_final:
                counters.results_final += 1
            else:
                counters.results_partial += 1
        try:
            self._sink(result)
        except Exception:
            self.totals["sink_errors"] += 1
            log.failure("Transcript sink failed for call {call_id}", call_id=result.call_id)

    def _leg_closed(self, leg: LegTranscriber) -> None:
        self.legs.discard(leg)


class _Attempt:
    """One provider's try at a leg; stale callbacks from dropped streams are ignored."""

    def __init__(self, leg: LegTranscriber, name: str) -> None:
        self.leg = leg
        self.name = name
        self.active = True
        self.proven = False  # produced a result (breaker success recorded)
        self.stream: ProviderStream | None = None
        self.finishing = False

    def hypothesis(self, hyp: Hypothesis) -> None:
        if self.active:
            self.leg._hypothesis(self, hyp)

    def failed(self, error: SttError) -> None:
        if self.active:
            self.leg._failed(self, error)

    def overloaded(self, reason: str) -> None:
        if self.active:
            self.leg._overloaded(self, reason)


class LegTranscriber:
    """One leg's transcription: feed decoded audio, close at the end.

    States: ``live`` (a provider is transcribing), ``deferred`` (spooling for
    post-call), ``disabled`` (no provider left), ``closed``.
    """

    def __init__(self, router: SttRouter, spec: LegSpec, input_rate: int,
                 chain: list[str]) -> None:
        self.router = router
        self.spec = spec
        self.call_id = spec.call_id
        self.label = spec.leg
        self.state = "live"
        self.provider: str | None = None
        self.tried: list[str] = []
        self._chain = list(chain)
        self._input_rate = input_rate
        self._resampler: StreamResampler | None = None
        self._input_next: int | None = None  # input offset expected next
        self._work_next = 0  # work-rate offset of the resampler's next output
        self._replay: deque[tuple[np.ndarray, int]] = deque()
        self._replay_samples = 0
        self._replay_limit = int(router.settings.replay_limit * spec.sample_rate)
        self._truncation_logged = False
        self._attempt: _Attempt | None = None
        self._closing: Deferred | None = None
        self._closed: Deferred | None = None
        self._timeout = None
        self._spool: Spool | None = None
        self.samples_in = 0
        self.samples_dropped = 0
        self.results = 0

    # -- public API ------------------------------------------------------------

    def feed(self, pcm: np.ndarray, sample_rate: int, offset_samples: int) -> None:
        """Decoded mono int16 audio; ``offset_samples`` is the position of its
        first sample on the call timeline at ``sample_rate``."""
        pcm = as_int16(pcm)
        if self._closing is not None or self.state == "closed":
            return
        if sample_rate <= 0 or offset_samples < 0:
            raise AudioError(f"bad sample rate {sample_rate} or offset {offset_samples}")
        self.samples_in += len(pcm)
        if self.state == "disabled":
            self.samples_dropped += len(pcm)
            return
        for chunk, offset in self._to_work_rate(pcm, sample_rate, offset_samples):
            self._accept(chunk, offset)

    def close(self) -> Deferred:
        """End of the leg: fires (None) when the last results are out. Never fails."""
        if self._closed is None:
            self._closed = Deferred()
            self._closing = Deferred()
            self._closing.addBoth(self._finished)
            for chunk, offset in self._flush_resampler():
                self._accept(chunk, offset)
            if self.state == "live" and self._attempt is not None:
                self._finish_attempt(self._attempt)
            elif self.state == "deferred":
                self._finish_spool()
            else:
                self._closing.callback(None)
        d: Deferred = Deferred()
        self._closed.addBoth(lambda result: d.callback(None) or result)
        return d

    def status(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id, "leg": self.label, "state": self.state,
            "provider": self.provider, "tried": list(self.tried),
            "replay_seconds": round(self._replay_samples / self.spec.sample_rate, 3),
            "results": self.results,
        }

    # -- audio path ----------------------------------------------------------

    def _to_work_rate(self, pcm: np.ndarray, rate: int,
                      offset: int) -> list[tuple[np.ndarray, int]]:
        work = self.spec.sample_rate
        out: list[tuple[np.ndarray, int]] = []
        if rate == work and self._resampler is None:
            return [(pcm, offset)]
        if rate != self._input_rate or offset != self._input_next or self._resampler is None:
            # New rate or a gap: finish the old filter, restart at the new offset.
            out.extend(self._flush_resampler())
            self._input_rate = rate
            if rate == work:
                self._input_next = None
                return out + [(pcm, offset)]
            self._resampler = StreamResampler(rate, work)
            self._work_next = int(round(offset * work / rate))
        self._input_next = offset + len(pcm)
        assert self._resampler is not None
        converted = self._resampler.feed(pcm)
        out.append((self._as_pcm(converted), self._work_next))
        self._work_next += len(converted)
        return out

    def _flush_resampler(self) -> list[tuple[np.ndarray, int]]:
        if self._resampler is None:
            return []
        tail = self._resampler.flush()
        start = self._work_next
        self._resampler = None
        self._input_next = None
        self._work_next += len(tail)
        return [(self._as_pcm(tail), start)] if len(tail) else []

    @staticmethod
    def _as_pcm(samples: np.ndarray) -> np.ndarray:
        return np.clip(np.round(samples), -32768, 32767).astype(np.int16)

    def _accept(self, chunk: np.ndarray, offset: int) -> None:
        if not len(chunk):
            return
        if self.state == "deferred":
            assert self._spool is not None
            self._spool.write(chunk, offset)
            return
        if self.state != "live":
            self.samples_dropped += len(chunk)
            return
        self._remember(chunk, offset)
        attempt = self._attempt
        if attempt is None or attempt.stream is None:
            return
        try:
            attempt.stream.feed(chunk, offset)
        except Exception as err:  # a provider bug is a provider failure
            attempt.failed(SttError(attempt.name, f"feed raised {err!r}"))

    def _remember(self, chunk: np.ndarray, offset: int) -> None:
        self._replay.append((chunk, offset))
        self._replay_samples += len(chunk)
        while self._replay_samples > self._replay_limit and self._replay:
            dropped, _ = self._replay.popleft()
            self._replay_samples -= len(dropped)
            if not self._truncation_logged:
                self._truncation_logged = True
                self.router.totals["replay_truncated"] += 1
                log.warn("STT replay buffer of call {call_id} leg {leg} is full "
                         "(STT_REPLAY_LIMIT); a failover now would miss audio",
                         call_id=self.call_id, leg=self.label)

    def _forget_until(self, end_seconds: float) -> None:
        """Drop replay audio that a final result has covered."""
        end = int(round(end_seconds * self.spec.sample_rate))
        while self._replay:
            chunk, offset = self._replay[0]
            if offset + len(chunk) <= end:
                self._replay.popleft()
                self._replay_samples -= len(chunk)
            elif offset < end:
                cut = end - offset
                self._replay[0] = (chunk[cut:], end)
                self._replay_samples -= cut
                break
            else:
                break
        self._truncation_logged = False

    # -- provider attempts ----------------------------------------------------

    def _start(self) -> None:
        if not self._chain:
            self._disable(f"no STT provider available for language {self.spec.language!r}")
            return
        self._next_provider()

    def _next_provider(self, replay: bool = False) -> None:
        """Open the next allowed provider in the chain, or give up."""
        router = self.router
        while self._chain:
            name = self._chain.pop(0)
            breaker = router.breakers[name]
            if not breaker.allow():
                continue
            attempt = _Attempt(self, name)
            try:
                attempt.stream = router.providers[name].open_stream(self.spec, attempt)
            except SttOverloaded as err:
                breaker.release()
                attempt.active = False
                self._overloaded(attempt, err.message)
                return
            except SttError as err:
                attempt.active = False
                self._count_failure(name, breaker, err)
                continue
            self._attempt = attempt
            self.provider = name
            self.tried.append(name)
            counters = router._counters[name]
            counters.legs_total += 1
            counters.legs_active += 1
            if replay and self._replay:
                log.info("STT failover for call {call_id} leg {leg} to {provider}, "
                         "replaying {seconds:.1f}s", call_id=self.call_id, leg=self.label,
                         provider=name,
                         seconds=self._replay_samples / self.spec.sample_rate)
                for chunk, offset in list(self._replay):
                    if not attempt.active:
                        return  # failed during replay; a later attempt took over
                    try:
                        attempt.stream.feed(chunk, offset)
                    except Exception as err:
                        attempt.failed(SttError(name, f"feed raised {err!r}"))
                        return
            if self._closing is not None and attempt.active:
                self._finish_attempt(attempt)
            return
        last = self.tried[-1] if self.tried else "none"
        self._disable(f"no provider left after {last}")

    def _count_failure(self, name: str, breaker: CircuitBreaker, error: SttError) -> None:
        breaker.record_failure()
        self.router._counters[name].failures_total += 1
        log.warn("STT provider {provider} failed for call {call_id} leg {leg}: {error}",
                 provider=name, call_id=self.call_id, leg=self.label, error=error.message)

    def _end_attempt(self, attempt: _Attempt) -> None:
        if attempt.active:
            attempt.active = False
            self.router._counters[attempt.name].legs_active -= 1
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        if attempt.stream is not None:
            try:
                attempt.stream.abort()
            except Exception:
                log.failure("abort of {provider} stream raised", provider=attempt.name)

    def _hypothesis(self, attempt: _Attempt, hyp: Hypothesis) -> None:
        if not attempt.proven:
            attempt.proven = True
            self.router.breakers[attempt.name].record_success()
        if hyp.is_final:
            self._forget_until(hyp.end)
        if self.state != "live":
            return
        self.results += 1
        self.router._deliver(TranscriptResult(
            call_id=self.call_id, leg=self.label, participant=self.spec.participant,
            text=hyp.text, is_final=hyp.is_final, start=hyp.start, end=hyp.end,
            confidence=hyp.confidence, language=hyp.language or self.spec.language,
            provider=attempt.name, words=hyp.words,
            post_call=not self.spec.live,
        ))

    def _failed(self, attempt: _Attempt, error: SttError) -> None:
        self._end_attempt(attempt)
        self._count_failure(attempt.name, self.router.breakers[attempt.name], error)
        self._attempt = None
        if self.router.settings.failover:
            self.router.totals["failovers"] += 1
            self._next_provider(replay=True)
        else:
            self._chain.clear()
            self._disable(f"{attempt.name}: {error.message}")

    def _overloaded(self, attempt: _Attempt, reason: str) -> None:
        if attempt.stream is not None:
            self._end_attempt(attempt)
        self.router.breakers[attempt.name].release()
        self._attempt = None
        self.router.totals["overloads"] += 1
        spool = self.router._deferrer(self, reason) if self.router._deferrer else None
        if spool is None:
            log.warn("Live transcription of call {call_id} leg {leg} is overloaded "
                     "({reason}) and no post-call queue is configured",
                     call_id=self.call_id, leg=self.label, reason=reason)
            self._disable(f"overloaded: {reason}")
            return
        log.warn("Live transcription of call {call_id} leg {leg} is overloaded "
                 "({reason}); the leg is queued for post-call transcription",
                 call_id=self.call_id, leg=self.label, reason=reason)
        self.state = "deferred"
        self.router.totals["legs_deferred"] += 1
        self._spool = spool
        for chunk, offset in self._replay:
            spool.write(chunk, offset)
        self._replay.clear()
        self._replay_samples = 0
        if self._closing is not None:
            self._finish_spool()

    def _disable(self, reason: str) -> None:
        self.state = "disabled"
        self._replay.clear()
        self._replay_samples = 0
        self.router.totals["legs_disabled"] += 1
        log.error(EXITED_EARLY + " (call {call_id}, leg {leg}: {reason})",
                  call_id=self.call_id, leg=self.label, reason=reason)
        if self._closing is not None and not self._closing.called:
            self._closing.callback(None)

    # -- closing ----------------------------------------------------------------

    def _finish_attempt(self, attempt: _Attempt) -> None:
        if attempt.finishing or attempt.stream is None:
            return
        attempt.finishing = True
        timeout = self.router.settings.close_timeout
        self._timeout = self.router._clock.callLater(
            timeout, lambda: attempt.failed(
                SttError(attempt.name, f"no final results {timeout:g}s after the leg ended")))
        attempt.stream.finish().addBoth(self._attempt_finished, attempt)

    def _attempt_finished(self, result: object, attempt: _Attempt) -> None:
        if not attempt.active:
            return None  # failed meanwhile; the next attempt (or disable) ends the leg
        if not attempt.proven:
            self.router.breakers[attempt.name].record_success()
            attempt.proven = True
        self._end_attempt(attempt)
        assert self._closing is not None
        if not self._closing.called:
            self._closing.callback(None)
        return None

    def _finish_spool(self) -> None:
        assert self._spool is not None and self._closing is not None
        self._spool.close().addBoth(lambda _: self._closing.called or self._closing.callback(None))

    def _finished(self, result: object) -> None:
        self.state = "closed"
        self.router._leg_closed(self)
        assert self._closed is not None
        self._closed.callback(None)


class Spool(ABC):
    """Where a deferred leg's audio goes; see ``siprec.stt.queue.SpoolFile``."""

    @abstractmethod
    def write(self, pcm: np.ndarray, offset: int) -> None:
        """Append audio at ``offset`` (samples on the leg's timeline)."""

    def close(self) -> Deferred:  # pragma: no cover - interface
        return succeed(None)


def default_spool_path(directory: str, call_id: str, leg: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{call_id}_{leg}")[:200]
    return os.path.join(directory, f"{safe}.wav")

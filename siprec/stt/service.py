"""The transcription subsystem as one Twisted service, built from the configuration.

``TranscriptionService(config, reactor, threadpool, sink)`` builds the
providers, the router (with breakers and failover), the offline engine and
the post-call queue; ``startService`` loads the model and opens the queue
(both in the thread pool), ``stopService`` closes open legs and the queue.
The integrator gives it the bounded thread pool (STT_THREADS) and a sink
for ``TranscriptResult`` values, and opens legs with ``router.open_leg``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from siprec.config import STT_VENDORS, ConfigError
from siprec.stt.base import SttError, TranscriptResult
from siprec.stt.breaker import BreakerSettings
from siprec.stt.offline import OfflineEngine, OfflineSettings
from siprec.stt.providers import build_providers
from siprec.stt.queue import PostCallQueue, PostCallTranscriber, make_deferrer
from siprec.stt.router import RouterSettings, SttRouter, parse_language_routes

__all__ = ["TranscriptionService", "router_settings"]

log = Logger()


def router_settings(config: Any) -> RouterSettings:
    """RouterSettings from a Config; ConfigError (one line) for bad routes."""
    try:
        routes = parse_language_routes(config.stt_language_routes, STT_VENDORS)
    except ValueError as err:
        raise ConfigError(f"STT_LANGUAGE_ROUTES: {err}", name="STT_LANGUAGE_ROUTES") from None
    return RouterSettings(
        default_vendor=config.default_speech_vendor,
        supported=tuple(config.stt_supported_vendors),
        language_routes=routes,
        default_language=config.stt_language,
        failover=config.stt_failover,
        replay_limit=config.stt_replay_limit,
        breaker=BreakerSettings(config.stt_breaker_failures, config.stt_breaker_reset,
                                config.stt_breaker_half_open_legs),
    )


def queue_path(config: Any) -> str:
    return config.stt_queue_db or os.path.join(config.recording_dir, "stt-queue.sqlite3")


class TranscriptionService(Service):
    name = "transcription"

    def __init__(self, config: Any, reactor: Any, threadpool: Any,
                 sink: Callable[[TranscriptResult], None], engine: OfflineEngine | None = None
                 ) -> None:
        settings = router_settings(config)
        self.config = config
        self.threadpool = threadpool
        providers: dict[str, Any] = build_providers(config, reactor, threadpool,
                                                    dict(settings.language_routes))
        if engine is None:
            try:
                engine = OfflineEngine(reactor, threadpool, OfflineSettings(
                    model_dir=config.offline_stt_model_dir,
                    cpu_threads=config.offline_stt_cpu_threads,
                    beam_size=config.offline_stt_beam_size,
                    partial_interval=config.stt_partial_interval,
                    max_lag=config.stt_max_lag,
                    max_live_legs=config.stt_max_live_legs,
                ))
            except SttError as err:
                log.error("Offline STT engine unavailable: {error}", error=err.message)
        self.engine = engine
        if engine is not None:
            providers["offline"] = engine
        self.queue: PostCallQueue | None = None
        deferrer = None
        self.router = SttRouter(providers, sink, reactor, settings)
        if config.stt_queue_enabled:
            self.queue = PostCallQueue(
                queue_path(config), reactor, threadpool,
                PostCallTranscriber(self.router, reactor, threadpool,
                                    config.stt_postcall_vendor or None),
                workers=config.stt_queue_workers, max_attempts=config.stt_queue_max_attempts,
                backoff=config.stt_queue_retry_backoff,
            )
            deferrer = make_deferrer(self.queue, os.path.join(config.recording_dir, "stt-spool"),
                                     reactor, threadpool)
        self.router.defer_to(deferrer)

    def startService(self) -> Deferred:
        super().startService()
        waits = []
        if self.engine is not None:
            waits.append(self.engine.start().addErrback(lambda f: None))
        if self.queue is not None:
            waits.append(self.queue.start().addErrback(
                lambda f: log.error("Post-call STT queue disabled: {error}",
                                    error=f.getErrorMessage())))
        return DeferredList(waits).addCallback(lambda _: None)

    def stopService(self) -> Deferred:
        super().stopService()
        d = self.router.stop()
        if self.queue is not None:
            d.addCallback(lambda _: self.queue.stop())
        return d

    def status(self) -> dict[str, Any]:
        """Router status plus the queue's, for /health and /metrics."""
        status = self.router.status()
        status["queue"] = self.queue.stats() if self.queue is not None else None
        return status

    def ready(self) -> bool:
        return self.running and self.router.healthy()



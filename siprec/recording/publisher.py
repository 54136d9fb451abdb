"""Call events onto the real-time bus: the one place that knows both a
recording session and the ``siprec.event/1`` schema.

A failure to build or publish an event is logged (rate-limited by count)
and never reaches the call: recording comes first.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from twisted.logger import Logger

from siprec.realtime import events

log = Logger()

__all__ = ["CallEventPublisher"]


class CallEventPublisher:
    def __init__(self, bus, clock, quality_interval: float = 5.0):
        self.bus = bus
        self.clock = clock
        self.quality_interval = quality_interval
        self.failures = 0
        self._last_quality = 0.0

    def _publish(self, build, *args, **kwargs) -> None:
        try:
            self.bus.publish(build(*args, **kwargs))
        except Exception:
            self.failures += 1
            if self.failures == 1 or self.failures % 1000 == 0:
                log.failure("Could not publish a {kind} event ({n} failures so far)",
                            kind=getattr(build, "__name__", "call"), n=self.failures)

    # -- life cycle --------------------------------------------------------------
    def call_started(self, session) -> None:
        summary = session.summary()
        self._publish(events.call_started, summary)
        for stream in summary["streams"]:
            self._publish(events.stream_started, summary, stream)

    def call_updated(self, session, reason: str) -> None:
        self._publish(events.call_updated, session.summary(), reason=reason)

    def call_ended(self, session) -> None:
        detail = session.detail()
        for stream in detail["streams"]:
            if stream.get("key") not in session.stopped_announced:
                self._publish(events.stream_stopped, detail, stream,
                              reason=session.end_reason or "ended")
        self._publish(events.call_ended, detail, reason=session.end_reason)

    def stream_started(self, session, stream: Mapping[str, Any]) -> None:
        self._publish(events.stream_started, session.summary(), stream)

    def stream_stopped(self, session, stream: Mapping[str, Any], reason: str) -> None:
        self._publish(events.stream_stopped, session.summary(), stream, reason=reason)

    # -- what happens in a call -------------------------------------------------------
    def dtmf(self, session, record: Mapping[str, Any]) -> None:
        self._publish(events.dtmf, session, leg=record["leg"], digit=record["digit"],
                      start=max(0.0, record["offset"]),
                      duration_ms=int(record["duration"] * 1000))

    def paused(self, session, *, recording: bool, transcription: bool, reason: str,
               leg: Optional[str] = None) -> None:
        self._publish(events.recording_paused, session, recording=recording,
                      transcription=transcription, reason=reason, leg=leg)

    def resumed(self, session, *, recording: bool, transcription: bool, reason: str,
                leg: Optional[str] = None, paused_seconds: Optional[float] = None) -> None:
        self._publish(events.recording_resumed, session, recording=recording,
                      transcription=transcription, reason=reason, leg=leg,
                      paused_seconds=paused_seconds)

    def transcript(self, session, result) -> None:
        build = events.transcript_final if result.is_final else events.transcript_partial
        kwargs = dict(leg=result.leg, text=result.text, start=result.start, end=result.end,
                      segment_id=result.segment_id,
                      participant=result.participant,
                      confidence=result.confidence, language=result.language,
                      provider=result.provider)
        if result.is_final:
            kwargs["words"] = result.as_dict().get("words") or []
        self._publish(build, session, **kwargs)

    def analytics(self, session, analysis: Mapping[str, Any]) -> None:
        """Talk analysis of a finished call (AUDIO_ANALYSIS_ENABLED), on /ws/analytics."""
        self._publish(events.analytics_snapshot, session, extra={"talk": dict(analysis)})

    def quality(self, sessions) -> None:
        """Periodic snapshots (every ``quality_interval`` s) of every receiving leg."""
        now = self.clock.seconds()
        if now - self._last_quality < self.quality_interval:
            return
        self._last_quality = now
        for session in sessions:
            for stream in session.summary()["streams"]:
                if stream["state"] != "closed" and stream.get("quality"):
                    self._publish(events.quality_snapshot, session, leg=stream["label"],
                                  stats=stream["quality"], participant=stream.get("participant"))

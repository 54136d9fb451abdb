"""The registry of recording sessions, admission, RTP timeouts and the drain.

It is the :class:`~siprec.sip.uas.CallHandler` of the SIP core and the
session source of the HTTP API. Its collaborators come in through the
constructor; it builds the one :class:`SessionContext` its sessions share.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger

from siprec.media.codecs import DecoderOptions, can_decode, get_decoder
from siprec.media.combine import combine_legs
from siprec.recording.assurance import Assurance
from siprec.recording.context import NoEvents, RecordingSettings, SessionContext
from siprec.recording.files import RecordingFiles
from siprec.recording.record import stream_stats
from siprec.recording.session import RecordingSession
from siprec.recording.streams import aggregate_stats
from siprec.sip.errors import CallRejected

log = Logger()

__all__ = ["RecordingManager", "ManagerSettings", "RecordingSettings"]

#: The settings' old name, still used by callers and tests.
ManagerSettings = RecordingSettings


class RecordingManager:
    """Registry and admission of recording sessions.

    ``run_blocking(f, *args)`` runs blocking work (sidecar writes, combining
    legs) off the reactor and returns a Deferred; by default it is
    ``deferToThreadPool`` on ``threadpool`` (the reactor's pool when none is
    given). ``combine`` is the leg combiner. ``events`` receives call events,
    ``transcription`` (a TranscriptionService) transcribes every leg,
    ``hang_up(session, reason)`` ends a call from our side (BYE).
    """

    def __init__(self, reactor, media, settings: RecordingSettings, metrics=None,
                 threadpool=None, clock=None,
                 run_blocking: Optional[Callable[..., Deferred]] = None,
                 combine: Optional[Callable[..., Any]] = None,
                 events: Any = None, transcription: Any = None):
        self.reactor = reactor
        self.clock = clock or reactor
        self.media = media
        self.settings = settings
        self.metrics = metrics
        self.threadpool = threadpool
        self._run_blocking = run_blocking
        self.events = events if events is not None else NoEvents()
        self.transcription = transcription
        self.active: "OrderedDict[str, RecordingSession]" = OrderedDict()
        self.recent: "OrderedDict[str, RecordingSession]" = OrderedDict()
        self._setting_up: Dict[str, RecordingSession] = {}
        self.draining = False
        self.files = RecordingFiles(settings.recording_dir, self.run_blocking,
                                    combine or combine_legs)
        self.context = SessionContext(
            clock=self.clock, settings=settings, media=media, files=self.files,
            can_decode=can_decode, combine_rate=self.combine_rate, events=self.events,
            transcription=transcription, metrics=metrics,
            started=self.session_started, ended=self.session_ended)
        self.assurance = Assurance(metrics)
        self._watchdog: Optional[task.LoopingCall] = None
        self.calls_total = 0
        self.closed_totals = {"packets": 0, "bytes": 0, "dropped": 0, "late": 0}

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        if self._watchdog is not None and self._watchdog.running:
            return
        self._watchdog = task.LoopingCall(self.check_timeouts)
        self._watchdog.clock = self.clock
        self._watchdog.start(1.0, now=False)

    def stop(self) -> None:
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()

    # -- CallHandler -----------------------------------------------------------
    def admission(self) -> Optional[CallRejected]:
        if self.draining:
            return CallRejected(503, "Shutting down", headers=[("Retry-After", "30")])
        limit = self.settings.max_calls
        if limit and len(self.active) + len(self._setting_up) >= limit:
            return CallRejected(503, "Too many concurrent calls", headers=[("Retry-After", "5")])
        return None

    def call_refused(self, call_id: str, status: int, reason: Optional[str],
                     source: Optional[str] = None) -> None:
        """The SIP core answered a new INVITE with an error: it will not be recorded."""
        self.assurance.refused(call_id, status, reason, self.clock.seconds(), source)

    def create_session(self, call_id: str, sip_info: dict) -> RecordingSession:
        session = RecordingSession(self.context, call_id, sip_info)
        self._setting_up[session.id] = session
        return session

    def run_blocking(self, f: Callable[..., Any], *args: Any) -> Deferred:
        """Run blocking work off the reactor thread; fires with its result."""
        if self._run_blocking is not None:
            return self._run_blocking(f, *args)
        pool = self.threadpool if self.threadpool is not None else self.reactor.getThreadPool()
        return threads.deferToThreadPool(self.reactor, pool, f, *args)

    def combine_rate(self, plans) -> int:
        """The combined file's rate: the highest leg output rate (Opus per OPUS_SAMPLE_RATE)."""
        options = DecoderOptions(opus_sample_rate=self.settings.opus_sample_rate)
        rates = [8000]
        for plan in plans:
            if plan.codec is not None:
                decoder = get_decoder(plan.codec, options)
                if decoder is not None:
                    rates.append(decoder.sample_rate)
        return max(rates)

    # -- session callbacks -----------------------------------------------------
    def session_started(self, session: RecordingSession) -> None:
        self._setting_up.pop(session.id, None)
        self.active[session.id] = session
        self.calls_total += 1
        if self.metrics:
            self.metrics.call_started()
        self.events.call_started(session)

    def session_ended(self, session: RecordingSession) -> None:
        self._setting_up.pop(session.id, None)
        if self.active.pop(session.id, None) is None:
            return
        for slot in session.slots.values():
            stats = slot.final_stats()
            for key, value in _stream_counts(stats).items():
                self.closed_totals[key] += value
            quality = stats.get("quality")
            if self.metrics and quality and stats.get("packets"):
                self.metrics.stream_quality(quality.get("mos"), quality.get("loss_percent"),
                                            quality.get("jitter_ms"))
        self.recent[session.id] = session
        while len(self.recent) > self.settings.keep_ended:
            self.recent.popitem(last=False)
        if self.metrics:
            self.metrics.call_ended(session.end_reason or "unknown")
        try:
            self.assurance.ended(session)
        except Exception:
            log.failure("Assurance check of {call_id} failed", call_id=session.call_id)
        self.events.call_ended(session)
        analysis = session.analysis_view()
        if analysis is not None:
            self.events.analytics(session, analysis)

    # -- transcription -------------------------------------------------------------
    def transcript_result(self, result) -> None:
        """The STT sink: route a result to its session (live ones first)."""
        session = None
        for table in (self.active, self.recent):
            for candidate in reversed(table.values()):
                if candidate.call_id == result.call_id:
                    session = candidate
                    break
            if session is not None:
                break
        if session is None:
            log.info("Transcript for unknown call {call_id} dropped", call_id=result.call_id)
            return
        session.transcript_received(result)

    # -- queries (HTTP API) -------------------------------------------------------
    @property
    def active_count(self) -> int:
        return len(self.active)

    def sessions(self) -> List[RecordingSession]:
        return list(self.active.values()) + list(reversed(self.recent.values()))

    def get(self, id_or_call_id: str) -> Optional[RecordingSession]:
        for table in (self.active, self.recent):
            if id_or_call_id in table:
                return table[id_or_call_id]
        for session in self.sessions():
            if session.call_id == id_or_call_id:
                return session
        return None

    def terminate(self, id_or_call_id: str, reason: str = "api") -> Optional[Deferred]:
        session = self.get(id_or_call_id)
        if session is None:
            return None
        return self.end_session(session, reason)

    def end_session(self, session: RecordingSession, reason: str) -> Deferred:
        """End from our side (API, RTP timeout, shutdown); fires when the files are final."""
        return session.hang_up(reason)

    # -- RTP inactivity ------------------------------------------------------------
    def check_timeouts(self) -> None:
        self.events.quality(list(self.active.values()))
        timeout = self.settings.rtp_timeout
        if timeout <= 0:
            return
        now = self.clock.seconds()
        for session in list(self.active.values()):
            if session.ended:
                continue  # finalising already
            try:
                self._check_timeout(session, now, timeout)
            except Exception:
                # One broken session must not stop the watchdog for every call.
                log.failure("RTP timeout check for {call_id} failed", call_id=session.call_id)

    def _check_timeout(self, session: RecordingSession, now: float, timeout: float) -> None:
        last = session.last_activity()
        if last is None:  # nothing expected: all paused, held or API-paused
            session.timeout_warned = False
            return
        idle = now - last
        if idle >= timeout:
            log.warn("RTP timeout detected for call {call_id}: no RTP for {idle:.0f}s "
                     "(RTP_TIMEOUT={timeout:g}s); ending the call",
                     call_id=session.call_id, idle=idle, timeout=timeout)
            self.end_session(session, "rtp-timeout")
        elif idle >= timeout / 2:
            if not session.timeout_warned:
                session.timeout_warned = True
                log.warn("RTP stream inactive - no packets received for {idle:.0f}s on call "
                         "{call_id} (timeout at {timeout:g}s)",
                         call_id=session.call_id, idle=idle, timeout=timeout)
        else:
            session.timeout_warned = False

    # -- shutdown -------------------------------------------------------------
    def drain(self) -> Deferred:
        """Refuse new calls, BYE and finalise every active one; fires when every
        call's files are final and every sidecar is on disk."""
        self.draining = True
        ending = [maybeDeferred(self.end_session, s, "shutdown") for s in list(self.active.values())]
        ending += [maybeDeferred(s.end, "shutdown") for s in list(self._setting_up.values())]
        if ending:
            log.info("Shutting down: finalising {n} call(s)", n=len(ending))
        d = DeferredList(ending, consumeErrors=True) if ending else succeed(None)
        return d.addCallback(lambda _: self.files.idle())

    # -- metrics -----------------------------------------------------------------
    def stream_totals(self) -> dict:
        """Live figures for /metrics: packet totals include ended calls."""
        totals = dict(self.closed_totals, active_streams=0)
        for session in list(self.active.values()):
            for slot in list(session.slots.values()):
                stats = stream_stats(slot) if slot.media is not None else aggregate_stats(slot.pieces)
                totals["active_streams"] += slot.media is not None
                for key, value in _stream_counts(stats).items():
                    totals[key] += value
        return totals


def _stream_counts(stats: dict) -> dict:
    return {
        "packets": stats.get("packets", 0),
        "bytes": stats.get("bytes", 0),
        "dropped": stats.get("bad_packets", 0) + stats.get("foreign_packets", 0)
        + stats.get("overflow_dropped", 0),
        "late": stats.get("late_dropped", 0),
    }

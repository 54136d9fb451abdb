"""The registry of recording sessions, admission, RTP timeouts and shutdown.

It is the :class:`~siprec.sip.uas.CallHandler` of the SIP core and the
session source of the HTTP API.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger

from siprec.media.codecs import can_decode as codec_can_decode
from siprec.media.combine import combine_legs
from siprec.media.spec import PayloadFormat
from siprec.recording.session import RecordingSession
from siprec.sip.errors import CallRejected

log = Logger()

__all__ = ["RecordingManager", "ManagerSettings"]


@dataclass
class ManagerSettings:
    recording_dir: str
    media_address: str  # the address our SDP advertises (c=)
    combine_legs: bool = True
    rtp_timeout: float = 30.0
    max_calls: int = 0  # 0: unlimited
    accept_savp: bool = False
    warning_agent: str = "siprec"
    keep_ended: int = 200  # ended sessions kept for the API
    opus_sample_rate: int = 48000
    audio_analysis: bool = False


class RecordingManager:
    """Registry and admission of recording sessions.

    ``run_blocking(f, *args)`` runs blocking work (combining legs) off the
    reactor and returns a Deferred; by default it is ``deferToThreadPool`` on
    ``threadpool`` (the reactor's pool when none is given). ``combine`` is
    the leg combiner (``siprec.media.combine.combine_legs``).
    """

    def __init__(self, reactor, media, settings: ManagerSettings, metrics=None,
                 threadpool=None, clock=None,
                 run_blocking: Optional[Callable[..., Deferred]] = None,
                 combine: Optional[Callable[..., Any]] = None):
        self.reactor = reactor
        self.clock = clock or reactor
        self.media = media
        self.settings = settings
        self.metrics = metrics
        self.threadpool = threadpool
        self._run_blocking = run_blocking
        self.signalling = None  # the SipCore, to send BYE
        self.events = None  # publishes call events (siprec.realtime), when wired
        self.transcription = None  # siprec.stt TranscriptionService, when STT_ENABLED
        self.active: "OrderedDict[str, RecordingSession]" = OrderedDict()
        self.recent: "OrderedDict[str, RecordingSession]" = OrderedDict()
        self._setting_up: Dict[str, RecordingSession] = {}
        self.draining = False
        self.combine = combine or combine_legs
        self._watchdog: Optional[task.LoopingCall] = None
        self.calls_total = 0
        self._claimed: set = set()  # base paths of live sessions
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

    def create_session(self, call_id: str, sip_info: dict) -> RecordingSession:
        session = RecordingSession(self, call_id, sip_info)
        self._setting_up[session.id] = session
        return session

    def can_decode(self, fmt: PayloadFormat) -> bool:
        return codec_can_decode(fmt)

    def run_blocking(self, f: Callable[..., Any], *args: Any) -> Deferred:
        """Run blocking work off the reactor thread; fires with its result."""
        if self._run_blocking is not None:
            return self._run_blocking(f, *args)
        pool = self.threadpool if self.threadpool is not None else self.reactor.getThreadPool()
        return threads.deferToThreadPool(self.reactor, pool, f, *args)

    def combine_rate(self, plans) -> int:
        """The combined file's rate: the highest leg output rate (Opus per OPUS_SAMPLE_RATE)."""
        from siprec.media.codecs import DecoderOptions, get_decoder
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
        if self.events is not None:
            self.events.call_started(session)

    def claim_base_path(self, name: str) -> str:
        """``RECORDING_DIR/<name>``, or ``<name>~2``, ``~3`` … when a live session or an
        earlier call's files already use it (a Call-ID reused by a later call, or two
        dialogs sharing a Call-ID): recordings are never overwritten."""
        directory = self.settings.recording_dir
        candidate, n = os.path.join(directory, name), 1
        while candidate in self._claimed or any(
                os.path.exists(candidate + ext) for ext in (".json", ".wav", ".metadata.xml")):
            n += 1
            candidate = os.path.join(directory, f"{name}~{n}")
        self._claimed.add(candidate)
        return candidate

    def session_ended(self, session: RecordingSession, was_active: bool) -> None:
        self._claimed.discard(session.base_path)
        self._setting_up.pop(session.id, None)
        if self.active.pop(session.id, None) is not None:
            for slot in session.slots.values():
                for key, value in _stream_counts(slot.final_stats).items():
                    self.closed_totals[key] += value
                quality = (slot.final_stats or {}).get("quality")
                if self.metrics and quality and (slot.final_stats or {}).get("packets"):
                    self.metrics.stream_quality(quality.get("mos"), quality.get("loss_percent"),
                                                quality.get("jitter_ms"))
            self.recent[session.id] = session
            while len(self.recent) > self.settings.keep_ended:
                self.recent.popitem(last=False)
            if self.metrics:
                self.metrics.call_ended(session.end_reason or "unknown")
            if self.events is not None:
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

    # -- events ---------------------------------------------------------------------
    def publish_dtmf(self, session: RecordingSession, record: dict) -> None:
        """A DTMF digit on a leg; published on the event bus once one is attached."""
        if self.events is not None:
            self.events.dtmf(session, record)

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
        """End from our side: BYE to the SRC when there is a dialog, then finalise.

        Fires when the session is finalised. A signalling failure (or a
        dialog already gone) still ends the session.
        """
        if not session.ended and self.signalling is not None and session.dialog is not None:
            try:
                self.signalling.terminate(session.dialog, reason)
            except Exception:
                log.failure("Sending BYE for {call_id} failed; finalising anyway",
                            call_id=session.call_id)
        return session.end(reason)

    # -- RTP inactivity ------------------------------------------------------------
    def check_timeouts(self) -> None:
        if self.events is not None:
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
            session._timeout_warned = False
            return
        idle = now - last
        if idle >= timeout:
            log.warn("RTP timeout detected for call {call_id}: no RTP for {idle:.0f}s "
                     "(RTP_TIMEOUT={timeout:g}s); ending the call",
                     call_id=session.call_id, idle=idle, timeout=timeout)
            self.end_session(session, "rtp-timeout")
        elif idle >= timeout / 2:
            if not session._timeout_warned:
                session._timeout_warned = True
                log.warn("RTP stream inactive - no packets received for {idle:.0f}s on call "
                         "{call_id} (timeout at {timeout:g}s)",
                         call_id=session.call_id, idle=idle, timeout=timeout)
        else:
            session._timeout_warned = False

    # -- shutdown -------------------------------------------------------------
    def drain(self) -> Deferred:
        """Refuse new calls, BYE and finalise every active one."""
        self.draining = True
        ending = [maybeDeferred(self.end_session, s, "shutdown") for s in list(self.active.values())]
        ending += [maybeDeferred(s.end, "shutdown") for s in list(self._setting_up.values())]
        if not ending:
            return succeed(None)
        log.info("Shutting down: finalising {n} call(s)", n=len(ending))
        return DeferredList(ending, consumeErrors=True)

    # -- files -----------------------------------------------------------------
    def write_file(self, path: str, data: bytes) -> None:
        """Small sidecar files (JSON record, metadata log), replaced atomically."""
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as e:
            log.error("Could not write {path}: {error}", path=path, error=e)

    # -- metrics -----------------------------------------------------------------
    def stream_totals(self) -> dict:
        """Live figures for /metrics: packet totals include ended calls."""
        totals = dict(self.closed_totals, active_streams=0)
        for session in list(self.active.values()):
            for slot in list(session.slots.values()):
                if slot.closed and slot.final_stats:
                    stats = slot.final_stats  # removed mid-call: still counted, never lost
                elif slot.media is None:
                    continue
                else:
                    try:
                        stats = slot.media.stats()
                    except Exception:
                        log.failure("Reading stream statistics failed")
                        continue
                    totals["active_streams"] += not slot.closed
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

"""RecordingSession: the one owner of a recorded call's state.

It turns offers and metadata into streams (through the media service),
keeps the RFC 7865 model, the pauses and the call record, and finalises
the files. Media reports to it as events; signalling calls its offer,
metadata and end methods. The pieces it orchestrates live beside it:
:mod:`streams` (which legs an offer changes), :mod:`negotiation` (SDP and
SRTP decisions), :mod:`channels` (the combined file's layout),
:mod:`record` (the record and metadata log), :mod:`feed` (transcription
and talk analysis) and :mod:`pauses`.

Recording never waits: ending a call closes its streams, combines the legs
and writes the record; transcription finishes afterwards on its own time.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger

from siprec.media import events as media_events
from siprec.media.spec import StreamSpec
from siprec.recording import record
from siprec.recording.channels import ChannelOrder, combine_inputs
from siprec.recording.context import SessionContext
from siprec.recording.feed import CallFeeds, CallTranscript, TranscriptStatus
from siprec.recording.files import safe_filename
from siprec.recording.metadata import MetadataError, RecordingMetadata, parse_metadata
from siprec.recording.negotiation import SrtpChoice, negotiate_srtp, require_media, sticky_codec
from siprec.recording.pauses import PauseLog
from siprec.recording.state import SessionState
from siprec.recording.streams import StreamSlot, held, line_key, merged_plan, plan_changes
from siprec.sip.errors import CallRejected
from siprec.sip.offer_answer import (
    OfferStream,
    StreamPlan,
    apply_answer,
    build_answer,
    build_offer,
    make_origin,
    plan_answer,
)
from siprec.sip.sdp import SessionDescription
from siprec.timefmt import iso_time

log = Logger()

__all__ = ["RecordingSession", "StreamSlot", "safe_filename"]

# A hostile SRC must not grow these lists without bound.
_MAX_NOTES = 200
_MAX_DTMF = 1000


class RecordingSession:
    def __init__(self, context: SessionContext, call_id: str, sip_info: dict):
        self.ctx = context
        self.clock = context.clock
        self.id = uuid.uuid4().hex
        self.call_id = call_id
        self.sip_info = sip_info
        self.state = SessionState.SETUP
        self.created = self.clock.seconds()
        self.started_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        self.end_reason: Optional[str] = None
        self.metadata = RecordingMetadata()
        self.metadata_documents: List[dict] = []
        self.warnings: List[str] = []
        self.tolerances: List[str] = []
        self.slots: Dict[str, StreamSlot] = {}  # every leg of the call, in opening order
        self.channels = ChannelOrder()
        self.pause_log = PauseLog(self.clock.seconds, self._pause_changed)
        self.recording_paused = False  # operator pause (API): streams written as silence
        self.transcription_paused = False  # operator pause of transcription only
        self._hang_up = None  # BYE to the SRC and close the dialog, once there is one
        self.base_path: Optional[str] = None  # RECORDING_DIR/<Call-ID>, claimed at the first offer
        self.files: Dict[str, str] = {}
        self.dtmf: List[dict] = []
        self.transcript = CallTranscript()
        self.stopped_announced: set = set()  # leg keys whose stream.stopped went out mid-call
        self.timeout_warned = False  # the RTP watchdog warned once already
        self._origin = make_origin(context.settings.media_address,
                                   secrets.randbelow(2**31 - 1) + 1, 0)
        self._our_offer: Optional[SessionDescription] = None
        self._offered_slots: List[StreamSlot] = []
        self._ending: Optional[Deferred] = None
        self._api_resumed_at: Optional[float] = None
        self.transcribed: Deferred = Deferred()  # transcription finished, its files on disk
        self.feeds = CallFeeds(call_id, context.transcription, context.settings.audio_analysis,
                               lambda label: record.participant_brief(
                                   self.metadata.participant_for_label(label)))

    # -- identity ----------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.state.closing

    @property
    def pauses(self) -> List[dict]:
        return self.pause_log.intervals

    @property
    def api_paused(self) -> bool:
        return self.recording_paused

    def dialog_established(self, hang_up) -> None:
        """The SIP core answered: ``hang_up(reason)`` ends the call from our side."""
        self._hang_up = hang_up

    def hang_up(self, reason: str) -> Deferred:
        """End from our side: BYE to the SRC when there is a dialog, then finalise.

        A signalling failure (or a dialog already gone) still ends the session;
        fires when the files are final.
        """
        if not self.ended and self._hang_up is not None:
            try:
                self._hang_up(reason)
            except Exception:
                log.failure("Sending BYE for {call_id} failed; finalising anyway",
                            call_id=self.call_id)
        return self.end(reason)

    def tolerate(self, note: str) -> None:
        """Log each accepted SRC quirk once per call, for the operator's SBC vendor."""
        if note in self.tolerances or len(self.tolerances) >= _MAX_NOTES:
            return
        self.tolerances.append(note)
        log.info("Call {call_id}: tolerated: {note}", call_id=self.call_id, note=note)

    def warn(self, text: str) -> None:
        if len(self.warnings) < _MAX_NOTES:
            self.warnings.append(text)
        log.warn("Call {call_id}: {text}", call_id=self.call_id, text=text)

    def _emit(self, name: str, *args, **kwargs) -> None:
        getattr(self.ctx.events, name)(self, *args, **kwargs)

    # -- metadata ----------------------------------------------------------------
    def metadata_received(self, documents: Sequence[bytes], source: str = "") -> None:
        for raw in documents:
            raw = bytes(raw)
            self.metadata_documents.append({"received_at": self.clock.seconds(),
                                            "source": source, "body": raw})
            try:
                doc = parse_metadata(raw)
            except MetadataError as e:
                self._metadata_unusable(str(e))
                continue
            except Exception as e:  # a parser bug must not cost the recording either
                log.failure("Call {call_id}: metadata parser failed", call_id=self.call_id)
                self._metadata_unusable(f"parser error: {e!r}")
                continue
            for note in doc.tolerances:
                self.tolerate(f"metadata: {note}")
            self.metadata.apply(doc)
        if documents and self.state is SessionState.ACTIVE:
            self._write_metadata_log()
            self._settle_channels()
            self.write_record()
            self._emit("call_updated", "metadata")

    def _metadata_unusable(self, why: str) -> None:
        """A broken document: warn, keep the model as it was, record anyway."""
        self.warn(f"Unusable rs-metadata document ({why}); recording continues")
        if self.ctx.metrics:
            self.ctx.metrics.metadata_warning()

    # -- offer/answer ----------------------------------------------------------------
    def offer(self, offer: Optional[SessionDescription], metadata: Sequence[bytes]):
        """Apply an offer (or produce ours when there is none); returns the SDP to send.

        Raises :class:`CallRejected` and then changes nothing: a refused
        re-offer leaves the call exactly as it was, its metadata included.
        """
        if self.ended:
            raise CallRejected(481, "Recording session already ended")
        initial = self.state is SessionState.SETUP
        source = "INVITE" if initial else "re-offer"
        if offer is None:
            ours = self._make_offer()
            self.metadata_received(metadata, source=source)
            return ours
        settings = self.ctx.settings
        plans = plan_answer(offer, self.ctx.can_decode, accept_savp=settings.accept_savp)
        require_media(plans, settings.warning_agent)
        plans, srtp = negotiate_srtp(plans, self.slots)
        require_media(plans, settings.warning_agent)
        changes = plan_changes(plans, self.slots)
        if self.base_path is None:
            self.base_path = self.ctx.files.claim(self.call_id)
        fresh = self._open_all(changes, srtp)  # raises CallRejected; nothing changed then
        # From here on the offer is accepted.
        for warning in srtp.warnings:
            self.warn(warning)
        self.metadata_received(metadata, source=source)
        for slot in changes.remove:
            log.info("Call {call_id}: stream {label} removed by the SRC", call_id=self.call_id,
                     label=slot.label)
            self._remove_slot(slot)
        if changes.dropped:
            self.tolerate("re-offer dropped m-lines instead of setting port 0")
            for slot in changes.dropped:
                self._remove_slot(slot)
        for slot, plan in changes.update:
            self._update_slot(slot, plan)
        for slot in fresh:
            self._register(slot)
        # The answer names what each leg now uses (an open leg keeps its codec).
        answered = [self.slots[line_key(p)].plan if p.accepted else p for p in plans]
        ports = {p.index: self.slots[line_key(p)].port for p in plans if p.accepted}
        crypto = {p.index: [("crypto", srtp.answer_crypto(p.index))]
                  for p in plans if p.accepted and srtp.answer_crypto(p.index)}
        if not initial:
            self._origin = self._origin.bumped()
        answer = build_answer(offer, answered, ports, settings.media_address, self._origin,
                              extra_attributes=crypto)
        if initial:
            self._activate()
        self._settle_channels()
        self.write_record()
        if not initial:
            self._emit("call_updated", "reoffer")
        return answer

    def _activate(self) -> None:
        self.state = SessionState.ACTIVE
        self.started_at = self.clock.seconds()
        for slot in self.slots.values():
            if slot.expecting:
                slot.expecting_since = self.started_at
        if self.ctx.transcription is not None and any(s.feed for s in self.slots.values()):
            self.transcript.status = TranscriptStatus.LIVE
        if self.metadata_documents:
            self._write_metadata_log()
        self.ctx.started(self)
        log.info("Recording call {call_id} (session {id}): {n} stream(s) {labels}",
                 call_id=self.call_id, id=self.id, n=len(self.slots), labels=list(self.slots))

    def _make_offer(self) -> SessionDescription:
        """Our recvonly offer for a re-INVITE (or INVITE) that came without SDP."""
        live = sorted((s for s in self.slots.values() if s.media is not None and s.plan.accepted),
                      key=lambda s: s.index)
        if not live:
            raise CallRejected(488, "INVITE without SDP and no stream to offer")
        streams = [OfferStream(s.label if s.plan.label is not None else None, s.port,
                               s.plan.formats, s.plan.telephone_event) for s in live]
        self._origin = self._origin.bumped()
        self._our_offer = build_offer(streams, self.ctx.settings.media_address, self._origin)
        self._offered_slots = live
        return self._our_offer

    def answer_received(self, answer: SessionDescription) -> None:
        if self._our_offer is None:
            return
        try:
            plans = apply_answer(self._our_offer, answer)
        except ValueError as e:
            self.warn(f"SDP answer in ACK does not fit our offer ({e}); streams kept as they were")
            return
        for slot, plan in zip(self._offered_slots, plans):
            if slot.media is None:
                continue
            self._apply_direction(slot, plan)
            slot.plan = merged_plan(slot.plan, plan)
        self._our_offer = None
        self._offered_slots = []
        self.write_record()

    # -- streams ----------------------------------------------------------------
    def _open_all(self, changes, srtp: SrtpChoice) -> List[StreamSlot]:
        """Open media for every leg the offer starts or brings back.

        All or nothing: when one cannot be opened (503), those just opened
        are closed again, the files they created removed, and the call is
        left as it was. Returns the new legs, to be registered.
        """
        fresh: List[StreamSlot] = []
        reopened: List[Tuple[StreamSlot, object, StreamPlan]] = []
        try:
            for plan in changes.open:
                slot = self._new_slot(plan)
                self._open_media(slot, plan, srtp, continuing=False)
                fresh.append(slot)
            for slot, plan in changes.reopen:
                handle = self._open_media(slot, plan, srtp, continuing=True, attach=False)
                reopened.append((slot, handle, plan))
        except CallRejected:
            for slot in fresh:
                self._discard(slot.media, slot.wav_path)
            for _, handle, _ in reopened:
                self._discard(handle, None)
            raise
        for slot, handle, plan in reopened:
            log.info("Call {call_id}: stream {label} offered again; continuing its file",
                     call_id=self.call_id, label=slot.label)
            self._attach(slot, handle, plan, srtp)
            self._start_leg(slot)
        return fresh

    def _new_slot(self, plan: StreamPlan) -> StreamSlot:
        label = plan.label if plan.label is not None else str(plan.index)
        key = line_key(plan)
        wav_path = f"{self.base_path}_{safe_filename(label, 60)}.wav"
        taken = {s.wav_path for s in self.slots.values()}
        n = 2
        while wav_path in taken:  # two labels sanitised to the same name
            wav_path = f"{self.base_path}_{safe_filename(label, 60)}_{n}.wav"
            n += 1
        return StreamSlot(key=key, label=label, index=plan.index, plan=plan, wav_path=wav_path)

    def _open_media(self, slot: StreamSlot, plan: StreamPlan, srtp: SrtpChoice, *,
                    continuing: bool, attach: bool = True):
        spec = StreamSpec(
            call_id=self.call_id,
            label=slot.label,
            index=plan.index,
            formats=tuple(plan.formats),
            wav_path=slot.wav_path,
            telephone_event=plan.telephone_event,
            remote_address=plan.remote_address,
            rtcp_mux=plan.rtcp_mux,
            paused=not plan.receiving or self.recording_paused,
            srtp=srtp.srtp_keys(plan.index),
            **self._continuation(slot, continuing),
        )
        try:
            handle = self.ctx.media.open_stream(spec, self._media_event, self.created,
                                                deliver_audio=self.feeds.wanted)
        except Exception as e:  # ports exhausted, bind failure
            log.error("Call {call_id}: cannot open stream {label}: {error}", call_id=self.call_id,
                      label=slot.label, error=e)
            raise CallRejected(503, "No RTP port available", headers=[("Retry-After", "5")])
        if attach:
            self._attach(slot, handle, plan, srtp)
        return handle

    def _continuation(self, slot: StreamSlot, continuing: bool) -> dict:
        """StreamSpec fields that make a reopened leg continue its file."""
        if not continuing:
            return {}
        from siprec.media.spec import LegContinuation
        stats = slot.final_stats()
        return {"continue_from": LegContinuation.from_stats(stats)}

    def _attach(self, slot: StreamSlot, handle, plan: StreamPlan, srtp: SrtpChoice) -> None:
        slot.media = handle
        slot.port = handle.port
        slot.plan = plan
        slot.index = plan.index
        slot.removed = False
        slot.formats = tuple(plan.formats)
        slot.srtp_offered = tuple(plan.crypto) if srtp.answer_crypto(plan.index) else ()
        slot.srtp_answer = srtp.answer_crypto(plan.index)
        slot.paused_by_sdp = not plan.receiving
        slot.held = held(plan)
        if slot.paused_by_sdp:
            self.pause_log.start(slot.label, slot.key, "sdp-inactive")
        elif slot.held:
            self.pause_log.start(slot.label, slot.key, "hold")
        else:
            slot.expecting_since = self.clock.seconds()

    def _discard(self, handle, new_file: Optional[str]) -> None:
        """Undo an opening the offer will not keep (another stream failed)."""
        d = maybeDeferred(handle.close)
        if new_file is not None:
            d.addCallback(lambda _: self.ctx.files.remove([new_file]))
            self.ctx.files.track(d)  # so that RecordingFiles.idle() waits for the removal
        d.addErrback(lambda f: log.failure("Call {call_id}: closing a stream failed", f,
                                           call_id=self.call_id))

    def _register(self, slot: StreamSlot) -> None:
        self.slots[slot.key] = slot
        self.files[slot.key] = slot.wav_path
        self._start_leg(slot)

    def _start_leg(self, slot: StreamSlot) -> None:
        self._start_feed(slot)
        if self.state is SessionState.ACTIVE:
            self._emit("stream_started", self._stream_entry(slot))

    def _update_slot(self, slot: StreamSlot, plan: StreamPlan) -> None:
        plan, warning = sticky_codec(slot, plan)
        if warning:
            self.warn(warning)
        self._apply_direction(slot, plan)
        slot.plan = plan
        slot.index = plan.index
        if plan.remote_address:
            slot.media.set_remote(plan.remote_address)

    def _apply_direction(self, slot: StreamSlot, plan: StreamPlan) -> None:
        """a=inactive pauses a stream (muted, RFC 7866 pause); c=0.0.0.0 marks it held
        (no RTP expected, but anything that still arrives is recorded); sendonly or
        sendrecv with a real address resumes it."""
        paused, on_hold = not plan.receiving, held(plan)
        if paused == slot.paused_by_sdp and on_hold == slot.held:
            return
        if slot.paused_by_sdp or slot.held:
            self.pause_log.end(slot.key)
        if paused:
            log.info("Call {call_id}: stream {label} paused by the SRC ({why})",
                     call_id=self.call_id, label=slot.label, why=plan.offered_direction)
            self.pause_log.start(slot.label, slot.key, "sdp-inactive")
        elif on_hold:
            log.info("Call {call_id}: stream {label} put on hold (c=0.0.0.0)",
                     call_id=self.call_id, label=slot.label)
            self.pause_log.start(slot.label, slot.key, "hold")
        else:
            log.info("Call {call_id}: stream {label} resumed by the SRC", call_id=self.call_id,
                     label=slot.label)
            slot.expecting_since = self.clock.seconds()
        if paused and not slot.paused_by_sdp:
            slot.media.pause()
        elif not paused and slot.paused_by_sdp and not self.recording_paused:
            slot.media.resume()
        slot.paused_by_sdp, slot.held = paused, on_hold

    def _remove_slot(self, slot: StreamSlot) -> Deferred:
        """The SRC removed the stream: close its media; the leg may come back."""
        slot.removed = True
        return self._close_slot(slot, "removed")

    def _close_slot(self, slot: StreamSlot, reason: str) -> Deferred:
        """Close the leg's media; fires when its file is final (not its transcription)."""
        handle, slot.media = slot.media, None
        if handle is None:
            return succeed(None)
        announce = self.state is SessionState.ACTIVE
        if slot.paused_by_sdp or slot.held:
            self.pause_log.end(slot.key)
        slot.paused_by_sdp = slot.held = False
        d = maybeDeferred(handle.close)

        def keep(stats):
            if not isinstance(stats, dict) or not stats:
                stats = handle.stats()
            slot.pieces.append(stats)
            for note in stats.get("tolerances") or ():
                self.tolerate(f"stream {slot.label}: {note}")
            return stats

        def failed(failure):
            log.failure("Call {call_id}: closing stream {label} failed", failure,
                        call_id=self.call_id, label=slot.label)
            slot.pieces.append(handle.stats())

        d.addCallbacks(keep, failed)
        # The feed finishes its last utterances afterwards; nobody waits for it here.
        d.addCallback(lambda _: self._close_feed(slot))
        if announce:
            def stopped(_):
                self.stopped_announced.add(slot.key)
                self._emit("stream_stopped", self._stream_entry(slot), reason)
            d.addCallback(stopped)
        return d

    def _close_all(self) -> Deferred:
        closing = [self._close_slot(slot, "ended") for slot in self.slots.values()
                   if slot.media is not None]
        return DeferredList(closing, consumeErrors=True) if closing else succeed(None)

    # -- media events ------------------------------------------------------------
    def _media_event(self, event) -> None:
        slot = self._slot_for(event.label)
        if slot is None:
            return
        if isinstance(event, media_events.AudioDecoded):
            if slot.feed is not None:
                slot.feed.feed(event.pcm, event.sample_rate, event.offset)
        elif isinstance(event, media_events.DtmfDigit):
            self._dtmf(slot, event)
        elif isinstance(event, media_events.RtcpBye):
            if slot.media is not None and not self.ended:
                log.info("Call {call_id}: RTCP BYE on stream {label}; closing it",
                         call_id=self.call_id, label=slot.label)
                slot.removed = True
                self._close_slot(slot, "rtcp-bye")
                self.write_record()

    def _slot_for(self, label: str) -> Optional[StreamSlot]:
        for slot in self.slots.values():
            if slot.label == label:
                return slot
        return None

    def _dtmf(self, slot: StreamSlot, event) -> None:
        """RFC 4733 digits: kept per call (API, record, events), never rendered into audio.
        Digits are not logged: they may be card numbers."""
        if len(self.dtmf) >= _MAX_DTMF:
            return
        entry = {"leg": slot.label, "digit": event.digit, "at": iso_time(event.start),
                 "offset": round(event.start - (self.started_at or self.created), 3),
                 "duration": round(event.duration, 3), "end_seen": event.end_seen}
        self.dtmf.append(entry)
        self._emit("dtmf", entry)

    def last_activity(self) -> Optional[float]:
        """When RTP last arrived, or was last expected to start, over the streams
        expected to carry media; None if none are (so no RTP timeout runs)."""
        expecting = [s for s in self.slots.values() if s.expecting]
        if not expecting or self.recording_paused:
            return None
        latest = self.started_at or self.created
        if self._api_resumed_at is not None:
            latest = max(latest, self._api_resumed_at)
        for slot in expecting:
            if slot.expecting_since is not None:
                latest = max(latest, slot.expecting_since)
            seen = slot.media.last_packet_at
            if seen is not None and seen > latest:
                latest = seen
        return latest

    # -- operator pause/resume ------------------------------------------------------
    def pause(self, recording: bool = True, transcription: bool = True) -> None:
        """Operator pause. Recording: every stream is written as silence, so the
        timeline stays true (SDP pauses are kept apart). Transcription: audio is
        no longer sent to the speech engine."""
        if self.ended:
            return
        changed = False
        if recording and not self.recording_paused:
            self.recording_paused = changed = True
            self.pause_log.start(None, None, "api", recording=True, transcription=False)
            for slot in self.slots.values():
                if slot.media is not None:
                    slot.media.pause()
        if transcription and not self.transcription_paused:
            self.transcription_paused = changed = True
            self.pause_log.start(None, None, "api-transcription", recording=False,
                                 transcription=True)
        if changed:
            self.write_record()

    def resume(self, recording: bool = True, transcription: bool = True) -> None:
        """Undo :meth:`pause`; streams the SRC paused with a=inactive stay paused."""
        if self.ended:
            return
        changed = False
        if recording and self.recording_paused:
            self.recording_paused = False
            changed = True
            self._api_resumed_at = self.clock.seconds()
            self.pause_log.end(None, "api")
            for slot in self.slots.values():
                if slot.media is not None and not slot.paused_by_sdp:
                    slot.media.resume()
        if transcription and self.transcription_paused:
            self.transcription_paused = False
            changed = True
            self.pause_log.end(None, "api-transcription")
        if changed:
            self.write_record()

    def _pause_changed(self, started: bool, pause: dict) -> None:
        if started:
            self._emit("paused", recording=pause["recording"],
                       transcription=pause["transcription"], reason=pause["reason"],
                       leg=pause["label"])
        elif self.state is SessionState.ACTIVE:
            self._emit("resumed", recording=pause["recording"],
                       transcription=pause["transcription"], reason=pause["reason"],
                       leg=pause["label"], paused_seconds=pause["end"] - pause["start"])

    # -- ending ------------------------------------------------------------------
    def end(self, reason: str) -> Deferred:
        """Close every stream, combine the legs, write the record. Idempotent.

        Fires when the files are final. Whatever fails on the way (a stream,
        the combine, the record), the session still reaches ``ended`` and
        its registry forgets it. Transcription finishes afterwards
        (:attr:`transcribed`).
        """
        if self._ending is not None:
            return self._ending
        self.end_reason = reason
        was_active = self.state is SessionState.ACTIVE
        self.state = SessionState.ENDING
        self.pause_log.close_all()
        d = self._ending = maybeDeferred(self._close_all)
        if was_active:
            d.addCallback(lambda _: self._combine())
        d.addErrback(lambda f: log.failure("Finalising call {call_id} failed", f,
                                           call_id=self.call_id))
        d.addBoth(self._ended, was_active)
        return d

    def _ended(self, _, was_active: bool) -> Deferred:
        """Files final: the last record goes to disk (end() fires when it is there)."""
        self.state = SessionState.ENDED
        self.ended_at = self.clock.seconds()
        written = succeed(None)
        try:
            if was_active:
                if self.transcript.status == TranscriptStatus.LIVE:
                    self.transcript.status = TranscriptStatus.PENDING
                written = self.write_record()
                log.info("Call {call_id} ended ({reason}); files: {files}", call_id=self.call_id,
                         reason=self.end_reason, files=sorted(self.files.values()))
            elif self.base_path is not None:
                self.ctx.files.release(self.base_path)
        finally:
            try:
                self.ctx.ended(self)
            except Exception:
                log.failure("Call {call_id}: registry bookkeeping after the end failed",
                            call_id=self.call_id)
        self._await_transcription(was_active)
        return written.addCallback(lambda _: None)

    def _combine(self) -> Deferred:
        """One channel per leg (two for stereo) in the call's fixed channel order."""
        if not self.ctx.settings.combine_legs:
            return succeed(None)
        legs = self.channels.ordered(self.slots)
        inputs, layout = combine_inputs(legs, lambda s: bool(s.final_stats().get("packets")))
        if not any(path for path, _ in inputs):
            return succeed(None)
        out = self.base_path + ".wav"
        rate = self.ctx.combine_rate([s.plan for s in legs])
        log.info("Call {call_id}: combining {n} leg(s) into {out}", call_id=self.call_id,
                 n=len(inputs), out=out)
        d = self.ctx.files.combine(inputs, out, rate)

        def done(_):
            self.files["combined"] = out
            self.channels.layout = layout

        return d.addCallback(done)

    def _settle_channels(self) -> None:
        if self.state is not SessionState.SETUP:
            self.channels.settle(self.slots, self.metadata.ordered_labels())

    # -- the analysis path (transcription, talk analysis) ---------------------------
    def _start_feed(self, slot: StreamSlot) -> None:
        """Hand this leg's decoded audio to the analysis path (never the archive)."""
        if slot.feed is None:
            slot.feed = self.feeds.start(slot.label, self._leg_rate(slot),
                                         lambda: (self.recording_paused or slot.paused_by_sdp,
                                                  self.transcription_paused))

    def _leg_rate(self, slot: StreamSlot) -> int:
        if slot.media is not None:
            rate = slot.media.stats().get("sample_rate")
            if rate:
                return int(rate)
        return 8000

    def _close_feed(self, slot: StreamSlot) -> None:
        """The leg's media is closed; a re-offer of the leg starts a new feed."""
        feed, slot.feed = slot.feed, None
        self.feeds.close(feed)

    def _await_transcription(self, was_active: bool) -> None:
        """After the files are final: wait for the feeds, then write the transcript."""

        def finished(outcomes):
            if not outcomes:
                return None
            status = self.transcript.finished(outcomes)
            if not was_active:
                return None
            log.info("Call {call_id}: transcription {status}", call_id=self.call_id,
                     status=status)
            self._emit("call_updated", "transcription")
            return DeferredList([self.write_transcript(), self.write_record()])

        d = self.feeds.finished().addCallback(finished)
        d.addErrback(lambda f: log.failure("Call {call_id}: finishing transcription failed", f,
                                           call_id=self.call_id))
        d.addBoth(lambda _: self.transcribed.callback(None))

    def analysis_view(self) -> Optional[dict]:
        return self.feeds.analysis_view([s.feed for s in self.slots.values() if s.feed])

    def transcript_received(self, result) -> None:
        """A live (or post-call) result from the STT router for one of our legs."""
        self.transcript.add(result)
        self._emit("transcript", result)
        if result.is_final and self.state is SessionState.ENDED and \
                self.transcript.status not in (TranscriptStatus.PENDING,):
            self.write_transcript()  # post-call result after the files were written

    # -- views and files ---------------------------------------------------------
    def _stream_entry(self, slot: StreamSlot) -> dict:
        first, count = self.channels.channel_of(self.slots).get(slot.key, (0, slot.channels))
        return record.stream_entry(self, slot, first, count)

    def summary(self) -> dict:
        return record.summary(self)

    def detail(self) -> dict:
        return record.detail(self)

    def transcript_view(self) -> dict:
        return record.transcript_view(self)

    def write_record(self) -> Deferred:
        """``<Call-ID>.json``, written off the reactor; fires when it is on disk.
        Never fails: a record that cannot be built must not cost the call."""
        if self.state is SessionState.SETUP or self.base_path is None:
            return succeed(None)
        try:
            data = record.record_json(self)
        except Exception:
            log.failure("Call {call_id}: building the call record failed", call_id=self.call_id)
            return succeed(None)
        return self.ctx.files.write(self.base_path + ".json", data)

    def write_transcript(self) -> Deferred:
        """``<Call-ID>.transcript.json`` next to the recordings, once there is text;
        fires when it is on disk."""
        if not self.transcript.segments or self.base_path is None:
            return succeed(None)
        path = self.base_path + ".transcript.json"
        try:
            data = record.transcript_json(self)
        except Exception:
            log.failure("Call {call_id}: building the transcript failed", call_id=self.call_id)
            return succeed(None)
        self.files["transcript"] = path
        return self.ctx.files.write(path, data)

    def _write_metadata_log(self) -> None:
        path = self.base_path + ".metadata.xml"
        try:
            data = record.metadata_log(self.call_id, self.metadata_documents)
        except Exception:
            log.failure("Call {call_id}: building the metadata log failed", call_id=self.call_id)
            return
        self.ctx.files.write(path, data)
        self.files["metadata"] = path

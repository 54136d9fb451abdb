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
from typing import Dict, List, Optional, Sequence

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger

from siprec.media import events as media_events
from siprec.recording import record
from siprec.recording.channels import ChannelOrder, combine_inputs
from siprec.recording.context import SessionContext
from siprec.recording.feed import CallFeeds, CallTranscript, TranscriptStatus
from siprec.recording.files import safe_filename
from siprec.recording.metadata import MetadataError, RecordingMetadata, parse_metadata
from siprec.recording.negotiation import negotiate_srtp, require_media
from siprec.recording.legs import Legs
from siprec.recording.pauses import PauseLog
from siprec.recording.state import SessionState
from siprec.recording.vendor_headers import participants_from_headers
from siprec.recording.streams import StreamSlot, merged_plan, plan_changes
from siprec.sip.errors import CallRejected
from siprec.sip.offer_answer import (
    OfferStream,
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
        self.channels = ChannelOrder()
        self.pause_log = PauseLog(self.clock.seconds, self._pause_changed)
        self.legs = Legs(self, call_id, context.media, context.files, self.clock, self.created,
                         self.pause_log, self._media_event)
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

    def _participants_from_headers(self) -> None:
        """An SRC without rs-metadata may name the parties in SIP headers (Cisco
        network-based recording): they become the call's participants."""
        document = participants_from_headers(self.sip_info.get("headers") or {},
                                             {s.index: s.label for s in self.slots.values()})
        if document is None:
            return
        try:
            self.metadata.apply(parse_metadata(document))
        except MetadataError as e:
            self.warn(f"Participants in X-Cisco-Recording-Participant unusable ({e})")
            return
        self.tolerate("no rs-metadata; participants taken from X-Cisco-Recording-Participant "
                      "headers (Cisco network-based recording)")

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
        # Raises CallRejected (503) and then nothing has changed.
        opened = self.legs.open(changes, srtp, self.base_path, self.feeds.wanted)
        # From here on the offer is accepted.
        for warning in srtp.warnings:
            self.warn(warning)
        self.metadata_received(metadata, source=source)
        self.legs.apply(changes, opened, srtp)
        if initial and not self.metadata_documents:
            self._participants_from_headers()
        answered, ports = self.legs.answered(plans)
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
            self.legs.apply_direction(slot, plan)
            slot.plan = merged_plan(slot.plan, plan)
        self._our_offer = None
        self._offered_slots = []
        self.write_record()

    # -- legs ---------------------------------------------------------------------
    @property
    def slots(self) -> Dict[str, StreamSlot]:
        return self.legs.slots

    def leg_started(self, slot: StreamSlot) -> None:
        """LegOwner: a leg's media is open (new, or back after a removal)."""
        self.files.setdefault(slot.key, slot.wav_path)
        self._start_feed(slot)
        if self.state is SessionState.ACTIVE:
            self._emit("stream_started", self._stream_entry(slot))

    def leg_closed(self, slot: StreamSlot, reason: str) -> None:
        """LegOwner: a leg's piece of file is final; its feed finishes on its own time."""
        self._close_feed(slot)
        if self.state is SessionState.ACTIVE:
            self.stopped_announced.add(slot.key)
            self._emit("stream_stopped", self._stream_entry(slot), reason)

    def _media_event(self, event) -> None:
        slot = self.legs.by_label(event.label)
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
                self.legs.remove(slot, "rtcp-bye")
                self.write_record()

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
        if self.recording_paused:
            return None
        floor = self.started_at or self.created
        if self._api_resumed_at is not None:
            floor = max(floor, self._api_resumed_at)
        return self.legs.last_activity(floor)

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
            self.legs.pause_all()
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
            self.legs.resume_all()
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
        d = self._ending = maybeDeferred(self.legs.close_all)
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

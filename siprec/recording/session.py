"""RecordingSession: the one owner of a recorded call's state.

It turns offers and metadata into streams (via the media service), keeps
the RFC 7865 model, pause intervals and the call record, and finalises
the files. Media and signalling report to it; it never reaches into them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger

from siprec.media.srtp import negotiate_sdes
from siprec.media.spec import PayloadFormat, StreamSpec
from siprec.recording.metadata import MetadataError, RecordingMetadata, parse_metadata
from siprec.sip.offer_answer import (
    OfferStream,
    StreamPlan,
    acceptable,
    apply_answer,
    build_answer,
    build_offer,
    make_origin,
    plan_answer,
    rejection_summary,
)
from siprec.sip.sdp import SessionDescription
from siprec.sip.errors import CallRejected

log = Logger()

__all__ = ["RecordingSession", "StreamSlot", "safe_filename", "iso"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")
# Characters XML 1.0 cannot carry at all, not even as character references.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DIGEST = 12
# Keys of RecordingSession.files that are not streams.
_RESERVED_FILE_KEYS = frozenset({"combined", "metadata", "record"})
# A hostile SRC must not grow these lists without bound.
_MAX_NOTES = 200
_MAX_SEGMENTS = 100_000


def safe_filename(text: str, limit: int = 120) -> str:
    """A Call-ID or label as a file-name component: no separators, no dot-dot.

    A name that had to be changed (unsafe characters, leading dots, too
    long, empty) gets a digest of the original, so two Call-IDs never end
    up sharing files because they were sanitised or cut to the same text.
    """
    cleaned = _UNSAFE.sub("_", text).lstrip(".")
    if cleaned == text and 0 < len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST]
    room = limit - _DIGEST - 1
    if room <= 0:
        return digest[:max(limit, 1)]
    head = cleaned[:room]
    return f"{head}-{digest}" if head else digest


def iso(seconds: Optional[float]) -> Optional[str]:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class StreamSlot:
    """One recorded stream: an m-line from the offer that opened it until it closes.

    A label the SRC removes and later offers again gets a new slot (and a
    new file), so nothing recorded earlier is overwritten or forgotten.
    """

    key: str  # unique within the call; the key in RecordingSession.files
    label: str
    index: int
    plan: StreamPlan
    wav_path: str
    media: object = None  # MediaStream while open
    port: int = 0
    paused_by_sdp: bool = False  # a=inactive: the SRC paused recording; packets are muted
    held: bool = False  # c=0.0.0.0: on hold; nothing expected, but what arrives is kept
    closed: bool = False
    final_stats: dict = field(default_factory=dict)
    line: str = ""  # which offered m-line this is, across re-offers
    expecting_since: Optional[float] = None  # when RTP was last expected to (re)start
    participant: Optional[dict] = None  # the last sender the metadata named
    formats: Tuple[PayloadFormat, ...] = ()  # what the media stream was opened for
    srtp_offered: Tuple[str, ...] = ()  # the SRC's a=crypto lines when the keys were chosen
    srtp_answer: Optional[str] = None  # our a=crypto value (SDES, RFC 4568)
    transcriber: object = None  # the STT LegTranscriber fed by this stream
    analyzer: object = None  # dsp LegProcessor (AUDIO_ANALYSIS_ENABLED)
    speech_segments: list = field(default_factory=list)  # what the analyzer's VAD found

    @property
    def codec(self) -> Optional[str]:
        codec = self.plan.codec
        if codec is None:
            return None
        channels = f"/{codec.channels}" if codec.channels > 1 else ""
        return f"{codec.encoding}/{codec.clock_rate}{channels}"

    @property
    def expecting(self) -> bool:
        """RTP should be arriving (not closed, paused by the SDP or on hold)."""
        return not self.closed and not self.paused_by_sdp and not self.held and self.media is not None


class RecordingSession:
    def __init__(self, manager, call_id: str, sip_info: dict):
        self.manager = manager
        self.clock = manager.clock
        self.id = uuid.uuid4().hex
        self.call_id = call_id
        self.sip_info = sip_info
        self.state = "setup"
        self.created = self.clock.seconds()
        self.started_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        self.end_reason: Optional[str] = None
        self.metadata = RecordingMetadata()
        self.metadata_documents: List[dict] = []
        self.warnings: List[str] = []
        self.tolerances: List[str] = []
        self.slots: Dict[str, StreamSlot] = {}  # every stream of the call, in opening order
        self.pauses: List[dict] = []
        self.recording_paused = False  # operator pause (API): streams written as silence
        self.transcription_paused = False  # operator pause of transcription only
        self.dialog = None
        self.files: Dict[str, str] = {}
        self._origin = make_origin(manager.settings.media_address,
                                   secrets.randbelow(2**31 - 1) + 1, 0)
        self._our_offer: Optional[SessionDescription] = None
        self._offered_slots: List[StreamSlot] = []
        self._ending: Optional[Deferred] = None
        self._timeout_warned = False
        self._lines: Dict[str, StreamSlot] = {}  # m-line identity -> its latest slot
        self._srtp: Dict[int, tuple] = {}  # m-line index -> (keys, our a=crypto) for this offer
        self.dtmf: List[dict] = []
        self.transcript: List[dict] = []  # final results, in arrival order
        self.partials: Dict[str, dict] = {}  # leg -> its open utterance
        self.stopped_announced: set = set()  # stream keys whose stream.stopped went out mid-call
        self._used_paths: Set[str] = set()
        self._used_keys: Set[str] = set()
        # Channel order of the combined file: slot keys, fixed once set (see _settle_channels).
        self._channel_order: List[str] = []
        self._order_from_metadata = False
        self._layout: Optional[Dict[str, Tuple[int, int]]] = None  # key -> (channel, count) as combined
        self._api_resumed_at: Optional[float] = None
        self.base_path = manager.claim_base_path(safe_filename(call_id))

    # -- identity ----------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.state == "ended" or self._ending is not None

    def attach_dialog(self, dialog) -> None:
        self.dialog = dialog

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
        if documents:
            self._write_metadata_log()
            self._relabel_participants()
            if self.state == "active":
                self._emit("call_updated", "metadata")

    def _metadata_unusable(self, why: str) -> None:
        """A broken document: warn, keep the model as it was, record anyway."""
        self.warn(f"Unusable rs-metadata document ({why}); recording continues")
        if self.manager.metrics:
            self.manager.metrics.metadata_warning()

    def _relabel_participants(self) -> None:
        """Participants may arrive after streams (partial updates)."""
        if self.state == "active":
            self._settle_channels()
            self.write_record()

    # -- offer/answer ----------------------------------------------------------------
    def offer(self, offer: Optional[SessionDescription], metadata: Sequence[bytes]):
        """Apply an offer (or produce ours when there is none); returns the SDP to send."""
        if self.ended:
            raise CallRejected(481, "Recording session already ended")
        if metadata:
            self.metadata_received(metadata, source="INVITE" if self.state == "setup" else "re-offer")
        if offer is None:
            return self._make_offer()
        settings = self.manager.settings
        plans = plan_answer(offer, self.manager.can_decode, accept_savp=settings.accept_savp)
        if not acceptable(plans):
            summary = rejection_summary(plans) or "no audio stream offered"
            raise CallRejected(488, "No acceptable media",
                               headers=[("Warning", f'304 {settings.warning_agent} "{_quoted(summary)}"')])
        initial = self.state == "setup"
        plans = self._negotiate_srtp(plans)
        if not acceptable(plans):
            summary = rejection_summary(plans)
            raise CallRejected(488, "No acceptable media",
                               headers=[("Warning", f'304 {settings.warning_agent} "{_quoted(summary)}"')])
        try:
            ports, plans = self._reconcile(plans)
        except CallRejected:
            if initial:
                self._close_all_streams()
            raise
        self._origin = self._origin.bumped() if not initial else self._origin
        crypto = {plan.index: [("crypto", self._srtp[plan.index][1])]
                  for plan in plans if plan.accepted and plan.index in self._srtp}
        answer = build_answer(offer, plans, ports, settings.media_address, self._origin,
                              extra_attributes=crypto)
        if initial:
            self.state = "active"
            self.started_at = self.clock.seconds()
            for slot in self.slots.values():
                if slot.expecting:
                    slot.expecting_since = self.started_at
            self.manager.session_started(self)
            log.info("Recording call {call_id} (session {id}): {n} stream(s) {labels}",
                     call_id=self.call_id, id=self.id, n=len(ports),
                     labels=[s.label for s in self.slots.values() if not s.closed])
        self._settle_channels()
        self.write_record()
        if not initial:
            self._emit("call_updated", "reoffer")
        return answer

    def _make_offer(self) -> SessionDescription:
        """Our recvonly offer for a re-INVITE (or INVITE) that came without SDP."""
        live = sorted((s for s in self._lines.values() if not s.closed and s.plan.accepted),
                      key=lambda s: s.index)
        if not live:
            raise CallRejected(488, "INVITE without SDP and no stream to offer")
        streams = [OfferStream(s.label if s.plan.label is not None else None, s.port,
                               s.plan.formats, s.plan.telephone_event) for s in live]
        self._origin = self._origin.bumped()
        self._our_offer = build_offer(streams, self.manager.settings.media_address, self._origin)
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
            if slot.closed:
                continue
            self._apply_direction(slot, plan)
            slot.plan = _merge_plan(slot.plan, plan)
        self._our_offer = None
        self._offered_slots = []
        self.write_record()

    def _line_keys(self, plans: Sequence[StreamPlan]) -> List[Tuple[StreamPlan, str]]:
        """Which m-line each plan is, across re-offers: its label, else its position."""
        pairs, seen = [], set()
        for plan in plans:
            key = plan.label if plan.label is not None else f"m{plan.index}"
            if key in seen:
                key = f"{key}-m{plan.index}"
            seen.add(key)
            pairs.append((plan, key))
        return pairs

    def _negotiate_srtp(self, plans: Sequence[StreamPlan]) -> List[StreamPlan]:
        """SDES keys for every accepted RTP/SAVP m-line (RFC 4568); a line whose
        crypto suites we cannot use is answered with port 0.

        An open stream keeps its keys across re-offers; if the SRC changes its
        key mid-call the old one is kept and a warning raised (re-keying an open
        stream is not supported yet).
        """
        self._srtp = {}
        out: List[StreamPlan] = []
        for plan, line in self._line_keys(plans):
            if not plan.accepted or "SAVP" not in plan.proto.upper():
                out.append(plan)
                continue
            current = self._lines.get(line)
            if current is not None and not current.closed and current.srtp_answer:
                if tuple(plan.crypto) != current.srtp_offered:
                    self.warn(f"SRC changed the SRTP key of stream {current.label} in a re-offer; "
                              "keeping the key negotiated first")
                self._srtp[plan.index] = (None, current.srtp_answer)
                out.append(plan)
                continue
            negotiated = negotiate_sdes(plan.crypto)
            if negotiated is None:
                out.append(replace(plan, accepted=False,
                                   reject_reason="no usable SRTP crypto suite offered"))
                continue
            self._srtp[plan.index] = negotiated
            out.append(plan)
        return out

    def _reconcile(self, plans: Sequence[StreamPlan]) -> Tuple[Dict[int, int], List[StreamPlan]]:
        """Bring the streams in line with an offer; returns (ports by m-line, plans answered).

        New streams are opened first: when one cannot be (503), those just
        opened are closed again and the call stays exactly as it was.
        """
        pairs = self._line_keys(plans)
        opened: List[Tuple[str, StreamSlot]] = []
        try:
            for plan, line in pairs:
                current = self._lines.get(line)
                if plan.accepted and (current is None or current.closed):
                    opened.append((line, self._open_slot(line, plan, reopening=current is not None)))
        except CallRejected:
            for _, slot in opened:
                self._discard(slot)
            raise
        fresh = dict(opened)
        ports: Dict[int, int] = {}
        answered: List[StreamPlan] = []
        for plan, line in pairs:
            current = self._lines.get(line)
            if not plan.accepted:
                if current is not None and not current.closed:
                    log.info("Call {call_id}: stream {label} removed by the SRC", call_id=self.call_id,
                             label=current.label)
                    self._close_slot(current)
                answered.append(plan)
                continue
            if line in fresh:
                slot = fresh[line]
                self._register(slot)
            else:
                slot = current
                plan = self._sticky_codec(slot, plan)
                self._apply_direction(slot, plan)
                slot.plan = plan
                if plan.remote_address and hasattr(slot.media, "set_remote"):
                    slot.media.set_remote(plan.remote_address)
            ports[plan.index] = slot.port
            answered.append(plan)
        offered_lines = {line for _, line in pairs}
        for line, slot in list(self._lines.items()):
            if line not in offered_lines and not slot.closed:
                self.tolerate("re-offer dropped m-lines instead of setting port 0")
                self._close_slot(slot)
        return ports, answered

    def _sticky_codec(self, slot: StreamSlot, plan: StreamPlan) -> StreamPlan:
        """Keep answering the codec a stream was opened with while the SRC still offers it
        (RFC 3264 lets us; the open media stream decodes what it was set up for)."""
        old = slot.plan.codec
        if old is None or plan.codec is None or _same_format(plan.codec, old):
            return plan
        for fmt in plan.formats:
            if _same_format(fmt, old):
                return replace(plan, codec=fmt, formats=(fmt, *[f for f in plan.formats if f is not fmt]))
        if not any(_same_format(plan.codec, f) for f in slot.formats):
            self.warn(f"Re-offer moved stream {slot.label} to {plan.codec.encoding}/"
                      f"{plan.codec.clock_rate}, which its open stream was not set up to decode")
        return plan

    def _open_slot(self, line: str, plan: StreamPlan, reopening: bool) -> StreamSlot:
        """Open the media for a new stream; registered later by :meth:`_register`."""
        label = plan.label if plan.label is not None else str(plan.index)
        suffix = safe_filename(label, 60)
        if reopening or self._path(suffix) in self._used_paths:
            n = 2
            while self._path(f"{suffix}_{n}") in self._used_paths or os.path.exists(self._path(f"{suffix}_{n}")):
                n += 1
            suffix = f"{suffix}_{n}"
        wav_path = self._path(suffix)
        spec = StreamSpec(
            call_id=self.call_id,
            label=label,
            index=plan.index,
            formats=tuple(plan.formats),
            wav_path=wav_path,
            telephone_event=plan.telephone_event,
            remote_address=plan.remote_address,
            rtcp_mux=plan.rtcp_mux,
            paused=not plan.receiving,
            srtp=self._srtp.get(plan.index, (None, None))[0],
        )
        try:
            media = self.manager.media.open_stream(spec, self, self.created)
        except Exception as e:  # ports exhausted, bind failure
            log.error("Call {call_id}: cannot open stream {label}: {error}", call_id=self.call_id,
                      label=label, error=e)
            raise CallRejected(503, "No RTP port available", headers=[("Retry-After", "5")])
        self._used_paths.add(wav_path)
        key = self._file_key(label, suffix, first=not reopening)
        return StreamSlot(key=key, label=label, index=plan.index, plan=plan, wav_path=wav_path,
                          media=media, port=media.port, paused_by_sdp=not plan.receiving,
                          held=_held(plan), line=line, formats=tuple(plan.formats),
                          srtp_offered=tuple(plan.crypto) if plan.index in self._srtp else (),
                          srtp_answer=self._srtp.get(plan.index, (None, None))[1])

    def _path(self, suffix: str) -> str:
        return f"{self.base_path}_{suffix}.wav"

    def _file_key(self, label: str, stem: str, first: bool) -> str:
        """The stream's key in ``files``: its label the first time, else its file stem."""
        taken = self._used_keys | _RESERVED_FILE_KEYS
        candidates = ([label] if first else []) + [stem]
        n = 2
        while all(c in taken for c in candidates):
            candidates = [f"{stem}#{n}"]
            n += 1
        key = next(c for c in candidates if c not in taken)
        self._used_keys.add(key)
        return key

    def _register(self, slot: StreamSlot) -> None:
        now = self.clock.seconds()
        if slot.paused_by_sdp:
            self._pause_started(slot, "sdp-inactive")
        elif slot.held:
            self._pause_started(slot, "hold")
        else:
            slot.expecting_since = now
        if self.api_paused and hasattr(slot.media, "pause"):
            slot.media.pause()
        self.slots[slot.key] = slot
        self._lines[slot.line] = slot
        self.files[slot.key] = slot.wav_path
        self._start_transcription(slot)
        if self.state == "active":
            self._emit("stream_started", self._stream_dict(slot))

    def _discard(self, slot: StreamSlot) -> None:
        """Undo an opening that the offer will not keep (another stream failed)."""
        self._used_paths.discard(slot.wav_path)
        self._used_keys.discard(slot.key)
        d = maybeDeferred(self.manager.media.close_stream, slot.media)
        d.addErrback(lambda f: log.failure("Call {call_id}: closing stream {label} failed", f,
                                           call_id=self.call_id, label=slot.label))

    def _apply_direction(self, slot: StreamSlot, plan: StreamPlan) -> None:
        """a=inactive pauses a stream (muted, RFC 7866 pause); c=0.0.0.0 marks it held
        (no RTP expected, but anything that still arrives is recorded); sendonly or
        sendrecv with a real address resumes it."""
        paused, held = not plan.receiving, _held(plan)
        if paused == slot.paused_by_sdp and held == slot.held:
            return
        if slot.paused_by_sdp or slot.held:
            self._pause_ended(slot)
        if paused:
            log.info("Call {call_id}: stream {label} paused by the SRC ({why})", call_id=self.call_id,
                     label=slot.label, why=plan.offered_direction)
            self._pause_started(slot, "sdp-inactive")
        elif held:
            log.info("Call {call_id}: stream {label} put on hold (c=0.0.0.0)", call_id=self.call_id,
                     label=slot.label)
            self._pause_started(slot, "hold")
        else:
            log.info("Call {call_id}: stream {label} resumed by the SRC", call_id=self.call_id,
                     label=slot.label)
            slot.expecting_since = self.clock.seconds()
        if slot.media is not None:
            if paused and not slot.paused_by_sdp:
                slot.media.pause()
            elif not paused and slot.paused_by_sdp and not self.api_paused:
                slot.media.resume()
        slot.paused_by_sdp, slot.held = paused, held

    def _pause_started(self, slot: Optional[StreamSlot], reason: str, *,
                       recording: bool = True, transcription: bool = True) -> None:
        self.pauses.append({"label": slot.label if slot else None,
                            "stream": slot.key if slot else None, "reason": reason,
                            "recording": recording, "transcription": transcription,
                            "start": self.clock.seconds(), "end": None})
        self._emit("paused", recording=recording, transcription=transcription, reason=reason,
                   leg=slot.label if slot else None)

    def _pause_ended(self, slot: Optional[StreamSlot], reason: Optional[str] = None) -> None:
        key = slot.key if slot else None
        for pause in reversed(self.pauses):
            if pause["stream"] == key and pause["end"] is None and reason in (None, pause["reason"]):
                pause["end"] = self.clock.seconds()
                if self.state == "active":
                    self._emit("resumed", recording=pause["recording"],
                               transcription=pause["transcription"], reason=pause["reason"],
                               leg=pause["label"], paused_seconds=pause["end"] - pause["start"])
                return

    # -- API pause/resume ----------------------------------------------------------
    @property
    def api_paused(self) -> bool:
        return self.recording_paused

    def pause(self, recording: bool = True, transcription: bool = True) -> None:
        """Operator pause. Recording: every stream is written as silence, so the
        timeline stays true (SDP pauses are kept apart). Transcription: audio is
        no longer sent to the speech engine."""
        if self.ended:
            return
        changed = False
        if recording and not self.recording_paused:
            self.recording_paused = changed = True
            self._pause_started(None, "api", recording=True, transcription=False)
            for slot in self.slots.values():
                if slot.media is not None and not slot.closed:
                    slot.media.pause()
        if transcription and not self.transcription_paused:
            self.transcription_paused = changed = True
            self._pause_started(None, "api-transcription", recording=False, transcription=True)
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
            self._pause_ended(None, "api")
            for slot in self.slots.values():
                if slot.media is not None and not slot.closed and not slot.paused_by_sdp:
                    slot.media.resume()
        if transcription and self.transcription_paused:
            self.transcription_paused = False
            changed = True
            self._pause_ended(None, "api-transcription")
        if changed:
            self.write_record()

    def _emit(self, name: str, *args, **kwargs) -> None:
        publisher = self.manager.events
        if publisher is not None:
            getattr(publisher, name)(self, *args, **kwargs)

    # -- media listener ----------------------------------------------------------
    def stream_first_packet(self, stream) -> None:
        pass

    def stream_dtmf(self, stream, event) -> None:
        """RFC 4733 digits: kept per call (API, record, events), never rendered into audio.
        Digits are not logged: they may be card numbers."""
        if len(self.dtmf) >= _MAX_NOTES * 5:
            return
        record = {
            "leg": stream.spec.label,
            "digit": event.digit,
            "at": iso(event.start),
            "offset": round(event.start - (self.started_at or self.created), 3),
            "duration": round(event.duration, 3),
            "end_seen": event.end_seen,
        }
        self.dtmf.append(record)
        self.manager.publish_dtmf(self, record)

    def stream_rtcp_bye(self, stream, bye) -> None:
        """RTCP BYE from the SRC ends that stream (not the call)."""
        for slot in self.slots.values():
            if slot.media is stream and not slot.closed:
                log.info("Call {call_id}: RTCP BYE on stream {label}; closing it",
                         call_id=self.call_id, label=slot.label)
                self._close_slot(slot, "rtcp-bye")
                self.write_record()
                return
    def last_activity(self) -> Optional[float]:
        """When RTP last arrived, or was last expected to start, over the streams
        expected to carry media; None if none are (so no RTP timeout runs)."""
        expecting = [s for s in self.slots.values() if s.expecting]
        if not expecting or self.api_paused:
            return None
        latest = self.started_at or self.created
        if self._api_resumed_at is not None:
            latest = max(latest, self._api_resumed_at)
        for slot in expecting:
            if slot.expecting_since is not None:
                latest = max(latest, slot.expecting_since)
            seen = slot.media.stats().get("last_packet_at")
            if seen is not None and seen > latest:
                latest = seen
        return latest

    # -- ending ------------------------------------------------------------------
    def end(self, reason: str) -> Deferred:
        """Close every stream, combine the legs, write the record. Idempotent.

        Whatever fails on the way (a stream, the combine, the record), the
        session still reaches ``ended`` and the manager forgets it.
        """
        if self._ending is not None:
            return self._ending
        self.end_reason = reason
        was_active = self.state == "active"
        self.state = "ending"
        now = self.clock.seconds()
        for pause in self.pauses:
            if pause["end"] is None:
                pause["end"] = now
        self._ending = d = maybeDeferred(self._close_all_streams)
        if was_active:
            d.addCallback(lambda _: self._combine())
        d.addErrback(lambda f: log.failure("Finalising call {call_id} failed", f, call_id=self.call_id))
        d.addBoth(self._ended, was_active)
        return d

    def _ended(self, _, was_active: bool) -> None:
        self.state = "ended"
        self.ended_at = self.clock.seconds()
        try:
            if was_active:
                self.write_transcript()
                self.write_record()
                log.info("Call {call_id} ended ({reason}); files: {files}", call_id=self.call_id,
                         reason=self.end_reason, files=sorted(self.files.values()))
        finally:
            try:
                self.manager.session_ended(self, was_active)
            except Exception:
                log.failure("Call {call_id}: manager bookkeeping after the end failed",
                            call_id=self.call_id)

    def _close_all_streams(self) -> Deferred:
        closing = [self._close_slot(slot) for slot in self.slots.values() if not slot.closed]
        return DeferredList(closing, consumeErrors=True) if closing else succeed(None)

    def _close_slot(self, slot: StreamSlot, reason: str = "removed") -> Deferred:
        slot.closed = True
        announce = self.state == "active"
        transcriber, slot.transcriber = slot.transcriber, None
        if slot.analyzer is not None:
            try:
                self._analyse(slot, slot.analyzer.flush())
            except Exception:
                log.failure("Call {call_id}: audio analysis of {label} failed at the end",
                            call_id=self.call_id, label=slot.label)
        if slot.paused_by_sdp or slot.held:
            self._pause_ended(slot)
        media = slot.media
        d = maybeDeferred(self.manager.media.close_stream, media)

        def keep(stats):
            slot.final_stats = stats if isinstance(stats, dict) and stats else _stats_of(media)
            return slot.final_stats

        def failed(failure):
            log.failure("Call {call_id}: closing stream {label} failed", failure,
                        call_id=self.call_id, label=slot.label)
            slot.final_stats = _stats_of(media)
            return slot.final_stats

        d.addCallbacks(keep, failed)
        if transcriber is not None:
            # after the last audio was flushed to it: the final results come out first
            def close_transcriber(stats):
                done = maybeDeferred(transcriber.close)
                done.addErrback(lambda f: log.failure("Call {call_id}: closing transcription of "
                                                      "{label} failed", f, call_id=self.call_id,
                                                      label=slot.label))
                return done.addCallback(lambda _: stats)
            d.addCallback(close_transcriber)
        if announce:
            def stopped(stats):
                self.stopped_announced.add(slot.key)
                self._emit("stream_stopped", self._stream_dict(slot), reason)
                return stats
            d.addCallback(stopped)
        return d

    # -- transcription -----------------------------------------------------------
    def _start_transcription(self, slot: StreamSlot) -> None:
        """Hand this stream's decoded audio to the analysis path (never the archive):
        live transcription (STT_ENABLED) and talk analysis (AUDIO_ANALYSIS_ENABLED)."""
        if slot.media is None or not hasattr(slot.media, "audio_sink"):
            return
        rate = _stats_of(slot.media).get("sample_rate") or 8000
        stt = self.manager.transcription
        leg = None
        if stt is not None:
            participant = _participant_brief(self.metadata.participant_for_label(slot.label))
            try:
                leg = stt.router.open_leg(self.call_id, slot.label, participant=participant,
                                          language=None, sample_rate=rate)
            except Exception:
                log.failure("Call {call_id}: could not start transcription of {label}; "
                            "recording continues", call_id=self.call_id, label=slot.label)
        slot.transcriber = leg
        if self.manager.settings.audio_analysis:
            from siprec.media.dsp.pipeline import LegConfig, LegProcessor
            slot.analyzer = LegProcessor(LegConfig(), name=slot.label)
        if leg is None and slot.analyzer is None:
            return

        def sink(label, pcm, sample_rate, offset):
            if self.recording_paused or slot.paused_by_sdp:
                return
            if pcm.ndim > 1:  # a stereo leg is analysed and transcribed as its mono mix
                pcm = pcm.astype(np.int32).mean(axis=1).astype(np.int16)
            if slot.analyzer is not None:
                self._analyse(slot, slot.analyzer.feed(pcm, sample_rate, offset))
            if leg is not None and not self.transcription_paused:
                leg.feed(pcm, sample_rate, offset)

        slot.media.audio_sink = sink

    def _analyse(self, slot: StreamSlot, output) -> None:
        slot.speech_segments.extend(output.segments)

    def analysis_view(self) -> Optional[dict]:
        """Talk figures per leg and the overtalk of the first two legs (VAD on the
        noise-reduced analysis copy; AUDIO_ANALYSIS_ENABLED)."""
        legs = [s for s in self._channel_slots() if s.analyzer is not None]
        if not legs:
            return None
        out: dict = {"legs": {}}
        for slot in legs:
            stats = slot.analyzer.stats()
            out["legs"][slot.label] = {
                "talk_seconds": round(stats.talk_seconds, 3),
                "silence_ratio": round(stats.silence_ratio, 4),
                "noise_level_dbfs": None if stats.noise_level_dbfs is None
                else round(stats.noise_level_dbfs, 1),
                "speech_segments": stats.segments,
            }
        if len(legs) >= 2:
            from siprec.media.dsp.vad import overlap_samples
            a, b = legs[0].speech_segments, legs[1].speech_segments
            if a and b and a[0].sample_rate == b[0].sample_rate:
                out["overtalk_seconds"] = round(overlap_samples(a, b) / a[0].sample_rate, 3)
        return out

    def transcript_received(self, result) -> None:
        """A live (or post-call) result from the STT router for one of our legs."""
        data = result.as_dict()
        data["segment_id"] = result.segment_id
        if result.is_final:
            self.partials.pop(result.leg, None)
            if len(self.transcript) < _MAX_SEGMENTS:
                self.transcript.append(data)
        else:
            self.partials[result.leg] = data
        self._emit("transcript", result)
        if result.is_final and self.state == "ended":
            self.write_transcript()  # post-call result after the files were written

    def transcript_view(self) -> dict:
        segments = sorted(self.transcript, key=lambda d: (d.get("start") or 0.0, d.get("leg") or ""))
        legs = {}
        for slot in self.slots.values():
            leg = slot.transcriber
            legs[slot.label] = leg.status() if leg is not None and hasattr(leg, "status") else (
                {"state": "closed"} if slot.closed else {"state": "off"})
        return {"id": self.id, "call_id": self.call_id, "state": self.state,
                "segments": segments, "partials": list(self.partials.values()), "legs": legs}

    def write_transcript(self) -> None:
        """``<Call-ID>.transcript.json`` next to the recordings, once there is text."""
        if not self.transcript:
            return
        path = self.base_path + ".transcript.json"
        view = self.transcript_view()
        view.pop("partials", None)
        view["schema"] = "siprec.transcript/1"
        self.manager.write_file(path, json.dumps(view, indent=2, default=str).encode())
        self.files["transcript"] = path

    def _stream_dict(self, slot: StreamSlot) -> dict:
        return next((s for s in self._stream_dicts() if s["key"] == slot.key), {"label": slot.label})

    def _combine(self) -> Deferred:
        """One channel per leg (two for stereo) in the call's fixed channel order."""
        if not self.manager.settings.combine_legs:
            return succeed(None)
        legs = self._channel_slots()
        inputs: List[Tuple[Optional[str], int]] = []
        layout: Dict[str, Tuple[int, int]] = {}
        channel = 0
        for slot in legs:
            stats = slot.final_stats or {}
            if stats.get("packets") and os.path.exists(slot.wav_path):
                inputs.append((slot.wav_path, int(stats.get("start_offset_samples") or 0)))
                count = int(stats.get("channels") or _plan_channels(slot))
            else:
                inputs.append((None, 0))  # a silent channel keeps the channel order stable
                count = 1
            layout[slot.key] = (channel, count)
            channel += count
        if not any(path for path, _ in inputs):
            return succeed(None)
        out = self.base_path + ".wav"
        rate = self.manager.combine_rate([s.plan for s in legs])
        log.info("Call {call_id}: combining {n} leg(s) into {out}", call_id=self.call_id,
                 n=len(inputs), out=out)
        d = maybeDeferred(self.manager.run_blocking, self.manager.combine, inputs, out, rate)

        def done(_):
            self.files["combined"] = out
            self._layout = layout

        d.addCallback(done)
        return d

    # -- channel order -------------------------------------------------------------
    def _settle_channels(self) -> None:
        """Fix the combined file's channel order: metadata order (caller first), then
        m-line order, taken when the call starts. Streams added later go to the end, so
        a hold or a later metadata update never moves a channel. Only a call that
        started before any metadata named its streams is ordered once more, when
        such metadata first arrives."""
        if self.state == "setup":
            return
        known = set(self._channel_order)
        if not self._order_from_metadata:
            labels = self.metadata.ordered_labels()
            ranked = {label: i for i, label in enumerate(labels)}
            if any(slot.label in ranked for slot in self.slots.values()):
                self._order_from_metadata = True
            position = {key: i for i, key in enumerate(self._channel_order)}
            slots = sorted(self.slots.values(),
                           key=lambda s: (ranked.get(s.label, len(labels)),
                                          position.get(s.key, len(position)), s.index))
            self._channel_order = [s.key for s in slots]
            return
        self._channel_order += [key for key in self.slots if key not in known]

    def _channel_slots(self) -> List[StreamSlot]:
        keys = self._channel_order + [k for k in self.slots if k not in set(self._channel_order)]
        return [self.slots[k] for k in keys if k in self.slots]

    # -- the call record -----------------------------------------------------
    def _participants(self) -> List[dict]:
        model = self.metadata.to_dict() if self.metadata.documents_applied else {}
        return model.get("participants", [])

    def _stream_dicts(self) -> List[dict]:
        out = []
        channel = 0
        for slot in self._channel_slots():
            stats = slot.final_stats if slot.closed and slot.final_stats else _stats_of(slot.media)
            participant = _participant_brief(self.metadata.participant_for_label(slot.label))
            if participant is not None:
                slot.participant = participant
            if self._layout is not None and slot.key in self._layout:
                first, count = self._layout[slot.key]
            else:
                first, count = channel, _plan_channels(slot)
            channel = first + count
            out.append({
                "label": slot.label,
                "key": slot.key,
                "index": slot.index,
                "codec": slot.codec,
                "port": slot.port,
                "state": _slot_state(slot, self.api_paused),
                "direction": slot.plan.offered_direction,
                "remote_address": list(slot.plan.remote_address) if slot.plan.remote_address else None,
                "file": slot.wav_path,
                "channel": first,
                "channels": count,
                "participant": slot.participant,
                "packets": stats.get("packets", 0),
                "bytes": stats.get("bytes", 0),
                "srtp": bool(slot.srtp_answer),
                "quality": stats.get("quality"),
                "stats": _jsonable({k: v for k, v in stats.items() if k != "quality"}),
            })
        return out

    def summary(self) -> dict:
        return {
            "id": self.id,
            "call_id": self.call_id,
            "state": self.state,
            "paused": self.recording_paused or self.transcription_paused,
            "recording_paused": self.recording_paused,
            "transcription_paused": self.transcription_paused,
            "started_at": iso(self.started_at or self.created),
            "ended_at": iso(self.ended_at),
            "end_reason": self.end_reason,
            "streams": self._stream_dicts(),
            "participants": self._participants(),
            "group_id": self.metadata.group_id() if self.metadata.documents_applied else None,
        }

    def detail(self) -> dict:
        out = self.summary()
        out.update({
            "sip": self.sip_info,
            "metadata": self.metadata.to_dict() if self.metadata.documents_applied else None,
            "metadata_documents": len(self.metadata_documents),
            "pauses": [{**p, "start": iso(p["start"]), "end": iso(p["end"])} for p in self.pauses],
            "files": dict(self.files),
            "dtmf": list(self.dtmf),
            "analysis": self.analysis_view(),
            "tolerances": list(self.tolerances),
            "warnings": list(self.warnings),
        })
        return out

    def write_record(self) -> None:
        """``<Call-ID>.json``: the call record next to the recordings. Never raises:
        a record that cannot be written must not cost the call."""
        try:
            record = self.detail()
            record["schema"] = "siprec.call-record/1"
            data = json.dumps(record, indent=2, sort_keys=False, default=str).encode()
            self.manager.write_file(self.base_path + ".json", data)
        except Exception:
            log.failure("Call {call_id}: writing the call record failed", call_id=self.call_id)

    def _write_metadata_log(self) -> None:
        """``<Call-ID>.metadata.xml``: every document, verbatim, in arrival order.

        Each document is the text of a ``<document>`` element: CDATA, with
        ``]]>`` and carriage returns (which XML parsers would otherwise turn
        into line feeds) written outside it, so a parser reads back exactly
        what was received. A document that is not UTF-8 text XML can carry
        is kept as base64 (``encoding="base64"``).
        """
        path = self.base_path + ".metadata.xml"
        try:
            parts = ['<?xml version="1.0" encoding="UTF-8"?>',
                     f'<siprec-metadata-log call-id="{_xml_attr(self.call_id)}">']
            for n, doc in enumerate(self.metadata_documents, 1):
                attributes = (f'seq="{n}" received="{iso(doc["received_at"])}" '
                              f'source="{_xml_attr(doc["source"])}"')
                text = _xml_text(doc["body"])
                if text is None:
                    encoded = base64.b64encode(doc["body"]).decode("ascii")
                    parts.append(f'<document {attributes} encoding="base64">{encoded}</document>')
                else:
                    parts.append(f"<document {attributes}>{_cdata(text)}</document>")
            parts.append("</siprec-metadata-log>\n")
            self.manager.write_file(path, "\n".join(parts).encode("utf-8"))
            self.files["metadata"] = path
        except Exception:
            log.failure("Call {call_id}: writing the metadata log failed", call_id=self.call_id)


def _held(plan: StreamPlan) -> bool:
    return plan.on_hold and plan.receiving


def _same_format(a: PayloadFormat, b: PayloadFormat) -> bool:
    return (a.payload_type, a.encoding, a.clock_rate, a.channels) == \
        (b.payload_type, b.encoding, b.clock_rate, b.channels)


def _plan_channels(slot: StreamSlot) -> int:
    return slot.plan.codec.channels if slot.plan.codec is not None else 1


def _stats_of(media) -> dict:
    if media is None:
        return {}
    try:
        stats = media.stats()
    except Exception:
        log.failure("Reading stream statistics failed")
        return {}
    return stats if isinstance(stats, dict) else {}


def _slot_state(slot: StreamSlot, api_paused: bool) -> str:
    if slot.closed:
        return "closed"
    if slot.paused_by_sdp or api_paused:
        return "paused"
    return "held" if slot.held else "active"


def _participant_brief(participant) -> Optional[dict]:
    if participant is None:
        return None
    return {"id": participant.participant_id, "aor": participant.aor, "name": participant.name}


def _merge_plan(old: StreamPlan, new: StreamPlan) -> StreamPlan:
    return replace(old, offered_direction=new.offered_direction,
                   answer_direction=new.answer_direction,
                   remote_address=new.remote_address or old.remote_address,
                   on_hold=new.on_hold)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")[:200]


def _xml_attr(text: str) -> str:
    """An attribute value that survives parsing unchanged (what XML can carry of it)."""
    text = _NOT_XML.sub("\ufffd", text)
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;").replace("\t", "&#9;").replace("\n", "&#10;")
            .replace("\r", "&#13;"))


def _xml_text(body: bytes) -> Optional[str]:
    """The document as text XML can carry verbatim, or None (then it goes as base64)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _NOT_XML.search(text) else text


def _cdata(text: str) -> str:
    inner = text.replace("]]>", "]]]]><![CDATA[>").replace("\r", "]]>&#13;<![CDATA[")
    return f"<![CDATA[{inner}]]>"


def _jsonable(stats: dict) -> dict:
    out = {}
    for key, value in stats.items():
        if isinstance(value, (tuple, list)):
            value = list(value)
        elif isinstance(value, float) and key.endswith("_at"):
            value = iso(value)
        out[key] = value
    return out

"""RecordingSession: the one owner of a recorded call's state.

It turns offers and metadata into streams (via the media service), keeps
the RFC 7865 model, pause intervals and the call record, and finalises
the files. Media and signalling report to it; it never reaches into them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence

from twisted.internet import threads
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger

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
from siprec.sip.uas import CallRejected

log = Logger()

__all__ = ["RecordingSession", "StreamSlot", "safe_filename", "iso"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")


def safe_filename(text: str, limit: int = 120) -> str:
    """A Call-ID or label as a file-name component: no separators, no dot-dot."""
    cleaned = _UNSAFE.sub("_", text.strip()) or "call"
    cleaned = cleaned.lstrip(".") or "call"
    return cleaned[:limit]


def iso(seconds: Optional[float]) -> Optional[str]:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class StreamSlot:
    """One recorded stream (an m-line) across re-offers."""

    key: str
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

    @property
    def codec(self) -> Optional[str]:
        codec = self.plan.codec
        if codec is None:
            return None
        channels = f"/{codec.channels}" if codec.channels > 1 else ""
        return f"{codec.encoding}/{codec.clock_rate}{channels}"


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
        self.slots: Dict[str, StreamSlot] = {}
        self.pauses: List[dict] = []
        self.api_paused = False
        self.dialog = None
        self.files: Dict[str, str] = {}
        self._origin = make_origin(manager.settings.media_address,
                                   secrets.randbelow(2**31 - 1) + 1, 0)
        self._our_offer: Optional[SessionDescription] = None
        self._ending: Optional[Deferred] = None
        self._timeout_warned = False
        base = safe_filename(call_id)
        self.base_path = os.path.join(manager.settings.recording_dir, base)

    # -- identity ----------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.state == "ended" or self._ending is not None

    def attach_dialog(self, dialog) -> None:
        self.dialog = dialog

    def tolerate(self, note: str) -> None:
        """Log each accepted SRC quirk once per call, for the operator's SBC vendor."""
        if note in self.tolerances:
            return
        self.tolerances.append(note)
        log.info("Call {call_id}: tolerated: {note}", call_id=self.call_id, note=note)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        log.warn("Call {call_id}: {text}", call_id=self.call_id, text=text)

    # -- metadata ----------------------------------------------------------------
    def metadata_received(self, documents: Sequence[bytes], source: str = "") -> None:
        for raw in documents:
            self.metadata_documents.append({"received_at": self.clock.seconds(),
                                            "source": source, "body": raw})
            try:
                doc = parse_metadata(raw)
            except MetadataError as e:
                # A broken document must not cost the recording.
                self.warn(f"Unusable rs-metadata document ({e}); recording continues")
                if self.manager.metrics:
                    self.manager.metrics.metadata_warning()
                continue
            for note in doc.tolerances:
                self.tolerate(f"metadata: {note}")
            self.metadata.apply(doc)
        if documents:
            self._write_metadata_log()
            self._relabel_participants()

    def _relabel_participants(self) -> None:
        """Participants may arrive after streams (partial updates)."""
        if self.state == "active":
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
        try:
            ports = self._reconcile(plans)
        except CallRejected:
            if initial:
                self._close_all_streams()
            raise
        self._origin = self._origin.bumped() if not initial else self._origin
        answer = build_answer(offer, plans, ports, settings.media_address, self._origin)
        if initial:
            self.state = "active"
            self.started_at = self.clock.seconds()
            self.manager.session_started(self)
            log.info("Recording call {call_id} (session {id}): {n} stream(s) {labels}",
                     call_id=self.call_id, id=self.id, n=len(ports),
                     labels=[s.label for s in self.slots.values() if not s.closed])
        self.write_record()
        return answer

    def _make_offer(self) -> SessionDescription:
        """Our recvonly offer for a re-INVITE (or INVITE) that came without SDP."""
        live = [s for s in self.slots.values() if not s.closed and s.plan.accepted]
        if not live:
            raise CallRejected(488, "INVITE without SDP and no stream to offer")
        streams = [OfferStream(s.label, s.port, s.plan.formats, s.plan.telephone_event) for s in live]
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
            self._apply_direction(slot, plan)
            slot.plan = _merge_plan(slot.plan, plan)
        self._our_offer = None
        self.write_record()

    def _reconcile(self, plans: Sequence[StreamPlan]) -> Dict[int, int]:
        ports: Dict[int, int] = {}
        seen = set()
        for plan in plans:
            key = plan.label if plan.label is not None else f"m{plan.index}"
            if key in seen:
                key = f"{key}-m{plan.index}"
            seen.add(key)
            slot = self.slots.get(key)
            if not plan.accepted:
                if slot is not None and not slot.closed:
                    log.info("Call {call_id}: stream {label} removed by the SRC", call_id=self.call_id,
                             label=slot.label)
                    self._close_slot(slot)
                continue
            if slot is None or slot.closed:
                slot = self._open_slot(key, plan, previous=slot)
            else:
                self._apply_direction(slot, plan)
                slot.plan = plan
                if plan.remote_address and hasattr(slot.media, "set_remote"):
                    slot.media.set_remote(plan.remote_address)
            ports[plan.index] = slot.port
        for key, slot in self.slots.items():
            if key not in seen and not slot.closed:
                self.tolerate("re-offer dropped m-lines instead of setting port 0")
                self._close_slot(slot)
        return ports

    def _open_slot(self, key: str, plan: StreamPlan, previous: Optional[StreamSlot]) -> StreamSlot:
        label = plan.label if plan.label is not None else str(plan.index)
        name = f"{self.base_path}_{safe_filename(label, 60)}"
        if previous is not None:
            n = 2
            while os.path.exists(f"{name}_{n}.wav"):
                n += 1
            name = f"{name}_{n}"
        wav_path = name + ".wav"
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
        )
        try:
            media = self.manager.media.open_stream(spec, self, self.created)
        except Exception as e:  # ports exhausted, bind failure
            log.error("Call {call_id}: cannot open stream {label}: {error}", call_id=self.call_id,
                      label=label, error=e)
            raise CallRejected(503, "No RTP port available", headers=[("Retry-After", "5")])
        slot = StreamSlot(key=key, label=label, index=plan.index, plan=plan, wav_path=wav_path,
                          media=media, port=media.port, paused_by_sdp=not plan.receiving,
                          held=_held(plan))
        if slot.paused_by_sdp:
            self._pause_started(slot, "sdp-inactive")
        elif slot.held:
            self._pause_started(slot, "hold")
        if self.api_paused and hasattr(media, "pause"):
            media.pause()
        self.slots[key] = slot
        self.files[label] = wav_path
        return slot

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
        if slot.media is not None:
            if paused and not slot.paused_by_sdp:
                slot.media.pause()
            elif not paused and slot.paused_by_sdp and not self.api_paused:
                slot.media.resume()
        slot.paused_by_sdp, slot.held = paused, held

    def _pause_started(self, slot: Optional[StreamSlot], reason: str) -> None:
        self.pauses.append({"label": slot.label if slot else None, "reason": reason,
                            "start": self.clock.seconds(), "end": None})

    def _pause_ended(self, slot: Optional[StreamSlot]) -> None:
        label = slot.label if slot else None
        for pause in reversed(self.pauses):
            if pause["label"] == label and pause["end"] is None:
                pause["end"] = self.clock.seconds()
                return

    # -- API pause/resume ----------------------------------------------------------
    def pause(self) -> None:
        if self.api_paused or self.ended:
            return
        self.api_paused = True
        self._pause_started(None, "api")
        for slot in self.slots.values():
            if slot.media is not None and not slot.closed:
                slot.media.pause()

    def resume(self) -> None:
        if not self.api_paused or self.ended:
            return
        self.api_paused = False
        self._pause_ended(None)
        for slot in self.slots.values():
            if slot.media is not None and not slot.closed and not slot.paused_by_sdp:
                slot.media.resume()

    # -- media listener ----------------------------------------------------------
    def stream_first_packet(self, stream) -> None:
        pass

    def last_activity(self) -> Optional[float]:
        """Newest RTP arrival over streams expected to carry media; None if none are."""
        expecting = [s for s in self.slots.values()
                     if not s.closed and not s.paused_by_sdp and not s.held and s.media is not None]
        if not expecting or self.api_paused:
            return None
        latest = self.started_at or self.created
        for slot in expecting:
            stats = slot.media.stats()
            seen = stats.get("last_packet_at")
            if seen is not None and seen > latest:
                latest = seen
        return latest

    # -- ending ------------------------------------------------------------------
    def end(self, reason: str) -> Deferred:
        """Close every stream, combine the legs, write the record. Idempotent."""
        if self._ending is not None:
            return self._ending
        self.end_reason = reason
        was_active = self.state == "active"
        self.state = "ending"
        if self.api_paused:
            self._pause_ended(None)
        for pause in self.pauses:
            if pause["end"] is None:
                pause["end"] = self.clock.seconds()
        d = self._close_all_streams()
        if was_active:
            d.addCallback(lambda _: self._combine())
        d.addErrback(lambda f: log.failure("Finalising call {call_id} failed", f, call_id=self.call_id))
        d.addBoth(self._ended, was_active)
        self._ending = d
        return d

    def _ended(self, _, was_active: bool) -> None:
        self.state = "ended"
        self.ended_at = self.clock.seconds()
        if was_active:
            self.write_record()
            log.info("Call {call_id} ended ({reason}); files: {files}", call_id=self.call_id,
                     reason=self.end_reason, files=sorted(self.files.values()))
        self.manager.session_ended(self, was_active)

    def _close_all_streams(self) -> Deferred:
        closing = [self._close_slot(slot) for slot in self.slots.values() if not slot.closed]
        return DeferredList(closing, consumeErrors=True) if closing else succeed(None)

    def _close_slot(self, slot: StreamSlot) -> Deferred:
        slot.closed = True
        if slot.paused_by_sdp or slot.held:
            self._pause_ended(slot)
        media = slot.media
        d = maybeDeferred(self.manager.media.close_stream, media)

        def keep(stats):
            slot.final_stats = stats if isinstance(stats, dict) else media.stats()
            return slot.final_stats

        d.addCallback(keep)
        return d

    def _combine(self) -> Deferred:
        if not self.manager.settings.combine_legs:
            return succeed(None)
        legs = self._ordered_slots()
        inputs = []
        for slot in legs:
            stats = slot.final_stats or {}
            if os.path.exists(slot.wav_path) and stats.get("packets"):
                inputs.append((slot.wav_path, int(stats.get("start_offset_samples") or 0)))
            else:
                inputs.append((None, 0))  # a silent channel keeps the channel order stable
        if not any(path for path, _ in inputs):
            return succeed(None)
        out = self.base_path + ".wav"
        rate = self.manager.combine_rate([s.plan for s in legs])
        log.info("Call {call_id}: combining {n} leg(s) into {out}", call_id=self.call_id,
                 n=len(inputs), out=out)
        d = threads.deferToThreadPool(self.manager.reactor, self.manager.threadpool,
                                      self.manager.combine, inputs, out, rate)

        def done(_):
            self.files["combined"] = out
            self._channels = [s.label for s in legs]

        d.addCallback(done)
        return d

    def _ordered_slots(self) -> List[StreamSlot]:
        """Caller first (metadata order), then the rest in m-line order."""
        slots = sorted(self.slots.values(), key=lambda s: (s.index, s.key))
        order = self.metadata.ordered_labels()
        ranked = {label: i for i, label in enumerate(order)}
        return sorted(slots, key=lambda s: (ranked.get(s.label, len(order)), s.index))

    # -- the call record -----------------------------------------------------
    def _participants(self) -> List[dict]:
        model = self.metadata.to_dict() if self.metadata.documents_applied else {}
        return model.get("participants", [])

    def _stream_dicts(self) -> List[dict]:
        out = []
        ordered = self._ordered_slots()
        channel = 0
        for slot in ordered:
            stats = slot.final_stats if slot.closed and slot.final_stats else (
                slot.media.stats() if slot.media is not None else {})
            participant = self.metadata.participant_for_label(slot.label)
            channels = slot.plan.codec.channels if slot.plan.codec else 1
            out.append({
                "label": slot.label,
                "index": slot.index,
                "codec": slot.codec,
                "port": slot.port,
                "state": _slot_state(slot, self.api_paused),
                "direction": slot.plan.offered_direction,
                "remote_address": list(slot.plan.remote_address) if slot.plan.remote_address else None,
                "file": slot.wav_path,
                "channel": channel,
                "participant": _participant_brief(participant),
                "packets": stats.get("packets", 0),
                "bytes": stats.get("bytes", 0),
                "stats": _jsonable(stats),
            })
            channel += channels
        return out

    def summary(self) -> dict:
        return {
            "id": self.id,
            "call_id": self.call_id,
            "state": self.state,
            "paused": self.api_paused,
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
            "tolerances": list(self.tolerances),
            "warnings": list(self.warnings),
        })
        return out

    def write_record(self) -> None:
        """``<Call-ID>.json``: the call record next to the recordings."""
        record = self.detail()
        record["schema"] = "siprec.call-record/1"
        self.manager.write_file(self.base_path + ".json",
                                json.dumps(record, indent=2, sort_keys=False, default=str).encode())

    def _write_metadata_log(self) -> None:
        """``<Call-ID>.metadata.xml``: every document, verbatim, in arrival order."""
        parts = ['<?xml version="1.0" encoding="UTF-8"?>',
                 f'<siprec-metadata-log call-id="{_xml_attr(self.call_id)}">']
        for n, doc in enumerate(self.metadata_documents, 1):
            text = doc["body"].decode("utf-8", errors="replace")
            text = re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", text)
            cdata = text.replace("]]>", "]]]]><![CDATA[>")
            parts.append(f'<document seq="{n}" received="{iso(doc["received_at"])}" '
                         f'source="{_xml_attr(doc["source"])}"><![CDATA[{cdata}]]></document>')
        parts.append("</siprec-metadata-log>\n")
        self.manager.write_file(self.base_path + ".metadata.xml", "\n".join(parts).encode("utf-8"))
        self.files["metadata"] = self.base_path + ".metadata.xml"


def _held(plan: StreamPlan) -> bool:
    return plan.on_hold and plan.receiving


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
    from dataclasses import replace
    return replace(old, offered_direction=new.offered_direction,
                   answer_direction=new.answer_direction,
                   remote_address=new.remote_address or old.remote_address,
                   on_hold=new.on_hold)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")[:200]


def _xml_attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def _jsonable(stats: dict) -> dict:
    out = {}
    for key, value in stats.items():
        if isinstance(value, (tuple, list)):
            value = list(value)
        elif isinstance(value, float) and key.endswith("_at"):
            value = iso(value)
        out[key] = value
    return out

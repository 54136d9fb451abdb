"""The legs of one call and their media: opened all or nothing, changed, closed.

:mod:`streams` says what an offer changes; this module does it through the
media service: it opens a stream per new leg (or continues a leg's file
when the SRC offers its label again), applies a=inactive and hold, closes
removed legs and keeps each piece's final counters. What the call makes
of that (feeds, events, the record) stays with the session, which hears
of it through :class:`LegOwner`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Protocol, Tuple

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger

from siprec.media.spec import LegContinuation, StreamSpec
from siprec.recording.files import RecordingFiles, safe_filename
from siprec.recording.negotiation import SrtpChoice, sticky_codec
from siprec.recording.pauses import PauseLog
from siprec.recording.streams import Changes, StreamSlot, held, line_key
from siprec.sip.errors import CallRejected
from siprec.sip.offer_answer import StreamPlan

log = Logger()

__all__ = ["Legs", "LegOwner", "Opened"]


class LegOwner(Protocol):
    """What the legs tell their call, and ask of it."""

    recording_paused: bool

    def tolerate(self, note: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def leg_started(self, slot: StreamSlot) -> None: ...  # media open (new or back)
    def leg_closed(self, slot: StreamSlot, reason: str) -> None: ...  # its file piece is final


@dataclass
class Opened:
    """Media opened for an offer, not yet part of the call."""

    fresh: List[StreamSlot] = field(default_factory=list)
    back: List[Tuple[StreamSlot, object, StreamPlan]] = field(default_factory=list)


class Legs:
    def __init__(self, owner: LegOwner, call_id: str, media, files: RecordingFiles,
                 clock, call_start: float, pause_log: PauseLog, on_event) -> None:
        self.owner = owner
        self.call_id = call_id
        self.media = media
        self.files = files
        self.clock = clock
        self.call_start = call_start
        self.pause_log = pause_log
        self.on_event = on_event
        self.slots: Dict[str, StreamSlot] = {}  # every leg of the call, in opening order

    # -- an offer ----------------------------------------------------------------
    def open(self, changes: Changes, srtp: SrtpChoice, base_path: str,
             deliver_audio: bool) -> Opened:
        """Open media for every leg the offer starts or brings back.

        All or nothing: when one cannot be opened (503), those just opened
        are closed again and the files they created removed; the call is
        left exactly as it was.
        """
        opened = Opened()
        try:
            for plan in changes.open:
                slot = self._new_slot(plan, base_path, opened.fresh)
                slot.media = self._open_media(slot, plan, srtp, None, deliver_audio)
                opened.fresh.append(slot)
            for slot, plan in changes.reopen:
                continuation = LegContinuation.from_stats(slot.final_stats())
                handle = self._open_media(slot, plan, srtp, continuation, deliver_audio)
                opened.back.append((slot, handle, plan))
        except CallRejected:
            for slot in opened.fresh:
                self._discard(slot.media, slot.wav_path)
                slot.media = None
            for _, handle, _ in opened.back:
                self._discard(handle, None)
            raise
        return opened

    def apply(self, changes: Changes, opened: Opened, srtp: SrtpChoice) -> None:
        """The offer is accepted: remove, update and add legs as it says."""
        for slot in changes.remove:
            log.info("Call {call_id}: stream {label} removed by the SRC", call_id=self.call_id,
                     label=slot.label)
            self.remove(slot, "removed")
        if changes.dropped:
            self.owner.tolerate("re-offer dropped m-lines instead of setting port 0")
            for slot in changes.dropped:
                self.remove(slot, "removed")
        for slot, plan in changes.update:
            plan, warning = sticky_codec(slot, plan)
            if warning:
                self.owner.warn(warning)
            self.apply_direction(slot, plan)
            slot.plan = plan
            slot.index = plan.index
            if plan.remote_address:
                slot.media.set_remote(plan.remote_address)
        for slot, handle, plan in opened.back:
            log.info("Call {call_id}: stream {label} offered again; continuing its file",
                     call_id=self.call_id, label=slot.label)
            self._attach(slot, handle, plan, srtp)
        for slot in opened.fresh:
            self._attach(slot, slot.media, slot.plan, srtp)
            self.slots[slot.key] = slot
        for slot in [s for s, _, _ in opened.back] + opened.fresh:
            self.owner.leg_started(slot)

    def answered(self, plans: List[StreamPlan]) -> Tuple[List[StreamPlan], Dict[int, int]]:
        """What the answer names per m-line (an open leg keeps its codec), and the ports."""
        answered = [self.slots[line_key(p)].plan if p.accepted else p for p in plans]
        ports = {p.index: self.slots[line_key(p)].port for p in plans if p.accepted}
        return answered, ports

    def _new_slot(self, plan: StreamPlan, base_path: str,
                  opening: List[StreamSlot]) -> StreamSlot:
        label = plan.label if plan.label is not None else str(plan.index)
        stem = f"{base_path}_{safe_filename(label, 60)}"
        taken = {s.wav_path for s in [*self.slots.values(), *opening]}
        wav_path, n = f"{stem}.wav", 2
        while wav_path in taken:  # two labels sanitised to the same name
            wav_path, n = f"{stem}_{n}.wav", n + 1
        return StreamSlot(key=line_key(plan), label=label, index=plan.index, plan=plan,
                          wav_path=wav_path)

    def _open_media(self, slot: StreamSlot, plan: StreamPlan, srtp: SrtpChoice,
                    continuation: Optional[LegContinuation], deliver_audio: bool):
        spec = StreamSpec(
            call_id=self.call_id,
            label=slot.label,
            index=plan.index,
            formats=tuple(plan.formats),
            wav_path=slot.wav_path,
            telephone_event=plan.telephone_event,
            remote_address=plan.remote_address,
            rtcp_mux=plan.rtcp_mux,
            paused=not plan.receiving or self.owner.recording_paused,
            srtp=srtp.srtp_keys(plan.index),
            continue_from=continuation,
        )
        try:
            return self.media.open_stream(spec, self.on_event, self.call_start,
                                          deliver_audio=deliver_audio)
        except Exception as e:  # ports exhausted, bind failure
            log.error("Call {call_id}: cannot open stream {label}: {error}", call_id=self.call_id,
                      label=slot.label, error=e)
            raise CallRejected(503, "No RTP port available", headers=[("Retry-After", "5")])

    def _attach(self, slot: StreamSlot, handle, plan: StreamPlan, srtp: SrtpChoice) -> None:
        slot.media = handle
        slot.port = handle.port
        slot.leg_channels = handle.stats().get("channels") or slot.leg_channels
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
            d.addCallback(lambda _: self.files.remove([new_file]))
            self.files.track(d)  # so that RecordingFiles.idle() waits for the removal
        d.addErrback(lambda f: log.failure("Call {call_id}: closing a stream failed", f,
                                           call_id=self.call_id))

    # -- directions ----------------------------------------------------------------
    def apply_direction(self, slot: StreamSlot, plan: StreamPlan) -> None:
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
        elif not paused and slot.paused_by_sdp and not self.owner.recording_paused:
            slot.media.resume()
        slot.paused_by_sdp, slot.held = paused, on_hold

    def pause_all(self) -> None:
        for slot in self.slots.values():
            if slot.media is not None:
                slot.media.pause()

    def resume_all(self) -> None:
        """Operator resume; legs the SRC paused with a=inactive stay paused."""
        for slot in self.slots.values():
            if slot.media is not None and not slot.paused_by_sdp:
                slot.media.resume()

    # -- closing ---------------------------------------------------------------------
    def remove(self, slot: StreamSlot, reason: str) -> Deferred:
        """The SRC removed the stream (port 0, RTCP BYE): the leg may come back."""
        slot.removed = True
        return self.close(slot, reason)

    def close(self, slot: StreamSlot, reason: str) -> Deferred:
        """Close the leg's media; fires when its file piece is final."""
        handle, slot.media = slot.media, None
        if handle is None:
            return succeed(None)
        if slot.paused_by_sdp or slot.held:
            self.pause_log.end(slot.key)
        slot.paused_by_sdp = slot.held = False
        d = maybeDeferred(handle.close)

        def keep(stats):
            if not isinstance(stats, dict) or not stats:
                stats = handle.stats()
            slot.pieces.append(stats)
            for note in stats.get("tolerances") or ():
                self.owner.tolerate(f"stream {slot.label}: {note}")

        def failed(failure):
            log.failure("Call {call_id}: closing stream {label} failed", failure,
                        call_id=self.call_id, label=slot.label)
            slot.pieces.append(handle.stats())

        d.addCallbacks(keep, failed)
        d.addCallback(lambda _: self.owner.leg_closed(slot, reason))
        return d

    def close_all(self) -> Deferred:
        closing = [self.close(slot, "ended") for slot in self.slots.values()
                   if slot.media is not None]
        return DeferredList(closing, consumeErrors=True) if closing else succeed(None)

    # -- queries -------------------------------------------------------------------
    def by_label(self, label: str) -> Optional[StreamSlot]:
        for slot in self.slots.values():
            if slot.label == label:
                return slot
        return None

    def last_activity(self, floor: float) -> Optional[float]:
        """When RTP last arrived, or was last expected to start (not before
        ``floor``), over the legs expected to carry media; None if none are."""
        expecting = [s for s in self.slots.values() if s.expecting]
        if not expecting:
            return None
        latest = floor
        for slot in expecting:
            if slot.expecting_since is not None:
                latest = max(latest, slot.expecting_since)
            seen = slot.media.last_packet_at
            if seen is not None and seen > latest:
                latest = seen
        return latest

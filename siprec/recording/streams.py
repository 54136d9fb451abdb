"""The streams of one call, and how an offer changes them (pure).

A SIPREC stream is identified by its ``a=label`` for the whole call
(RFC 7866 §8.1.1): removed by a re-offer (port 0, or its m-line dropped)
and offered again later, it is the same leg, written to the same file and
the same channel of the combined recording. Streams without a label (a
plain call) are identified by their m-line position.

:func:`plan_changes` checks an offer and says what it would change; it
touches nothing, so a refused offer leaves the call exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from siprec.media.spec import PayloadFormat
from siprec.sip.errors import CallRejected
from siprec.sip.offer_answer import StreamPlan

__all__ = ["StreamSlot", "Changes", "plan_changes", "line_key", "held",
           "aggregate_stats", "COUNTERS"]

#: Stream counters that add up when a leg was received in several pieces.
COUNTERS = ("packets", "bytes", "lost", "duplicates", "late_dropped", "gaps_filled_samples",
            "ssrc_changes", "resyncs", "bad_packets", "foreign_packets", "overflow_dropped",
            "paused_packets", "telephone_events", "dtmf_digits", "comfort_noise",
            "unknown_payload_type", "undecodable", "decode_errors", "flush_errors",
            "sink_errors", "rtcp_packets", "rtcp_reports", "rtcp_errors", "source_changes",
            "other_codec_packets", "resampled_packets", "clock_switches", "resume_gap_samples")


@dataclass
class StreamSlot:
    """One leg of the call, from the offer that first opened it to the end of the call.

    ``media`` is the open stream's handle, None while the SRC has the stream
    removed. ``pieces`` holds the final stats of earlier openings, so the
    record counts every packet the leg ever received.
    """

    key: str  # the label (or m-line position); the stream's key in files and the record
    label: str
    index: int  # m-line index in the latest offer that carried it
    plan: StreamPlan
    wav_path: str
    media: Any = None
    port: int = 0
    paused_by_sdp: bool = False  # a=inactive: the SRC paused recording; packets are muted
    held: bool = False  # c=0.0.0.0: on hold; nothing expected, but what arrives is kept
    removed: bool = False  # port 0 / m-line dropped: no media open now
    ended: bool = False  # the call is over for this leg
    pieces: List[dict] = field(default_factory=list)
    formats: Tuple[PayloadFormat, ...] = ()  # what the open media was set up for
    srtp_offered: Tuple[str, ...] = ()  # the SRC's a=crypto lines when the keys were chosen
    srtp_answer: Optional[str] = None  # our a=crypto value (SDES, RFC 4568)
    expecting_since: Optional[float] = None  # when RTP was last expected to (re)start
    participant: Optional[dict] = None  # the last sender the metadata named
    feed: Any = None  # the analysis feed (transcription, talk analysis) of this leg
    leg_channels: Optional[int] = None  # what the media writes (Opus "/2" is often mono)

    @property
    def closed(self) -> bool:
        """No media open (removed by the SRC, or the call ended)."""
        return self.media is None

    @property
    def codec(self) -> Optional[str]:
        codec = self.plan.codec
        if codec is None:
            return None
        channels = f"/{codec.channels}" if codec.channels > 1 else ""
        return f"{codec.encoding}/{codec.clock_rate}{channels}"

    @property
    def channels(self) -> int:
        """Channels of the leg's file: as the media opened it, else as answered."""
        if self.leg_channels:
            return self.leg_channels
        return self.plan.codec.channels if self.plan.codec is not None else 1

    @property
    def expecting(self) -> bool:
        """RTP should be arriving (open, not paused by the SDP, not on hold)."""
        return self.media is not None and not self.paused_by_sdp and not self.held

    def final_stats(self) -> dict:
        """Every piece of the leg added up (the open one not included)."""
        return aggregate_stats(self.pieces)


def held(plan: StreamPlan) -> bool:
    return plan.on_hold and plan.receiving


def line_key(plan: StreamPlan) -> str:
    """Which leg an m-line is: its label, else its position."""
    return plan.label if plan.label is not None else f"m{plan.index}"


@dataclass
class Changes:
    """What an accepted offer does to the call's streams."""

    open: List[StreamPlan] = field(default_factory=list)  # legs never seen before
    reopen: List[Tuple[StreamSlot, StreamPlan]] = field(default_factory=list)  # back after removal
    update: List[Tuple[StreamSlot, StreamPlan]] = field(default_factory=list)  # still open
    remove: List[StreamSlot] = field(default_factory=list)  # port 0 in the offer
    dropped: List[StreamSlot] = field(default_factory=list)  # m-line missing from the offer

    @property
    def opening(self) -> List[StreamPlan]:
        return self.open + [plan for _, plan in self.reopen]


def _refuse(reason: str) -> CallRejected:
    return CallRejected(488, reason)


def plan_changes(plans: Sequence[StreamPlan], slots: Dict[str, StreamSlot]) -> Changes:
    """Check an offer against the call's streams and say what it changes.

    Raises :class:`CallRejected` 488 (nothing changed) for an offer with an
    empty or duplicated label, or one that would leave the call with no
    stream at all.
    """
    seen: Dict[str, int] = {}
    for plan in plans:
        if plan.media.lower() != "audio" or plan.label is None:
            continue
        if not plan.label.strip():
            raise _refuse(f"Empty a=label on m-line {plan.index}")
        if plan.label in seen:
            raise _refuse(f"Duplicate a=label {plan.label[:40]} on m-lines "
                          f"{seen[plan.label]} and {plan.index}")
        seen[plan.label] = plan.index
    changes = Changes()
    offered = set()
    for plan in plans:
        key = line_key(plan)
        offered.add(key)
        slot = slots.get(key)
        if plan.accepted:
            if slot is None:
                changes.open.append(plan)
            elif slot.removed:
                changes.reopen.append((slot, plan))
            else:
                changes.update.append((slot, plan))
        elif slot is not None and not slot.removed:
            changes.remove.append(slot)
    changes.dropped = [slot for key, slot in slots.items()
                       if key not in offered and not slot.removed]
    if not changes.opening and not changes.update:
        raise _refuse("The offer leaves no stream to record")
    return changes


def aggregate_stats(pieces: Sequence[dict]) -> dict:
    """The stats of a leg received in several pieces, as if it were one.

    Counters add up; where the leg starts on the call timeline comes from
    its first piece; everything else (codec, quality, file) from the last.
    """
    if not pieces:
        return {}
    if len(pieces) == 1:
        return dict(pieces[0])
    total = dict(pieces[-1])
    for key in COUNTERS:
        values = [p.get(key) for p in pieces if isinstance(p.get(key), (int, float))]
        if values:
            total[key] = sum(values)
    by_codec: Dict[str, int] = {}
    for piece in pieces:
        for codec, count in (piece.get("packets_by_codec") or {}).items():
            by_codec[codec] = by_codec.get(codec, 0) + count
    if by_codec:
        total["packets_by_codec"] = by_codec
    total["tolerances"] = list(dict.fromkeys(
        note for piece in pieces for note in (piece.get("tolerances") or ())))
    total["start_offset_samples"] = next(
        (p["start_offset_samples"] for p in pieces if p.get("start_offset_samples") is not None),
        None)
    total["first_packet_at"] = next(
        (p["first_packet_at"] for p in pieces if p.get("first_packet_at") is not None), None)
    total["pieces"] = len(pieces)
    return total


def merged_plan(old: StreamPlan, new: StreamPlan) -> StreamPlan:
    """An ACK's answer to our offer changes directions and addresses, not codecs."""
    return replace(old, offered_direction=new.offered_direction,
                   answer_direction=new.answer_direction,
                   remote_address=new.remote_address or old.remote_address,
                   on_hold=new.on_hold)

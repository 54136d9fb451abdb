"""Places one stream's RTP audio on the call's timeline (sans-IO).

Legs of a call are recorded separately and combined later, so each must
know where its samples sit relative to the call start. A packet's
position comes from its RTP timestamp (unwrapped, scaled to output
samples), anchored once at the first packet's arrival time. The arrival
clock is only a sanity check: when the two disagree by more than
``resync_threshold`` seconds (a new SSRC, a sender restart, a timestamp
jump), the stream re-anchors on the arrival time, never backwards.

Each payload type has its own RTP clock (PCMA 8000, Opus 48000), so a
packet comes with its scale, output frames per timestamp tick. When the
scale changes on one source (an SRC switching codecs without a new SSRC)
the old anchor says nothing about the new clock's timestamps: the packet
is placed by its sequence number instead, right after the newest packet
(plus any packets missing in between), and anchors the new clock there.

A timeline can resume a leg file that an earlier stream of the same leg
left (``resume``): its start offset stays the file's, and the span
between the file's end and the first packet is returned as silence.

Positions and counts of samples are per channel ("frames").
"""

from __future__ import annotations

import bisect
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from siprec.media.rtp import RtpPacket, seq_delta, ts_delta

DEFAULT_REORDER_WINDOW = 5
DEFAULT_RESYNC_THRESHOLD = 1.0
# A packet this far behind the newest one is not reordering: after two such
# packets in sequence the sender is taken to have restarted its numbering.
MAX_MISORDER = 100
_RECENT_BITS = 64


class Chunk(NamedTuple):
    """Contiguous audio at ``offset`` frames from the call start.

    ``pcm`` is int16 (interleaved when stereo), or None for ``frames``
    frames of silence (a gap, or a paused span).
    """

    offset: int
    frames: int
    pcm: Optional[np.ndarray]


class _Pending(NamedTuple):
    ext_seq: int
    position: int
    frames: int
    pcm: Optional[np.ndarray]


class LegTimeline:
    """Turns one stream's packets into contiguous chunks on the call timeline.

    Feed packets with ``add`` in arrival order; each call returns the chunks
    that left the reorder window, contiguous from ``start_offset`` onwards
    (gaps come back as silence chunks). ``drain`` empties the window.
    """

    def __init__(
        self,
        sample_rate: int,
        call_start: float,
        channels: int = 1,
        reorder_window: int = DEFAULT_REORDER_WINDOW,
        resync_threshold: float = DEFAULT_RESYNC_THRESHOLD,
        resume: Optional[Tuple[int, int]] = None,
    ) -> None:
        """``resume`` is ``(start_offset, end)`` of a leg file to continue:
        where its first frame and the frame after its last sit on the call
        timeline."""
        if sample_rate <= 0 or channels <= 0:
            raise ValueError("sample rate and channel count must be positive")
        if reorder_window < 0:
            raise ValueError("reorder window cannot be negative")
        if resume is not None and not 0 <= resume[0] <= resume[1]:
            raise ValueError(f"cannot resume a leg from {resume[0]} to {resume[1]}")
        self.sample_rate = sample_rate
        self.call_start = call_start
        self.channels = channels
        self.reorder_window = reorder_window
        self._resync_frames = resync_threshold * sample_rate

        # Counters.
        self.packets = 0
        self.bytes = 0
        self.duplicates = 0
        self.late_dropped = 0
        self.gaps_filled_samples = 0
        self.muted_samples = 0
        self.trimmed_samples = 0
        self.ssrc_changes = 0
        self.seq_restarts = 0
        self.resyncs = 0
        self.clock_switches = 0  # RTP clock (scale) changes on one source
        self.resume_gap_samples = 0  # silence between a resumed file's end and the first packet

        # Timeline state, shared by every source of this stream.
        self.start_offset: Optional[int] = None  # first committed frame
        self.end: Optional[int] = None  # frame after the last committed one
        self._frontier = 0  # end of everything placed, committed or not
        self._window: List[_Pending] = []
        self._resuming = resume is not None  # until the first commit after resuming
        if resume is not None:
            self.start_offset, self.end = resume
            self._frontier = resume[1]

        # Per-source state, reset on an SSRC change or sequence restart.
        self.ssrc: Optional[int] = None
        self._previous_ssrc: Optional[int] = None
        self._previous_highest: Optional[int] = None
        self._lost_before = 0
        self._highest: Optional[int] = None
        self._lowest = 0
        self._received = 0
        self._last_committed: Optional[int] = None
        self._committed_mask = 0
        self._bad_seq: Optional[int] = None
        self._ts_ref: Optional[int] = None
        self._anchor: Optional[Tuple[int, int]] = None
        self._anchor_scale = 1.0  # output frames per tick of the anchor's clock
        self._reset_source(None)

    # -- public -------------------------------------------------------------

    @property
    def lost(self) -> int:
        """Packets expected (by sequence number) but never received."""
        current = 0
        if self._highest is not None:
            expected = self._highest - self._lowest + 1
            current = max(0, expected - self._received)
        return self._lost_before + current

    @property
    def buffered(self) -> int:
        return len(self._window)

    def add(
        self,
        arrival: float,
        packet: RtpPacket,
        pcm: Optional[np.ndarray],
        samples_per_tick: float = 1.0,
        muted: bool = False,
    ) -> List[Chunk]:
        """Take one packet; return the chunks now committed.

        ``pcm`` is the decoded payload at the timeline's rate and channel
        count, or None for a packet that shares the sequence space but is
        not audio (RFC 4733 events): it only counts towards loss
        statistics. ``samples_per_tick`` is output frames per tick of this
        packet's RTP clock. ``muted`` records the packet's span as silence
        (recording paused).
        """
        self.packets += 1
        self.bytes += len(packet.payload)
        out: List[Chunk] = []

        if packet.ssrc != self.ssrc:
            if self.ssrc is not None:
                if self._is_straggler(packet):
                    self.late_dropped += 1
                    return out
                self._commit_all(out)
                self.ssrc_changes += 1
                self._previous_ssrc, self._previous_highest = self.ssrc, self._highest
            self._reset_source(packet.ssrc)

        ext_seq = self._extend_seq(packet.sequence)
        if pcm is None:
            self._note_sequence(ext_seq, count=self._highest is None or ext_seq > self._highest)
            return out

        if self._last_committed is not None and ext_seq <= self._last_committed:
            back = self._last_committed - ext_seq
            if back < _RECENT_BITS and (self._committed_mask >> back) & 1:
                self.duplicates += 1
                return out
            if self._highest - ext_seq > MAX_MISORDER and self._restarts_sequence(packet.sequence):
                self._commit_all(out)
                self.seq_restarts += 1
                self._reset_source(packet.ssrc, keep_clock=True)
                ext_seq = self._extend_seq(packet.sequence)
            else:
                self.late_dropped += 1
                if ext_seq >= self._lowest:  # it did arrive: not a loss
                    self._received += 1
                return out
        elif any(p.ext_seq == ext_seq for p in self._window):
            self.duplicates += 1
            return out
        self._bad_seq = None
        previous = self._highest
        self._note_sequence(ext_seq)

        frames = len(pcm) // self.channels
        position = self._place(arrival, packet.timestamp, ext_seq, samples_per_tick, previous, frames)
        self._frontier = max(self._frontier, position + frames)
        if muted:
            self.muted_samples += frames
        entry = _Pending(ext_seq, position, frames, None if muted else pcm)
        bisect.insort(self._window, entry, key=_seq_key)
        while len(self._window) > self.reorder_window:
            self._commit(self._window.pop(0), out)
        return out

    def run_start(
        self,
        arrivals: Sequence[float],
        sequence: int,
        timestamp: int,
        ssrc: int,
        frames: int,
        samples_per_tick: int = 1,
    ) -> Optional[int]:
        """Where a run would start if :meth:`add_run` takes it, else None.

        Lets a caller check before doing work it could not undo (feeding
        a resampler). ``frames`` per packet, ``samples_per_tick`` frames
        per tick of the packets' RTP clock (a whole number).
        """
        if (
            not arrivals
            or ssrc != self.ssrc
            or self._highest is None
            or self._anchor is None
            or self._anchor_scale != samples_per_tick
            or self._ts_ref is None
            or sequence != (self._highest + 1) & 0xFFFF
            or frames % samples_per_tick
        ):
            return None
        ref = self._ts_ref
        ext_ts = ref + ts_delta(timestamp, ref & 0xFFFFFFFF)
        if ext_ts - ref != frames // samples_per_tick:
            return None  # not contiguous with the newest packet
        anchor_ts, anchor_pos = self._anchor
        first = anchor_pos + (ext_ts - anchor_ts) * samples_per_tick
        rate = self.sample_rate
        start = self.call_start
        limit = self._resync_frames
        position = first
        for arrival in arrivals:
            arrival_pos = round((arrival - start) * rate)
            if abs(position - (arrival_pos if arrival_pos > 0 else 0)) > limit:
                return None
            position += frames
        return first

    def add_run(
        self,
        arrivals: Sequence[float],
        sequence: int,
        timestamp: int,
        ssrc: int,
        pcm: np.ndarray,
        payload_bytes: int,
        samples_per_tick: int = 1,
    ) -> Optional[List[Chunk]]:
        """Take ``len(arrivals)`` packets that directly follow the newest one.

        The fast path for the common case, equal to calling :meth:`add`
        for each packet in turn: same source and RTP clock, sequence
        numbers and timestamps each one step (one packet's ticks) on from
        the newest packet, a whole number of frames per tick, audio not
        muted, and no packet far enough from its arrival time to force a
        resync. ``pcm`` holds one row of ``frames * channels`` samples per
        packet. Returns None, having changed nothing, when the run does
        not qualify (see :meth:`run_start`); the caller then adds the
        packets one by one.
        """
        count = len(arrivals)
        frames = pcm.shape[1] // self.channels
        first = self.run_start(arrivals, sequence, timestamp, ssrc, frames, samples_per_tick)
        if first is None:
            return None
        assert self._highest is not None and self._ts_ref is not None
        position = first + frames * count
        ext_ts = self._ts_ref + frames // samples_per_tick
        ext_seq0 = self._highest + 1
        self.packets += count
        self.bytes += payload_bytes
        self._received += count
        self._highest = ext_seq0 + count - 1
        self._ts_ref = ext_ts + frames // samples_per_tick * (count - 1)
        if position > self._frontier:
            self._frontier = position
        self._bad_seq = None

        out: List[Chunk] = []
        window = self._window
        to_commit = max(0, len(window) + count - self.reorder_window)
        from_window = min(to_commit, len(window))
        for _ in range(from_window):
            self._commit(window.pop(0), out)
        committed_run = to_commit - from_window
        if committed_run:
            block = pcm[:committed_run].reshape(-1)
            last_seq = ext_seq0 + committed_run - 1
            self._commit_block(_Pending(last_seq, first, frames * committed_run, block), committed_run, out)
        for i in range(committed_run, count):
            window.append(_Pending(ext_seq0 + i, first + i * frames, frames, pcm[i]))
        return out

    def _commit_block(self, entry: _Pending, packets: int, out: List[Chunk]) -> None:
        """Commit ``packets`` consecutive packets as one entry (``entry.ext_seq`` is the
        last); each of their sequence numbers is remembered as committed."""
        self._commit(entry, out)
        self._committed_mask |= (1 << min(packets, _RECENT_BITS)) - 1

    def drain(self) -> List[Chunk]:
        """Commit everything still waiting in the reorder window."""
        out: List[Chunk] = []
        self._commit_all(out)
        return out

    # -- sequence numbers -----------------------------------------------------

    def _reset_source(self, ssrc: Optional[int], keep_clock: bool = False) -> None:
        """Forget a source's numbering; its losses stay in the total."""
        self._lost_before = self.lost
        self.ssrc = ssrc
        self._highest = None  # extended sequence numbers
        self._lowest = 0
        self._received = 0
        self._last_committed = None
        self._committed_mask = 0
        self._bad_seq = None
        if not keep_clock:
            self._ts_ref = None  # extended timestamp of the newest packet
            self._anchor = None  # (extended timestamp, frame)

    def _extend_seq(self, sequence: int) -> int:
        if self._highest is None:
            return sequence
        return self._highest + seq_delta(sequence, self._highest & 0xFFFF)

    def _note_sequence(self, ext_seq: int, count: bool = True) -> None:
        if self._highest is None:
            self._highest = self._lowest = ext_seq
        elif ext_seq > self._highest:
            self._highest = ext_seq
        elif ext_seq < self._lowest:
            self._lowest = ext_seq
        if count:
            self._received += 1

    def _is_straggler(self, packet: RtpPacket) -> bool:
        """A late packet from the source we just switched away from."""
        return (
            packet.ssrc == self._previous_ssrc
            and self._previous_highest is not None
            and seq_delta(packet.sequence, self._previous_highest & 0xFFFF) <= 0
        )

    def _restarts_sequence(self, sequence: int) -> bool:
        """RFC 3550 A.1: two in-sequence packets far behind mean a restart."""
        if self._bad_seq is not None and sequence == self._bad_seq:
            return True
        self._bad_seq = (sequence + 1) & 0xFFFF
        return False

    # -- placement ------------------------------------------------------------

    def _place(
        self,
        arrival: float,
        timestamp: int,
        ext_seq: int,
        samples_per_tick: float,
        previous: Optional[int],
        frames: int,
    ) -> int:
        ref = self._ts_ref
        ext_ts = timestamp if ref is None else ref + ts_delta(timestamp, ref & 0xFFFFFFFF)
        if ref is None or ext_seq >= self._highest:
            self._ts_ref = ext_ts
        arrival_pos = max(0, round((arrival - self.call_start) * self.sample_rate))
        anchor = self._anchor
        if anchor is None:
            self._anchor_scale = samples_per_tick
            self._anchor = (ext_ts, max(arrival_pos, self._frontier))
            return self._anchor[1]
        if samples_per_tick != self._anchor_scale:
            # Another RTP clock on the same source: place by sequence number.
            self.clock_switches += 1
            self._anchor_scale = samples_per_tick
            missing = ext_seq - previous - 1 if previous is not None else 0
            position = max(0, self._frontier + missing * frames)
            if abs(position - arrival_pos) > self._resync_frames:
                self.resyncs += 1
                position = max(arrival_pos, self._frontier)
            self._anchor = (ext_ts, position)
            return position
        ticks = ext_ts - anchor[0]
        position = anchor[1] + (ticks if samples_per_tick == 1.0 else round(ticks * samples_per_tick))
        if abs(position - arrival_pos) > self._resync_frames:
            self.resyncs += 1
            self._anchor = (ext_ts, max(arrival_pos, self._frontier))
            return self._anchor[1]
        return position

    def _commit_all(self, out: List[Chunk]) -> None:
        window, self._window = self._window, []
        for entry in window:
            self._commit(entry, out)

    def _commit(self, entry: _Pending, out: List[Chunk]) -> None:
        ext_seq, position, frames, pcm = entry
        if self._last_committed is None:
            self._committed_mask = 1
        else:
            shift = ext_seq - self._last_committed
            self._committed_mask = ((self._committed_mask << shift) | 1) & ((1 << _RECENT_BITS) - 1)
        self._last_committed = ext_seq
        self._resuming, resuming = False, self._resuming

        end = self.end
        if end is None:
            end = self.start_offset = max(position, 0)
        if position > end:
            out.append(Chunk(end, position - end, None))
            if resuming:
                self.resume_gap_samples += position - end
            else:
                self.gaps_filled_samples += position - end
            end = position
        elif position < end:
            trim = end - position
            if trim >= frames:
                self.late_dropped += 1
                self.end = end
                return
            self.trimmed_samples += trim
            frames -= trim
            if pcm is not None:
                pcm = pcm[trim * self.channels :]
        out.append(Chunk(end, frames, pcm))
        self.end = end + frames


def _seq_key(entry: _Pending) -> int:
    return entry.ext_seq

"""Tests for siprec.media.timeline: placing packets on the call timeline."""

from __future__ import annotations

from typing import Iterable, List, Optional

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.rtp import RtpPacket
from siprec.media.timeline import Chunk, LegTimeline

RATE = 8000
START = 100.0  # call start on the arrival clock
FIRST_ARRIVAL = 100.5  # first packet half a second into the call
FRAME = 160  # 20 ms at 8 kHz


def packet(seq: int, ts: int, ssrc: int = 0x1111, size: int = FRAME, pt: int = 0) -> RtpPacket:
    return RtpPacket(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, bytes(size))


def tone(mark: int, frames: int = FRAME, channels: int = 1) -> np.ndarray:
    """Samples that say which packet they came from."""
    return np.full(frames * channels, mark, dtype=np.int16)


class Recorder:
    """Feeds a timeline and checks that its output is contiguous."""

    def __init__(self, test: SynchronousTestCase, **kwargs: object) -> None:
        self.test = test
        self.timeline = LegTimeline(RATE, START, **kwargs)  # type: ignore[arg-type]
        self.chunks: List[Chunk] = []

    def add(self, arrival: float, p: RtpPacket, pcm: Optional[np.ndarray], **kwargs: object) -> None:
        self.chunks += self.timeline.add(arrival, p, pcm, **kwargs)  # type: ignore[arg-type]

    def feed(self, items: Iterable[tuple[int, int, float]], base_seq: int = 1000, base_ts: int = 5000) -> None:
        """(packet index, mark, arrival) in arrival order; seq/ts follow the index."""
        for index, mark, arrival in items:
            self.add(arrival, packet(base_seq + index, base_ts + FRAME * index), tone(mark))

    def render(self) -> np.ndarray:
        self.chunks += self.timeline.drain()
        channels = self.timeline.channels
        position = self.timeline.start_offset
        parts = []
        for chunk in self.chunks:
            self.test.assertEqual(chunk.offset, position, "chunks must be contiguous")
            if chunk.pcm is None:
                parts.append(np.zeros(chunk.frames * channels, dtype=np.int16))
            else:
                self.test.assertEqual(len(chunk.pcm), chunk.frames * channels)
                parts.append(chunk.pcm)
            position += chunk.frames
        self.test.assertEqual(position, self.timeline.end)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def in_order(count: int, first: int = 0) -> List[tuple[int, int, float]]:
    return [(i, i + 1, FIRST_ARRIVAL + 0.02 * i) for i in range(first, first + count)]


def marks(pcm: np.ndarray) -> List[int]:
    """One mark per 20 ms block (0 for silence)."""
    blocks = pcm.reshape(-1, FRAME)
    for block in blocks:
        assert len(set(block.tolist())) == 1, "a block mixes packets"
    return [int(b[0]) for b in blocks]


class OrderTests(SynchronousTestCase):
    def test_in_order(self) -> None:
        """In-order packets land back to back, starting at the first arrival."""
        r = Recorder(self)
        r.feed(in_order(10))
        pcm = r.render()
        self.assertEqual(r.timeline.start_offset, 4000)  # 0.5 s after the call start
        self.assertEqual(len(pcm), 10 * FRAME)
        self.assertEqual(marks(pcm), list(range(1, 11)))
        t = r.timeline
        self.assertEqual((t.packets, t.bytes, t.lost, t.duplicates, t.late_dropped), (10, 1600, 0, 0, 0))
        self.assertEqual(t.gaps_filled_samples, 0)

    def test_window_holds_back(self) -> None:
        """Only packets that left the reorder window are committed before drain."""
        r = Recorder(self, reorder_window=3)
        r.feed(in_order(5))
        self.assertEqual(sum(c.frames for c in r.chunks), 2 * FRAME)
        self.assertEqual(r.timeline.buffered, 3)

    def test_loss_becomes_silence(self) -> None:
        """A lost packet leaves exactly its 160 samples of silence."""
        r = Recorder(self)
        r.feed([item for item in in_order(10) if item[0] != 3])
        pcm = r.render()
        self.assertEqual(len(pcm), 10 * FRAME)
        self.assertEqual(marks(pcm), [1, 2, 3, 0, 5, 6, 7, 8, 9, 10])
        self.assertEqual(r.timeline.gaps_filled_samples, FRAME)
        self.assertEqual(r.timeline.lost, 1)

    def test_reordering_within_window(self) -> None:
        """Swapped packets are put back in order."""
        r = Recorder(self, reorder_window=4)
        items = in_order(10)
        items[3], items[5] = items[5], items[3]
        items[7], items[8] = items[8], items[7]
        r.feed(items)
        pcm = r.render()
        self.assertEqual(marks(pcm), list(range(1, 11)))
        self.assertEqual((r.timeline.late_dropped, r.timeline.gaps_filled_samples, r.timeline.lost), (0, 0, 0))

    def test_reordering_beyond_window(self) -> None:
        """A packet later than the window is dropped, counted, and leaves silence."""
        r = Recorder(self, reorder_window=2)
        items = in_order(10)
        late = items.pop(2)
        items.insert(7, late)  # five packets late
        r.feed(items)
        pcm = r.render()
        self.assertEqual(marks(pcm), [1, 2, 0, 4, 5, 6, 7, 8, 9, 10])
        self.assertEqual(r.timeline.late_dropped, 1)
        self.assertEqual(r.timeline.gaps_filled_samples, FRAME)
        self.assertEqual(r.timeline.lost, 0)  # it did arrive

    def test_duplicates(self) -> None:
        """Copies of buffered or already committed packets are dropped and counted."""
        r = Recorder(self, reorder_window=2)
        items = in_order(10)
        items.insert(5, items[4])  # duplicate still in the window
        items.insert(9, (1, 99, items[8][2]))  # duplicate of a committed packet
        r.feed(items)
        pcm = r.render()
        self.assertEqual(marks(pcm), list(range(1, 11)))
        self.assertEqual((r.timeline.duplicates, r.timeline.late_dropped), (2, 0))
        self.assertEqual(r.timeline.packets, 12)

    def test_late_after_drain(self) -> None:
        """Once drained, an older packet is late even if it fits the window."""
        r = Recorder(self)
        r.feed(in_order(3))
        r.feed([(4, 5, FIRST_ARRIVAL + 0.08)])
        r.chunks += r.timeline.drain()
        r.feed([(3, 4, FIRST_ARRIVAL + 0.1)])
        pcm = r.render()
        self.assertEqual(marks(pcm), [1, 2, 3, 0, 5])
        self.assertEqual(r.timeline.late_dropped, 1)


class WrapTests(SynchronousTestCase):
    def test_sequence_wrap(self) -> None:
        """Sequence numbers wrapping at 65535 stay in order, with reordering across it."""
        r = Recorder(self, reorder_window=3)
        items = in_order(8)
        items[2], items[3] = items[3], items[2]  # 65535 and 0 swapped
        r.feed(items, base_seq=65533)
        pcm = r.render()
        self.assertEqual(marks(pcm), list(range(1, 9)))
        self.assertEqual((r.timeline.late_dropped, r.timeline.lost, r.timeline.duplicates), (0, 0, 0))

    def test_timestamp_wrap(self) -> None:
        """Timestamps wrapping at 2**32 keep positions continuous."""
        r = Recorder(self)
        r.feed(in_order(6), base_ts=2**32 - 2 * FRAME)
        pcm = r.render()
        self.assertEqual(len(pcm), 6 * FRAME)
        self.assertEqual(marks(pcm), list(range(1, 7)))
        self.assertEqual(r.timeline.resyncs, 0)

    def test_timestamp_wrap_with_loss(self) -> None:
        """A loss right across the timestamp wrap still leaves exactly one gap."""
        r = Recorder(self)
        r.feed([i for i in in_order(6) if i[0] != 2], base_ts=2**32 - 2 * FRAME)
        self.assertEqual(marks(r.render()), [1, 2, 0, 4, 5, 6])


class ClockTests(SynchronousTestCase):
    def test_silence_suppression(self) -> None:
        """A timestamp jump that matches the arrival clock is a gap, not a resync."""
        r = Recorder(self)
        r.feed(in_order(3))
        # Two seconds of DTX: timestamps and arrivals both move on by 2 s.
        for i in range(3, 6):
            r.add(FIRST_ARRIVAL + 2.0 + 0.02 * i, packet(1000 + i, 5000 + FRAME * i + 16000), tone(i + 1))
        pcm = r.render()
        self.assertEqual(len(pcm), 6 * FRAME + 16000)
        self.assertEqual(r.timeline.gaps_filled_samples, 16000)
        self.assertEqual(r.timeline.resyncs, 0)
        self.assertEqual(int(pcm[3 * FRAME + 16000]), 4)

    def test_forward_jump_resyncs_to_arrival(self) -> None:
        """A 10 s timestamp jump arriving 20 ms later re-anchors on the arrival time."""
        r = Recorder(self)
        r.feed(in_order(3))
        jump = 80000
        for i in range(3, 6):
            r.add(FIRST_ARRIVAL + 0.02 * i, packet(1000 + i, 5000 + FRAME * i + jump), tone(i + 1))
        pcm = r.render()
        self.assertEqual(r.timeline.resyncs, 1)
        self.assertEqual(marks(pcm), [1, 2, 3, 4, 5, 6])  # arrival says contiguous

    def test_backward_jump_never_moves_back(self) -> None:
        """A timestamp jumping back re-anchors, but never before what is placed."""
        r = Recorder(self, reorder_window=0)
        r.feed(in_order(3))
        # Arrival clock says 1 s later; timestamps went back 10 s.
        for i in range(3, 5):
            r.add(FIRST_ARRIVAL + 1.0 + 0.02 * i, packet(1000 + i, 5000 + FRAME * i - 80000), tone(i + 1))
        pcm = r.render()
        self.assertEqual(r.timeline.resyncs, 1)
        # Re-anchored on its arrival (1 s after packet 3 would have been) ...
        self.assertEqual(len(pcm), 3 * FRAME + 8000 + 2 * FRAME)
        self.assertEqual(r.timeline.gaps_filled_samples, 8000)
        self.assertEqual(marks(pcm)[-2:], [4, 5])

    def test_small_drift_keeps_timestamps(self) -> None:
        """Arrival jitter below the threshold does not move packets."""
        r = Recorder(self)
        rng = np.random.default_rng(7)
        items = [(i, i + 1, FIRST_ARRIVAL + 0.02 * i + float(rng.uniform(0, 0.3))) for i in range(50)]
        r.feed(items)
        pcm = r.render()
        self.assertEqual(marks(pcm), list(range(1, 51)))
        self.assertEqual(r.timeline.resyncs, 0)

    def test_arrival_before_call_start(self) -> None:
        """A packet arriving before the call start is placed at 0, not before."""
        r = Recorder(self)
        r.add(START - 1.0, packet(1, 0), tone(1))
        r.add(START - 0.98, packet(2, FRAME), tone(2))
        pcm = r.render()
        self.assertEqual(r.timeline.start_offset, 0)
        self.assertEqual(marks(pcm), [1, 2])


class SourceTests(SynchronousTestCase):
    def test_ssrc_change(self) -> None:
        """A new SSRC with unrelated numbering starts at its arrival time."""
        r = Recorder(self)
        r.feed(in_order(5))  # ends at 0.5 s + 100 ms
        for i in range(3):  # new source, 1 s after the call's first packet
            r.add(FIRST_ARRIVAL + 1.0 + 0.02 * i, packet(40000 + i, 999999 + FRAME * i, ssrc=0x2222), tone(10 + i))
        pcm = r.render()
        t = r.timeline
        self.assertEqual(t.ssrc_changes, 1)
        self.assertEqual(t.ssrc, 0x2222)
        self.assertEqual(len(pcm), 8000 + 3 * FRAME)
        self.assertEqual(marks(pcm)[-3:], [10, 11, 12])
        self.assertEqual(t.gaps_filled_samples, 8000 - 5 * FRAME)
        self.assertEqual((t.late_dropped, t.lost), (0, 0))

    def test_reanchor_never_overlaps(self) -> None:
        """A new source arriving 'before' audio already placed goes after it, not over it."""
        r = Recorder(self)
        # A burst: 40 packets (0.8 s of audio) all arrive within 40 ms.
        r.feed([(i, i + 1, FIRST_ARRIVAL + 0.001 * i) for i in range(40)])
        for i in range(3):
            r.add(FIRST_ARRIVAL + 0.05 + 0.02 * i, packet(7 + i, 70 + FRAME * i, ssrc=0x2222), tone(50 + i))
        pcm = r.render()
        self.assertEqual(marks(pcm), list(range(1, 41)) + [50, 51, 52])
        self.assertEqual((r.timeline.late_dropped, r.timeline.trimmed_samples), (0, 0))

    def test_ssrc_change_flushes_old_source(self) -> None:
        """The old source's buffered packets are committed before the new one starts."""
        r = Recorder(self, reorder_window=5)
        r.feed(in_order(3))
        r.add(FIRST_ARRIVAL + 0.06, packet(7, 70, ssrc=0x2222), tone(9))
        self.assertEqual(sum(c.frames for c in r.chunks), 3 * FRAME)
        self.assertEqual(marks(r.render()), [1, 2, 3, 9])

    def test_straggler_from_old_ssrc(self) -> None:
        """A late packet of the previous source does not flip the stream back."""
        r = Recorder(self)
        r.feed(in_order(5))
        r.add(FIRST_ARRIVAL + 0.1, packet(40000, 0, ssrc=0x2222), tone(10))
        r.add(FIRST_ARRIVAL + 0.11, packet(1003, 5000 + 3 * FRAME), tone(99))  # old SSRC, old seq
        r.add(FIRST_ARRIVAL + 0.12, packet(40001, FRAME, ssrc=0x2222), tone(11))
        pcm = r.render()
        self.assertEqual((r.timeline.ssrc_changes, r.timeline.late_dropped), (1, 1))
        self.assertEqual(marks(pcm), [1, 2, 3, 4, 5, 10, 11])

    def test_sequence_restart(self) -> None:
        """Two in-sequence packets far behind mean the sender restarted numbering."""
        r = Recorder(self, reorder_window=0)
        r.feed(in_order(5), base_seq=5000)
        for i in range(5, 9):
            r.add(FIRST_ARRIVAL + 0.02 * i, packet(10 + i, 5000 + FRAME * i), tone(i + 1))
        pcm = r.render()
        self.assertEqual(r.timeline.seq_restarts, 1)
        self.assertEqual(r.timeline.late_dropped, 1)  # the first one, on probation
        self.assertEqual(marks(pcm), [1, 2, 3, 4, 5, 0, 7, 8, 9])


class PayloadTests(SynchronousTestCase):
    def test_muted_packets_are_silence(self) -> None:
        """Muted packets keep the timeline running but record silence."""
        r = Recorder(self)
        for index, mark, arrival in in_order(6):
            r.add(arrival, packet(index, FRAME * index), tone(mark), muted=2 <= index < 4)
        pcm = r.render()
        self.assertEqual(marks(pcm), [1, 2, 0, 0, 5, 6])
        self.assertEqual(r.timeline.muted_samples, 2 * FRAME)
        self.assertEqual(r.timeline.gaps_filled_samples, 0)

    def test_events_count_for_loss_only(self) -> None:
        """Non-audio packets in the same sequence space are not losses nor audio."""
        r = Recorder(self)
        for index, mark, arrival in in_order(6):
            if index in (2, 3):
                r.add(arrival, packet(index, FRAME * 2, pt=101, size=4), None)
                r.add(arrival, packet(index, FRAME * 2, pt=101, size=4), None)  # RFC 4733 resend
            else:
                r.add(arrival, packet(index, FRAME * index), tone(mark))
        pcm = r.render()
        self.assertEqual(marks(pcm), [1, 2, 0, 0, 5, 6])
        self.assertEqual(r.timeline.lost, 0)

    def test_wideband_clock(self) -> None:
        """With two samples per tick (G.722), positions and gaps scale by two."""
        r = Recorder(self)
        for index in (0, 1, 3):
            r.add(FIRST_ARRIVAL + 0.02 * index, packet(index, FRAME * index), tone(index + 1, 2 * FRAME), samples_per_tick=2.0)
        pcm = r.render()
        self.assertEqual(len(pcm), 4 * 2 * FRAME)
        self.assertEqual(r.timeline.gaps_filled_samples, 2 * FRAME)
        self.assertEqual(r.timeline.start_offset, 4000)  # the timeline's own rate here is 8000

    def test_stereo(self) -> None:
        """Stereo packets count frames, not samples, for positions and gaps."""
        r = Recorder(self, channels=2)
        for index in (0, 2):
            r.add(FIRST_ARRIVAL + 0.02 * index, packet(index, FRAME * index), tone(index + 1, FRAME, 2))
        pcm = r.render()
        self.assertEqual(len(pcm), 3 * FRAME * 2)
        self.assertEqual(r.timeline.gaps_filled_samples, FRAME)
        self.assertFalse(pcm[2 * FRAME : 4 * FRAME].any())

    def test_overlap_trimmed(self) -> None:
        """A packet overlapping what is committed keeps only its new samples."""
        r = Recorder(self, reorder_window=0)
        r.add(FIRST_ARRIVAL, packet(1, 0), tone(1))
        r.add(FIRST_ARRIVAL + 0.02, packet(2, 100), tone(2))  # 60 samples overlap
        pcm = r.render()
        self.assertEqual(len(pcm), 100 + FRAME)
        self.assertEqual(r.timeline.trimmed_samples, 60)
        self.assertEqual(int(pcm[FRAME]), 2)
        self.assertEqual(int(pcm[FRAME - 1]), 1)

    def test_clock_switch_on_one_source(self) -> None:
        """Opus (48 kHz clock) then PCMA (8000 Hz clock, 6 frames a tick) on one SSRC: PCMA goes
        after the newest packet by sequence number, with the two lost in between left silent."""
        r = Recorder(self)
        r.timeline = LegTimeline(48000, START)
        for index in range(5):
            r.add(FIRST_ARRIVAL + 0.02 * index, packet(index, 9000 + 960 * index), tone(1, 960))
        for index in range(7, 10):  # 5 and 6 lost; the timestamps start anywhere
            r.add(FIRST_ARRIVAL + 0.02 * index, packet(index, 777 + FRAME * (index - 7)), tone(2, 960),
                  samples_per_tick=6.0)
        pcm = r.render()
        self.assertEqual(len(pcm), 10 * 960)
        self.assertFalse(pcm[5 * 960 : 7 * 960].any())
        self.assertTrue((pcm[7 * 960 :] == 2).all())
        self.assertEqual((r.timeline.clock_switches, r.timeline.resyncs, r.timeline.lost), (1, 0, 2))

    def test_run_with_several_frames_per_tick(self) -> None:
        """add_run of PCMA resampled to 48 kHz places packets as add() does one by one."""
        outputs = []
        for use_run in (True, False):
            r = Recorder(self)
            r.timeline = LegTimeline(48000, START)
            r.add(FIRST_ARRIVAL, packet(0, 0), tone(1, 960), samples_per_tick=6.0)
            arrivals = [FIRST_ARRIVAL + 0.02 * i for i in range(1, 6)]
            pcm = np.stack([tone(i + 2, 960) for i in range(5)])
            if use_run:
                self.assertIsNone(r.timeline.add_run(arrivals, 1, FRAME, 0x1111, pcm, 800))  # wrong scale
                r.chunks += r.timeline.add_run(arrivals, 1, FRAME, 0x1111, pcm, 800, samples_per_tick=6)
            else:
                for i, arrival in enumerate(arrivals):
                    r.add(arrival, packet(i + 1, FRAME * (i + 1)), pcm[i], samples_per_tick=6.0)
            outputs.append(r.render())
        np.testing.assert_array_equal(outputs[0], outputs[1])
        self.assertEqual(len(outputs[0]), 6 * 960)

    def test_resume_a_leg_file(self) -> None:
        """Resuming keeps the file's start offset and returns the span up to the first packet as silence."""
        timeline = LegTimeline(RATE, START, resume=(4000, 12000))
        self.assertEqual((timeline.start_offset, timeline.end), (4000, 12000))
        chunks = timeline.add(START + 2.0, packet(50, 123), tone(7)) + timeline.drain()
        self.assertEqual([(c.offset, c.frames, c.pcm is None) for c in chunks],
                         [(12000, 4000, True), (16000, FRAME, False)])
        self.assertEqual((timeline.resume_gap_samples, timeline.gaps_filled_samples), (4000, 0))
        self.assertEqual(timeline.start_offset, 4000)
        early = LegTimeline(RATE, START, resume=(0, 24000))  # the file ends after "now": no overlap
        chunks = early.add(START + 1.0, packet(1, 0), tone(1)) + early.drain()
        self.assertEqual([(c.offset, c.frames) for c in chunks], [(24000, FRAME)])
        self.assertRaises(ValueError, LegTimeline, RATE, START, resume=(10, 5))
        self.assertRaises(ValueError, LegTimeline, RATE, START, resume=(-1, 5))

    def test_bad_arguments(self) -> None:
        """Impossible rates and windows are refused."""
        self.assertRaises(ValueError, LegTimeline, 0, 0.0)
        self.assertRaises(ValueError, LegTimeline, 8000, 0.0, channels=0)
        self.assertRaises(ValueError, LegTimeline, 8000, 0.0, reorder_window=-1)

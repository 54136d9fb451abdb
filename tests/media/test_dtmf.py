"""Tests for siprec.media.dtmf: RFC 4733 telephone-events as key presses."""

from __future__ import annotations

from typing import List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from siprec.media.dtmf import (
    DtmfParseError,
    DtmfReceiver,
    EventBlock,
    build_event,
    event_name,
    parse_events,
)


def press(event: int, ts: int, start: float, steps: int = 5, step: int = 400, ends: int = 3) -> List[Tuple[int, bytes, float]]:
    """Packets of one key press: growing durations every 50 ms, then ``ends`` end packets."""
    packets = []
    for i in range(1, steps + 1):
        packets.append((ts, build_event(event, i * step), start + i * 0.05))
    final = steps * step
    for j in range(ends):
        packets.append((ts, build_event(event, final, end=True), start + (steps + 1 + j) * 0.05))
    return packets


class ParseTests(SynchronousTestCase):
    def test_block(self) -> None:
        """Event, end bit, volume and duration come from their RFC 4733 fields."""
        (block,) = parse_events(bytes([11, 0x80 | 0x40 | 7, 0x03, 0x20]))  # R bit set, ignored
        self.assertEqual(block, EventBlock(event=11, end=True, volume=7, duration=800))

    def test_round_trip(self) -> None:
        self.assertEqual(parse_events(build_event(5, 1234, True, 20)), [EventBlock(5, True, 20, 1234)])

    def test_bad_lengths(self) -> None:
        """Empty or partial blocks raise DtmfParseError with the length."""
        for size in (0, 1, 3, 5, 7):
            with self.assertRaises(DtmfParseError):
                parse_events(bytes(size))

    def test_names(self) -> None:
        self.assertEqual([event_name(i) for i in range(17)], list("0123456789*#ABCD") + ["flash"])
        self.assertEqual(event_name(70), "event-70")

    def test_build_rejects_out_of_range(self) -> None:
        self.assertRaises(ValueError, build_event, 256, 0)
        self.assertRaises(ValueError, build_event, 1, 70000)


class ReceiverTests(SynchronousTestCase):
    def feed_all(self, receiver: DtmfReceiver, packets, ssrc: int = 1) -> list:
        events = []
        for ts, payload, arrival in packets:
            events += receiver.feed(ts, payload, arrival, ssrc)
        return events

    def test_one_press_with_retransmitted_ends(self) -> None:
        """Three end packets make one event with the final duration; the copies are counted."""
        receiver = DtmfReceiver()
        events = self.feed_all(receiver, press(5, 16000, 10.0))
        self.assertEqual(len(events), 1)
        event = events[0]
        self.assertEqual((event.digit, event.timestamp, event.duration, event.end_seen), ("5", 16000, 0.25, True))
        self.assertEqual(event.start, 10.05)
        self.assertEqual(receiver.retransmissions, 2)

    def test_digit_sequence(self) -> None:
        """Several presses come out in order with their own start times."""
        receiver = DtmfReceiver()
        packets = press(1, 1000, 0.0) + press(11, 9000, 1.0) + press(10, 17000, 2.0)
        events = self.feed_all(receiver, packets)
        self.assertEqual([e.digit for e in events], ["1", "#", "*"])
        self.assertEqual([e.timestamp for e in events], [1000, 9000, 17000])

    def test_lost_end_packets_next_event(self) -> None:
        """All end packets lost: the next key ends the previous one (end_seen False)."""
        receiver = DtmfReceiver()
        events = self.feed_all(receiver, press(2, 1000, 0.0, ends=0) + press(3, 9000, 1.0))
        self.assertEqual([(e.digit, e.end_seen) for e in events], [("2", False), ("3", True)])
        self.assertEqual(events[0].duration, 0.25)
        self.assertEqual(receiver.inferred_ends, 1)

    def test_lost_end_packets_timeout(self) -> None:
        """All end packets lost and nothing follows: expire() ends it after the timeout."""
        receiver = DtmfReceiver(end_timeout=1.0)
        self.assertEqual(self.feed_all(receiver, press(9, 1000, 0.0, ends=0)), [])
        self.assertEqual(receiver.expire(0.5), [])
        (event,) = receiver.expire(1.3)
        self.assertEqual((event.digit, event.end_seen), ("9", False))
        self.assertEqual(receiver.expire(5.0), [])

    def test_only_end_packets(self) -> None:
        """A press whose every non-end packet was lost still counts once."""
        receiver = DtmfReceiver()
        events = self.feed_all(receiver, press(4, 1000, 0.0, steps=0, ends=3) + press(4, 5000, 1.0, steps=0, ends=3))
        self.assertEqual([e.digit for e in events], ["4", "4"])
        self.assertEqual(receiver.retransmissions, 4)

    def test_reordered_update_keeps_longest_duration(self) -> None:
        """A late update with a shorter duration does not shrink the event."""
        receiver = DtmfReceiver()
        packets = press(7, 1000, 0.0, steps=4, ends=0)
        packets.insert(3, (1000, build_event(7, 400), 0.17))
        packets.append((1000, build_event(7, 1600, end=True), 0.3))
        (event,) = self.feed_all(receiver, packets)
        self.assertEqual(event.duration, 0.2)

    def test_straggler_after_end(self) -> None:
        """A late non-end packet of a finished press does not start a new one."""
        receiver = DtmfReceiver()
        packets = press(1, 1000, 0.0) + [(1000, build_event(1, 800), 0.5)]
        self.assertEqual(len(self.feed_all(receiver, packets)), 1)
        self.assertEqual(receiver.close(), [])

    def test_long_event_segments(self) -> None:
        """A press longer than 65535 ticks (8.2 s) is sent in segments and reported once."""
        receiver = DtmfReceiver()
        packets = [(0, build_event(0, d), d / 8000) for d in range(400, 65535, 4000)]
        packets.append((0, build_event(0, 65535), 8.19))
        packets += [(65535, build_event(0, d), 8.2 + d / 8000) for d in (400, 800)]
        packets += [(65535, build_event(0, 8000, end=True), 9.2)] * 3
        (event,) = self.feed_all(receiver, packets)
        self.assertEqual(event.timestamp, 0)
        self.assertAlmostEqual(event.duration, (65535 + 8000) / 8000)

    def test_timestamp_wrap(self) -> None:
        """Events on either side of the 32-bit timestamp wrap are separate and in order."""
        receiver = DtmfReceiver()
        packets = press(1, 0xFFFFF000, 0.0) + press(2, 0x00000400, 1.0)
        self.assertEqual([e.digit for e in self.feed_all(receiver, packets)], ["1", "2"])

    def test_ssrc_change(self) -> None:
        """A new source with the same timestamp is a new event; the old one ends inferred."""
        receiver = DtmfReceiver()
        events = self.feed_all(receiver, press(1, 1000, 0.0, ends=0), ssrc=1)
        events += self.feed_all(receiver, press(2, 1000, 1.0), ssrc=2)
        self.assertEqual([(e.digit, e.ssrc, e.end_seen) for e in events], [("1", 1, False), ("2", 2, True)])

    def test_wideband_clock(self) -> None:
        """Durations use the telephone-event clock rate (here 16 kHz)."""
        receiver = DtmfReceiver(clock_rate=16000)
        (event,) = self.feed_all(receiver, press(6, 0, 0.0, step=800))
        self.assertEqual(event.duration, 0.25)

    def test_garbage_counted_and_raised(self) -> None:
        """A malformed payload raises DtmfParseError and is counted; state survives."""
        receiver = DtmfReceiver()
        self.feed_all(receiver, press(3, 1000, 0.0, ends=0))
        self.assertRaises(DtmfParseError, receiver.feed, 1000, b"\x03\x00", 0.4, 1)
        self.assertEqual(receiver.bad_payloads, 1)
        (event,) = receiver.close()
        self.assertEqual(event.digit, "3")

    def test_bad_clock_rate(self) -> None:
        self.assertRaises(ValueError, DtmfReceiver, 0)

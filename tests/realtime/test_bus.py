"""Tests for siprec.realtime.bus under a Clock: ordering, isolation, bounds, filters."""

from __future__ import annotations

from typing import List

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from siprec.realtime import events
from siprec.realtime.bus import EventBus, type_matcher
from siprec.realtime.events import Event

CALL = {"id": "s1", "call_id": "c1@h"}


def digit(i: int) -> Event:
    return events.dtmf(CALL, leg="leg0", digit=str(i % 10), start=float(i))


class BusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.bus = EventBus(self.clock, queue_size=100, drain_batch=10)

    def test_stamps_sequence_and_time(self):
        first = self.bus.publish(digit(1))
        self.clock.advance(2.5)
        second = self.bus.publish(digit(2))
        timed = self.bus.publish(events.dtmf(CALL, leg=None, digit="1", start=0, at=5.0))
        self.assertEqual([(e.seq, e.time) for e in (first, second, timed)],
                         [(1, 1000.0), (2, 1002.5), (3, 5.0)])

    def test_publish_runs_no_subscriber_code(self):
        got: List[Event] = []
        self.bus.subscribe(got.append, name="t")
        published = [self.bus.publish(digit(i)) for i in range(5)]
        self.assertEqual(got, [])
        self.clock.advance(0)
        self.assertEqual(got, published)

    def test_failing_subscriber_isolated(self):
        good: List[Event] = []

        def broken(event: Event) -> None:
            raise RuntimeError("boom")

        bad = self.bus.subscribe(broken, name="broken")
        self.bus.subscribe(good.append, name="good")
        for i in range(3):
            self.bus.publish(digit(i))
        self.clock.advance(0)
        self.assertEqual(len(good), 3)
        self.assertEqual((bad.failed, bad.delivered), (3, 0))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)  # rate limited
        self.clock.advance(11)
        self.bus.publish(digit(9))
        self.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_slow_subscriber_bounded_drops_oldest(self):
        got: List[Event] = []
        slow = self.bus.subscribe(got.append, name="slow", queue_size=5)
        fast: List[Event] = []
        self.bus.subscribe(fast.append, name="fast")
        published = [self.bus.publish(digit(i)) for i in range(12)]
        self.assertEqual((len(slow.queue), slow.dropped), (5, 7))
        self.clock.advance(0)
        self.assertEqual(got, published[7:])
        self.assertEqual(fast, published)

    def test_drains_in_bounded_batches(self):
        got: List[Event] = []
        self.bus.subscribe(got.append, name="t")
        for i in range(35):
            self.bus.publish(digit(i))
        self.bus._drain()  # one reactor turn's worth
        self.assertEqual(len(got), 10)
        self.assertTrue(self.clock.getDelayedCalls())  # the rest on a later turn
        self.clock.advance(0)
        self.assertEqual(len(got), 35)
        self.assertFalse(self.clock.getDelayedCalls())

    def test_type_filters(self):
        dtmf: List[Event] = []
        calls: List[Event] = []
        self.bus.subscribe(dtmf.append, name="d", types=["dtmf"])
        self.bus.subscribe(calls.append, name="c", types=["call.*"])
        self.bus.publish(digit(1))
        self.bus.publish(events.call_started({**CALL, "state": "active"}))
        self.clock.advance(0)
        self.assertEqual(([e.type for e in dtmf], [e.type for e in calls]),
                         (["dtmf"], ["call.started"]))

    def test_cancel(self):
        got: List[Event] = []
        sub = self.bus.subscribe(got.append, name="t")
        self.bus.publish(digit(1))
        sub.cancel()
        self.bus.publish(digit(2))
        self.clock.advance(0)
        self.assertEqual(got, [])
        self.assertEqual(self.bus.subscriptions, [])

    def test_publish_from_subscriber(self):
        """A subscriber may publish; the new event goes out on a later turn, in order."""
        seen: List[int] = []

        def relay(event: Event) -> None:
            seen.append(event.seq)
            if event.type == "dtmf":
                self.bus.publish(events.call_updated(CALL, reason="dtmf"))

        self.bus.subscribe(relay, name="relay")
        self.bus.publish(digit(1))
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(seen, [1, 2])

    def test_flush(self):
        got: List[Event] = []
        self.bus.subscribe(got.append, name="t")
        for i in range(25):
            self.bus.publish(digit(i))
        self.bus.flush()
        self.assertEqual(len(got), 25)
        self.assertFalse(self.clock.getDelayedCalls())

    def test_not_an_event(self):
        self.assertRaises(TypeError, self.bus.publish, {"type": "dtmf"})

    def test_stats(self):
        sub = self.bus.subscribe(lambda e: None, name="t", queue_size=1)
        self.bus.publish(digit(1))
        self.bus.publish(digit(2))
        self.assertEqual(self.bus.stats(), {"published": 2, "subscribers": [
            {"name": "t", "queued": 1, "delivered": 0, "dropped": 1, "failed": 0}]})
        self.assertIs(self.bus.subscriptions[0], sub)


class TypeMatcherTests(SynchronousTestCase):
    def test_patterns(self):
        match = type_matcher(["transcript.*", "dtmf"])
        self.assertEqual([match(t) for t in ("transcript.final", "transcript.partial", "dtmf",
                                             "call.started")], [True, True, True, False])
        self.assertTrue(type_matcher(None)("anything"))
        self.assertTrue(type_matcher(["*"])("call.ended"))

    def test_bad_patterns(self):
        for patterns in (["nope"], ["nope.*"], [""], [3], ["transcript"]):
            self.assertRaises(ValueError, type_matcher, patterns)

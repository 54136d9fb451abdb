"""Circuit breaker state transitions under a Clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from siprec.stt.breaker import BreakerSettings, BreakerState, CircuitBreaker


class BreakerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.changes = []
        self.breaker = CircuitBreaker(
            "deepgram", self.clock, BreakerSettings(3, 30.0, 1),
            on_change=lambda name, old, new: self.changes.append((name, str(old), str(new))))

    def fail(self, times: int = 1) -> None:
        for _ in range(times):
            self.breaker.record_failure()

    def test_closed_until_threshold(self) -> None:
        """Failures below the threshold keep it closed; a success resets the count."""
        self.fail(2)
        self.breaker.record_success()
        self.fail(2)
        self.assertIs(self.breaker.state, BreakerState.CLOSED)
        self.assertTrue(self.breaker.allow())
        self.fail()
        self.assertIs(self.breaker.state, BreakerState.OPEN)
        self.assertEqual(self.changes, [("deepgram", "closed", "open")])

    def test_open_rejects_until_reset_timeout(self) -> None:
        """Open refuses legs and counts them, until the timeout passes on the clock."""
        self.fail(3)
        self.assertFalse(self.breaker.allow())
        self.clock.advance(29.9)
        self.assertFalse(self.breaker.allow())
        self.assertEqual(self.breaker.snapshot()["retry_in"], 30.0 - 29.9)
        self.clock.advance(0.1)
        self.assertIs(self.breaker.state, BreakerState.HALF_OPEN)
        self.assertEqual(self.breaker.snapshot()["rejections_total"], 2)

    def test_half_open_allows_limited_trials(self) -> None:
        """Half-open lets half_open_max legs through at once; release gives a slot back."""
        self.fail(3)
        self.clock.advance(30)
        self.assertTrue(self.breaker.allow())
        self.assertFalse(self.breaker.allow())
        self.breaker.release()
        self.assertTrue(self.breaker.would_allow())
        self.assertTrue(self.breaker.allow())

    def test_half_open_success_closes(self) -> None:
        self.fail(3)
        self.clock.advance(30)
        self.assertTrue(self.breaker.allow())
        self.breaker.record_success()
        self.assertIs(self.breaker.state, BreakerState.CLOSED)
        self.assertEqual([new for _, _, new in self.changes], ["open", "half-open", "closed"])
        # a fresh count: two failures do not reopen it
        self.fail(2)
        self.assertIs(self.breaker.state, BreakerState.CLOSED)

    def test_half_open_failure_reopens_for_another_timeout(self) -> None:
        self.fail(3)
        self.clock.advance(30)
        self.assertTrue(self.breaker.allow())
        self.fail()
        self.assertIs(self.breaker.state, BreakerState.OPEN)
        self.clock.advance(29)
        self.assertFalse(self.breaker.allow())
        self.clock.advance(1)
        self.assertTrue(self.breaker.allow())
        self.assertEqual(self.breaker.snapshot()["opens_total"], 2)

    def test_late_failure_while_open_keeps_it_open(self) -> None:
        """A leg admitted before the breaker opened may fail late: no change."""
        self.fail(3)
        self.clock.advance(10)
        self.fail()
        self.clock.advance(20)
        self.assertIs(self.breaker.state, BreakerState.HALF_OPEN)

    def test_snapshot_is_plain_data(self) -> None:
        snap = self.breaker.snapshot()
        self.assertEqual(snap["state"], "closed")
        self.assertIsNone(snap["retry_in"])
        self.assertEqual(set(snap), {"state", "consecutive_failures", "retry_in",
                                     "successes_total", "failures_total",
                                     "rejections_total", "opens_total"})

    def test_bad_settings(self) -> None:
        self.assertRaises(ValueError, BreakerSettings, 0)
        self.assertRaises(ValueError, BreakerSettings, 1, 0.0)
        self.assertRaises(ValueError, BreakerSettings, 1, 1.0, 0)

"""Tests for siprec.ops.health: checks, timeouts, draining and status."""

from __future__ import annotations

from typing import List

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

import siprec
from siprec.ops import health as health_module
from siprec.ops.health import MAX_DETAIL, CheckResult, Health, Readiness
from siprec.timefmt import iso_time

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class HealthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.health = Health(self.clock, check_timeout=2.0)

    def ready(self) -> Readiness:
        return self.successResultOf(self.health.ready())

    def test_live_always_ok(self) -> None:
        """Liveness ignores checks and draining: the process answers, so it lives."""
        self.health.add_check("broken", lambda: (False, "down"))
        self.health.set_draining()
        self.clock.advance(5)
        self.assertEqual(self.health.live(), {"status": "alive", "uptime_seconds": 5.0})

    def test_ready_without_checks(self) -> None:
        readiness = self.ready()
        self.assertTrue(readiness.ok)
        self.assertEqual(readiness.to_json(), {"status": "ready", "checks": {}})

    def test_all_checks_pass(self) -> None:
        self.health.add_check("sip", lambda: (True, "listening on 5060"))
        self.health.add_check("disk", lambda: succeed((True, "12 GB free")))
        readiness = self.ready()
        self.assertTrue(readiness.ok)
        self.assertEqual(readiness.status, "ready")
        self.assertEqual(readiness.checks, (CheckResult("sip", True, "listening on 5060"),
                                            CheckResult("disk", True, "12 GB free")))

    def test_one_failing_check_fails_readiness(self) -> None:
        self.health.add_check("sip", lambda: (True, "ok"))
        self.health.add_check("redis", lambda: (False, "connection refused"))
        readiness = self.ready()
        self.assertFalse(readiness.ok)
        self.assertEqual(readiness.to_json(), {
            "status": "not_ready",
            "checks": {"sip": {"ok": True, "detail": "ok"},
                       "redis": {"ok": False, "detail": "connection refused"}},
        })

    def test_deferred_check_waited_for(self) -> None:
        pending: Deferred = Deferred()
        self.health.add_check("db", lambda: pending)
        result = self.health.ready()
        self.assertNoResult(result)
        pending.callback((True, "reachable"))
        self.assertTrue(self.successResultOf(result).ok)

    def test_failed_deferred_check(self) -> None:
        self.health.add_check("db", lambda: fail(ConnectionRefusedError("10.1.2.3:3306 pw=x")))
        readiness = self.ready()
        self.assertFalse(readiness.ok)
        self.assertEqual(readiness.checks[0].detail, "check raised ConnectionRefusedError")
        self.assertEqual(len(self.flushLoggedErrors(ConnectionRefusedError)), 1)

    def test_slow_check_times_out(self) -> None:
        self.health.add_check("stt", Deferred)
        result = self.health.ready()
        self.clock.advance(1.9)
        self.assertNoResult(result)
        self.clock.advance(0.2)
        readiness = self.successResultOf(result)
        self.assertFalse(readiness.ok)
        self.assertEqual(readiness.checks[0], CheckResult("stt", False, "timed out after 2s"))

    def test_abandoned_probe_cancels_quietly(self) -> None:
        """A prober hanging up cancels pending checks without logging errors."""
        cancelled = []
        self.health.add_check("db", lambda: Deferred(lambda d: cancelled.append(d)))
        result = self.health.ready()
        result.cancel()
        self.failureResultOf(result, CancelledError)
        self.assertEqual(len(cancelled), 1)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.clock.advance(10)  # no timeout fires later
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_raising_check_fails_without_leaking_message(self) -> None:
        def check():
            raise RuntimeError("secret://user:password@host")

        self.health.add_check("storage", check)
        readiness = self.ready()
        self.assertFalse(readiness.ok)
        self.assertEqual(readiness.checks[0].detail, "check raised RuntimeError")
        self.assertNotIn("password", repr(readiness.to_json()))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_invalid_results_fail(self) -> None:
        """Only (bool, str) counts; anything else is a failure, not a crash."""
        for i, bad in enumerate([True, None, (1, "x"), (True,), (True, b"x"), (True, "x", 3), "ok"]):
            self.health.add_check(f"c{i}", lambda bad=bad: bad)
        readiness = self.ready()
        self.assertFalse(readiness.ok)
        for check in readiness.checks:
            self.assertEqual(check.detail, "check returned an invalid result", check.name)
            self.assertFalse(check.ok)

    def test_long_detail_truncated(self) -> None:
        self.health.add_check("noisy", lambda: (False, "x" * 10_000))
        self.assertEqual(len(self.ready().checks[0].detail), MAX_DETAIL)

    def test_draining_fails_readiness(self) -> None:
        self.health.add_check("sip", lambda: (True, "ok"))
        self.health.set_draining()
        readiness = self.ready()
        self.assertTrue(self.health.draining)
        self.assertFalse(readiness.ok)
        self.assertEqual(readiness.status, "draining")
        self.assertEqual(readiness.to_json()["checks"], {"sip": {"ok": True, "detail": "ok"}})
        self.health.set_draining(False)
        self.assertTrue(self.ready().ok)

    def test_draining_status_wins_over_failing_checks(self) -> None:
        self.health.add_check("sip", lambda: (False, "down"))
        self.health.set_draining()
        self.assertEqual(self.ready().status, "draining")

    def test_check_registration_rules(self) -> None:
        self.health.add_check("sip", lambda: (True, ""))
        self.assertRaises(ValueError, self.health.add_check, "sip", lambda: (True, ""))
        self.assertRaises(ValueError, self.health.add_check, "", lambda: (True, ""))
        self.assertRaises(ValueError, self.health.add_check, None, lambda: (True, ""))
        self.assertRaises(TypeError, self.health.add_check, "x", "not callable")
        self.assertEqual(self.health.check_names, ("sip",))

    def test_remove_check(self) -> None:
        self.health.add_check("sip", lambda: (False, "down"))
        self.health.remove_check("sip")
        self.health.remove_check("never-added")
        self.assertTrue(self.ready().ok)
        self.health.add_check("sip", lambda: (True, "back"))
        self.assertTrue(self.ready().ok)

    def test_status(self) -> None:
        calls = [3]
        health = Health(self.clock, active_calls=lambda: calls[0])
        self.clock.advance(42.5)
        self.assertEqual(health.status(), {
            "version": siprec.__version__,
            "started_at": "2023-11-14T22:13:20.000Z",
            "uptime_seconds": 42.5,
            "draining": False,
            "active_calls": 3,
        })
        calls[0] = 0
        health.set_draining()
        self.assertEqual(health.status()["active_calls"], 0)
        self.assertTrue(health.status()["draining"])

    def test_status_without_call_source(self) -> None:
        self.assertNotIn("active_calls", self.health.status())

    def test_iso_time(self) -> None:
        self.assertEqual(iso_time(0), "1970-01-01T00:00:00.000Z")
        self.assertEqual(iso_time(START + 0.25), "2023-11-14T22:13:20.250Z")


class FlipLoggingTests(SynchronousTestCase):
    """Probes run every few seconds: logs record changes, not every probe."""

    def test_logged_on_change_only(self) -> None:
        events: List[dict] = []
        self.patch(health_module, "log", Logger(observer=events.append))
        state = {"ok": False}
        health = Health(Clock())
        health.add_check("redis", lambda: (state["ok"], "state"))
        for _ in range(3):
            health.ready()
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["name"], "redis")
        state["ok"] = True
        for _ in range(3):
            health.ready()
        self.assertEqual(len(events), 2)
        self.assertEqual(events[1]["state"], "ok")

"""Tests for siprec.recording.manager: admission, registry, RTP timeouts, drain, totals."""

from __future__ import annotations

from typing import List, Optional, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
import os

from twisted.trial.unittest import SynchronousTestCase

from siprec.recording import manager as manager_module
from siprec.recording.manager import ManagerSettings, RecordingManager
from siprec.sip.errors import CallRejected
from tests.recording.test_session import START, Harness, M, offer, two_legs

TIMEOUT = 10.0


class FakeDialog:
    def __init__(self) -> None:
        self.terminated = False


class FakeSignalling:
    """SipCore.terminate: BYE to the SRC, close the dialog, end the session."""

    def __init__(self) -> None:
        self.terminated: List[Tuple[FakeDialog, str]] = []
        self.broken = False
        self.silent = False  # returns without ending the session (dialog already gone)

    def terminate(self, dialog: FakeDialog, reason: str) -> Deferred:
        self.terminated.append((dialog, reason))
        if self.broken:
            raise RuntimeError("no route to the SRC")
        if self.silent or dialog.terminated:
            return succeed(None)
        dialog.terminated = True
        return dialog.session.end(reason)


class ManagerHarness(Harness):
    def __init__(self, test: SynchronousTestCase, **settings) -> None:
        settings.setdefault("rtp_timeout", TIMEOUT)
        super().__init__(test, **settings)
        self.signalling = FakeSignalling()
        self.events: List[dict] = []
        test.patch(manager_module, "log", Logger(observer=self.events.append))

    def dialog_call(self, call_id: str = "call-1@src.example.com", streams=None):
        session, _ = self.call(streams or two_legs(), call_id=call_id)
        dialog = FakeDialog()
        dialog.session = session
        session.dialog_established(lambda reason: self.signalling.terminate(dialog, reason))
        return session, dialog

    def logged(self, text: str) -> List[dict]:
        return [e for e in self.events if text in e.get("log_format", "")]


class AdmissionTests(SynchronousTestCase):
    def test_admits_by_default(self) -> None:
        h = ManagerHarness(self)
        self.assertIsNone(h.manager.admission())

    def test_draining_refuses(self) -> None:
        h = ManagerHarness(self)
        self.successResultOf(h.manager.drain())
        rejected = h.manager.admission()
        self.assertIsInstance(rejected, CallRejected)
        self.assertEqual(rejected.status, 503)
        self.assertIn(("Retry-After", "30"), rejected.headers)

    def test_call_limit_counts_calls_being_set_up(self) -> None:
        """MAX_CONCURRENT_CALLS: active calls and INVITEs still being answered both count."""
        h = ManagerHarness(self, max_calls=2)
        h.call(two_legs(), call_id="a")
        self.assertIsNone(h.manager.admission())
        pending = h.session("b")
        rejected = h.manager.admission()
        self.assertEqual(rejected.status, 503)
        self.assertEqual(rejected.reason, "Too many concurrent calls")
        self.successResultOf(pending.end("cancelled"))
        self.assertIsNone(h.manager.admission())

    def test_ended_calls_free_their_place(self) -> None:
        h = ManagerHarness(self, max_calls=1)
        session, _ = h.call(two_legs())
        self.assertIsNotNone(h.manager.admission())
        self.successResultOf(session.end("bye"))
        self.assertIsNone(h.manager.admission())

    def test_zero_means_unlimited(self) -> None:
        h = ManagerHarness(self, max_calls=0)
        for n in range(20):
            h.call(two_legs(), call_id=f"c{n}")
        self.assertIsNone(h.manager.admission())
        self.assertEqual(h.manager.active_count, 20)


class RegistryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = ManagerHarness(self, keep_ended=2)

    def test_get_by_id_or_call_id(self) -> None:
        session, _ = self.h.call(two_legs(), call_id="abc@src")
        self.assertIs(self.h.manager.get(session.id), session)
        self.assertIs(self.h.manager.get("abc@src"), session)
        self.assertIsNone(self.h.manager.get("nope"))
        self.assertIsNone(self.h.manager.get(""))

    def test_get_prefers_the_live_call(self) -> None:
        """The same Call-ID ended once and live again: get() finds the live one."""
        old, _ = self.h.call(two_legs(), call_id="again@src")
        self.successResultOf(old.end("bye"))
        new, _ = self.h.call(two_legs(), call_id="again@src")
        self.assertIs(self.h.manager.get("again@src"), new)
        self.assertIs(self.h.manager.get(old.id), old)

    def test_sessions_order(self) -> None:
        """Active calls in start order, then ended ones newest first."""
        a, _ = self.h.call(two_legs(), call_id="a")
        b, _ = self.h.call(two_legs(), call_id="b")
        c, _ = self.h.call(two_legs(), call_id="c")
        d, _ = self.h.call(two_legs(), call_id="d")
        self.successResultOf(b.end("bye"))
        self.successResultOf(a.end("bye"))
        self.assertEqual([s.call_id for s in self.h.manager.sessions()], ["c", "d", "a", "b"])

    def test_keeps_only_keep_ended(self) -> None:
        sessions = [self.h.call(two_legs(), call_id=f"c{n}")[0] for n in range(4)]
        for session in sessions:
            self.successResultOf(session.end("bye"))
        self.assertEqual([s.call_id for s in self.h.manager.sessions()], ["c3", "c2"])
        self.assertIsNone(self.h.manager.get("c0"))
        self.assertEqual(self.h.manager.calls_total, 4)
        self.assertEqual(self.h.metrics.ended, ["bye"] * 4)

    def test_sessions_being_set_up_are_not_listed(self) -> None:
        pending = self.h.session("setting-up")
        self.assertEqual(self.h.manager.sessions(), [])
        self.assertEqual(self.h.manager.active_count, 0)
        self.successResultOf(pending.end("rejected"))
        self.assertEqual(self.h.manager.sessions(), [])


class TerminateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = ManagerHarness(self)

    def test_terminate_sends_bye_through_signalling(self) -> None:
        session, dialog = self.h.dialog_call()
        d = self.h.manager.terminate(session.call_id)
        self.successResultOf(d)
        self.assertEqual(self.h.signalling.terminated, [(dialog, "api")])
        self.assertEqual(session.state, "ended")
        self.assertEqual(session.end_reason, "api")

    def test_terminate_without_dialog_finalises(self) -> None:
        session, _ = self.h.call(two_legs())
        self.successResultOf(self.h.manager.terminate(session.id, "operator"))
        self.assertEqual(self.h.signalling.terminated, [])
        self.assertEqual(session.end_reason, "operator")

    def test_terminate_unknown_is_none(self) -> None:
        self.assertIsNone(self.h.manager.terminate("unknown"))

    def test_terminate_ended_session_sends_nothing(self) -> None:
        session, dialog = self.h.dialog_call()
        self.successResultOf(session.end("bye"))
        self.successResultOf(self.h.manager.terminate(session.id))
        self.assertEqual(self.h.signalling.terminated, [])
        self.assertEqual(session.end_reason, "bye")

    def test_signalling_failure_still_finalises(self) -> None:
        self.h.signalling.broken = True
        session, _ = self.h.dialog_call()
        self.successResultOf(self.h.manager.terminate(session.id))
        self.assertEqual(session.state, "ended")
        self.assertEqual(self.h.manager.active_count, 0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)  # logged, with its traceback

    def test_dialog_gone_still_finalises(self) -> None:
        """The signalling layer has no dialog to BYE any more: the session ends anyway."""
        self.h.signalling.silent = True
        session, _ = self.h.dialog_call()
        d = self.h.manager.terminate(session.id)
        self.successResultOf(d)
        self.assertEqual(session.state, "ended")


class RtpTimeoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = ManagerHarness(self)
        self.h.manager.start()
        self.addCleanup(self.h.manager.stop)

    def test_warns_once_at_half_then_ends(self) -> None:
        session, dialog = self.h.dialog_call()
        self.h.clock.pump([1.0] * 4)
        self.assertEqual(self.h.logged("RTP stream inactive"), [])
        self.h.clock.pump([1.0] * 5)  # 5..9 s idle
        self.assertEqual(len(self.h.logged("RTP stream inactive")), 1)
        self.assertEqual(session.state, "active")
        self.h.clock.advance(1.0)  # 10 s
        self.assertEqual(session.state, "ended")
        self.assertEqual(session.end_reason, "rtp-timeout")
        self.assertEqual(self.h.signalling.terminated, [(dialog, "rtp-timeout")])
        self.assertEqual(len(self.h.logged("RTP timeout detected")), 1)
        self.assertEqual(self.h.manager.active_count, 0)

    def test_packets_keep_the_call(self) -> None:
        session, _ = self.h.dialog_call()
        stream = self.h.media.opened[0]
        for second in range(1, 30):
            stream.receive(50, START + second - 1)
            self.h.clock.advance(1.0)
        self.assertEqual(session.state, "active")
        self.assertEqual(self.h.logged("RTP stream inactive"), [])

    def test_warns_again_after_media_came_back(self) -> None:
        session, _ = self.h.dialog_call()
        self.h.clock.pump([1.0] * 6)
        self.h.media.opened[0].receive(1, self.h.clock.seconds())
        self.h.clock.pump([1.0] * 6)
        self.assertEqual(len(self.h.logged("RTP stream inactive")), 2)
        self.assertEqual(session.state, "active")

    def pause_all(self, how: str):
        session, _ = self.h.dialog_call()
        if how == "api":
            session.pause()
        else:
            streams = [M("leg0", direction="inactive"), M("leg1", direction="inactive")] \
                if how == "sdp" else [M("leg0", hold=True), M("leg1", hold=True)]
            session.offer(offer(streams, version=2), [])
        self.h.clock.pump([1.0] * 100)
        return session

    def test_no_timeout_while_paused_by_sdp(self) -> None:
        self.assertEqual(self.pause_all("sdp").state, "active")

    def test_no_timeout_while_held(self) -> None:
        self.assertEqual(self.pause_all("hold").state, "active")

    def test_no_timeout_while_api_paused(self) -> None:
        self.assertEqual(self.pause_all("api").state, "active")
        self.assertEqual(self.h.logged("RTP stream inactive"), [])

    def test_timeout_counts_from_resume(self) -> None:
        session = self.pause_all("sdp")
        session.offer(offer(two_legs(), version=3), [])
        self.h.clock.pump([1.0] * 9)
        self.assertEqual(session.state, "active")
        self.h.clock.advance(1.0)
        self.assertEqual(session.end_reason, "rtp-timeout")

    def test_one_paused_stream_does_not_protect_the_other(self) -> None:
        """leg0 paused, leg1 expected but silent: the call still times out."""
        session, _ = self.h.dialog_call()
        session.offer(offer([M("leg0", direction="inactive"), M("leg1")], version=2), [])
        self.h.clock.pump([1.0] * 10)
        self.assertEqual(session.end_reason, "rtp-timeout")

    def test_disabled_timeout(self) -> None:
        h = ManagerHarness(self, rtp_timeout=0)
        h.manager.start()
        self.addCleanup(h.manager.stop)
        session, _ = h.dialog_call()
        h.clock.pump([1.0] * 1000)
        self.assertEqual(session.state, "active")

    def test_a_broken_session_does_not_stop_the_watchdog(self) -> None:
        broken, _ = self.h.dialog_call(call_id="broken")

        def boom():
            raise ValueError("stats exploded")
        broken.last_activity = boom
        other, _ = self.h.dialog_call(call_id="other")
        self.h.clock.pump([1.0] * 10)
        self.assertEqual(other.end_reason, "rtp-timeout")
        self.assertEqual(broken.state, "active")
        self.assertEqual(len(self.h.logged("RTP timeout check")), 10)

    def test_finalising_session_is_not_timed_out_again(self) -> None:
        """While a timed-out call finalises (combine running), the watchdog leaves it alone."""
        pending: List[Deferred] = []

        def later(f, *args):
            d = Deferred()
            pending.append(d)
            return d.addCallback(lambda _: f(*args))

        h = ManagerHarness(self, runner=later)
        h.manager.start()
        self.addCleanup(h.manager.stop)
        session, _ = h.dialog_call()
        h.media.opened[0].receive(1, START)
        h.clock.pump([1.0] * 15)
        self.assertEqual(session.state, "ending")
        self.assertEqual(len(h.logged("RTP timeout detected")), 1)
        self.assertEqual(len(h.signalling.terminated), 1)
        while pending:  # sidecar writes and the combine
            pending.pop(0).callback(None)
        self.assertEqual(session.state, "ended")

    def test_start_twice_runs_one_watchdog(self) -> None:
        h = ManagerHarness(self)
        checks: List[float] = []
        h.manager.check_timeouts = lambda: checks.append(h.clock.seconds())
        h.manager.start()
        h.manager.start()
        self.addCleanup(h.manager.stop)
        h.clock.pump([1.0] * 3)
        self.assertEqual(checks, [START + 1, START + 2, START + 3])

    def test_stop_stops_the_watchdog(self) -> None:
        session, _ = self.h.dialog_call()
        self.h.manager.stop()
        self.h.clock.pump([1.0] * 20)
        self.assertEqual(session.state, "active")


class DrainTests(SynchronousTestCase):
    def test_drain_ends_every_call_and_refuses_new_ones(self) -> None:
        h = ManagerHarness(self)
        with_dialog, dialog = h.dialog_call(call_id="a")
        without, _ = h.call(two_legs(), call_id="b")
        setting_up = h.session("c")
        d = h.manager.drain()
        self.successResultOf(d)
        self.assertEqual([s.state for s in (with_dialog, without, setting_up)], ["ended"] * 3)
        self.assertEqual({s.end_reason for s in (with_dialog, without, setting_up)}, {"shutdown"})
        self.assertEqual(h.signalling.terminated, [(dialog, "shutdown")])
        self.assertEqual(h.manager.active_count, 0)
        self.assertEqual(h.manager.admission().status, 503)

    def test_drain_waits_for_finalisation(self) -> None:
        pending: List[Deferred] = []

        def later(f, *args):
            d = Deferred()
            pending.append(d)
            return d.addCallback(lambda _: f(*args))

        h = ManagerHarness(self, runner=later)
        session, _ = h.call(two_legs())
        h.media.opened[0].receive(1, START)
        d = h.manager.drain()
        self.assertNoResult(d)
        while pending:  # the combine, then the record: drain fires when both are done
            self.assertNoResult(d)
            pending.pop(0).callback(None)
        self.successResultOf(d)
        self.assertEqual(session.state, "ended")

    def test_drain_with_no_calls(self) -> None:
        h = ManagerHarness(self)
        self.assertIsNone(self.successResultOf(h.manager.drain()))


class TotalsTests(SynchronousTestCase):
    def test_totals_include_ended_and_removed_streams(self) -> None:
        """Packet totals never go down: ended calls and streams removed mid-call still count."""
        h = ManagerHarness(self)
        first, _ = h.call(two_legs(), call_id="a")
        h.media.opened[0].receive(100, START)
        h.media.opened[1].receive(50, START)
        second, _ = h.call(two_legs(), call_id="b")
        h.media.opened[3].receive(7, START)
        totals = h.manager.stream_totals()
        self.assertEqual((totals["packets"], totals["bytes"], totals["active_streams"]),
                         (157, 157 * 172, 4))
        second.offer(offer([M("leg0"), M("leg1", port=0)], version=2), [])  # removes the 7
        h.media.opened[2].receive(3, START)
        totals = h.manager.stream_totals()
        self.assertEqual((totals["packets"], totals["active_streams"]), (160, 3))
        self.successResultOf(first.end("bye"))
        totals = h.manager.stream_totals()
        self.assertEqual((totals["packets"], totals["active_streams"]), (160, 1))
        self.successResultOf(second.end("bye"))
        totals = h.manager.stream_totals()
        self.assertEqual((totals["packets"], totals["active_streams"]), (160, 0))

    def test_dropped_and_late_counted(self) -> None:
        h = ManagerHarness(self)
        session, _ = h.call(two_legs())
        stream = h.media.opened[0]
        stats = stream.stats
        stream.stats = lambda: {**stats(), "bad_packets": 2, "foreign_packets": 3,
                                "overflow_dropped": 4, "late_dropped": 5}
        totals = h.manager.stream_totals()
        self.assertEqual((totals["dropped"], totals["late"]), (9, 5))
        self.successResultOf(session.end("bye"))
        totals = h.manager.stream_totals()
        self.assertEqual((totals["dropped"], totals["late"]), (9, 5))


class RunnerTests(SynchronousTestCase):
    def test_default_runner_uses_the_threadpool(self) -> None:
        """Without an injected runner, blocking work goes to deferToThreadPool on the pool."""
        calls = []

        class Pool:
            def callInThreadWithCallback(self, on_result, f, *args, **kw):
                calls.append(f)
                on_result(True, f(*args, **kw))

        class Reactor:
            def callFromThread(self, f, *args, **kw):
                f(*args, **kw)

            def seconds(self):
                return 0.0

        manager = RecordingManager(Reactor(), media=None,
                                   settings=ManagerSettings(recording_dir=".", media_address="192.0.2.1"),
                                   threadpool=Pool())
        d = manager.run_blocking(lambda a, b: a + b, 2, 3)
        self.assertEqual(self.successResultOf(d), 5)
        self.assertEqual(len(calls), 1)

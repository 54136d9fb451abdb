"""Tests for siprec.recording.assurance: refusal labels and what makes a recording incomplete."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from siprec.recording.assurance import refusal_reason
from tests.recording.test_session import START, Harness, two_legs


class RefusalReasonTests(SynchronousTestCase):
    def test_the_kind_before_the_detail(self) -> None:
        self.assertEqual(refusal_reason(400, "Malformed SDP: line 4 bad"), "Malformed SDP")
        self.assertEqual(refusal_reason(503, "No RTP port available"), "No RTP port available")
        self.assertEqual(refusal_reason(487, None), "Request Terminated")
        self.assertEqual(refusal_reason(420, ""), "status 420")
        self.assertLessEqual(len(refusal_reason(400, "x" * 500)), 60)


class IncompleteRecordingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)
        self.assurance = self.h.manager.assurance

    def test_whole_recording_is_only_counted(self) -> None:
        session, _ = self.h.call(two_legs())
        for stream in self.h.media.opened:
            stream.receive(50, START)
        self.successResultOf(session.end("bye"))
        view = self.assurance.view()
        self.assertEqual((view["calls_recorded"], view["calls_incomplete"]), (1, 0))

    def test_silent_leg_and_loss_are_listed_with_reasons(self) -> None:
        session, _ = self.h.call(two_legs())
        leg0, _ = self.h.media.opened
        leg0.receive(50, START)
        leg0.stats_extra = {"lost": 3, "overflow_dropped": 2}
        original = leg0.stats
        leg0.stats = lambda: {**original(), **leg0.stats_extra}
        self.successResultOf(session.end("bye"))
        view = self.assurance.view()
        self.assertEqual(view["calls_incomplete"], 1)
        [entry] = view["recent_incomplete"]
        self.assertEqual(entry["call_id"], session.call_id)
        self.assertEqual(entry["problems"], [
            "leg leg0: 3 packet(s) lost in the network (gap filled with silence)",
            "leg leg0: 2 packet(s) dropped by the recorder under load",
            "leg leg1: no audio received",
        ])

    def test_refused_setup_is_not_a_recorded_call(self) -> None:
        session = self.h.session()
        self.successResultOf(session.end("rejected"))
        self.assertEqual(self.assurance.view()["calls_recorded"], 0)

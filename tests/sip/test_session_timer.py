"""Tests for siprec.sip.session_timer (RFC 4028 decisions, pure) and their scheduling by the UAS.

The pure part is fed parsed requests and responses and checked on the plans
and outcomes it returns; the scheduling part drives SipCore on a Clock and
checks the UPDATEs and BYEs on the wire.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from siprec.sip.errors import CallRejected
from siprec.sip.message import Request, Response, parse_message
from siprec.sip.session_timer import (
    NO_TIMER,
    RefreshAction,
    TimerPlan,
    Wake,
    allows,
    answer_headers,
    delta_seconds,
    negotiate,
    next_wake,
    refresh_headers,
    refresh_outcome,
    supports_timer,
)
from tests.sip.test_uas import OFFER, TIMEOUT, CoreTestCase, ack_for, siprec_invite

MIN_SE = 90.0
DEFAULT = 1800.0


def invite(*headers: str) -> Request:
    lines = ["INVITE sip:srs@192.0.2.1 SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKst",
             "From: <sip:src@192.0.2.10>;tag=a", "To: <sip:srs@192.0.2.1>", "Call-ID: st@src",
             "CSeq: 1 INVITE", *headers, "Content-Length: 0"]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def answer(status: int, *headers: str) -> Response:
    lines = [f"SIP/2.0 {status} Whatever", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKup",
             "From: <sip:srs@192.0.2.1>;tag=b", "To: <sip:src@192.0.2.10>;tag=a",
             "Call-ID: st@src", "CSeq: 7 UPDATE", *headers, "Content-Length: 0"]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Response)
    return message


def plan_for(*headers: str, current=None) -> tuple:
    return negotiate(invite(*headers), current, session_expires=DEFAULT, min_se=MIN_SE)


class HeaderValueTests(SynchronousTestCase):
    def test_delta_seconds(self) -> None:
        """The value before parameters, ASCII digits only, ten at most."""
        self.assertEqual(delta_seconds("1800;refresher=uac"), 1800)
        self.assertEqual(delta_seconds(" 90 "), 90)
        for bad in (None, "", "soon", "-5", "1e3", "\u0661\u0662", "12345678901"):
            self.assertIsNone(delta_seconds(bad), bad)

    def test_supports_timer(self) -> None:
        self.assertTrue(supports_timer(invite("Supported: 100rel, timer")))
        self.assertTrue(supports_timer(invite("Require: timer")))
        self.assertFalse(supports_timer(invite("Supported: 100rel")))
        self.assertFalse(supports_timer(invite("Supported: ")))

    def test_allows(self) -> None:
        """No Allow header says nothing, so yes; otherwise the list decides (any case)."""
        self.assertTrue(allows(invite(), "UPDATE"))
        self.assertTrue(allows(invite("Allow: INVITE, ACK,update"), "UPDATE"))
        self.assertFalse(allows(invite("Allow: INVITE, ACK, BYE"), "UPDATE"))


class NegotiateTests(SynchronousTestCase):
    """RFC 4028 §9 as values: what goes in our 2xx."""

    def test_nobody_asks_no_timer(self) -> None:
        self.assertEqual(plan_for(), (NO_TIMER, ()))

    def test_supported_without_session_expires_gets_our_default(self) -> None:
        self.assertEqual(plan_for("Supported: timer"), (TimerPlan(DEFAULT, False), ()))

    def test_min_se_raises_the_default(self) -> None:
        self.assertEqual(plan_for("Supported: timer", "Min-SE: 2000")[0], TimerPlan(2000.0, False))

    def test_current_plan_kept_on_a_refresh_without_session_expires(self) -> None:
        current = TimerPlan(300.0, True)
        self.assertEqual(plan_for("Supported: timer", current=current)[0], current)

    def test_refresher_table(self) -> None:
        """§9 Table 2: the UAC's choice stands; without one a supporting UAC refreshes."""
        cases = [
            (("Supported: timer", "Session-Expires: 600"), TimerPlan(600.0, False)),
            (("Supported: timer", "Session-Expires: 600;refresher=uac"), TimerPlan(600.0, False)),
            (("Supported: timer", "Session-Expires: 600;refresher=UAS"), TimerPlan(600.0, True)),
            (("Session-Expires: 600",), TimerPlan(600.0, True)),
        ]
        for headers, expected in cases:
            self.assertEqual(plan_for(*headers), (expected, ()), headers)

    def test_too_small_is_422_with_our_min_se(self) -> None:
        with self.assertRaises(CallRejected) as caught:
            plan_for("Supported: timer", "Session-Expires: 60")
        self.assertEqual((caught.exception.status, caught.exception.headers), (422, [("Min-SE", "90")]))

    def test_too_small_without_support_is_raised_with_a_note(self) -> None:
        plan, notes = plan_for("Session-Expires: 60")
        self.assertEqual(plan, TimerPlan(MIN_SE, True))
        self.assertIn("below our Min-SE", notes[0])

    def test_refresher_uac_without_support_means_we_refresh(self) -> None:
        plan, notes = plan_for("Session-Expires: 600;refresher=uac")
        self.assertEqual(plan, TimerPlan(600.0, True))
        self.assertEqual(notes, ("refresher=uac from a UAC that does not support session timers; we refresh",))

    def test_we_cannot_refresh_without_update(self) -> None:
        plan, notes = plan_for("Session-Expires: 600", "Allow: INVITE, ACK, BYE")
        self.assertEqual(plan, NO_TIMER)
        self.assertIn("does not allow UPDATE", notes[0])

    def test_malformed_values_noted_and_ignored(self) -> None:
        self.assertEqual(plan_for("Session-Expires: soon"), (NO_TIMER, ("malformed Session-Expires 'soon' ignored",)))
        self.assertEqual(plan_for("Session-Expires: 0"), (NO_TIMER, ("malformed Session-Expires '0' ignored",)))
        plan, notes = plan_for("Supported: timer", "Session-Expires: 600;=x")
        self.assertEqual(plan, TimerPlan(600.0, False))
        self.assertIn("malformed Session-Expires parameters", notes[0])


class HeadersAndWakeTests(SynchronousTestCase):
    def test_answer_headers(self) -> None:
        """Require: timer only to a UAC that supports it (RFC 4028 §9); nothing for no timer."""
        self.assertEqual(answer_headers(TimerPlan(600.0, True), invite("Supported: timer")),
                         [("Session-Expires", "600;refresher=uas"), ("Require", "timer")])
        self.assertEqual(answer_headers(TimerPlan(600.0, True), invite()),
                         [("Session-Expires", "600;refresher=uas")])
        self.assertEqual(answer_headers(NO_TIMER, invite("Supported: timer")), [])
        self.assertEqual(answer_headers(None, invite()), [])

    def test_refresh_headers_keep_us_refresher(self) -> None:
        """In our UPDATE we are the UAC, so refresher=uac means us."""
        self.assertEqual(refresh_headers(TimerPlan(600.0, True), MIN_SE),
                         [("Session-Expires", "600;refresher=uac"), ("Min-SE", "90"), ("Supported", "timer")])

    def test_next_wake(self) -> None:
        """Refresh at half the interval; BYE at interval - min(32, interval/3)."""
        self.assertEqual(next_wake(TimerPlan(100.0, True)), (Wake.REFRESH, 50.0))
        self.assertEqual(next_wake(TimerPlan(120.0, False)), (Wake.EXPIRE, 88.0))
        self.assertEqual(next_wake(TimerPlan(90.0, False)), (Wake.EXPIRE, 60.0))
        self.assertIsNone(next_wake(NO_TIMER))
        self.assertIsNone(next_wake(None))


class RefreshOutcomeTests(SynchronousTestCase):
    """What each answer to our refresh UPDATE means."""

    plan = TimerPlan(100.0, True)

    def outcome(self, status: int, *headers: str):
        return refresh_outcome(answer(status, *headers), self.plan)

    def test_2xx_renews_with_the_answered_interval_and_refresher(self) -> None:
        self.assertEqual(self.outcome(200, "Session-Expires: 200;refresher=uac").plan, TimerPlan(200.0, True))
        renewed = self.outcome(200, "Session-Expires: 100;refresher=uas")
        self.assertEqual((renewed.action, renewed.plan), (RefreshAction.RENEW, TimerPlan(100.0, False)))

    def test_2xx_with_unreadable_values_keeps_ours(self) -> None:
        self.assertEqual(self.outcome(200, "Session-Expires: x;refresher").plan, TimerPlan(100.0, True))
        self.assertEqual(self.outcome(202, "Session-Expires: 100;=").plan, TimerPlan(100.0, True))

    def test_2xx_without_session_expires_stops_the_timer(self) -> None:
        outcome = self.outcome(200)
        self.assertEqual(outcome.action, RefreshAction.STOP)
        self.assertIn("no Session-Expires", outcome.reason)

    def test_session_gone(self) -> None:
        for status in (408, 481):
            self.assertEqual(self.outcome(status).action, RefreshAction.END, status)

    def test_422_grows_or_ends(self) -> None:
        grown = self.outcome(422, "Min-SE: 300")
        self.assertEqual((grown.action, grown.plan), (RefreshAction.GROW, TimerPlan(300.0, True)))
        self.assertEqual(self.outcome(422, "Min-SE: 100").action, RefreshAction.END)
        self.assertEqual(self.outcome(422).action, RefreshAction.END)

    def test_update_refused_stops_refreshing(self) -> None:
        for status in (405, 501):
            outcome = self.outcome(status)
            self.assertEqual(outcome.action, RefreshAction.STOP)
            self.assertIn("refuses UPDATE", outcome.reason)

    def test_transient_failures_retry_soon(self) -> None:
        for status in (491, 500, 503, 486):
            outcome = self.outcome(status)
            self.assertEqual((outcome.action, outcome.delay), (RefreshAction.RETRY, 4.0), status)
        self.assertEqual(refresh_outcome(answer(491), TimerPlan(8.0, True)).delay, 2.0)


class SchedulingTests(CoreTestCase):
    """The core arms, re-arms and acts on the plans, on its Clock, and sends what they say."""

    def timer_invite(self, *headers: str, **kwargs) -> Request:
        return siprec_invite(headers=list(headers), **kwargs)

    def test_too_small_is_422_with_min_se(self) -> None:
        response = self.one(self.send(self.timer_invite("Supported: timer", "Session-Expires: 60")), 422)
        self.assertEqual(response.headers.get("Min-SE"), "90")
        self.assertEqual(self.handler.sessions, [])

    def test_too_small_without_timer_support_raised_not_refused(self) -> None:
        """A UAC that cannot read a 422 is not sent one: the interval is raised, we refresh."""
        ok = self.one(self.send(self.timer_invite("Session-Expires: 60")), 200)
        self.assertEqual(ok.headers.get("Session-Expires"), "90;refresher=uas")
        self.assertNotIn("Require", ok.headers)

    def test_src_refreshes_or_we_bye(self) -> None:
        """refresher=uac and no refresh: BYE at interval - min(32, interval/3)."""
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 120;refresher=uac"])
        self.assertEqual(ok.headers.get("Session-Expires"), "120;refresher=uac")
        self.assertEqual(ok.headers.get("Require"), "timer")
        self.assertEqual(self.advance(88 - 0.01), [])
        bye = self.one(self.advance(0.01))
        self.assertEqual(bye.method, "BYE")
        self.assertEqual(call.end_reasons(), ["session-timer-expired"])

    def test_short_interval_uses_a_third(self) -> None:
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 90"])
        self.assertEqual(ok.headers.get("Session-Expires"), "90;refresher=uac")
        self.assertEqual(self.advance(60 - 0.01), [])
        self.assertEqual(self.one(self.advance(0.01)).method, "BYE")

    def test_reinvite_refresh_rearms(self) -> None:
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 120"])
        self.advance(80)
        response = self.one(self.send(self.in_dialog("INVITE", ok, 2, body=OFFER, content_type="application/sdp",
                                                     headers=["Supported: timer", "Session-Expires: 120"])), 200)
        self.send(ack_for(response))
        self.assertEqual(self.advance(88 - 0.01), [])
        self.assertEqual(self.one(self.advance(0.01)).method, "BYE")

    def test_update_refresh_rearms(self) -> None:
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 120"])
        self.advance(80)
        response = self.one(self.send(self.in_dialog("UPDATE", ok, 2, headers=[
            "Supported: timer", "Session-Expires: 120;refresher=uac"])), 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.headers.get("Session-Expires"), "120;refresher=uac")
        self.assertEqual(response.headers.get("Require"), "timer")
        self.assertEqual(self.advance(87.9), [])
        self.assertEqual(call.end_reasons(), [])

    def test_we_refresh_with_update(self) -> None:
        """refresher=uas: an UPDATE at half the interval, saying we stay the refresher."""
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 100;refresher=uas"])
        self.assertEqual(ok.headers.get("Session-Expires"), "100;refresher=uas")
        self.assertEqual(self.advance(49.9), [])
        update = self.one(self.advance(0.1))
        self.assertEqual(update.method, "UPDATE")
        self.assertEqual(update.headers.get("Session-Expires"), "100;refresher=uac")
        self.assertIn("timer", update.option_tags("Supported"))
        self.assertIn("+sip.srs", update.headers.get("Contact"))
        self.assertEqual(update.body, b"")
        self.core.receive(self.answer(update, 200, "Session-Expires: 100;refresher=uac"), self.peer)
        self.assertEqual(self.advance(49.9), [])
        second = self.one(self.advance(0.1))
        self.assertEqual(second.method, "UPDATE")
        self.assertEqual(second.cseq.number, update.cseq.number + 1)

    def answer(self, req: Request, status: int, *headers: str) -> Response:
        lines = [f"SIP/2.0 {status} Whatever", f"Via: {req.headers.get('Via')}",
                 f"From: {req.headers.get('From')}", f"To: {req.headers.get('To')}",
                 f"Call-ID: {req.call_id}", f"CSeq: {req.headers.get('CSeq')}", *headers,
                 "Content-Length: 0"]
        return parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())

    def test_refresh_answer_can_hand_over_refreshing(self) -> None:
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 100;refresher=uas"])
        update = self.one(self.advance(50))
        self.core.receive(self.answer(update, 200, "Session-Expires: 100;refresher=uas"), self.peer)
        # Now the SRC refreshes; without one we BYE before expiry.
        self.assertEqual(self.one(self.advance(100 - 32)).method, "BYE")

    def test_refresh_481_ends_call(self) -> None:
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 100;refresher=uas"])
        update = self.one(self.advance(50))
        self.core.receive(self.answer(update, 481), self.peer)
        self.assertEqual(self.one(self.take()).method, "BYE")
        self.assertEqual(call.end_reasons(), ["session-refresh-failed"])

    def test_refresh_timeout_ends_call(self) -> None:
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 100;refresher=uas"])
        self.advance(50)
        messages = self.advance(TIMEOUT)
        self.assertEqual(messages[-1].method, "BYE")
        self.assertEqual(call.end_reasons(), ["session-refresh-failed"])

    def test_refresh_refused_stops_refreshing(self) -> None:
        """An SRC that refuses UPDATE (405) keeps its call; we stop refreshing."""
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 100;refresher=uas"])
        update = self.one(self.advance(50))
        self.core.receive(self.answer(update, 405, "Allow: INVITE, ACK, BYE"), self.peer)
        self.assertEqual(self.advance(1000), [])
        self.assertEqual(call.end_reasons(), [])

    def test_src_without_update_gets_no_timer(self) -> None:
        """We would have to refresh, but the SRC does not allow UPDATE: no session timer."""
        ok = self.one(self.send(self.timer_invite("Session-Expires: 1800", "Allow: INVITE, ACK, BYE, CANCEL")), 200)
        self.assertNotIn("Session-Expires", ok.headers)

    def test_timer_offered_when_src_supports_it(self) -> None:
        ok = self.one(self.send(self.timer_invite("Supported: timer", "Min-SE: 2000")), 200)
        self.assertEqual(ok.headers.get("Session-Expires"), "2000;refresher=uac")
        self.assertEqual(ok.headers.get("Require"), "timer")

    def test_require_timer_counts_as_support(self) -> None:
        response = self.one(self.send(self.timer_invite("Require: timer", "Session-Expires: 60")), 422)
        self.assertEqual(response.headers.get("Min-SE"), "90")
        ok = self.one(self.send(self.timer_invite("Require: timer", "Session-Expires: 300", cseq=2)), 200)
        self.assertEqual((ok.headers.get("Session-Expires"), ok.headers.get("Require")),
                         ("300;refresher=uac", "timer"))

    def test_no_timer_when_neither_asks(self) -> None:
        invite, ok, call = self.establish(headers=[])
        self.assertNotIn("Session-Expires", ok.headers)
        self.assertNotIn("Require", ok.headers)
        self.assertEqual(self.advance(10000), [])
        self.assertEqual(call.end_reasons(), [])

    def test_malformed_session_expires_tolerated(self) -> None:
        self.one(self.send(self.timer_invite("Session-Expires: soon")), 200)
        self.assertTrue(any("malformed Session-Expires" in n for n in self.handler.sessions[0].notes))

    def test_refresh_422_grows_and_refreshes_at_once(self) -> None:
        """A 422 with a larger Min-SE: a new UPDATE right away with that interval."""
        self.establish(headers=["Supported: timer", "Session-Expires: 100;refresher=uas"])
        update = self.one(self.advance(50))
        again = self.one(self.send_response(self.answer(update, 422, "Min-SE: 400")))
        self.assertEqual(again.method, "UPDATE")
        self.assertEqual(again.headers.get("Session-Expires"), "400;refresher=uac")
        self.assertEqual(again.cseq.number, update.cseq.number + 1)

    def test_refresh_491_retried_shortly(self) -> None:
        """A transient failure: the same refresh again after four seconds, the call kept."""
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 100;refresher=uas"])
        update = self.one(self.advance(50))
        self.assertEqual(self.send_response(self.answer(update, 491)), [])
        self.assertEqual(self.advance(3.9), [])
        self.assertEqual(self.one(self.advance(0.1)).method, "UPDATE")
        self.assertEqual(call.end_reasons(), [])

    def test_late_refresh_answer_after_renegotiation_ignored(self) -> None:
        """The SRC re-INVITEs with a new timer while our UPDATE is out: its answer changes nothing."""
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 100;refresher=uas"])
        update = self.one(self.advance(50))
        response = self.one(self.send(self.in_dialog("INVITE", ok, 2, body=OFFER, content_type="application/sdp",
                                                     headers=["Supported: timer", "Session-Expires: 300;refresher=uac"])), 200)
        self.send(ack_for(response))
        self.assertEqual(self.send_response(self.answer(update, 481)), [])
        self.assertEqual(call.end_reasons(), [])
        self.assertEqual(self.one(self.advance(300 - 32)).method, "BYE")

    def send_response(self, response: Response) -> list:
        self.core.receive(response, self.peer)
        return self.take()

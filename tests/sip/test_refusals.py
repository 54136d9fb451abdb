"""Every new INVITE the core refuses is reported to the call handler, once."""

from __future__ import annotations

from siprec.sip.errors import CallRejected
from siprec.sip.message import SipParseError, parse_message
from tests.sip.test_uas import G729_ONLY, CoreTestCase, request, siprec_invite


class RefusalAccountingTests(CoreTestCase):
    def test_each_refusal_reported_with_status_and_reason(self) -> None:
        self.handler.refusal = CallRejected(503, "Too many concurrent calls")
        self.one(self.send(siprec_invite(call_id="a@src")), 503)
        self.handler.refusal = None
        self.one(self.send(request("INVITE", call_id="b@src", body=G729_ONLY,
                                   content_type="application/sdp")), 488)
        self.one(self.send(request("INVITE", call_id="c@src", body=b"hello",
                                   content_type="text/plain")), 415)
        self.assertEqual(self.handler.refused, [
            ("a@src", 503, "Too many concurrent calls"),
            ("b@src", 488, "No acceptable media"),
            ("c@src", 415, "Unsupported Media Type"),
        ])

    def test_recorded_calls_and_in_dialog_errors_are_not_refusals(self) -> None:
        invite, ok, call = self.establish()
        self.one(self.send(self.in_dialog("INFO", ok, 2)), 405)
        self.one(self.send(request("BYE", to_tag="nobody", call_id="unknown@src")), 481)
        self.assertEqual(self.handler.refused, [])

    def test_copies_on_other_branches_count_once(self) -> None:
        """The same refused INVITE again on a new branch gets the same answer, not a
        second entry."""
        first = request("INVITE", call_id="d@src", body=G729_ONLY,
                        content_type="application/sdp", branch="z9hG4bKone")
        again = request("INVITE", call_id="d@src", body=G729_ONLY,
                        content_type="application/sdp", branch="z9hG4bKtwo")
        self.one(self.send(first), 488)
        self.one(self.send(again), 488)
        self.assertEqual(len(self.handler.refused), 1)

    def test_malformed_invite_answered_statelessly_is_reported(self) -> None:
        data = (b"INVITE sip:srs@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx\r\n"
                b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: bad@src\r\nCSeq: 1 BYE\r\n"
                b"Content-Length: 0\r\n\r\n")
        try:
            parse_message(data)
        except SipParseError as error:
            self.core.parse_error(error, self.peer)
        [(call_id, status, reason)] = self.handler.refused
        self.assertEqual((call_id, status), ("bad@src", 400))
        self.assertIn("CSeq method", reason)

    def test_draining_refusals_are_accounted_for(self) -> None:
        self.core.stop_accepting()
        self.one(self.send(siprec_invite(call_id="e@src")), 503)
        self.assertEqual(self.handler.refused, [("e@src", 503, "Shutting down")])

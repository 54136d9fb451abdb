"""SIP-level dialects of real SRCs, each a whole call through SipCore.

Fixtures (tests/sip/fixtures/*.sip) restate what vendors' published SIPp
call flows send: BroadWorks pause/resume, Oracle/Acme SBC, Webex Calling,
Cisco CUBE network-based recording. Every message is parsed by the real
parser and handed to the core the way the transports do (a parse error goes
to ``parse_error``); every answer is parsed back and checked for strictness.
"""

from __future__ import annotations

from typing import List

from siprec.sip.message import SipParseError, parse_message
from siprec.sip.sdp import parse_sdp
from tests.sip.flows import load_flow, render
from tests.sip.test_uas import OFFER, T1, TIMEOUT, CoreTestCase, request, siprec_invite


class FlowTestCase(CoreTestCase):
    def feed(self, data: bytes) -> List:
        """One message from the wire, delivered as the transports deliver it."""
        try:
            message = parse_message(data)
        except SipParseError as error:
            self.core.parse_error(error, self.peer)
        else:
            self.core.receive(message, self.peer)
        return self.take()

    def notes(self) -> List[str]:
        return self.handler.sessions[-1].notes


class BroadWorksPauseResumeTests(FlowTestCase):
    """INVITE, ACK, hold re-INVITE (c=0.0.0.0), ACK, resume, ACK and BYE with 'CSeq: N INVITE'."""

    def setUp(self) -> None:
        super().setUp()
        self.flow = load_flow("broadworks_pause_resume.sip")

    def play(self, label: str, **values: str) -> List:
        return self.feed(render(self.flow[label], **values))

    def test_whole_flow_recorded(self) -> None:
        ok = self.one(self.play("INVITE"), 200)
        tag = ok.to.tag
        call = self.handler.sessions[0]
        kind, offer, metadata = call.events[0]
        self.assertEqual((kind, len(offer.media)), ("offer", 1))
        self.assertTrue(metadata[0].startswith(b'<?xml version="1.0" encoding="UTF-8"?>\r\n<recording_metadata'))

        # The ACK has its own CSeq number and other From/To display text: it still stops the 200.
        self.assertEqual(self.play("ACK", to_tag=tag), [])
        self.assertEqual(self.advance(T1 * 3), [])

        hold = self.one(self.play("HOLD", to_tag=tag), 200)
        self.assertEqual(hold.to.tag, tag)
        held = call.events[-1][1]
        self.assertTrue(held.media[0].is_hold(held))
        # An ACK whose CSeq is lower than the re-INVITE's, and belongs to no INVITE at all.
        self.assertEqual(self.play("ACK-HOLD", to_tag=tag), [])
        self.assertEqual(self.advance(T1 * 3), [])

        resume = self.one(self.play("RESUME", to_tag=tag), 200)
        self.assertFalse(call.events[-1][1].media[0].is_hold(call.events[-1][1]))
        self.assertEqual(len(parse_sdp(resume.body).media), 1)
        self.assertEqual(self.play("ACK-RESUME", to_tag=tag), [])
        self.assertEqual(self.advance(T1 * 3), [])

        bye_ok = self.one(self.play("BYE", bye_branch="z9hG4bK-bw-bye-1"), 200)
        # RFC 3261 §8.2.6.2: the CSeq is copied as received; the To-tag is the dialog's.
        self.assertEqual(bye_ok.headers.get("CSeq"), "604674516 INVITE")
        self.assertEqual(bye_ok.to.tag, tag)
        self.assertEqual(call.end_reasons(), ["bye"])
        self.assertEqual(self.core.active_dialogs(), [])
        self.assertEqual(self.advance(TIMEOUT + 1), [])

        notes = call.notes
        for expected in ("Contact ';src' read as '+sip.src'",
                         "ACK with a CSeq other than its INVITE's accepted",
                         "ACK with 'CSeq: N INVITE' accepted in its dialog",
                         "BYE with 'CSeq: N INVITE' accepted in its dialog",
                         "BYE without To-tag matched to the dialog by Call-ID and From-tag"):
            self.assertTrue(any(expected in n for n in notes), (expected, notes))
        self.assertFalse(any("recognised by its metadata" in n for n in notes), notes)

    def test_metadata_part_first(self) -> None:
        """BroadWorks puts the metadata part before the SDP (with its own Content-Length)."""
        self.one(self.play("INVITE"), 200)
        kind, offer, metadata = self.handler.sessions[0].events[0]
        self.assertEqual([m.label for m in offer.media], ["1"])
        self.assertEqual(len(metadata), 1)

    def test_bye_reusing_the_invite_branch_is_its_own_transaction(self) -> None:
        """'CSeq: N INVITE' on a BYE that even reuses the re-INVITE's branch: the BYE gets
        its 200 (no body) and the re-INVITE's 200 is not resent in its place."""
        tag = self.one(self.play("INVITE"), 200).to.tag
        self.play("ACK", to_tag=tag)
        self.one(self.play("RESUME", to_tag=tag), 200)
        self.play("ACK-RESUME", to_tag=tag)
        bye_ok = self.one(self.play("BYE", bye_branch="z9hG4bK-bw-invite-3"), 200)
        self.assertEqual((bye_ok.body, bye_ok.headers.get("CSeq")), (b"", "604674516 INVITE"))
        self.assertEqual(self.handler.sessions[0].end_reasons(), ["bye"])

    def test_cseq_invite_outside_a_dialog_is_400(self) -> None:
        """Without a dialog to belong to, 'CSeq: N INVITE' on a BYE is what it looks like: an error."""
        response = self.one(self.play("BYE", bye_branch="z9hG4bK-lost"), 400)
        self.assertIn("CSeq method INVITE does not match request method BYE", response.reason)
        self.assertEqual(self.handler.sessions, [])

    def test_cseq_invite_on_other_methods_is_400(self) -> None:
        """Only BYE and ACK get the benefit; an INFO or UPDATE with 'CSeq: N INVITE' is refused."""
        tag = self.one(self.play("INVITE"), 200).to.tag
        for method in ("INFO", "UPDATE", "OPTIONS"):
            data = render(self.flow["BYE"], bye_branch=f"z9hG4bK-{method}").replace(
                b"BYE sip:", method.encode() + b" sip:", 1).replace(
                b"To:<sip:192.0.2.1:5060>", f"To:<sip:192.0.2.1:5060>;tag={tag}".encode())
            self.one(self.feed(data), 400)
        self.assertEqual(self.handler.sessions[0].end_reasons(), [])

    def test_cseq_ack_for_unknown_dialog_dropped(self) -> None:
        """An ACK with 'CSeq: N INVITE' and no dialog is dropped (ACKs are never answered)."""
        self.assertEqual(self.play("ACK-RESUME", to_tag="nobody"), [])


class OracleSbcTests(FlowTestCase):
    def test_stray_second_sdp_block_ignored(self) -> None:
        """A blank line and a second SDP block before the next boundary: the first
        description is the offer, the rest ignored with a note; no 400."""
        flow = load_flow("oracle_sbc_stray_sdp.sip")
        ok = self.one(self.feed(render(flow["INVITE"])), 200)
        answer = parse_sdp(ok.body)
        self.assertEqual([m.label for m in answer.media], ["369607687", "369607688"])
        kind, offer, metadata = self.handler.sessions[0].events[0]
        self.assertEqual(offer.connection.address, "192.0.2.45")
        self.assertEqual(len(metadata), 1)
        self.assertIn("SDP ended before line 17 (stray text '--SBC-leg-boundary', after a blank "
                      "line); the rest of the body was ignored", self.notes())


class WebexCallingTests(FlowTestCase):
    def test_inbound_call(self) -> None:
        """Metadata first, ';src' inside the Contact URI, an empty Supported, a Route with a
        port that is no number; the BYE has no Max-Forwards."""
        flow = load_flow("webex_calling_inbound.sip")
        ok = self.one(self.feed(render(flow["INVITE"])), 200)
        self.assertNotIn("Route", ok.headers)
        self.assertNotIn("Session-Expires", ok.headers)
        self.assertEqual(self.handler.infos[0]["headers"]["X-Broadworks-Correlation-Info"],
                         ["0d2c9f5e-1111-4222-8333-944455556666"])
        self.one(self.feed(render(flow["BYE"], to_tag=ok.to.tag)), 200)
        call = self.handler.sessions[0]
        self.assertEqual(call.end_reasons(), ["bye"])
        self.assertIn("Contact ';src' read as '+sip.src' (the pre-RFC 7866 spelling)", call.notes)
        self.assertIn("BYE without Max-Forwards accepted", call.notes)


class CiscoCubeNetworkBasedTests(FlowTestCase):
    def test_sdp_only_call_without_to_tags(self) -> None:
        """No metadata, Min-SE 1800 with timer support; ACK and BYE without To-tag, the BYE
        with the INVITE's CSeq number."""
        flow = load_flow("cisco_cube_network_based.sip")
        ok = self.one(self.feed(render(flow["INVITE"])), 200)
        self.assertEqual(ok.headers.get("Session-Expires"), "1800;refresher=uac")
        self.assertEqual(self.feed(render(flow["ACK"])), [])
        self.assertEqual(self.advance(T1 * 3), [])
        bye_ok = self.one(self.feed(render(flow["BYE"])), 200)
        self.assertEqual(bye_ok.to.tag, ok.to.tag)
        call = self.handler.sessions[0]
        self.assertEqual(call.end_reasons(), ["bye"])
        for expected in ("INVITE without recording metadata; recording as a plain call",
                         "ACK matched to the dialog by Call-ID and From-tag",
                         "BYE without To-tag matched to the dialog by Call-ID and From-tag"):
            self.assertIn(expected, call.notes)


class HeaderDialectTests(FlowTestCase):
    """Small liberties found in the public suites, one at a time."""

    def test_unclosed_contact_bracket(self) -> None:
        """'<sip:...' without '>': the URI is read anyway and used for our BYE."""
        invite, ok, call = self.establish(contact="<sip:src@192.0.2.30:5070;transport=udp")
        self.assertIn("Contact with an unclosed '<' read as <sip:src@192.0.2.30:5070;transport=udp>",
                      call.notes)
        self.core.terminate(self.dialog(), "api")
        self.assertEqual(self.one(self.take()).uri, "sip:src@192.0.2.30:5070;transport=udp")

    def test_unreadable_contact_uses_source(self) -> None:
        invite, ok, call = self.establish(contact="<garbage>")
        self.assertTrue(any(n.startswith("Unparseable Contact") and n.endswith(
            "using the source address 192.0.2.10:5060") for n in call.notes), call.notes)

    def test_non_sip_contact_uses_source(self) -> None:
        """A Contact that is no SIP URI cannot be a remote target (RFC 3261 §12.1.1)."""
        invite, ok, call = self.establish(contact="<tel:+15550100>")
        self.assertIn("Contact tel: URI is no SIP URI; using the source address 192.0.2.10:5060", call.notes)
        self.core.terminate(self.dialog(), "api")
        self.assertEqual(self.one(self.take()).uri, "sip:sbc@src.example")

    def test_proxy_require_siprec_is_not_ours(self) -> None:
        """'Proxy-Require: siprec' is meant for proxies: no 420, a note."""
        self.one(self.send(siprec_invite(headers=["Proxy-Require: siprec", "Require: siprec"])), 200)
        self.assertIn("Proxy-Require ignored (it is meant for proxies)", self.notes())

    def test_lower_case_methods(self) -> None:
        """'invite' on the request line and in CSeq: read as INVITE, noted."""
        data = bytes(siprec_invite().to_bytes()).replace(b"INVITE sip:", b"invite sip:", 1).replace(
            b"CSeq: 1 INVITE", b"CSeq: 1 invite")
        self.one(self.feed(data), 200)
        self.assertIn("CSeq method 'invite' in lower case accepted", self.notes())

    def test_no_max_forwards_on_invite(self) -> None:
        data = bytes(siprec_invite().to_bytes()).replace(b"Max-Forwards: 70\r\n", b"")
        self.one(self.feed(data), 200)
        self.assertIn("INVITE without Max-Forwards accepted", self.notes())

    def test_src_in_contact_uri_and_plus_sip_src(self) -> None:
        """'+sip.src' as a header or URI parameter is RFC 7866; no note for either."""
        for contact in ("<sip:a@192.0.2.10>;+sip.src", "<sip:a@192.0.2.10;+sip.src>"):
            self.one(self.send(siprec_invite(contact=contact, call_id=contact)), 200)
            self.assertFalse(any("src" in n for n in self.notes()), self.notes())

    def test_compact_forms_and_no_space_after_colon(self) -> None:
        """v: f: t: i: m: l: c: k: and 'Name:value' without a space."""
        lines = ["INVITE sip:srs@192.0.2.1 SIP/2.0",
                 "v:SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKcompact",
                 'f:"Desk"<sip:a@192.0.2.10>;tag=c1', "t:<sip:srs@192.0.2.1>", "i:compact@src",
                 "CSeq:1 INVITE", "m:<sip:a@192.0.2.10>", "k:timer", "c:application/sdp",
                 f"l:{len(OFFER)}"]
        ok = self.one(self.feed(("\r\n".join(lines) + "\r\n\r\n").encode() + OFFER), 200)
        self.assertEqual(ok.call_id, "compact@src")
        self.assertEqual(ok.headers.get("Session-Expires"), "1800;refresher=uac")

    def test_empty_header_values(self) -> None:
        """'Supported: ' and 'Recv-Info: ' with nothing in them are no option tags at all."""
        self.one(self.send(siprec_invite(headers=["Require: siprec", "Supported: ", "Recv-Info: "])), 200)

    def test_in_dialog_request_with_bye_cseq_equal_to_invite(self) -> None:
        """CUBE's BYE reuses the INVITE's CSeq number: accepted without a note."""
        invite, ok, call = self.establish(cseq=101)
        self.one(self.send(self.in_dialog("BYE", ok, 101)), 200)
        self.assertFalse(any("CSeq" in n for n in call.notes), call.notes)

    def test_plain_request_without_contact_still_answered(self) -> None:
        ok = self.one(self.send(request("INVITE", body=OFFER, content_type="application/sdp",
                                        contact=None)), 200)
        self.assertIn("INVITE without Contact; using the source address 192.0.2.10:5060", self.notes())
        self.assertIn("+sip.srs", ok.headers.get("Contact"))

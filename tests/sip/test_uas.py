"""Tests for siprec.sip.uas: every answer SipCore gives, checked on the wire.

SipCore is driven sans-IO: parsed requests in, a fake Peer recording the
bytes it would send, a Clock for every timer, and a fake recording call
that answers with real offer/answer SDP (or refuses, or answers later).
Every message SipCore sends is parsed back and checked for RFC strictness.
"""

from __future__ import annotations

import itertools
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.spec import PayloadFormat
from siprec.recording.multipart import split_siprec_body
from siprec.sip.dialog import Dialog
from siprec.sip.message import Request, Response, SipParseError, parse_message
from siprec.sip.offer_answer import (
    OfferStream,
    acceptable,
    build_answer,
    build_offer,
    make_origin,
    plan_answer,
)
from siprec.sip.sdp import SessionDescription, parse_sdp
from siprec.sip.transaction import Timers
from siprec.sip.log_budget import LogBudget
from siprec.sip.uas import ACCEPTED_TYPES, CallRejected, SipCore, UasSettings

SRC = ("192.0.2.10", 5060)
OURS = ("192.0.2.1", 5060)
MEDIA = "192.0.2.1"
T1 = 0.5
TIMEOUT = 64 * T1
PCMU = PayloadFormat(0, "PCMU", 8000)
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, PRACK"

OFFER = (
    "v=0\r\n"
    "o=sbc 5521 1 IN IP4 192.0.2.10\r\n"
    "s=recording\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 30000 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=label:caller\r\n"
    "a=sendonly\r\n"
    "m=audio 30002 RTP/AVP 8 0\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=label:callee\r\n"
    "a=sendonly\r\n"
).encode()

G729_ONLY = (
    "v=0\r\no=sbc 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=label:1\r\na=sendonly\r\n"
).encode()

METADATA = (
    '<?xml version="1.0" encoding="UTF-8"?>\r\n'
    '<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
    "<datamode>complete</datamode>"
    '<session session_id="c2Vzcy0x"><start-time>2026-01-05T09:00:00Z</start-time></session>'
    '<participant participant_id="cGFydC0x"><nameID aor="sip:ann@example.org"><name>Ann</name>'
    "</nameID></participant>"
    '<stream stream_id="c3RyLTE=" session_id="c2Vzcy0x"><label>caller</label></stream>'
    "</recording>\r\n"
).encode()

BOUNDARY = "rec-part"


def multipart(sdp: bytes = OFFER, metadata: bytes = METADATA) -> Tuple[str, bytes]:
    body = (f"--{BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n".encode() + sdp
            + f"\r\n--{BOUNDARY}\r\nContent-Type: application/rs-metadata+xml\r\n"
              "Content-Disposition: recording-session\r\n\r\n".encode() + metadata
            + f"\r\n--{BOUNDARY}--\r\n".encode())
    return f'multipart/mixed;boundary="{BOUNDARY}"', body


_branches = itertools.count(1)


def new_branch() -> str:
    return f"z9hG4bKtest{next(_branches)}"


def request(method: str, *, call_id: str = "call-1@src.example", from_tag: str = "src1",
            to_tag: Optional[str] = None, cseq: int = 1, cseq_method: Optional[str] = None,
            branch: Optional[str] = None, body: bytes = b"", content_type: Optional[str] = None,
            headers: Sequence[str] = (), contact: Optional[str] = "<sip:sbc@192.0.2.10:5060>;+sip.src",
            uri: str = "sip:srs@192.0.2.1:5060") -> Request:
    """A request as an SRC would send it, parsed by the real parser."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch or new_branch()};rport",
        "Max-Forwards: 70",
        f"From: <sip:sbc@src.example>;tag={from_tag}",
        "To: <sip:srs@srs.example>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    lines += list(headers)
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(message, Request)
    return message


def siprec_invite(**kwargs) -> Request:
    content_type, body = multipart()
    kwargs.setdefault("headers", ["Require: siprec", "Supported: timer"])
    return request("INVITE", body=body, content_type=content_type, **kwargs)


def ack_for(response: Response, *, body: bytes = b"", content_type: Optional[str] = None,
            cseq: Optional[int] = None, to_tag: Optional[str] = "from-response") -> Request:
    """The ACK for a 2xx: a new transaction, the To-tag of the response."""
    tag = response.to.tag if to_tag == "from-response" else to_tag
    return request("ACK", to_tag=tag, cseq=cseq or response.cseq.number, body=body,
                   content_type=content_type, call_id=response.call_id,
                   from_tag=response.from_.tag)


def can_decode(fmt: PayloadFormat) -> bool:
    return fmt.encoding in ("PCMU", "PCMA")


def recorder_answer(offer: Optional[SessionDescription], metadata) -> SessionDescription:
    """What a recording session answers: real offer/answer, or our offer when there is none."""
    if offer is None:
        return build_offer([OfferStream("caller", 40000, (PCMU,), None)], MEDIA,
                           make_origin(MEDIA, 77, 2))
    plans = plan_answer(offer, can_decode)
    if not acceptable(plans):
        raise CallRejected(488, "No acceptable media",
                           headers=[("Warning", '304 192.0.2.1 "no decodable codec offered"')])
    ports = {p.index: 40000 + 2 * p.index for p in plans if p.accepted}
    return build_answer(offer, plans, ports, MEDIA, make_origin(MEDIA, 77, 1))


class FakePeer:
    """Where SipCore's bytes would go; reliable (TCP) or not (UDP)."""

    def __init__(self, clock: Clock, transport: str = "UDP") -> None:
        self.clock = clock
        self.transport = transport
        self.reliable = transport != "UDP"
        self.remote = SRC
        self.local = OURS
        self.sent: List[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(bytes(data))


class FakeCall:
    """A recording session: records what SipCore asks of it."""

    def __init__(self, answer: Callable) -> None:
        self.answer = answer
        self.ended = False
        self.events: List[tuple] = []
        self.notes: List[str] = []
        self.dialog = None

    def offer(self, offer, metadata):
        self.events.append(("offer", offer, list(metadata)))
        return self.answer(offer, metadata)

    def answer_received(self, answer) -> None:
        self.events.append(("answer", answer))

    def metadata_received(self, metadata) -> None:
        self.events.append(("metadata", list(metadata)))

    def tolerate(self, note: str) -> None:
        self.notes.append(note)

    def end(self, reason: str):
        self.events.append(("end", reason))
        self.ended = True
        return succeed(None)

    def dialog_established(self, hang_up) -> None:
        self.hang_up = hang_up

    def kinds(self) -> List[str]:
        return [e[0] for e in self.events]

    def end_reasons(self) -> List[str]:
        return [e[1] for e in self.events if e[0] == "end"]


class FakeHandler:
    def __init__(self) -> None:
        self.answer: Callable = recorder_answer
        self.refusal: Optional[CallRejected] = None
        self.sessions: List[FakeCall] = []
        self.infos: List[dict] = []
        self.refused: List[tuple] = []

    def admission(self) -> Optional[CallRejected]:
        return self.refusal

    def call_refused(self, call_id, status, reason, source) -> None:
        self.refused.append((call_id, status, reason))

    def create_session(self, call_id: str, sip_info: dict) -> FakeCall:
        call = FakeCall(self.answer)
        self.sessions.append(call)
        self.infos.append(sip_info)
        return call


def check_strict_response(test, data: bytes) -> Response:
    """A response we sent: parses, exact Content-Length, To-tag on non-100, our Server header."""
    message = parse_message(data)
    test.assertIsInstance(message, Response)
    head, sep, body = data.partition(b"\r\n\r\n")
    test.assertEqual(sep, b"\r\n\r\n")
    test.assertEqual(head.count(b"Content-Length:"), 1)
    test.assertEqual(message.headers.get("Content-Length"), str(len(body)))
    test.assertEqual(message.body, body)
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        test.assertIn(name, message.headers)
    test.assertTrue(message.reason.isprintable() and message.reason)
    if message.status > 100:
        test.assertTrue(message.to.tag, f"no To-tag on {message.status}")
        test.assertEqual(message.headers.get("Server"), "siprec-test")
    if message.status == 405:
        test.assertEqual(message.headers.get("Allow"), ALLOW)
    if message.body:
        test.assertEqual(message.content_type, "application/sdp")
        parse_sdp(message.body)
    return message


def check_strict_request(test, data: bytes) -> Request:
    message = parse_message(data)
    test.assertIsInstance(message, Request)
    head, _, body = data.partition(b"\r\n\r\n")
    test.assertEqual(message.headers.get("Content-Length"), str(len(body)))
    test.assertTrue(message.top_via.rfc3261_branch)
    test.assertIn("rport", message.top_via.params)
    test.assertEqual(message.headers.get("Max-Forwards"), "70")
    test.assertEqual(message.cseq.method, message.method)
    test.assertTrue(message.from_.tag)
    test.assertTrue(message.to.tag)
    return message


class CoreTestCase(SynchronousTestCase):
    transport = "UDP"
    settings: Dict = {}

    def setUp(self) -> None:
        self.clock = Clock()
        self.handler = FakeHandler()
        self.peer = FakePeer(self.clock, self.transport)
        settings = UasSettings(host="192.0.2.1", user_agent="siprec-test",
                               timers=Timers(t1=T1), **self.settings)
        self.core = SipCore(self.clock, self.handler, settings,
                            peer_for_dialog=lambda dialog: self.peer,
                            read_body=split_siprec_body)
        self._seen = 0

    # -- driving ------------------------------------------------------------
    def send(self, req: Request) -> List:
        """Feed one request; return the messages sent since the last call, parsed and checked."""
        self.core.receive(req, self.peer)
        return self.take()

    def take(self) -> List:
        new = self.peer.sent[self._seen:]
        self._seen = len(self.peer.sent)
        out = []
        for data in new:
            if data.startswith(b"SIP/2.0 "):
                out.append(check_strict_response(self, data))
            else:
                out.append(check_strict_request(self, data))
        return out

    def advance(self, seconds: float) -> List:
        self.clock.advance(seconds)
        return self.take()

    def one(self, messages: List, status: Optional[int] = None):
        self.assertEqual(len(messages), 1, [getattr(m, "status", getattr(m, "method", m)) for m in messages])
        if status is not None:
            self.assertEqual(messages[0].status, status, messages[0].reason)
        return messages[0]

    def establish(self, **kwargs) -> Tuple[Request, Response, FakeCall]:
        """A confirmed call: INVITE, 200, ACK."""
        invite = siprec_invite(**kwargs)
        ok = self.one(self.send(invite), 200)
        self.assertEqual(self.send(ack_for(ok)), [])
        return invite, ok, self.handler.sessions[-1]

    def in_dialog(self, method: str, ok: Response, cseq: int, **kwargs) -> Request:
        return request(method, to_tag=ok.to.tag, cseq=cseq, call_id=ok.call_id,
                       from_tag=ok.from_.tag, **kwargs)

    def dialog(self) -> Dialog:
        dialogs = self.core.active_dialogs()
        self.assertEqual(len(dialogs), 1)
        return dialogs[0]


class NewCallTests(CoreTestCase):
    """A SIPREC INVITE is answered once, with a strictly formed 200."""

    def test_invite_answered_with_srs_200(self) -> None:
        """The 200 carries Contact +sip.srs, Allow, Accept, Supported and an SDP answer."""
        invite = siprec_invite()
        ok = self.one(self.send(invite), 200)
        contact = ok.contacts()[0]
        self.assertIn("+sip.srs", contact.params)
        self.assertEqual(contact.uri.host, "192.0.2.1")
        self.assertEqual(contact.uri.port, 5060)
        self.assertEqual(ok.headers.get("Allow"), ALLOW)
        self.assertEqual(ok.headers.get("Accept"),
                         "application/sdp, application/rs-metadata+xml, application/rs-metadata")
        self.assertEqual(ok.option_tags("Supported"), ["siprec", "timer", "100rel"])
        self.assertEqual(ok.content_type, "application/sdp")
        self.assertEqual(ok.headers.get("Via"), invite.headers.get("Via"))
        answer = parse_sdp(ok.body)
        self.assertEqual([m.port for m in answer.media], [40000, 40002])
        self.assertEqual([m.direction(answer) for m in answer.media], ["recvonly", "recvonly"])
        [call] = self.handler.sessions
        kind, offer, metadata = call.events[0]
        self.assertEqual((kind, len(offer.media), metadata), ("offer", 2, [METADATA]))
        self.assertEqual(self.handler.infos[0]["call_id"], "call-1@src.example")
        self.dialog()  # one dialog, up
        call.hang_up("api")  # what the core gave the session: BYE, dialog closed
        self.assertEqual([m.method for m in self.take()], ["BYE"])
        self.assertEqual(self.core.active_dialogs(), [])

    def test_slow_answer_gets_100_trying_first(self) -> None:
        """An answer later than 200 ms is preceded by 100 Trying (no To-tag), then the 200."""
        pending = Deferred()
        self.handler.answer = lambda offer, metadata: pending
        self.assertEqual(self.send(siprec_invite()), [])
        trying = self.one(self.advance(0.2), 100)
        self.assertIsNone(trying.to.tag)
        pending.callback(recorder_answer(self.handler.sessions[0].events[0][1], []))
        self.one(self.take(), 200)

    def test_fast_answer_needs_no_100(self) -> None:
        """An answer within 200 ms goes out alone: no 100 Trying ever follows it."""
        self.one(self.send(siprec_invite()), 200)
        self.assertEqual([m.status for m in self.advance(T1)], [200])  # only the 2xx retransmission

    def test_retransmission_same_branch_answered_from_transaction(self) -> None:
        """The same INVITE again (same branch) gets the same 200; no second session."""
        invite = siprec_invite(branch="z9hG4bKsame")
        first = self.one(self.send(invite), 200)
        again = self.one(self.send(siprec_invite(branch="z9hG4bKsame")), 200)
        self.assertEqual(again.to.tag, first.to.tag)
        self.assertEqual(again.body, first.body)
        self.assertEqual(len(self.handler.sessions), 1)

    def test_retransmission_new_branch_answered_like_first(self) -> None:
        """Same Call-ID, From-tag and CSeq on a new branch: the same 200, one session, a note."""
        first = self.one(self.send(siprec_invite()), 200)
        copy_request = siprec_invite()
        again = self.one(self.send(copy_request), 200)
        self.assertEqual(again.to.tag, first.to.tag)
        self.assertEqual(again.body, first.body)
        self.assertEqual(again.headers.get("Via"), copy_request.headers.get("Via"))
        self.assertEqual(len(self.handler.sessions), 1)
        self.assertEqual(len(self.handler.sessions[0].kinds()), 1)
        self.assertTrue(any("new Via branch" in n for n in self.handler.sessions[0].notes))

    def test_retransmission_new_branch_while_answer_pending(self) -> None:
        """A copy arriving before the answer gets the same 200 when it comes."""
        pending = Deferred()
        self.handler.answer = lambda offer, metadata: pending
        self.send(siprec_invite())
        self.send(siprec_invite())
        self.assertEqual(len(self.handler.sessions), 1)
        pending.callback(recorder_answer(self.handler.sessions[0].events[0][1], []))
        first, second = self.take()
        self.assertEqual((first.status, second.status), (200, 200))
        self.assertEqual(first.to.tag, second.to.tag)
        self.assertNotEqual(first.top_via.branch, second.top_via.branch)

    def test_retransmission_after_setup_forgotten_answered_from_dialog(self) -> None:
        """Long after (64*T1), a new-branch copy is still answered from the dialog."""
        invite, ok, call = self.establish()
        self.advance(TIMEOUT + 1)
        again = self.one(self.send(siprec_invite()), 200)
        self.assertEqual(again.to.tag, ok.to.tag)
        self.assertEqual(again.body, ok.body)
        self.assertEqual(call.kinds(), ["offer"])

    def test_second_invite_while_first_pending_is_500(self) -> None:
        """Another CSeq for the same Call-ID and From-tag while the first is unanswered: 500 Retry-After."""
        self.handler.answer = lambda offer, metadata: Deferred()
        self.send(siprec_invite())
        response = self.one(self.send(siprec_invite(cseq=2)), 500)
        self.assertTrue(0 <= int(response.headers.get("Retry-After")) <= 10)
        self.assertEqual(len(self.handler.sessions), 1)

    def test_retry_after_rejection_is_a_new_call(self) -> None:
        """After a 422 the SRC retries with a higher CSeq: that is a new call, accepted."""
        self.one(self.send(siprec_invite(headers=["Supported: timer", "Session-Expires: 30"])), 422)
        self.one(self.send(siprec_invite(cseq=2, headers=["Supported: timer", "Session-Expires: 90"])), 200)

    def test_ack_stops_2xx_retransmissions(self) -> None:
        """Over UDP the 200 is resent at T1, 2*T1, ... until the ACK arrives."""
        ok = self.one(self.send(siprec_invite()), 200)
        self.assertEqual([m.status for m in self.advance(T1)], [200])
        self.assertEqual([m.status for m in self.advance(2 * T1)], [200])
        self.assertEqual(self.send(ack_for(ok)), [])
        self.assertEqual(self.advance(TIMEOUT), [])
        self.assertEqual(self.handler.sessions[0].end_reasons(), [])
        self.assertTrue(self.dialog().confirmed)

    def test_ack_stops_retransmissions_of_copies(self) -> None:
        """The ACK also silences the 200 sent to a new-branch copy of the INVITE."""
        ok = self.one(self.send(siprec_invite()), 200)
        self.one(self.send(siprec_invite()), 200)
        self.assertEqual([m.status for m in self.advance(T1)], [200, 200])
        self.send(ack_for(ok))
        self.assertEqual(self.advance(TIMEOUT), [])

    def test_stale_ack_ignored(self) -> None:
        """An ACK with a lower CSeq than the current INVITE does not confirm it."""
        invite, ok, call = self.establish()
        reinvite = self.in_dialog("INVITE", ok, 2, body=OFFER, content_type="application/sdp")
        self.one(self.send(reinvite), 200)
        self.send(ack_for(ok))  # late copy of the first ACK (CSeq 1)
        self.assertEqual([m.status for m in self.advance(T1)], [200])

    def test_no_ack_sends_bye_after_timer_l(self) -> None:
        """Without an ACK within 64*T1 the call is ended and a strict BYE goes to the SRC."""
        ok = self.one(self.send(siprec_invite()), 200)
        messages = self.advance(TIMEOUT - 0.01)
        self.assertTrue(all(isinstance(m, Response) and m.status == 200 for m in messages))
        bye = self.one(self.advance(0.01))
        self.assertEqual(bye.method, "BYE")
        self.assertEqual(bye.uri, "sip:sbc@192.0.2.10:5060")
        self.assertEqual(bye.from_.tag, ok.to.tag)
        self.assertEqual(bye.to.tag, "src1")
        self.assertEqual(bye.call_id, ok.call_id)
        self.assertEqual(self.handler.sessions[0].end_reasons(), ["ack-timeout"])
        self.assertEqual(self.core.active_dialogs(), [])

    def test_reliable_transport_still_retransmits_2xx(self) -> None:
        """Over TCP the 2xx is resent too (RFC 3261 §13.3.1.4: end to end, past UDP hops)
        until the ACK; the Contact says transport=tcp."""
        self.peer.transport, self.peer.reliable = "TCP", True
        ok = self.one(self.send(siprec_invite()), 200)
        self.assertIn("transport=tcp", str(ok.contacts()[0].uri))
        self.assertEqual([m.status for m in self.advance(T1)], [200])
        self.send(ack_for(ok))
        self.assertEqual(self.advance(TIMEOUT), [])

    def test_record_route_copied_into_200_and_used_for_bye(self) -> None:
        """Record-Route values come back in the 200 in order, and our BYE follows them."""
        invite, ok, call = self.establish(headers=[
            "Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>",
            "Record-Route: <sip:p3.example;lr>", "Supported: timer"])
        self.assertEqual(ok.headers.get_all("Record-Route"),
                         ["<sip:p1.example;lr>", "<sip:p2.example;lr>", "<sip:p3.example;lr>"])
        self.core.terminate(self.dialog(), "api")
        bye = self.one(self.take())
        self.assertEqual(bye.headers.get_all("Route"),
                         ["<sip:p1.example;lr>", "<sip:p2.example;lr>", "<sip:p3.example;lr>"])
        self.assertEqual(bye.uri, "sip:sbc@192.0.2.10:5060")
        self.assertEqual(call.end_reasons(), ["api"])

    def test_plain_sdp_invite_recorded_with_a_note(self) -> None:
        """An INVITE with SDP only (no metadata, no Require: siprec) is still recorded."""
        self.one(self.send(request("INVITE", body=OFFER, content_type="application/sdp",
                                   contact="<sip:pbx@192.0.2.10>")), 200)
        self.assertTrue(any("without recording metadata" in n for n in self.handler.sessions[0].notes))

    def test_metadata_without_require_siprec_noted(self) -> None:
        """rs-metadata makes an INVITE SIPREC even without Require: siprec or +sip.src."""
        content_type, body = multipart()
        self.one(self.send(request("INVITE", body=body, content_type=content_type,
                                   contact="<sip:sbc@192.0.2.10>")), 200)
        self.assertTrue(any("recognised by its metadata" in n for n in self.handler.sessions[0].notes))

    def test_unparseable_contact_tolerated(self) -> None:
        """A broken Contact costs nothing: 200, a note, BYE to the From URI via the source."""
        invite, ok, call = self.establish(contact="<sip:broken@>")
        self.assertTrue(any("Unparseable Contact" in n for n in call.notes))
        self.core.terminate(self.dialog(), "api")
        self.assertEqual(self.one(self.take()).uri, "sip:sbc@src.example")


class DefaultBodyReaderTests(CoreTestCase):
    """A SipCore given no body reader is a plain SIP UAS: SDP or nothing."""

    def setUp(self) -> None:
        super().setUp()
        self.core = SipCore(self.clock, self.handler,
                            UasSettings(host="192.0.2.1", user_agent="siprec-test", timers=Timers(t1=T1)),
                            peer_for_dialog=lambda dialog: self.peer)

    def test_plain_sdp_call(self) -> None:
        self.one(self.send(request("INVITE", body=OFFER, content_type="application/sdp")), 200)
        self.assertEqual(self.handler.sessions[0].events[0][2], [])

    def test_siprec_multipart_is_415(self) -> None:
        response = self.one(self.send(siprec_invite()), 415)
        self.assertEqual(response.headers.get("Accept"), ACCEPTED_TYPES)
        self.assertEqual(self.handler.sessions, [])


class RejectionTests(CoreTestCase):
    """Requests SipCore refuses, each with the status and headers the RFCs ask for."""

    def test_unsupported_body_is_415_with_accept(self) -> None:
        response = self.one(self.send(request("INVITE", body=b"hello", content_type="text/plain")), 415)
        self.assertEqual(response.headers.get("Accept"), ACCEPTED_TYPES)
        self.assertEqual(self.handler.sessions, [])

    def test_unknown_content_encoding_is_415(self) -> None:
        response = self.one(self.send(request("INVITE", body=OFFER, content_type="application/sdp",
                                              headers=["Content-Encoding: gzip"])), 415)
        self.assertEqual(response.headers.get("Accept-Encoding"), "identity")

    def test_unknown_require_is_420_with_unsupported(self) -> None:
        response = self.one(self.send(siprec_invite(headers=["Require: siprec, foo", "Require: bar"])), 420)
        self.assertEqual(response.option_tags("Unsupported"), ["foo", "bar"])
        self.assertEqual(self.handler.sessions, [])

    def test_known_require_tags_accepted(self) -> None:
        """siprec, timer and 100rel are ours (we never send reliable provisionals)."""
        self.one(self.send(siprec_invite(headers=["Require: siprec, timer, 100rel", "Supported: timer",
                                                  "Session-Expires: 1800"])), 200)

    def test_proxy_require_ignored(self) -> None:
        self.one(self.send(siprec_invite(headers=["Proxy-Require: sec-agree"])), 200)
        self.assertTrue(any("Proxy-Require ignored" in n for n in self.handler.sessions[0].notes))

    def test_malformed_sdp_is_400_with_reason(self) -> None:
        response = self.one(self.send(request("INVITE", body=b"v=0\r\nm=audio x\r\n",
                                              content_type="application/sdp")), 400)
        self.assertTrue(response.reason.startswith("Malformed SDP:"), response.reason)

    def test_malformed_multipart_is_400(self) -> None:
        response = self.one(self.send(request("INVITE", body=b"--nope\r\nbroken",
                                              content_type="multipart/mixed;boundary=other")), 400)
        self.assertTrue(response.reason.startswith("Malformed multipart body"), response.reason)

    def test_undecodable_offer_is_488_with_warning(self) -> None:
        """The session's CallRejected passes through with its Warning; the session is ended."""
        response = self.one(self.send(request("INVITE", body=G729_ONLY, content_type="application/sdp")), 488)
        self.assertEqual(response.reason, "No acceptable media")
        self.assertEqual(response.headers.get("Warning"), '304 192.0.2.1 "no decodable codec offered"')
        self.assertEqual(self.handler.sessions[0].end_reasons(), ["rejected"])
        self.assertEqual(self.core.active_dialogs(), [])

    def test_rejection_ack_absorbed(self) -> None:
        """The ACK for a 488 (same branch) is absorbed by the transaction; nothing is sent."""
        invite = request("INVITE", body=G729_ONLY, content_type="application/sdp", branch="z9hG4bKrej")
        response = self.one(self.send(invite), 488)
        ack = request("ACK", to_tag=response.to.tag, branch="z9hG4bKrej")
        self.assertEqual(self.send(ack), [])
        self.assertEqual(self.advance(TIMEOUT), [])

    def test_session_error_is_500(self) -> None:
        def broken(offer, metadata):
            raise RuntimeError("disk on fire")
        self.handler.answer = broken
        self.one(self.send(siprec_invite()), 500)
        self.assertEqual(self.handler.sessions[0].end_reasons(), ["rejected"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_require_metadata_refuses_sdp_only(self) -> None:
        self.core.settings.require_metadata = True
        self.one(self.send(request("INVITE", body=OFFER, content_type="application/sdp")), 403)
        self.one(self.send(siprec_invite(call_id="other@src")), 200)

    def test_shutting_down_is_503(self) -> None:
        self.core.stop_accepting()
        response = self.one(self.send(siprec_invite()), 503)
        self.assertEqual(response.headers.get("Retry-After"), "30")
        self.assertEqual(self.handler.sessions, [])

    def test_admission_refusal_passed_through(self) -> None:
        self.handler.refusal = CallRejected(503, "Too many concurrent calls", [("Retry-After", "5")])
        response = self.one(self.send(siprec_invite()), 503)
        self.assertEqual((response.reason, response.headers.get("Retry-After")),
                         ("Too many concurrent calls", "5"))

    def test_unsupported_methods_are_405_with_allow(self) -> None:
        for method in ("MESSAGE", "SUBSCRIBE", "REGISTER", "INFO", "REFER", "NOTIFY", "PUBLISH"):
            self.one(self.send(request(method)), 405)

    def test_in_dialog_info_is_405(self) -> None:
        invite, ok, call = self.establish()
        response = self.one(self.send(self.in_dialog("INFO", ok, 2)), 405)
        self.assertEqual(response.to.tag, ok.to.tag)

    def test_unknown_dialog_is_481(self) -> None:
        for method in ("BYE", "UPDATE", "INVITE", "PRACK"):
            self.one(self.send(request(method, to_tag="nobody", call_id="unknown@src")), 481)

    def test_prack_is_481(self) -> None:
        """We never send reliable provisionals, so there is nothing to PRACK."""
        invite, ok, call = self.establish()
        response = self.one(self.send(self.in_dialog("PRACK", ok, 2, headers=["RAck: 1 1 INVITE"])), 481)
        self.assertEqual(response.to.tag, ok.to.tag)
        self.one(self.send(request("PRACK", call_id="none@src")), 481)


class OptionsTests(CoreTestCase):
    def check_capabilities(self, response: Response) -> None:
        self.assertEqual(response.headers.get("Allow"), ALLOW)
        self.assertEqual(response.headers.get("Accept"), ACCEPTED_TYPES)
        self.assertEqual(response.headers.get("Supported"), "siprec, timer, 100rel")

    def test_options_out_of_dialog(self) -> None:
        self.check_capabilities(self.one(self.send(request("OPTIONS")), 200))

    def test_options_in_dialog_keeps_dialog_tag(self) -> None:
        invite, ok, call = self.establish()
        response = self.one(self.send(self.in_dialog("OPTIONS", ok, 2)), 200)
        self.check_capabilities(response)
        self.assertEqual(response.to.tag, ok.to.tag)
        self.assertEqual(call.end_reasons(), [])

    def test_options_503_while_draining(self) -> None:
        """From stop_accepting() on, load balancers probing with OPTIONS see 503 + Retry-After."""
        self.one(self.send(request("OPTIONS")), 200)
        self.core.stop_accepting()
        response = self.one(self.send(request("OPTIONS")), 503)
        self.assertEqual(response.headers.get("Retry-After"), "30")
        self.assertEqual(response.reason, "Shutting down")

    def test_drain_retry_after_configurable(self) -> None:
        self.core.settings.drain_retry_after = 120
        self.core.stop_accepting()
        self.assertEqual(self.one(self.send(request("OPTIONS")), 503).headers.get("Retry-After"), "120")
        self.assertEqual(self.one(self.send(siprec_invite()), 503).headers.get("Retry-After"), "120")

    def test_in_dialog_requests_work_while_draining(self) -> None:
        """Existing calls go on: in-dialog OPTIONS, re-INVITE, UPDATE and BYE are answered 200."""
        invite, ok, call = self.establish()
        self.core.stop_accepting()
        self.one(self.send(self.in_dialog("OPTIONS", ok, 2)), 200)
        reinvite = self.one(self.send(self.in_dialog("INVITE", ok, 3, body=OFFER,
                                                     content_type="application/sdp")), 200)
        self.send(ack_for(reinvite))
        self.one(self.send(self.in_dialog("UPDATE", ok, 4, body=METADATA,
                                          content_type="application/rs-metadata+xml")), 200)
        self.one(self.send(self.in_dialog("BYE", ok, 5)), 200)
        self.assertEqual(call.end_reasons(), ["bye"])
        self.one(self.send(siprec_invite(call_id="new@src")), 503)

    def test_options_with_unknown_require_is_420(self) -> None:
        self.one(self.send(request("OPTIONS", headers=["Require: gruu"])), 420)


class CancelTests(CoreTestCase):
    def pending_invite(self, branch: str = "z9hG4bKcancelme") -> Deferred:
        pending = Deferred()
        self.handler.answer = lambda offer, metadata: pending
        self.assertEqual(self.send(siprec_invite(branch=branch)), [])
        return pending

    def cancel(self, branch: str = "z9hG4bKcancelme", cseq: int = 1) -> Request:
        return request("CANCEL", branch=branch, cseq=cseq, contact=None)

    def test_cancel_before_answer(self) -> None:
        """200 to the CANCEL, 487 to the INVITE, the session ended; the late answer is ignored."""
        pending = self.pending_invite()
        ok, terminated = self.send(self.cancel())
        self.assertEqual((ok.status, ok.cseq.method), (200, "CANCEL"))
        self.assertEqual((terminated.status, terminated.cseq.method), (487, "INVITE"))
        call = self.handler.sessions[0]
        self.assertEqual(call.end_reasons(), ["cancelled"])
        pending.callback(recorder_answer(call.events[0][1], []))
        self.assertEqual(self.take(), [])
        self.assertEqual(self.core.active_dialogs(), [])
        self.assertEqual(call.end_reasons(), ["cancelled"])

    def test_late_failure_after_cancel_ignored(self) -> None:
        pending = self.pending_invite()
        self.send(self.cancel())
        pending.errback(CallRejected(488))
        self.assertEqual(self.take(), [])
        self.assertEqual(self.handler.sessions[0].end_reasons(), ["cancelled"])

    def test_cancel_of_new_branch_copy_terminates_both(self) -> None:
        self.pending_invite()
        self.send(siprec_invite(branch="z9hG4bKcopy"))
        messages = self.send(self.cancel(branch="z9hG4bKcopy"))
        self.assertEqual(sorted((m.status, m.top_via.branch) for m in messages),
                         [(200, "z9hG4bKcopy"), (487, "z9hG4bKcancelme"), (487, "z9hG4bKcopy")])
        self.assertEqual(self.handler.sessions[0].end_reasons(), ["cancelled"])

    def test_cancel_after_200_only_answered(self) -> None:
        self.one(self.send(siprec_invite(branch="z9hG4bKdone")), 200)
        self.assertEqual(self.one(self.send(self.cancel(branch="z9hG4bKdone")), 200).cseq.method, "CANCEL")
        self.assertEqual(self.handler.sessions[0].end_reasons(), [])
        self.assertEqual(len(self.core.active_dialogs()), 1)

    def test_cancel_without_invite_is_481(self) -> None:
        self.one(self.send(self.cancel(branch="z9hG4bKnothing")), 481)

    def test_cancel_retransmission_answered_again(self) -> None:
        self.pending_invite()
        self.send(self.cancel())
        again = self.one(self.send(self.cancel()), 200)
        self.assertEqual(again.cseq.method, "CANCEL")
        self.assertEqual(self.handler.sessions[0].end_reasons(), ["cancelled"])


class InDialogTests(CoreTestCase):
    def test_bye_ends_the_call(self) -> None:
        invite, ok, call = self.establish()
        response = self.one(self.send(self.in_dialog("BYE", ok, 2)), 200)
        self.assertEqual(response.to.tag, ok.to.tag)
        self.assertEqual(call.end_reasons(), ["bye"])
        self.assertEqual(self.core.active_dialogs(), [])
        self.one(self.send(self.in_dialog("BYE", ok, 3)), 481)

    def test_bye_metadata_applied_before_end(self) -> None:
        invite, ok, call = self.establish()
        self.one(self.send(self.in_dialog("BYE", ok, 2, body=METADATA,
                                          content_type="application/rs-metadata+xml")), 200)
        self.assertEqual(call.kinds(), ["offer", "metadata", "end"])
        self.assertEqual(call.events[1][1], [METADATA])

    def test_bye_with_broken_body_still_ends(self) -> None:
        invite, ok, call = self.establish()
        self.one(self.send(self.in_dialog("BYE", ok, 2, body=b"x", content_type="image/png")), 200)
        self.assertEqual(call.end_reasons(), ["bye"])
        self.assertTrue(any("BYE body ignored" in n for n in call.notes))

    def test_bye_before_ack_stops_2xx_retransmissions(self) -> None:
        ok = self.one(self.send(siprec_invite()), 200)
        self.one(self.send(self.in_dialog("BYE", ok, 2)), 200)
        self.assertEqual(self.advance(TIMEOUT + 1), [])

    def test_bye_without_to_tag_matched_with_note(self) -> None:
        """A BYE without To-tag finds its dialog by Call-ID and From-tag; the 200 has our tag."""
        invite, ok, call = self.establish()
        response = self.one(self.send(request("BYE", cseq=2)), 200)
        self.assertEqual(response.to.tag, ok.to.tag)
        self.assertEqual(call.end_reasons(), ["bye"])
        self.assertTrue(any("BYE without To-tag" in n for n in call.notes))

    def test_ack_without_to_tag_matched_with_note(self) -> None:
        ok = self.one(self.send(siprec_invite()), 200)
        self.send(ack_for(ok, to_tag=None))
        self.assertEqual(self.advance(TIMEOUT), [])
        call = self.handler.sessions[0]
        self.assertTrue(any("ACK matched" in n for n in call.notes))
        self.assertEqual(call.end_reasons(), [])

    def test_reinvite_without_to_tag_matched_with_note(self) -> None:
        invite, ok, call = self.establish()
        response = self.one(self.send(request("INVITE", cseq=2, body=OFFER,
                                              content_type="application/sdp")), 200)
        self.assertEqual(response.to.tag, ok.to.tag)
        self.assertEqual(call.kinds(), ["offer", "offer"])
        self.assertEqual(len(self.handler.sessions), 1)
        self.assertTrue(any("INVITE without To-tag" in n for n in call.notes))

    def test_ambiguous_match_is_481(self) -> None:
        """Two dialogs share Call-ID and From-tag: a request without To-tag cannot pick one."""
        invite, ok, call = self.establish()
        first = self.dialog()
        self.core.dialogs.add(Dialog(call_id=first.call_id, local_tag="other", remote_tag=first.remote_tag,
                                     local_party="<sip:srs@srs.example>;tag=other",
                                     remote_party=first.remote_party, remote_target=None,
                                     remote_cseq=1, peer=self.peer, session=FakeCall(recorder_answer)))
        self.one(self.send(request("BYE", cseq=2)), 481)
        self.one(self.send(siprec_invite(cseq=5)), 481)
        self.assertEqual(call.end_reasons(), [])

    def test_lower_cseq_reinvite_is_500(self) -> None:
        invite, ok, call = self.establish(cseq=10)
        response = self.one(self.send(self.in_dialog("INVITE", ok, 9, body=OFFER,
                                                     content_type="application/sdp")), 500)
        self.assertIn("Retry-After", response.headers)
        self.assertEqual(response.to.tag, ok.to.tag)
        self.assertEqual(call.kinds(), ["offer"])

    def test_lower_cseq_bye_tolerated(self) -> None:
        invite, ok, call = self.establish(cseq=10)
        self.one(self.send(self.in_dialog("BYE", ok, 3)), 200)
        self.assertTrue(any("lower CSeq" in n for n in call.notes))

    def test_reinvite_with_sdp_answered(self) -> None:
        invite, ok, call = self.establish()
        reinvite = self.in_dialog("INVITE", ok, 2, body=OFFER, content_type="application/sdp",
                                  contact="<sip:sbc@192.0.2.99:5070>")
        response = self.one(self.send(reinvite), 200)
        self.assertEqual(response.to.tag, ok.to.tag)
        self.assertEqual(len(parse_sdp(response.body).media), 2)
        self.send(ack_for(response))
        self.assertEqual(self.advance(T1 * 4), [])
        # re-INVITE is a target refresh: our BYE goes to the new Contact.
        self.core.terminate(self.dialog(), "api")
        self.assertEqual(self.one(self.take()).uri, "sip:sbc@192.0.2.99:5070")

    def test_reinvite_rejected_keeps_call(self) -> None:
        invite, ok, call = self.establish()
        self.one(self.send(self.in_dialog("INVITE", ok, 2, body=G729_ONLY,
                                          content_type="application/sdp")), 488)
        self.assertEqual(call.end_reasons(), [])
        self.one(self.send(self.in_dialog("INVITE", ok, 3, body=OFFER,
                                          content_type="application/sdp")), 200)

    def test_reinvite_repeated_on_new_branch(self) -> None:
        invite, ok, call = self.establish()
        first = self.one(self.send(self.in_dialog("INVITE", ok, 2, body=OFFER,
                                                  content_type="application/sdp")), 200)
        again = self.one(self.send(self.in_dialog("INVITE", ok, 2, body=OFFER,
                                                  content_type="application/sdp")), 200)
        self.assertEqual(again.body, first.body)
        self.assertEqual(call.kinds(), ["offer", "offer"])

    def test_reinvite_without_sdp_offer_in_200_answer_in_ack(self) -> None:
        invite, ok, call = self.establish()
        response = self.one(self.send(self.in_dialog("INVITE", ok, 2)), 200)
        offer = parse_sdp(response.body)
        self.assertEqual(offer.media[0].direction(offer), "recvonly")
        self.assertEqual(call.events[-1][1], None)
        answer = recorder_answer(offer, [])
        self.send(ack_for(response, body=answer.to_bytes(), content_type="application/sdp"))
        self.assertEqual(call.kinds(), ["offer", "offer", "answer"])
        self.assertEqual(call.events[-1][1], answer)

    def test_ack_without_answer_noted(self) -> None:
        invite, ok, call = self.establish()
        response = self.one(self.send(self.in_dialog("INVITE", ok, 2)), 200)
        self.send(ack_for(response))
        self.assertTrue(any("ACK carried no SDP answer" in n for n in call.notes))

    def test_reinvite_while_our_offer_awaits_ack_is_491(self) -> None:
        invite, ok, call = self.establish()
        self.one(self.send(self.in_dialog("INVITE", ok, 2)), 200)
        self.one(self.send(self.in_dialog("INVITE", ok, 3, body=OFFER, content_type="application/sdp")), 491)
        self.one(self.send(self.in_dialog("UPDATE", ok, 4, body=OFFER, content_type="application/sdp")), 491)
        # A refresh or metadata-only UPDATE is no offer: fine.
        self.one(self.send(self.in_dialog("UPDATE", ok, 5)), 200)

    def test_unacked_reoffer_does_not_block_forever(self) -> None:
        """No ACK for our offer in a re-INVITE's 200: after Timer L later re-INVITEs work again."""
        invite, ok, call = self.establish()
        self.one(self.send(self.in_dialog("INVITE", ok, 2)), 200)
        self.advance(TIMEOUT + 1)
        self.assertEqual(call.end_reasons(), [])
        self.one(self.send(self.in_dialog("INVITE", ok, 3, body=OFFER, content_type="application/sdp")), 200)

    def test_reinvite_while_previous_pending_is_500(self) -> None:
        invite, ok, call = self.establish()
        call.answer = lambda offer, metadata: Deferred()
        self.send(self.in_dialog("INVITE", ok, 2, body=OFFER, content_type="application/sdp"))
        response = self.one(self.send(self.in_dialog("INVITE", ok, 3, body=OFFER,
                                                     content_type="application/sdp")), 500)
        self.assertTrue(0 <= int(response.headers.get("Retry-After")) <= 10)

    def test_bye_while_reinvite_pending(self) -> None:
        """The pending re-INVITE gets 487, the BYE 200; the late answer is dropped."""
        invite, ok, call = self.establish()
        pending = Deferred()
        call.answer = lambda offer, metadata: pending
        self.assertEqual(self.send(self.in_dialog("INVITE", ok, 2, body=OFFER,
                                                  content_type="application/sdp")), [])
        terminated, bye_ok = self.send(self.in_dialog("BYE", ok, 3))
        self.assertEqual((terminated.status, terminated.cseq.method), (487, "INVITE"))
        self.assertEqual((bye_ok.status, bye_ok.cseq.method), (200, "BYE"))
        pending.callback(recorder_answer(call.events[1][1], []))
        self.assertEqual(self.take(), [])
        self.assertEqual(call.end_reasons(), ["bye"])

    def test_update_with_metadata_only(self) -> None:
        invite, ok, call = self.establish()
        response = self.one(self.send(self.in_dialog("UPDATE", ok, 2, body=METADATA,
                                                     content_type="application/rs-metadata+xml")), 200)
        self.assertEqual(response.body, b"")
        self.assertNotIn("Content-Type", response.headers)
        self.assertIn("+sip.srs", response.headers.get("Contact"))
        self.assertEqual(call.kinds(), ["offer", "metadata"])

    def test_update_with_sdp_answered(self) -> None:
        invite, ok, call = self.establish()
        content_type, body = multipart()
        response = self.one(self.send(self.in_dialog("UPDATE", ok, 2, body=body,
                                                     content_type=content_type)), 200)
        self.assertEqual(len(parse_sdp(response.body).media), 2)
        self.assertEqual(call.events[-1][0], "offer")
        self.assertEqual(call.events[-1][2], [METADATA])

    def test_update_with_unsupported_body_is_415(self) -> None:
        invite, ok, call = self.establish()
        response = self.one(self.send(self.in_dialog("UPDATE", ok, 2, body=b"x",
                                                     content_type="text/html")), 415)
        self.assertEqual(response.to.tag, ok.to.tag)


class ParseErrorTests(CoreTestCase):
    def feed(self, data: bytes) -> List:
        try:
            parse_message(data)
        except SipParseError as error:
            self.core.parse_error(error, self.peer)
        else:
            self.fail("expected a parse error")
        return self.take()

    def test_malformed_request_answered_400_statelessly(self) -> None:
        data = (b"INVITE sip:srs@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx\r\n"
                b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n"
                b"Content-Length: 0\r\n\r\n")
        response = self.one(self.feed(data), 400)
        self.assertIn("CSeq method", response.reason)
        self.assertEqual(self.core.layer.server, {})

    def test_reason_phrase_cannot_be_injected(self) -> None:
        data = (b"INVITE sip:srs@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx\r\n"
                b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
                b"Max-Forwards: 7\rInjected: yes\r\nContent-Length: 0\r\n\r\n")
        response = self.one(self.feed(data), 400)
        self.assertNotIn("Injected", response.headers)

    def test_unanswerable_garbage_dropped(self) -> None:
        self.assertEqual(self.feed(b"\x00\x01garbage\r\n\r\n"), [])

    def test_malformed_ack_never_answered(self) -> None:
        data = (b"ACK sip:srs@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx\r\n"
                b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
                b"Content-Length: 0\r\n\r\n")
        self.assertEqual(self.feed(data), [])

    def test_log_budget_summarises(self) -> None:
        clock = Clock()
        budget = LogBudget(clock, "things", limit=3, window=60)
        self.assertEqual([budget.allow() for _ in range(5)], [True, True, True, False, False])
        self.assertEqual(budget.suppressed, 2)
        clock.advance(60)
        self.assertTrue(budget.allow())
        self.assertEqual(budget.suppressed, 0)


class ShutdownTests(CoreTestCase):
    def test_close_cancels_everything(self) -> None:
        invite, ok, call = self.establish(headers=["Supported: timer", "Session-Expires: 120"])
        self.handler.answer = lambda offer, metadata: Deferred()
        self.send(siprec_invite(call_id="pending@src"))
        self.core.close()
        self.assertEqual(self.core.active_dialogs(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_terminate_call_by_call_id(self) -> None:
        invite, ok, call = self.establish()
        self.assertIsNone(self.core.terminate_call("nope", "api"))
        self.core.terminate_call(ok.call_id, "api")
        self.assertEqual(self.one(self.take()).method, "BYE")
        self.assertEqual(call.end_reasons(), ["api"])

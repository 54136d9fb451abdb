"""Garbage, truncated and mutated SIP through the UDP protocol and the real SipCore.

The invariant (h11's fuzz rule, for SIP): every input ends as an answer, a
drop with a log line, or a count (keep-alives, stray responses), never as an
exception or a logged traceback; every datagram we send parses as a
response. Calls are set up first where the mutations need a dialog to hit.
"""

from __future__ import annotations

from typing import List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial.unittest import SynchronousTestCase

from siprec.recording.multipart import split_siprec_body
from siprec.sip.message import CSeqMethodMismatch, Response, SipParseError, parse_message
from siprec.sip.transaction import Timers
from siprec.sip.transport import SipDatagramProtocol
from siprec.sip.uas import SipCore, UasSettings
from tests.sip.flows import load_flow, render
from tests.sip.test_datagram import LogLines
from tests.sip.test_uas import OFFER, FakeHandler, multipart

SRC = ("192.0.2.10", 5060)
CALL_ID = "fuzz-1@src"
FROM_TAG = "src-fuzz"


def message(method: str, *, to_tag: str = "", cseq: int = 1, body: bytes = b"",
            content_type: str = "", branch: str = "z9hG4bKfuzz1", cseq_method: str = "") -> bytes:
    lines = [f"{method} sip:srs@192.0.2.1:5060 SIP/2.0",
             f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport",
             "Max-Forwards: 70", f"From: \"SBC\" <sip:sbc@src.example>;tag={FROM_TAG}",
             "To: <sip:srs@srs.example>" + (f";tag={to_tag}" if to_tag else ""),
             f"Call-ID: {CALL_ID}", f"CSeq: {cseq} {cseq_method or method}",
             "Contact: <sip:sbc@192.0.2.10:5060>;+sip.src", "Require: siprec",
             "Supported: timer", "Session-Expires: 1800"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


SIPREC_TYPE, SIPREC_BODY = multipart()
INVITE = message("INVITE", body=SIPREC_BODY, content_type=SIPREC_TYPE)
SEEDS = [
    INVITE,
    message("OPTIONS"),
    message("INVITE", body=OFFER, content_type="application/sdp", branch="z9hG4bKsdp"),
    message("CANCEL", branch="z9hG4bKfuzz1"),
    render(load_flow("oracle_sbc_stray_sdp.sip")["INVITE"]),
    render(load_flow("webex_calling_inbound.sip")["INVITE"]),
    (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKours\r\n"
     b"From: <sip:srs@192.0.2.1>;tag=a\r\nTo: <sip:sbc@192.0.2.10>;tag=b\r\nCall-ID: c\r\n"
     b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"),
]
JUNK = [b"\x00", b"\r\n", b"\n", b":", b";", b",", b"<", b">", b"\"", b"=", b" ", b"\t", b"\xff",
        b"INVITE", b"SIP/2.0", b"--rec-part", b"v=0", b"CSeq: 1 INVITE\r\n", b"Content-Length: 99999\r\n",
        b"Via: SIP/2.0/UDP", b"tag=", b"\r\n\r\n"]


def mutated(draw_data, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw_data.draw(st.integers(1, 6))):
        where = draw_data.draw(st.integers(0, len(data)))
        kind = draw_data.draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        if kind == "truncate":
            del data[where:]
        elif kind == "delete":
            del data[where:where + draw_data.draw(st.integers(1, 40))]
        else:
            junk = draw_data.draw(st.one_of(st.sampled_from(JUNK), st.binary(min_size=1, max_size=8)))
            end = where + (len(junk) if kind == "replace" else 0)
            data[where:end] = junk
    return bytes(data)


class Harness:
    """A real core behind a UDP protocol on a fake transport, with a Clock."""

    def __init__(self, test: SynchronousTestCase) -> None:
        self.test = test
        self.logs = LogLines(test)
        self.clock = Clock()
        self.handler = FakeHandler()
        self.core = SipCore(self.clock, self.handler,
                            UasSettings(host="192.0.2.1", user_agent="siprec-fuzz", timers=Timers(t1=0.5)),
                            read_body=split_siprec_body)
        self.proto = SipDatagramProtocol(self.core, ("192.0.2.1", 5060))
        self.wire = FakeDatagramTransport()
        self.proto.makeConnection(self.wire)

    def feed(self, data: bytes) -> List[Response]:
        """Deliver one datagram; check the invariant; the responses it caused."""
        sent_before, logged_before = len(self.wire.written), len(self.logs.events)
        keepalives, strays = self.proto.keepalives, self.core.layer.stray_responses
        self.proto.datagramReceived(data, SRC)
        responses = self.sent(sent_before)
        try:
            parse_message(data)
        except CSeqMethodMismatch:
            pass  # a BYE/ACK 'CSeq: N INVITE' the core may take in its dialog, or answer 400
        except SipParseError:
            answered = bool(responses)
            counted = (self.proto.keepalives > keepalives or self.core.layer.stray_responses > strays
                       or self.core.malformed_log.suppressed > 0)
            self.test.assertTrue(answered or counted or len(self.logs.events) > logged_before,
                                 f"malformed input neither answered nor logged: {data[:120]!r}")
        self.test.assertEqual(self.logs.failures(), [], data[:200])
        self.test.assertEqual(self.proto.dropped, 0)
        return responses

    def sent(self, start: int = 0) -> List[Response]:
        """What we sent since ``start``, each parsed (our BYEs and UPDATEs too); the responses."""
        messages = []
        for data, _address in self.wire.written[start:]:
            try:
                messages.append(parse_message(data))
            except SipParseError as error:
                self.test.fail(f"we sent something unparseable ({error}): {data[:300]!r}")
        return [m for m in messages if isinstance(m, Response)]

    def run_timers(self) -> None:
        for _ in range(8):
            self.clock.advance(40)
        self.test.assertEqual(self.logs.failures(), [])
        self.sent()


class FuzzTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=700))
    def test_garbage(self, data: bytes) -> None:
        harness = Harness(self)
        harness.feed(data)
        harness.run_timers()

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(SEEDS), st.integers(min_value=0))
    def test_truncated(self, seed: bytes, cut: int) -> None:
        harness = Harness(self)
        harness.feed(seed[:cut % (len(seed) + 1)])
        harness.run_timers()

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(SEEDS), st.data())
    def test_mutated(self, seed: bytes, data) -> None:
        harness = Harness(self)
        harness.feed(mutated(data, seed))
        harness.run_timers()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def test_mutated_in_dialog(self, data) -> None:
        """A call is up; mutated BYEs, re-INVITEs, UPDATEs and ACKs hit its dialog."""
        harness = Harness(self)
        [ok] = [r for r in harness.feed(INVITE) if r.status == 200]
        tag = ok.to.tag
        harness.feed(message("ACK", to_tag=tag, branch="z9hG4bKack1"))
        seeds = [
            message("BYE", to_tag=tag, cseq=2, branch="z9hG4bKbye"),
            message("BYE", cseq=2, cseq_method="INVITE", branch="z9hG4bKbye2"),
            message("INVITE", to_tag=tag, cseq=2, body=OFFER, content_type="application/sdp",
                    branch="z9hG4bKre"),
            message("UPDATE", to_tag=tag, cseq=2, body=SIPREC_BODY, content_type=SIPREC_TYPE,
                    branch="z9hG4bKup"),
            message("ACK", to_tag=tag, cseq=2, cseq_method="INVITE", branch="z9hG4bKack2"),
            message("INFO", to_tag=tag, cseq=2, branch="z9hG4bKinfo"),
        ]
        for _ in range(data.draw(st.integers(1, 4))):
            harness.feed(mutated(data, data.draw(st.sampled_from(seeds))))
        harness.run_timers()

    def test_every_truncation_of_an_invite(self) -> None:
        """Every prefix of the SIPREC INVITE, on one core: answered, logged or counted."""
        harness = Harness(self)
        for end in range(0, len(INVITE) + 1, 7):
            harness.feed(INVITE[:end].replace(b"z9hG4bKfuzz1", f"z9hG4bK{end}".encode()))
        harness.run_timers()

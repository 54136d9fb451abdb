"""Answers too large for one UDP datagram: 513 with the mandatory headers, or a drop.

A request with a 60 KB Via set (1185 proxies' worth) fits in a datagram,
but our 200 echoes it and adds Allow, Accept, Supported and Server: over
the limit. Checked on bytes (siprec.sip.datagram), through the core with a
fake UDP peer, and with real UDP sockets on 127.0.0.1.
"""

from __future__ import annotations

from typing import List

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from siprec.sip.datagram import MAX_DATAGRAM, fit_datagram
from siprec.sip.message import Request, Response, SipParseError, make_response, parse_message
from siprec.sip.transport import SipDatagramProtocol
from siprec.sip.uas import SipCore, UasSettings
from tests.sip.test_transport import _Collector, _until
from tests.sip.test_uas import FakeHandler, FakePeer


def big_options(proxies: int, top: str = "127.0.0.1:9", extra: str = "") -> bytes:
    """An OPTIONS that crossed ``proxies`` hops, each leaving a Via of 55 bytes."""
    vias = "".join(f"Via: SIP/2.0/UDP 10.{i // 250}.{i % 250}.1:5060;branch=z9hG4bK{i:06d}\r\n"
                   for i in range(proxies))
    return (f"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {top};branch=z9hG4bKtop;rport\r\n"
            f"{vias}Max-Forwards: 70\r\nFrom: <sip:probe@example.org>;tag=p1\r\n"
            f"To: <sip:srs@127.0.0.1>\r\nCall-ID: big-1\r\nCSeq: 7 OPTIONS\r\n{extra}"
            "Content-Length: 0\r\n\r\n").encode()


#: Fits one datagram; its 200 does not, its 513 does.
FITS_AS_513 = 1185
#: Fits one datagram; not even its 513 does.
TOO_LARGE_EVEN_AS_513 = 1192


class LogLines:
    """Warnings and errors logged while a test runs."""

    def __init__(self, test) -> None:
        self.events: List[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def matching(self, text: str) -> List[dict]:
        return [e for e in self.events if text in str(e.get("log_format", ""))]

    def failures(self) -> List[dict]:
        return [e for e in self.events if "log_failure" in e]


class FitDatagramTests(SynchronousTestCase):
    def response(self, proxies: int) -> Response:
        request = parse_message(big_options(proxies))
        assert isinstance(request, Request)
        return make_response(request, 200, to_tag="t0", headers=[("Allow", "INVITE, ACK, BYE")] * 8)

    def test_small_response_unchanged(self) -> None:
        response = self.response(3)
        self.assertIs(fit_datagram(response), response)

    def test_too_large_becomes_513_with_mandatory_headers_only(self) -> None:
        response = self.response(FITS_AS_513)
        self.assertGreater(len(response.to_bytes()), MAX_DATAGRAM)
        reply = fit_datagram(response)
        self.assertEqual((reply.status, reply.reason), (513, "Message Too Large"))
        self.assertLessEqual(len(reply.to_bytes()), MAX_DATAGRAM)
        self.assertEqual(sorted(set(reply.headers.names())), ["CSeq", "Call-ID", "From", "To", "Via"])
        self.assertEqual(reply.headers.get_all("Via"), response.headers.get_all("Via"))
        self.assertEqual(reply.to.tag, "t0")
        self.assertEqual(reply.body, b"")
        back = parse_message(reply.to_bytes())
        self.assertEqual((back.status, back.headers.get("Content-Length")), (513, "0"))

    def test_nothing_fits(self) -> None:
        self.assertIsNone(fit_datagram(self.response(TOO_LARGE_EVEN_AS_513)))

    def test_limit_is_a_parameter(self) -> None:
        response = self.response(3)
        self.assertEqual(fit_datagram(response, limit=len(response.to_bytes()) - 1).status, 513)
        self.assertIsNone(fit_datagram(response, limit=10))


class CoreOversizeTests(SynchronousTestCase):
    """Through SipCore and its transactions, with a fake peer."""

    def setUp(self) -> None:
        self.logs = LogLines(self)
        self.core = SipCore(Clock(), FakeHandler(), UasSettings(host="127.0.0.1", user_agent="siprec-test"))

    def deliver(self, data: bytes, transport: str = "UDP") -> List[Response]:
        peer = FakePeer(self.core.clock, transport)
        try:
            message = parse_message(data)
        except SipParseError as error:
            self.core.parse_error(error, peer)
        else:
            self.core.receive(message, peer)
        return [parse_message(d) for d in peer.sent]

    def test_udp_answer_becomes_513_logged_once(self) -> None:
        [reply] = self.deliver(big_options(FITS_AS_513))
        self.assertEqual(reply.status, 513)
        self.assertEqual(len(self.logs.matching("sent 513 instead")), 1)
        self.assertEqual(self.logs.failures(), [])

    def test_tcp_answer_sent_whole(self) -> None:
        [reply] = self.deliver(big_options(FITS_AS_513), "TCP")
        self.assertEqual(reply.status, 200)
        self.assertEqual(self.logs.matching("too large"), [])

    def test_dropped_when_even_513_is_too_large(self) -> None:
        self.assertEqual(self.deliver(big_options(TOO_LARGE_EVEN_AS_513)), [])
        self.assertEqual(len(self.logs.matching("do not fit in a UDP datagram")), 1)
        self.assertEqual(self.logs.failures(), [])

    def test_retransmission_resends_the_513(self) -> None:
        peer = FakePeer(self.core.clock, "UDP")
        self.core.receive(parse_message(big_options(FITS_AS_513)), peer)
        self.core.receive(parse_message(big_options(FITS_AS_513)), peer)
        self.assertEqual([parse_message(d).status for d in peer.sent], [513, 513])
        self.assertEqual(len(self.logs.matching("sent 513 instead")), 1)

    def test_stateless_answer_to_a_malformed_request(self) -> None:
        """A 400 outside any transaction is held to the same limit: dropped, one log line."""
        bad = "Max-Forwards: many\r\n"
        self.assertEqual(self.deliver(big_options(TOO_LARGE_EVEN_AS_513, extra=bad)), [])
        self.assertEqual(len(self.logs.matching("too large for UDP")), 1)
        [reply] = self.deliver(big_options(3, extra=bad))
        self.assertEqual(reply.status, 400)


class UdpSocketOversizeTests(TestCase):
    """The same over real UDP sockets on 127.0.0.1."""

    def setUp(self) -> None:
        self.logs = LogLines(self)
        self.core = SipCore(reactor, FakeHandler(), UasSettings(host="127.0.0.1", user_agent="siprec-test"))
        self.addCleanup(self.core.close)
        listener = SipDatagramProtocol(self.core, ("127.0.0.1", 0))
        port = reactor.listenUDP(0, listener, interface="127.0.0.1", maxPacketSize=65535)
        self.addCleanup(port.stopListening)
        self.target = ("127.0.0.1", port.getHost().port)
        self.client = _Collector()
        client_port = reactor.listenUDP(0, self.client, interface="127.0.0.1", maxPacketSize=65535)
        self.addCleanup(client_port.stopListening)
        self.top = f"127.0.0.1:{client_port.getHost().port}"

    @defer.inlineCallbacks
    def test_513_comes_back(self):
        data = big_options(FITS_AS_513, top=self.top)
        self.assertLess(len(data), 65507)
        self.client.transport.write(data, self.target)
        yield defer.ensureDeferred(_until(lambda: self.client.packets))
        [reply] = [parse_message(p) for p in self.client.packets]
        self.assertEqual(reply.status, 513)
        self.assertEqual(len(reply.headers.get_all("Via")), FITS_AS_513 + 1)
        self.assertEqual(self.logs.failures(), [])

    @defer.inlineCallbacks
    def test_dropped_then_next_request_still_answered(self):
        """Nothing comes back for the hopeless one, one log line says why, the listener lives."""
        self.client.transport.write(big_options(TOO_LARGE_EVEN_AS_513, top=self.top), self.target)
        yield defer.ensureDeferred(_until(lambda: self.logs.matching("do not fit in a UDP datagram")))
        small = big_options(2, top=self.top).replace(b"big-1", b"small-1").replace(
            b"z9hG4bKtop", b"z9hG4bKsmall")
        self.client.transport.write(small, self.target)
        yield defer.ensureDeferred(_until(lambda: self.client.packets))
        self.assertEqual([parse_message(p).call_id for p in self.client.packets], ["small-1"])
        self.assertEqual(len(self.logs.matching("do not fit in a UDP datagram")), 1)
        self.assertEqual(self.logs.failures(), [])

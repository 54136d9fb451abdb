"""Tests for siprec.sip.transport: framing bytes in, Via stamping, where answers go.

Unit tests use twisted.internet.testing fakes (StringTransport,
FakeDatagramTransport) and a core that records what it is handed; the
socket tests run the real SipCore on 127.0.0.1.
"""

from __future__ import annotations

from typing import List, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, protocol, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from siprec.sip.message import Request, Response, SipParseError, parse_message
from siprec.sip.transport import (
    OutboundStreamPeer,
    SipDatagramProtocol,
    SipStreamFactory,
    StreamPeer,
    UdpPeer,
)
from siprec.sip.uas import SipCore, UasSettings
from tests.sip.test_uas import FakeHandler


def options(via: str = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKopt1;rport", call_id: str = "opt-1",
            extra: str = "", body: bytes = b"") -> bytes:
    return (f"OPTIONS sip:srs@192.0.2.1 SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:probe@example.org>;tag=p1\r\nTo: <sip:srs@192.0.2.1>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 7 OPTIONS\r\n{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body


def response_bytes(branch: str = "z9hG4bKours") -> bytes:
    return (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch={branch}\r\n"
            "From: <sip:srs@192.0.2.1>;tag=a\r\nTo: <sip:sbc@192.0.2.10>;tag=b\r\nCall-ID: c\r\n"
            "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").encode()


class RecordingCore:
    """Stands in for SipCore: records what the transport hands over."""

    def __init__(self) -> None:
        self.received: List[Tuple[object, object]] = []
        self.errors: List[Tuple[SipParseError, object]] = []

    def receive(self, message, peer) -> None:
        self.received.append((message, peer))

    def parse_error(self, error: SipParseError, peer) -> None:
        self.errors.append((error, peer))


def real_core(clock=None) -> SipCore:
    return SipCore(clock or Clock(), FakeHandler(), UasSettings(host="127.0.0.1", user_agent="siprec-test"))


class DatagramTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.core = RecordingCore()
        self.proto = SipDatagramProtocol(self.core, ("192.0.2.1", 5060))
        self.wire = FakeDatagramTransport()
        self.proto.makeConnection(self.wire)

    def test_request_stamped_and_peer_addressed_by_rport(self) -> None:
        """received/rport go into the top Via; the answer goes to the packet's source port."""
        self.proto.datagramReceived(options(), ("203.0.113.7", 40123))
        [(message, peer)] = self.core.received
        self.assertIsInstance(message, Request)
        self.assertEqual(message.headers.get("Via"),
                         "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKopt1;rport=40123;received=203.0.113.7")
        self.assertIsInstance(peer, UdpPeer)
        self.assertEqual((peer.transport, peer.reliable), ("UDP", False))
        self.assertEqual(peer.remote, ("203.0.113.7", 40123))
        self.assertEqual(peer.local, ("192.0.2.1", 5060))
        peer.send(b"answer")
        self.assertEqual(self.wire.written, [(b"answer", ("203.0.113.7", 40123))])

    def test_without_rport_answer_goes_to_sent_by_port(self) -> None:
        """RFC 3261 §18.2.2: received host, sent-by port."""
        self.proto.datagramReceived(options(via="SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKx"),
                                    ("203.0.113.7", 40123))
        [(message, peer)] = self.core.received
        self.assertEqual(message.top_via.params.get("received"), "203.0.113.7")
        self.assertEqual(peer.remote, ("203.0.113.7", 5070))

    def test_responses_handed_over_unstamped(self) -> None:
        self.proto.datagramReceived(response_bytes(), ("192.0.2.10", 5060))
        [(message, peer)] = self.core.received
        self.assertIsInstance(message, Response)
        self.assertEqual(peer.remote, ("192.0.2.10", 5060))

    def test_keepalives_counted_not_delivered(self) -> None:
        stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x07" * 12
        for data in (b"\r\n\r\n", b"\r\n", b"\x00", stun):
            self.proto.datagramReceived(data, ("192.0.2.10", 5060))
        self.assertEqual((self.proto.keepalives, self.core.received, self.core.errors), (4, [], []))

    def test_answerable_error_gets_peer_at_response_address(self) -> None:
        bad = options(extra="Max-Forwards: x\r\n")
        self.proto.datagramReceived(bad, ("203.0.113.7", 40123))
        [(error, peer)] = self.core.errors
        self.assertIsNotNone(error.request)
        self.assertEqual(peer.remote, ("203.0.113.7", 40123))

    def test_core_failure_does_not_escape(self) -> None:
        """An exception in the core is logged; the listener lives on."""
        def explode(message, peer):
            raise RuntimeError("core bug")
        self.core.receive = explode
        self.proto.datagramReceived(options(), ("192.0.2.10", 5060))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.proto.dropped, 1)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400))
    def test_garbage_never_raises_with_real_core(self, data: bytes) -> None:
        """Random bytes into the real core: answered or dropped, never an exception or error log."""
        proto = SipDatagramProtocol(real_core(), ("192.0.2.1", 5060))
        wire = FakeDatagramTransport()
        proto.makeConnection(wire)
        proto.datagramReceived(data, ("192.0.2.10", 5060))
        proto.datagramReceived(b"OPTIONS " + data, ("192.0.2.10", 5060))
        self.assertEqual(proto.dropped, 0)
        for packet, _ in wire.written:
            self.assertIsInstance(parse_message(packet), Response)

    def test_malformed_request_answered_400_through_the_wire(self) -> None:
        proto = SipDatagramProtocol(real_core(), ("192.0.2.1", 5060))
        wire = FakeDatagramTransport()
        proto.makeConnection(wire)
        proto.datagramReceived(options(extra="CSeq: 8 OPTIONS\r\n"), ("203.0.113.7", 40123))
        [(packet, address)] = wire.written
        response = parse_message(packet)
        self.assertEqual((response.status, address), (400, ("203.0.113.7", 40123)))
        self.assertIn("More than one CSeq", response.reason)
        self.assertEqual(response.top_via.params.get("received"), "203.0.113.7")


def stream(core, transport_name: str = "TCP", max_size: int = 65536):
    factory = SipStreamFactory(core, transport_name, max_size, clock=Clock())
    proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.10", 40000))
    wire = StringTransport(hostAddress=IPv4Address("TCP", "192.0.2.1", 5060),
                           peerAddress=IPv4Address("TCP", "192.0.2.10", 40000))
    proto.makeConnection(wire)
    return factory, proto, wire


class StreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.core = RecordingCore()
        self.factory, self.proto, self.wire = stream(self.core)

    def test_connection_registered_with_listening_address(self) -> None:
        self.assertIs(self.factory.connections[("192.0.2.10", 40000)], self.proto)
        self.assertEqual(self.factory.listening, ("192.0.2.1", 5060))
        peer = self.proto.peer
        self.assertIsInstance(peer, StreamPeer)
        self.assertEqual((peer.transport, peer.reliable, peer.remote, peer.local),
                         ("TCP", True, ("192.0.2.10", 40000), ("192.0.2.1", 5060)))

    def test_framing_across_every_chunking(self) -> None:
        """Two messages (one with a body) fed one byte at a time come out whole, in order."""
        data = options(call_id="first") + options(call_id="second", body=b"v=0\r\n",
                                                  extra="Content-Type: application/sdp\r\n")
        for byte in range(len(data)):
            self.proto.dataReceived(data[byte:byte + 1])
        calls = [m.call_id for m, _ in self.core.received]
        self.assertEqual(calls, ["first", "second"])
        self.assertEqual(self.core.received[1][0].body, b"v=0\r\n")
        self.assertIs(self.core.received[0][1], self.proto.peer)

    def test_via_stamped_on_streams_too(self) -> None:
        self.proto.dataReceived(options())
        message = self.core.received[0][0]
        self.assertEqual(message.top_via.params.get("received"), "192.0.2.10")
        self.assertEqual(message.top_via.params.get("rport"), "40000")

    def test_crlf_ping_answered_with_crlf(self) -> None:
        self.proto.dataReceived(b"\r\n\r\n")
        self.assertEqual(self.wire.value(), b"\r\n")
        self.wire.clear()
        self.proto.dataReceived(b"\r\n")  # a pong is not answered
        self.assertEqual(self.wire.value(), b"")
        self.assertEqual(self.core.received, [])

    def test_oversized_message_answered_513_once_and_closed(self) -> None:
        core = real_core()
        factory, proto, wire = stream(core)
        head = options().replace(b"Content-Length: 0", b"Content-Type: application/sdp\r\n"
                                                     b"Content-Length: 71680")
        proto.dataReceived(head)
        for _ in range(70):
            proto.dataReceived(b"x" * 1024)
        self.assertTrue(wire.disconnecting)
        [response] = _responses(wire.value())
        self.assertEqual(response.status, 513)
        self.assertEqual(response.call_id, "opt-1")

    def test_oversized_header_section_answered_and_closed(self) -> None:
        core = real_core()
        factory, proto, wire = stream(core)
        head = options().split(b"Content-Length")[0]
        proto.dataReceived(head)
        proto.dataReceived(b"X-Pad: " + b"y" * 70000 + b"\r\n")
        self.assertTrue(wire.disconnecting)
        self.assertEqual([r.status for r in _responses(wire.value())], [513])

    def test_garbage_then_valid_request_answered(self) -> None:
        """Unparseable bytes are dropped; the connection keeps working."""
        core = real_core()
        factory, proto, wire = stream(core)
        proto.dataReceived(b"\x00\xff\xfe garbage\r\n\r\n")
        proto.dataReceived(b"HELLO THERE\r\nWhat: ever\r\n\r\n")
        self.assertEqual(wire.value(), b"")
        self.assertFalse(wire.disconnecting)
        proto.dataReceived(options(via="SIP/2.0/TCP 192.0.2.10:40000;branch=z9hG4bKafter"))
        [response] = _responses(wire.value())
        self.assertEqual((response.status, response.top_via.branch), (200, "z9hG4bKafter"))

    def test_bad_content_length_closes(self) -> None:
        self.proto.dataReceived(options().replace(b"Content-Length: 0", b"Content-Length: many"))
        self.assertTrue(self.wire.disconnecting)
        self.proto.dataReceived(options())  # ignored once closing
        self.assertEqual(self.core.received, [])
        self.assertEqual(len(self.core.errors), 1)
        self.assertEqual(self.core.errors[0][0].status, 400)

    def test_closed_mid_message(self) -> None:
        """Half a message then a close: nothing delivered, the peer says it is gone."""
        data = options()
        self.proto.dataReceived(data[:50])
        self.proto.connectionLost(None)
        self.assertEqual(self.core.received, [])
        self.assertEqual(self.factory.connections, {})
        self.assertFalse(self.proto.peer.connected)
        self.assertRaises(ConnectionError, self.proto.peer.send, b"BYE")

    def test_peer_writes_to_connection(self) -> None:
        self.proto.peer.send(b"hello")
        self.assertEqual(self.wire.value(), b"hello")
        self.assertTrue(self.proto.peer.connected)

    def test_tls_factory_names_its_transport(self) -> None:
        factory, proto, wire = stream(self.core, "TLS")
        self.assertEqual(proto.peer.transport, "TLS")

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=200), max_size=8))
    def test_garbage_chunks_never_raise(self, chunks) -> None:
        core = real_core()
        factory, proto, wire = stream(core, max_size=2048)
        for chunk in chunks:
            proto.dataReceived(chunk)
        for response in _responses(wire.value()):
            self.assertGreaterEqual(response.status, 100)


def _responses(data: bytes) -> List[Response]:
    """Split what a stream protocol wrote into parsed responses (CRLF pongs skipped)."""
    from siprec.sip.framing import Frame, StreamFramer
    out = []
    for item in StreamFramer().feed(data):
        if isinstance(item, Frame):
            message = parse_message(item.data)
            assert isinstance(message, Response)
            out.append(message)
    return out


class FakeEndpoint:
    def __init__(self) -> None:
        self.result: Deferred = Deferred()
        self.factory = None

    def connect(self, factory):
        self.factory = factory
        return self.result


class OutboundPeerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.core = RecordingCore()
        self.factory, self.inbound, _ = stream(self.core)
        self.endpoint = FakeEndpoint()
        self.peer = OutboundStreamPeer(self.endpoint, self.factory, ("192.0.2.10", 5060))

    def connect(self):
        proto = self.endpoint.factory.buildProtocol(IPv4Address("TCP", "192.0.2.10", 5060))
        wire = StringTransport(hostAddress=IPv4Address("TCP", "192.0.2.1", 51000),
                               peerAddress=IPv4Address("TCP", "192.0.2.10", 5060))
        proto.makeConnection(wire)
        self.endpoint.result.callback(proto)
        return proto, wire

    def test_queues_until_connected(self) -> None:
        self.assertTrue(self.peer.connected)
        self.peer.send(b"one ")
        self.peer.send(b"two ")
        proto, wire = self.connect()
        self.assertEqual(wire.value(), b"one two ")
        self.peer.send(b"three")
        self.assertEqual(wire.value(), b"one two three")

    def test_via_address_is_the_listening_one(self) -> None:
        """Via/Contact must name our listener, not the connection's ephemeral port."""
        self.assertEqual(self.peer.local, ("192.0.2.1", 5060))
        self.connect()
        self.assertEqual(self.peer.local, ("192.0.2.1", 5060))
        self.assertEqual(self.factory.listening, ("192.0.2.1", 5060))
        explicit = OutboundStreamPeer(FakeEndpoint(), self.factory, ("192.0.2.10", 5060),
                                      local=("198.51.100.1", 5080))
        self.assertEqual(explicit.local, ("198.51.100.1", 5080))

    def test_responses_on_the_new_connection_reach_the_core(self) -> None:
        proto, wire = self.connect()
        proto.dataReceived(response_bytes())
        [(message, peer)] = self.core.received
        self.assertEqual(message.status, 200)

    def test_failed_connect_refuses_sends(self) -> None:
        self.peer.send(b"lost")
        self.endpoint.result.errback(ConnectionRefusedError("refused"))
        self.assertFalse(self.peer.connected)
        self.assertRaises(ConnectionError, self.peer.send, b"more")

    def test_lost_connection_refuses_sends(self) -> None:
        proto, wire = self.connect()
        proto.connectionLost(None)
        self.assertFalse(self.peer.connected)
        self.assertRaises(ConnectionError, self.peer.send, b"more")


class _Collector(protocol.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: List[bytes] = []

    def datagramReceived(self, data, addr) -> None:
        self.packets.append(data)


class _StreamClient(protocol.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred = Deferred()

    def dataReceived(self, data) -> None:
        self.data += data

    def connectionLost(self, reason=None) -> None:
        self.closed.callback(None)


async def _until(check, timeout: float = 5.0) -> None:
    waited = 0.0
    while not check():
        if waited >= timeout:
            raise AssertionError("condition not met in time")
        await deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


class SocketTests(TestCase):
    """Real sockets on 127.0.0.1 with the real core."""

    def setUp(self) -> None:
        self.core = SipCore(reactor, FakeHandler(), UasSettings(host="127.0.0.1", user_agent="siprec-test"))
        self.addCleanup(self.core.close)

    @defer.inlineCallbacks
    def test_udp_garbage_then_options(self):
        listener = SipDatagramProtocol(self.core, ("127.0.0.1", 0))
        port = reactor.listenUDP(0, listener, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.assertEqual(listener.local, ("127.0.0.1", port.getHost().port))
        client = _Collector()
        client_port = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(client_port.stopListening)
        target = ("127.0.0.1", port.getHost().port)
        client.transport.write(b"\xff\x00 not sip at all \x01", target)
        client.transport.write(b"INVITE sip:x SIP/2.0\r\n\r\n", target)
        client.transport.write(options(via="SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKudp;rport"), target)
        yield defer.ensureDeferred(_until(lambda: client.packets))
        [response] = [parse_message(p) for p in client.packets]
        self.assertEqual(response.status, 200)
        self.assertEqual(response.top_via.params.get("rport"), str(client_port.getHost().port))

    @defer.inlineCallbacks
    def test_tcp_chunks_garbage_and_options(self):
        factory = SipStreamFactory(self.core, "TCP")
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = _StreamClient()
        yield protocol.ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", port.getHost().port)
        data = options(via="SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKtcp")
        client.transport.write(b"\x00\x01junk\r\n\r\n")
        client.transport.write(data[:40])
        yield deferLater(reactor, 0.05, lambda: None)
        client.transport.write(data[40:])
        yield defer.ensureDeferred(_until(lambda: b"\r\n\r\n" in client.data))
        [response] = _responses(client.data)
        self.assertEqual(response.status, 200)
        client.transport.loseConnection()
        yield client.closed

    @defer.inlineCallbacks
    def test_tcp_oversized_message_closed(self):
        factory = SipStreamFactory(self.core, "TCP")
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = _StreamClient()
        yield protocol.ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", port.getHost().port)
        big = options(via="SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKbig", body=b"z" * 70 * 1024,
                      extra="Content-Type: application/sdp\r\n")
        client.transport.write(big)
        yield client.closed
        self.assertEqual([r.status for r in _responses(client.data)], [513])
        self.assertEqual(factory.connections, {})


class StreamLimitsTests(SynchronousTestCase):
    """Slow senders and connection floods cannot exhaust the server."""

    def make(self, **kw):
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport
        from siprec.sip.transport import SipStreamFactory

        class Core:
            def __init__(self):
                self.received = []

            def receive(self, message, peer):
                self.received.append(message)

            def parse_error(self, error, peer):
                pass

        clock = Clock()
        factory = SipStreamFactory(Core(), "TCP", clock=clock, **kw)
        return factory, clock, StringTransport

    def test_partial_message_times_out(self):
        """Half a message left for partial_timeout seconds closes the connection."""
        from twisted.internet.address import IPv4Address
        factory, clock, StringTransport = self.make(partial_timeout=10)
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
        proto.makeConnection(transport)
        proto.dataReceived(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h")
        clock.advance(9)
        self.assertFalse(transport.disconnecting)
        clock.advance(2)
        self.assertTrue(transport.disconnecting)

    def test_idle_connection_stays(self):
        """A connection with nothing pending is never closed for idleness."""
        from twisted.internet.address import IPv4Address
        factory, clock, StringTransport = self.make(partial_timeout=10)
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
        proto.makeConnection(transport)
        proto.dataReceived(b"\r\n\r\n")
        clock.advance(3600)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_connection_cap(self):
        """Beyond max_connections, new connections are refused."""
        from twisted.internet.address import IPv4Address
        factory, clock, StringTransport = self.make(max_connections=2)
        for port in (1, 2):
            proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
            proto.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port)))
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 3)))
        self.assertEqual(factory.refused, 1)

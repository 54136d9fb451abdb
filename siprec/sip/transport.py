"""Thin Twisted adapters: SIP over UDP, TCP and TLS (RFC 3261 §18).

Protocols only frame bytes, stamp the Via and build the :class:`Peer` a
response goes back through; every decision is the core's. Bad input is
answered or dropped with one log line and never kills a listener.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from siprec.sip.framing import FramingError, KeepAlive, StreamFramer
from siprec.sip.headers import HeaderError
from siprec.sip.message import Request, SipParseError, parse_message
from siprec.sip.routing import response_address, stamp_via

log = Logger()

__all__ = ["UdpPeer", "StreamPeer", "OutboundStreamPeer", "SipDatagramProtocol",
           "SipStreamProtocol", "SipStreamFactory", "UDP_MAX_DATAGRAM"]

UDP_MAX_DATAGRAM = 65535


class UdpPeer:
    transport = "UDP"
    reliable = False

    def __init__(self, port_transport, remote: Tuple[str, int], local: Tuple[str, int]):
        self._port = port_transport
        self.remote = remote
        self.local = local

    @property
    def port(self):
        """The listening port (transport) this peer's datagrams go out of."""
        return self._port

    def send(self, data: bytes) -> None:
        self._port.write(data, self.remote)

    def __repr__(self) -> str:
        return f"<UdpPeer {self.remote[0]}:{self.remote[1]}>"


class StreamPeer:
    """A TCP/TLS connection; responses and in-dialog requests reuse it."""

    reliable = True

    def __init__(self, protocol_: "SipStreamProtocol"):
        self.protocol = protocol_
        self.transport = protocol_.factory.transport_name
        self.remote = protocol_.remote
        self.local = protocol_.local

    @property
    def connected(self) -> bool:
        return self.protocol.connected

    def send(self, data: bytes) -> None:
        if not self.protocol.connected:
            raise ConnectionError(f"{self.transport} connection to {self.remote[0]}:{self.remote[1]} is closed")
        self.protocol.transport.write(data)

    def __repr__(self) -> str:
        return f"<StreamPeer {self.transport} {self.remote[0]}:{self.remote[1]}>"


def _deliver(core, data: bytes, source: Tuple[str, int], make_peer, max_size: Optional[int]) -> None:
    try:
        message = parse_message(data, max_size=max_size)
    except SipParseError as error:
        if error.request is not None:
            try:
                via = stamp_via(error.request, source)
            except HeaderError:
                via = None
            peer = make_peer(via)
        else:
            peer = make_peer(None)
        core.parse_error(error, peer)
        return
    via = None
    if isinstance(message, Request):
        try:
            via = stamp_via(message, source)
        except HeaderError as e:  # parse_message validated it; stay safe
            log.info("Dropping request with bad Via from {src}: {e}", src=source, e=e)
            return
    core.receive(message, make_peer(via))


def _is_stun(data: bytes) -> bool:
    """An RFC 5389 STUN message (RFC 5626 keep-alives share the SIP port): first two bits 0."""
    return len(data) >= 20 and data[0] < 0x04 and data[4:8] == b"\x21\x12\xa4\x42"


class SipDatagramProtocol(protocol.DatagramProtocol):
    """One UDP listener; each datagram is one message."""

    def __init__(self, core, local: Tuple[str, int]):
        self.core = core
        self.local = local
        self.received = 0
        self.dropped = 0
        self.keepalives = 0

    def startProtocol(self) -> None:
        # Listening on port 0 (tests) picks the port only now; Via and Contact need it.
        if not self.local[1] and hasattr(self.transport, "getHost"):
            self.local = (self.local[0], self.transport.getHost().port)

    def datagramReceived(self, data: bytes, addr) -> None:
        self.received += 1
        if not data.strip(b"\r\n\x00 ") or _is_stun(data):
            self.keepalives += 1  # CRLF or STUN keep-alive; counted, not answered, not logged
            return
        source = (addr[0], addr[1])

        def make_peer(via):
            remote = response_address(via, source) if via is not None else source
            return UdpPeer(self.transport, remote, self.local)

        try:
            _deliver(self.core, data, source, make_peer, None)
        except Exception:
            self.dropped += 1
            log.failure("Unhandled error processing a datagram from {src}", src=source)


class SipStreamProtocol(protocol.Protocol):
    """One TCP or TLS connection, framed by Content-Length."""

    outbound = False  # True for connections we opened (an in-dialog request to the SRC)

    def __init__(self) -> None:
        self.framer: Optional[StreamFramer] = None
        self.remote: Tuple[str, int] = ("", 0)
        self.local: Tuple[str, int] = ("", 0)
        self.peer: Optional[StreamPeer] = None
        self.closing = False
        self._partial_timer = None

    def connectionMade(self) -> None:
        self.framer = StreamFramer(self.factory.max_size)
        r = self.transport.getPeer()
        l = self.transport.getHost()
        self.remote = (r.host, r.port)
        self.local = (l.host, l.port)
        self.peer = StreamPeer(self)
        self.factory.connections[self.remote] = self
        if not self.outbound:
            self.factory.listening = self.local

    def connectionLost(self, reason=None) -> None:
        # Twisted leaves ``connected`` set; StreamPeer.connected must say the truth.
        self.connected = False
        self._stop_partial_timer()
        if self.factory.connections.get(self.remote) is self:
            del self.factory.connections[self.remote]

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return  # unframable stream, close pending: one answer was enough
        try:
            items = self.framer.feed(data)
        except FramingError as error:
            log.info("Closing {t} connection from {src}: {reason}",
                     t=self.factory.transport_name, src=self.remote, reason=error.reason)
            self.closing = True
            self._answer_unframable(error)
            self.transport.loseConnection()
            return
        for item in items:
            if isinstance(item, KeepAlive):
                if item.ping:
                    self.transport.write(b"\r\n")
                continue
            try:
                _deliver(self.factory.core, item.data, self.remote, lambda via: self.peer,
                         self.factory.max_size)
            except Exception:
                log.failure("Unhandled error processing a message from {src}", src=self.remote)
        self._watch_partial()

    def _watch_partial(self) -> None:
        """A message left half-sent for too long (slowloris) closes the connection;
        an idle connection with nothing pending stays open as long as it likes."""
        if self.framer.buffered and not self.closing:
            if self._partial_timer is None:
                self._partial_timer = self.factory.clock.callLater(
                    self.factory.partial_timeout, self._partial_expired)
        else:
            self._stop_partial_timer()

    def _partial_expired(self) -> None:
        self._partial_timer = None
        log.info("Closing {t} connection from {src}: incomplete message for {s:g}s",
                 t=self.factory.transport_name, src=self.remote, s=self.factory.partial_timeout)
        self.closing = True
        self.transport.loseConnection()

    def _stop_partial_timer(self) -> None:
        if self._partial_timer is not None:
            if self._partial_timer.active():
                self._partial_timer.cancel()
            self._partial_timer = None

    def _answer_unframable(self, error: FramingError) -> None:
        try:
            message = parse_message(error.head + b"\r\n\r\n")
            request = message if isinstance(message, Request) else None
        except SipParseError as parse_error:
            request = parse_error.request
        if request is None:
            return
        try:
            stamp_via(request, self.remote)
        except HeaderError:
            pass
        self.factory.core.parse_error(SipParseError(error.reason, error.status, request), self.peer)


class SipStreamFactory(protocol.ServerFactory):
    protocol = SipStreamProtocol

    def __init__(self, core, transport_name: str = "TCP", max_size: int = 65536,
                 clock=None, max_connections: int = 4096, partial_timeout: float = 32.0):
        self.core = core
        self.transport_name = transport_name
        self.max_size = max_size
        self.max_connections = max_connections
        self.partial_timeout = partial_timeout
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.refused = 0
        self.connections: Dict[Tuple[str, int], SipStreamProtocol] = {}
        # Our listening address as seen on an accepted connection: the sent-by of
        # requests we send on connections we open ourselves.
        self.listening: Optional[Tuple[str, int]] = None

    def buildProtocol(self, addr):
        if len(self.connections) >= self.max_connections:
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                log.warn("Refusing {t} connection from {host}: {n} connections open (limit)",
                         t=self.transport_name, host=getattr(addr, "host", "?"),
                         n=len(self.connections))
            return None
        return super().buildProtocol(addr)


class OutboundStreamPeer:
    """A new TCP/TLS connection to the SRC for an in-dialog request (BYE)
    when the one the dialog used is gone; data waits until it connects.

    ``local`` is the address put in Via and Contact: our listening address
    (RFC 3261 §18.1.1: where responses may come back), not the ephemeral
    port of this connection; by default the factory's listening address.
    Responses arriving on the new connection reach the core like any other.
    """

    reliable = True

    def __init__(self, endpoint, factory: SipStreamFactory, target: Tuple[str, int],
                 local: Optional[Tuple[str, int]] = None):
        self.transport = factory.transport_name
        self.remote = target
        self.local = local or factory.listening or ("", 0)
        self._queue: List[bytes] = []
        self._protocol: Optional[SipStreamProtocol] = None
        self._failure: Optional[str] = None
        d: Deferred = endpoint.connect(_OutboundFactory(factory))
        d.addCallbacks(self._connected, self._failed)

    @property
    def connected(self) -> bool:
        """True while connecting or connected: the peer is still worth sending through."""
        if self._failure is not None:
            return False
        return self._protocol is None or bool(self._protocol.connected)

    def _connected(self, proto: SipStreamProtocol) -> None:
        self._protocol = proto
        for data in self._queue:
            proto.transport.write(data)
        self._queue = []

    def _failed(self, failure) -> None:
        self._failure = failure.getErrorMessage()
        log.warn("Could not connect to {t} {host}:{port}: {error}", t=self.transport,
                 host=self.remote[0], port=self.remote[1], error=self._failure)
        self._queue = []

    def send(self, data: bytes) -> None:
        if self._failure is not None:
            raise ConnectionError(f"{self.transport} connection to {self.remote[0]}:{self.remote[1]} "
                                  f"failed: {self._failure}")
        if self._protocol is None:
            self._queue.append(data)
        elif self._protocol.connected:
            self._protocol.transport.write(data)
        else:
            raise ConnectionError(f"{self.transport} connection to {self.remote[0]}:{self.remote[1]} is closed")

    def __repr__(self) -> str:
        return f"<OutboundStreamPeer {self.transport} {self.remote[0]}:{self.remote[1]}>"


class _OutboundFactory(protocol.ClientFactory):
    def __init__(self, server_factory: SipStreamFactory):
        self.server_factory = server_factory

    def buildProtocol(self, addr):
        proto = SipStreamProtocol()
        proto.factory = self.server_factory
        proto.outbound = True
        return proto

"""Thin Twisted adapters: SIP over UDP, TCP and TLS (RFC 3261 §18).

Protocols only frame bytes, stamp the Via and build the :class:`Peer` a
response goes back through; every decision is the core's. Bad input is
answered or dropped with one log line and never kills a listener.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from siprec.sip.framing import Frame, FramingError, KeepAlive, StreamFramer
from siprec.sip.headers import HeaderError
from siprec.sip.message import Request, SipParseError, parse_message
from siprec.sip.routing import response_address, stamp_via

log = Logger()

__all__ = ["UdpPeer", "StreamPeer", "SipDatagramProtocol", "SipStreamProtocol",
           "SipStreamFactory", "UDP_MAX_DATAGRAM"]

UDP_MAX_DATAGRAM = 65535


class UdpPeer:
    transport = "UDP"
    reliable = False

    def __init__(self, port_transport, remote: Tuple[str, int], local: Tuple[str, int]):
        self._port = port_transport
        self.remote = remote
        self.local = local

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


class SipDatagramProtocol(protocol.DatagramProtocol):
    """One UDP listener; each datagram is one message."""

    def __init__(self, core, local: Tuple[str, int]):
        self.core = core
        self.local = local
        self.received = 0
        self.dropped = 0

    def datagramReceived(self, data: bytes, addr) -> None:
        self.received += 1
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive
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

    def __init__(self) -> None:
        self.framer: Optional[StreamFramer] = None
        self.remote: Tuple[str, int] = ("", 0)
        self.local: Tuple[str, int] = ("", 0)
        self.peer: Optional[StreamPeer] = None

    def connectionMade(self) -> None:
        self.framer = StreamFramer(self.factory.max_size)
        r = self.transport.getPeer()
        l = self.transport.getHost()
        self.remote = (r.host, r.port)
        self.local = (l.host, l.port)
        self.peer = StreamPeer(self)
        self.factory.connections[self.remote] = self

    def connectionLost(self, reason=None) -> None:
        if self.factory.connections.get(self.remote) is self:
            del self.factory.connections[self.remote]

    def dataReceived(self, data: bytes) -> None:
        try:
            items = self.framer.feed(data)
        except FramingError as error:
            log.info("Closing {t} connection from {src}: {reason}",
                     t=self.factory.transport_name, src=self.remote, reason=error.reason)
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

    def _answer_unframable(self, error: FramingError) -> None:
        try:
            message = parse_message(error.head + b"\r\n\r\n")
            request = message if isinstance(message, Request) else None
        except SipParseError as parse_error:
            request = parse_error.request
        if request is None:
            return
        self.factory.core.parse_error(SipParseError(error.reason, error.status, request), self.peer)


class SipStreamFactory(protocol.ServerFactory):
    protocol = SipStreamProtocol

    def __init__(self, core, transport_name: str = "TCP", max_size: int = 65536):
        self.core = core
        self.transport_name = transport_name
        self.max_size = max_size
        self.connections: Dict[Tuple[str, int], SipStreamProtocol] = {}


class OutboundStreamPeer:
    """A new TCP/TLS connection to the SRC for an in-dialog request (BYE)
    when the one the dialog used is gone; data waits until it connects."""

    reliable = True

    def __init__(self, endpoint, factory: SipStreamFactory, target: Tuple[str, int]):
        self.transport = factory.transport_name
        self.remote = target
        self.local = ("", 0)
        self._queue = []
        self._protocol: Optional[SipStreamProtocol] = None
        d: Deferred = endpoint.connect(_OutboundFactory(factory))
        d.addCallbacks(self._connected, self._failed)

    def _connected(self, proto: SipStreamProtocol) -> None:
        self._protocol = proto
        self.local = proto.local
        for data in self._queue:
            proto.transport.write(data)
        self._queue = []

    def _failed(self, failure) -> None:
        log.warn("Could not connect to {t} {host}:{port}: {error}", t=self.transport,
                 host=self.remote[0], port=self.remote[1], error=failure.getErrorMessage())
        self._queue = []

    def send(self, data: bytes) -> None:
        if self._protocol is not None and self._protocol.connected:
            self._protocol.transport.write(data)
        else:
            self._queue.append(data)


class _OutboundFactory(protocol.ClientFactory):
    def __init__(self, server_factory: SipStreamFactory):
        self.server_factory = server_factory

    def buildProtocol(self, addr):
        proto = SipStreamProtocol()
        proto.factory = self.server_factory
        return proto

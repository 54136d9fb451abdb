"""RabbitMQ helpers for the AMQP tests: availability, a consumer, a TCP proxy we control."""

from __future__ import annotations

import os
import socket
from typing import Any, List, Optional, Set

import pika
from pika.adapters.twisted_connection import TwistedProtocolConnection
from twisted.internet import protocol, reactor
from twisted.internet.defer import DeferredQueue, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import SkipTest

HOST, PORT = "127.0.0.1", 5672
URL = f"amqp://guest:guest@{HOST}:{PORT}/%2F"


def require_rabbitmq() -> None:
    """Skip when no broker listens on 127.0.0.1:5672; under CI=true, fail instead."""
    try:
        with socket.create_connection((HOST, PORT), timeout=1.0):
            return
    except OSError as err:
        reason = f"RabbitMQ not reachable on {HOST}:{PORT} ({err})"
    if os.environ.get("CI", "").lower() == "true":
        raise AssertionError(reason + "; CI=true needs it")
    raise SkipTest(reason)


class Consumer:
    """A queue bound to an exchange, read into a DeferredQueue (pika's Twisted adapter too)."""

    def __init__(self) -> None:
        self.messages: DeferredQueue = DeferredQueue()
        self.connection: Optional[TwistedProtocolConnection] = None
        self.channel: Any = None

    @inlineCallbacks
    def start(self, queue: str, exchange: str = "", binding: str = "#",
              declare_queue: bool = True):
        yield self.open()
        if declare_queue:
            yield self.channel.queue_declare(queue=queue, durable=False, auto_delete=False)
        if exchange:
            yield self.channel.queue_bind(queue=queue, exchange=exchange, routing_key=binding)
        stream, _ = yield self.channel.basic_consume(queue=queue, auto_ack=True)
        self._pump(stream)

    @inlineCallbacks
    def open(self):
        """Connect and open a channel, without consuming anything."""
        params = pika.URLParameters(URL)
        self.connection = TwistedProtocolConnection(params)
        yield connectProtocol(TCP4ClientEndpoint(reactor, HOST, PORT), self.connection)
        yield self.connection.ready
        self.channel = yield self.connection.channel()

    def _pump(self, stream: Any) -> None:
        def got(item: Any) -> None:
            _, method, properties, body = item
            self.messages.put((method, properties, body))
            self._pump(stream)

        stream.get().addCallbacks(got, lambda _: None)

    @inlineCallbacks
    def delete(self, queues: List[str] = (), exchanges: List[str] = ()):
        if self.channel is not None and self.channel.is_open:
            for queue in queues:
                yield self.channel.queue_delete(queue=queue)
            for exchange in exchanges:
                yield self.channel.exchange_delete(exchange=exchange)

    @inlineCallbacks
    def stop(self):
        if self.connection is not None and self.connection.is_open:
            closed = self.connection.closed
            self.connection.close()
            if closed is not None:
                yield closed


class _Relay(protocol.Protocol):
    """One side of a proxied connection; `peer` is the other side."""

    peer: Optional["_Relay"] = None
    buffered: bytes = b""

    def dataReceived(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.buffered += data

    def connectionLost(self, reason: Any = None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.loseConnection()


class _Downstream(_Relay):
    """The connection from the publisher under test."""

    def connectionMade(self) -> None:
        proxy: TcpProxy = self.factory.proxy
        if proxy.down:
            self.transport.abortConnection()
            return
        proxy.clients.add(self)
        self.transport.pauseProducing()
        upstream = _Relay()
        upstream.peer = self
        self.peer = upstream

        def connected(_: Any) -> None:
            if self.buffered:
                upstream.transport.write(self.buffered)
                self.buffered = b""
            if proxy.stalled:
                upstream.transport.pauseProducing()
            self.transport.resumeProducing()

        connectProtocol(TCP4ClientEndpoint(reactor, HOST, PORT), upstream).addCallbacks(
            connected, lambda _: self.transport.abortConnection())

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.proxy.clients.discard(self)
        super().connectionLost(reason)


class TcpProxy:
    """A local TCP relay to the broker that a test can cut, refuse or stall."""

    def __init__(self) -> None:
        self.clients: Set[_Downstream] = set()
        self.down = False      # refuse new connections (abort at once)
        self.stalled = False   # new connections never get the broker's answers
        factory = protocol.Factory.forProtocol(_Downstream)
        factory.proxy = self
        self.port = reactor.listenTCP(0, factory, interface=HOST)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.port.getHost().port}/%2F?heartbeat=0"

    def cut(self) -> int:
        """Abort every proxied connection, both sides; returns how many."""
        clients = list(self.clients)
        for client in clients:
            client.transport.abortConnection()
            if client.peer is not None and client.peer.transport is not None:
                client.peer.transport.abortConnection()
        return len(clients)

    def stall(self) -> None:
        """Stop relaying the broker's bytes (confirms) on current connections."""
        for client in self.clients:
            if client.peer is not None and client.peer.transport is not None:
                client.peer.transport.pauseProducing()

    def stop(self):
        self.down = True
        self.cut()
        return self.port.stopListening()

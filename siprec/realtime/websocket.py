"""Events over WebSocket (Autobahn): ``/ws`` (every event) and ``/ws/analytics``.

A client that sends nothing receives every event its role may see; a JSON
message ``{"type": "subscribe", "call_ids": [...], "events": [...]}`` narrows
the stream to those calls (session id or SIP Call-ID) and event types
(``transcript.final``, ``transcript.*``); null or a missing key means "any".
Replies and notices are ``siprec.control/1`` messages (see
docs/realtime-transcription.md).

The factory keeps the clients and takes events from the EventBus; each event
is encoded and framed once and handed to every interested client. A client
is a push producer on its transport: while the socket cannot take more, its
events wait in a bounded queue, and a client that falls further behind is
closed with code 4008, so a slow reader never costs the server memory or time.

Authentication happens before the upgrade, in :class:`EventStreamResource`
(a token in ``Authorization``, ``X-API-Key`` or ``?token=``, as browsers cannot
set headers); refusals are the API's JSON errors (401/403), and a JWT's expiry
closes the socket with code 4001.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, FrozenSet, Optional, Set, Tuple

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from siprec.http.errors import ApiError, write_error
from siprec.realtime.bus import EventBus, type_matcher
from siprec.realtime.events import ANALYTICS_TYPES, Event
from siprec.security.auth import ANONYMOUS, AuthError, Authenticator, Permission, Principal

__all__ = [
    "EventStreamFactory", "EventStreamProtocol", "EventStreamResource", "ClientFilter",
    "SubscriptionError", "parse_client_message", "websocket_resources", "WebSocketService",
    "CLOSE_GOING_AWAY", "CLOSE_TOKEN_EXPIRED", "CLOSE_SLOW_CONSUMER", "CONTROL_SCHEMA",
]

log = Logger()

CONTROL_SCHEMA = "siprec.control/1"
CLOSE_GOING_AWAY = 1001       # server shutting down
CLOSE_TOKEN_EXPIRED = 4001    # the JWT the client connected with has expired
CLOSE_SLOW_CONSUMER = 4008    # the client read too slowly; its queue overflowed
MAX_CLIENT_MESSAGE = 64 * 1024
MAX_FILTER_IDS = 1000
DEFAULT_BUFFER = 1000
ANALYTICS_PATTERNS = tuple(sorted(ANALYTICS_TYPES))


class SubscriptionError(ValueError):
    """A client message we cannot act on; ``code`` goes back in the error notice."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ClientFilter:
    """Which events a client asked for: call ids (either id) and type patterns; None = any."""

    call_ids: Optional[FrozenSet[str]] = None
    types: Optional[Tuple[str, ...]] = None
    matches_type: Callable[[str], bool] = type_matcher(None)

    def allows(self, event: Event) -> bool:
        if self.call_ids is not None and event.session_id not in self.call_ids \
                and event.call_id not in self.call_ids:
            return False
        return self.matches_type(event.type)

    def to_json(self) -> Dict[str, Any]:
        return {"call_ids": sorted(self.call_ids) if self.call_ids is not None else None,
                "events": list(self.types) if self.types is not None else None}


EVERYTHING = ClientFilter()


def parse_client_message(payload: bytes) -> Tuple[str, Optional[ClientFilter]]:
    """("subscribe", filter) or ("ping", None) from a client text message.

    Sans-IO; anything else raises SubscriptionError with a message for the client.
    """
    if len(payload) > MAX_CLIENT_MESSAGE:
        raise SubscriptionError("too_large", f"messages are limited to {MAX_CLIENT_MESSAGE} bytes")
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SubscriptionError("invalid_json", "messages must be JSON objects") from None
    if not isinstance(message, dict):
        raise SubscriptionError("invalid_json", "messages must be JSON objects")
    kind = message.get("type")
    if kind == "ping":
        return "ping", None
    if kind != "subscribe":
        raise SubscriptionError("unknown_type", "type must be 'subscribe' or 'ping'")
    unknown = set(message) - {"type", "call_ids", "events"}
    if unknown:
        raise SubscriptionError("bad_subscription",
                                f"unknown field '{sorted(unknown)[0][:40]}'")
    call_ids = message.get("call_ids")
    if call_ids is not None:
        if not isinstance(call_ids, list) or not all(
                isinstance(i, str) and 0 < len(i) <= 512 for i in call_ids):
            raise SubscriptionError("bad_subscription",
                                    "call_ids must be a list of session ids or Call-IDs, or null")
        if len(call_ids) > MAX_FILTER_IDS:
            raise SubscriptionError("bad_subscription",
                                    f"call_ids is limited to {MAX_FILTER_IDS} entries")
    types = message.get("events")
    if types is not None:
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types) \
                or len(types) > 64:
            raise SubscriptionError("bad_subscription",
                                    "events must be a list of event types (at most 64), or null")
        try:
            matcher = type_matcher(types)
        except ValueError as err:
            raise SubscriptionError("bad_subscription", str(err)) from None
    else:
        matcher = type_matcher(None)
    return "subscribe", ClientFilter(
        call_ids=frozenset(call_ids) if call_ids is not None else None,
        types=tuple(types) if types is not None else None, matches_type=matcher)


def _control(kind: str, **fields: Any) -> bytes:
    return json.dumps({"schema": CONTROL_SCHEMA, "type": kind, **fields},
                      separators=(",", ":")).encode("utf-8")


@implementer(IPushProducer)
class EventStreamProtocol(WebSocketServerProtocol):
    """One client: its filter, its bounded queue, its credentials' lifetime."""

    principal: Optional[Principal] = None
    client_filter: ClientFilter = EVERYTHING

    def __init__(self) -> None:
        super().__init__()
        self._queue: Deque[Tuple[Any, int]] = deque()
        self._writable = True
        self._closing = False
        self._expiry: Optional[IDelayedCall] = None
        self.sent = 0

    # -- connection life ---------------------------------------------------------------
    def onConnect(self, request: Any) -> None:
        if self.principal is None:  # built without EventStreamResource's check
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "not authorized")
        return None

    def onOpen(self) -> None:
        transport = self.transport
        try:
            transport.unregisterProducer()  # the HTTP channel that served the upgrade
        except Exception:
            pass
        transport.registerProducer(self, True)
        factory: EventStreamFactory = self.factory
        factory._joined(self)
        expires = self.principal.expires_at if self.principal else None
        if expires is not None:
            delay = max(0.0, expires - factory.clock.seconds())
            self._expiry = factory.clock.callLater(delay, self._expired)
        self.sendMessage(_control("welcome", channel=factory.channel,
                                  subscription=self.client_filter.to_json(),
                                  buffer=factory.buffer_messages))

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self._closing = True
        self._queue.clear()
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        self.factory._left(self)

    def _expired(self) -> None:
        self._expiry = None
        self._close(CLOSE_TOKEN_EXPIRED, "token expired")

    def _close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._queue.clear()
        # sendCloseFrame: sendClose refuses 1001, which is the right code for shutdown.
        self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123], isReply=False)

    # -- client messages ---------------------------------------------------------------
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._closing:
            return
        if isBinary:
            self._reply(_control("error", code="binary", message="send JSON text messages"))
            return
        try:
            kind, new_filter = parse_client_message(payload)
        except SubscriptionError as err:
            self._reply(_control("error", code=err.code, message=err.message))
            return
        if kind == "ping":
            self._reply(_control("pong"))
            return
        assert new_filter is not None
        self.client_filter = new_filter
        self._reply(_control("subscribed", subscription=new_filter.to_json()))

    def _reply(self, payload: bytes) -> None:
        self.offer(self.factory.prepareMessage(payload), len(payload))

    # -- events out --------------------------------------------------------------------
    def wants(self, event: Event) -> bool:
        return not self._closing and self.client_filter.allows(event)

    def offer(self, prepared: Any, size: int) -> None:
        """Send now if the socket takes it, else queue; overflow closes the client."""
        if self._closing:
            return
        if self._writable and not self._queue:
            self.sendPreparedMessage(prepared)
            self.sent += 1
            return
        self._queue.append((prepared, size))
        if len(self._queue) > self.factory.buffer_messages:
            self.factory.slow_consumers += 1
            log.warn("WebSocket client {peer} ({who}) reads too slowly: {n} events waiting; "
                     "closing it with {code}", peer=self.peer,
                     who=self.principal.subject if self.principal else "?",
                     n=len(self._queue), code=CLOSE_SLOW_CONSUMER)
            self._close(CLOSE_SLOW_CONSUMER, "slow consumer: event buffer overflow")

    @property
    def queued(self) -> int:
        return len(self._queue)

    # IPushProducer: the transport tells us when its buffer is full or drained.
    def pauseProducing(self) -> None:
        self._writable = False

    def resumeProducing(self) -> None:
        self._writable = True
        while self._writable and self._queue and not self._closing:
            prepared, _ = self._queue.popleft()
            self.sendPreparedMessage(prepared)
            self.sent += 1

    def stopProducing(self) -> None:
        self._closing = True
        self._queue.clear()


class EventStreamFactory(WebSocketServerFactory):
    """The clients of one endpoint and their feed from the bus."""

    protocol = EventStreamProtocol

    def __init__(self, bus: EventBus, clock: IReactorTime, *, channel: str = "events",
                 types: Optional[Tuple[str, ...]] = None, buffer_messages: int = DEFAULT_BUFFER,
                 max_clients: int = 1000, ping_interval: float = 30.0) -> None:
        super().__init__()
        if buffer_messages < 1:
            raise ValueError("buffer_messages must be positive")
        self.clock = clock
        self.channel = channel
        self.buffer_messages = buffer_messages
        self.max_clients = max_clients
        self.clients: Set[EventStreamProtocol] = set()
        self.slow_consumers = 0
        self.connections = 0
        self.events_out = 0
        self._handoff: Optional[Principal] = None
        self._closed: Optional[Deferred] = None
        self.setProtocolOptions(
            maxMessagePayloadSize=MAX_CLIENT_MESSAGE, maxFramePayloadSize=MAX_CLIENT_MESSAGE,
            openHandshakeTimeout=10, closeHandshakeTimeout=5,
            autoPingInterval=ping_interval or None,
            autoPingTimeout=max(5.0, ping_interval / 2) if ping_interval else None,
            perMessageCompressionAccept=None)
        self.subscription = bus.subscribe(self._deliver, name=f"websocket:{channel}",
                                          types=types)

    @property
    def full(self) -> bool:
        return bool(self.max_clients) and len(self.clients) >= self.max_clients

    def buildProtocol(self, addr: Any) -> EventStreamProtocol:
        protocol = super().buildProtocol(addr)
        protocol.principal, self._handoff = self._handoff, None
        return protocol

    def _joined(self, client: EventStreamProtocol) -> None:
        self.clients.add(client)
        self.connections += 1

    def _left(self, client: EventStreamProtocol) -> None:
        self.clients.discard(client)
        if not self.clients and self._closed is not None:
            closed, self._closed = self._closed, None
            closed.callback(None)

    def _deliver(self, event: Event) -> None:
        """Encode and frame once, then offer to every client that wants it."""
        prepared = None
        size = 0
        for client in list(self.clients):
            if not client.wants(event):
                continue
            if prepared is None:
                payload = event.to_json()
                size = len(payload)
                prepared = self.prepareMessage(payload)
            client.offer(prepared, size)
            self.events_out += 1

    def stats(self) -> Dict[str, Any]:
        return {"channel": self.channel, "clients": len(self.clients),
                "connections": self.connections, "events_out": self.events_out,
                "slow_consumers_closed": self.slow_consumers,
                "queued": sum(c.queued for c in self.clients)}

    def close_all(self, timeout: float = 5.0) -> Deferred:
        """Stop taking events and close every client with 1001; fires when all are gone."""
        self.subscription.cancel()
        if not self.clients:
            return succeed(None)
        done = Deferred()
        self._closed = done
        for client in list(self.clients):
            client._close(CLOSE_GOING_AWAY, "server shutting down")

        def give_up() -> None:
            for client in list(self.clients):
                client.dropConnection(abort=True)

        timer = self.clock.callLater(timeout, give_up)

        def finished(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return done.addBoth(finished)


@implementer(IResource)
class EventStreamResource:
    """The HTTP side of one endpoint: limits and authentication, then Autobahn's upgrade."""

    isLeaf = True

    def __init__(self, factory: EventStreamFactory, auth: Optional[Authenticator]) -> None:
        self.factory = factory
        self.auth = auth
        self._upgrade = WebSocketResource(factory)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self._upgrade.getChildWithDefault(name, request)

    def putChild(self, path: bytes, child: IResource) -> None:
        raise ValueError("WebSocket endpoints have no children")

    def render(self, request: IRequest) -> Any:
        if request.method != b"GET":
            return write_error(request, ApiError(405, "method_not_allowed",
                                                 "WebSocket endpoints take GET upgrades",
                                                 headers=[(b"Allow", b"GET")]))
        try:
            if self.auth is not None:
                principal = self.auth.check(request, Permission.READ, allow_query=True)
            else:
                principal = ANONYMOUS
        except AuthError as err:
            headers = [(b"WWW-Authenticate", err.challenge)] if err.challenge else []
            return write_error(request, ApiError(err.status, err.code, err.message, headers))
        if self.factory.full:
            return write_error(request, ApiError(503, "too_many_clients",
                                                 "too many WebSocket clients; try again later",
                                                 headers=[(b"Retry-After", b"5")]))
        if self.factory._closed is not None or not self.factory.subscription.active:
            return write_error(request, ApiError(503, "shutting_down", "server shutting down"))
        channel = getattr(request, "channel", None)
        if channel is not None and hasattr(channel, "setTimeout"):
            channel.setTimeout(None)  # the socket is ours now; HTTP idle timeouts no longer apply
        self.factory._handoff = principal
        try:
            result = self._upgrade.render(request)
        finally:
            self.factory._handoff = None
        return result if result is not None else NOT_DONE_YET


def websocket_resources(bus: EventBus, clock: IReactorTime, auth: Optional[Authenticator], *,
                        buffer_messages: int = DEFAULT_BUFFER, max_clients: int = 1000,
                        ping_interval: float = 30.0) -> Dict[str, EventStreamResource]:
    """``{"/ws": ..., "/ws/analytics": ...}`` for make_site(mounts=...)."""
    events = EventStreamFactory(bus, clock, channel="events", buffer_messages=buffer_messages,
                                max_clients=max_clients, ping_interval=ping_interval)
    analytics = EventStreamFactory(bus, clock, channel="analytics", types=ANALYTICS_PATTERNS,
                                   buffer_messages=buffer_messages, max_clients=max_clients,
                                   ping_interval=ping_interval)
    return {"/ws": EventStreamResource(events, auth),
            "/ws/analytics": EventStreamResource(analytics, auth)}


class WebSocketService(service.Service):
    """Closes the WebSocket clients (1001) when the service tree stops."""

    name = "websockets"

    def __init__(self, resources: Dict[str, EventStreamResource], timeout: float = 5.0) -> None:
        self.resources = resources
        self.timeout = timeout

    def stopService(self) -> Deferred:
        super().stopService()
        closing = [r.factory.close_all(self.timeout) for r in self.resources.values()]
        return DeferredList(closing, consumeErrors=True).addCallback(lambda _: None)

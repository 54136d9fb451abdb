"""Events to RabbitMQ (pika's Twisted adapter): confirms, batching, reconnects, fan-out.

Each configured broker (AMQP_URL, then every AMQP_ENDPOINTS entry) gets a
:class:`BrokerLink` with its own connection, bounded buffer and counters, so
a broker that is down or slow never holds back the others or the server:

- the link declares the exchange (AMQP_EXCHANGE, type AMQP_EXCHANGE_TYPE),
  the queue AMQP_QUEUE_NAME and its binding, turns on publisher confirms,
  and publishes each event with the event type as routing key (or, with
  AMQP_EXCHANGE=amq.default, to the broker's default exchange with the queue
  name as routing key, as the Go server does);
- events wait in a :class:`PublishQueue` (AMQP_BUFFER_SIZE; the oldest are
  dropped and counted beyond it) and go out in batches (AMQP_BATCH_SIZE,
  AMQP_BATCH_INTERVAL) with at most AMQP_MAX_IN_FLIGHT unconfirmed;
- an event leaves the buffer only when the broker confirms it; on a lost
  connection, a nack, or no confirm within AMQP_CONFIRM_TIMEOUT, the
  unconfirmed ones go back to the front and are sent again after reconnecting
  (with exponential backoff and jitter), so delivery is at least once:
  consumers drop duplicates by ``message_id`` (the event id).

Which events are published (:func:`event_filter`): final transcripts unless
PUBLISH_FINAL_TRANSCRIPTS=false; with ENABLE_REALTIME_AMQP also partial
transcripts (PUBLISH_PARTIAL_TRANSCRIPTS), call, stream, pause, DTMF and
quality events, and analytics snapshots (PUBLISH_SENTIMENT_UPDATES or
PUBLISH_KEYWORD_DETECTIONS).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

import pika
from pika.adapters.twisted_connection import TwistedProtocolConnection
from pika.exceptions import NackError, UnroutableError
from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from siprec.realtime import events as ev
from siprec.realtime.bus import EventBus, Subscription
from siprec.realtime.events import Event

__all__ = [
    "AmqpSettings", "Message", "PublishQueue", "BrokerLink", "AmqpPublisher",
    "backoff_delay", "event_filter", "redact_url", "amqp_publisher_from_config",
]

log = Logger()

MAX_NACKS = 5               # a message nacked this often is dropped (counted as rejected)
WATCH_INTERVAL = 1.0        # seconds between confirm-timeout checks
DRAIN_TIMEOUT = 5.0         # seconds stopService waits for unconfirmed events
DEFAULT_EXCHANGE = "amq.default"  # AMQP_EXCHANGE naming the broker's default exchange


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    """What every link declares and how it publishes (from the AMQP_* settings)."""

    exchange: str = "siprec.events"
    exchange_type: str = "topic"
    queue: str = ""
    binding: str = "#"
    durable: bool = True
    buffer_size: int = 10_000
    batch_size: int = 100
    batch_interval: float = 0.05
    max_in_flight: int = 1000
    confirm_timeout: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.exchange and not self.queue:
            raise ValueError("AMQP_EXCHANGE is empty, so AMQP_QUEUE_NAME is needed as routing key")
        if self.exchange_type not in ("topic", "direct", "fanout"):
            raise ValueError(f"exchange type {self.exchange_type!r} is not topic, direct or fanout")
        for name in ("buffer_size", "batch_size", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.reconnect_min <= 0 or self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect delays must be positive, min <= max")

    def routing_key(self, event_type: str) -> str:
        return event_type if self.exchange else self.queue


@dataclass(frozen=True, slots=True)
class Message:
    """One event as published: encoded once, shared by every link."""

    routing_key: str
    body: bytes
    message_id: str
    type: str
    timestamp: int
    headers: Tuple[Tuple[str, str], ...] = ()
    nacks: int = 0

    @classmethod
    def from_event(cls, event: Event, settings: AmqpSettings) -> "Message":
        return cls(routing_key=settings.routing_key(event.type), body=event.to_json(),
                   message_id=event.id, type=event.type, timestamp=int(event.time or 0),
                   headers=(("schema", ev.SCHEMA), ("session_id", event.session_id),
                            ("call_id", event.call_id)))

    def properties(self, durable: bool) -> pika.BasicProperties:
        return pika.BasicProperties(content_type="application/json", content_encoding="utf-8",
                                    delivery_mode=2 if durable else 1,
                                    message_id=self.message_id, type=self.type,
                                    timestamp=self.timestamp, app_id="siprec",
                                    headers=dict(self.headers))


class PublishQueue:
    """Pending and unconfirmed messages of one link (sans-IO).

    ``pending`` holds at most ``limit`` messages (the oldest are dropped and
    counted); ``take`` moves messages to ``in_flight`` under a delivery tag
    with the time they were sent; ``requeue_in_flight`` puts every unconfirmed
    one back in front, in the original order.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending: Deque[Message] = deque()
        self.in_flight: Dict[int, Tuple[Message, float]] = {}
        self.dropped = 0
        self.rejected = 0
        self.confirmed = 0

    def add(self, message: Message) -> None:
        self.pending.append(message)
        self._trim()

    def _trim(self) -> None:
        while len(self.pending) > self.limit:
            self.pending.popleft()
            self.dropped += 1

    def take(self, count: int, first_tag: int, now: float) -> List[Tuple[int, Message]]:
        batch = []
        for tag in range(first_tag, first_tag + min(count, len(self.pending))):
            message = self.pending.popleft()
            self.in_flight[tag] = (message, now)
            batch.append((tag, message))
        return batch

    def confirm(self, tag: int) -> None:
        if self.in_flight.pop(tag, None) is not None:
            self.confirmed += 1

    def nack(self, tag: int) -> None:
        """The broker refused it: try again (first in line) unless refused too often."""
        entry = self.in_flight.pop(tag, None)
        if entry is None:
            return
        message = replace(entry[0], nacks=entry[0].nacks + 1)
        if message.nacks >= MAX_NACKS:
            self.rejected += 1
            return
        self.pending.appendleft(message)
        self._trim_newest_first()

    def requeue_in_flight(self) -> int:
        """Every unconfirmed message back to the front (connection lost); returns how many."""
        entries = [self.in_flight[tag][0] for tag in sorted(self.in_flight)]
        self.in_flight.clear()
        self.pending.extendleft(reversed(entries))
        self._trim_newest_first()
        return len(entries)

    def _trim_newest_first(self) -> None:
        # Requeued messages are older than the pending ones: drop from the front still.
        self._trim()

    def oldest_in_flight(self) -> Optional[float]:
        return min((sent for _, sent in self.in_flight.values()), default=None)

    def __len__(self) -> int:
        return len(self.pending) + len(self.in_flight)


def backoff_delay(failures: int, minimum: float, maximum: float,
                  rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: between half and all of min*2^n, capped at max."""
    ceiling = min(maximum, minimum * (2 ** min(failures, 30)))
    return ceiling / 2 + rand() * ceiling / 2


def redact_url(url: str) -> str:
    """An AMQP URL fit for logs: the password replaced."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparseable AMQP URL>"


class BrokerLink:
    """One broker: connection life, declarations, confirms, buffer (see the module docstring)."""

    def __init__(self, url: str, settings: AmqpSettings, reactor: Any, *,
                 name: Optional[str] = None, rand: Callable[[], float] = random.random) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        self.name = name or self.shown_url
        self.settings = settings
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.rand = rand
        self.params = pika.URLParameters(url)
        self.params.client_properties = {"connection_name": f"siprec {self.name}"}
        self.queue = PublishQueue(settings.buffer_size)
        self.state = "stopped"  # stopped | connecting | ready | waiting | closing
        self.connects = 0
        self.disconnects = 0
        self.failures = 0      # consecutive failed attempts (drives the backoff)
        self.published = 0
        self._protocol: Optional[TwistedProtocolConnection] = None
        self._channel: Any = None
        self._generation = 0
        self._next_tag = 1
        self._flush_call: Optional[IDelayedCall] = None
        self._retry_call: Optional[IDelayedCall] = None
        self._watch: Optional[LoopingCall] = None
        self._drained: List[Deferred] = []
        self.last_error: Optional[str] = None
        self.nacks = 0
        self._nack_logged_at: Optional[float] = None

    # -- life -------------------------------------------------------------------------
    def start(self) -> None:
        if self.state == "stopped":
            self._connect()

    @inlineCallbacks
    def stop(self, timeout: float = DRAIN_TIMEOUT):
        """Give unconfirmed events up to `timeout` to be confirmed, then disconnect."""
        if self.state == "ready" and len(self.queue):
            waiting: Deferred = Deferred()
            self._drained.append(waiting)
            timer = self.clock.callLater(timeout, lambda: waiting.called or waiting.callback(None))
            self._schedule_flush(0)
            yield waiting
            if timer.active():
                timer.cancel()
        left = len(self.queue)
        if left:
            log.warn("AMQP {name}: stopping with {n} event(s) not confirmed", name=self.name, n=left)
        was_ready = self.state == "ready"
        self.state = "stopped"
        self._generation += 1
        self._cancel_timers()
        protocol, self._protocol = self._protocol, None
        if protocol is None or protocol.transport is None:
            return
        closed = protocol.closed
        if not was_ready or closed is None or closed.called:
            protocol.transport.abortConnection()
            return
        try:
            protocol.close()
        except Exception:
            protocol.transport.abortConnection()
            return
        timer = self.clock.callLater(2.0, protocol.transport.abortConnection)
        yield closed
        if timer.active():
            timer.cancel()

    def _cancel_timers(self) -> None:
        for call in (self._flush_call, self._retry_call):
            if call is not None and call.active():
                call.cancel()
        self._flush_call = self._retry_call = None
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        self._watch = None

    # -- connecting ------------------------------------------------------------------
    def _connect(self) -> None:
        self.state = "connecting"
        self._generation += 1
        generation = self._generation
        d = self._setup(generation)
        d.addErrback(self._connect_failed, generation)

    @inlineCallbacks
    def _setup(self, generation: int):
        params = self.params
        endpoint = HostnameEndpoint(self.reactor, params.host, params.port,
                                    timeout=self.settings.connect_timeout)
        if urlsplit(self.url).scheme.lower() == "amqps":
            endpoint = wrapClientTLS(optionsForClientTLS(params.host), endpoint)
        protocol = TwistedProtocolConnection(params, custom_reactor=self.reactor)
        self._protocol = protocol
        yield _within(self.clock, connectProtocol(endpoint, protocol),
                      self.settings.connect_timeout, "connect")
        yield _within(self.clock, protocol.ready, self.settings.connect_timeout, "AMQP handshake",
                      on_timeout=lambda: protocol.transport and protocol.transport.abortConnection())
        if generation != self._generation or self.state != "connecting":
            protocol.close()
            return
        protocol.closed.addBoth(self._lost, generation)
        channel = yield protocol.channel()
        s = self.settings
        if s.exchange:
            yield channel.exchange_declare(exchange=s.exchange, exchange_type=s.exchange_type,
                                           durable=s.durable)
        if s.queue:
            yield channel.queue_declare(queue=s.queue, durable=s.durable)
            if s.exchange:
                yield channel.queue_bind(queue=s.queue, exchange=s.exchange, routing_key=s.binding)
        yield channel.confirm_delivery()
        if generation != self._generation or self.state != "connecting":
            return
        channel.on_closed.addBoth(self._channel_closed, generation)
        self._channel = channel
        self._next_tag = 1
        self.state = "ready"
        self.connects += 1
        if self.failures or self.connects > 1:
            log.info("AMQP {name}: connected again after {n} failed attempt(s); "
                     "{pending} event(s) waiting", name=self.name, n=self.failures,
                     pending=len(self.queue.pending))
        else:
            log.info("AMQP {name}: connected", name=self.name)
        self.failures = 0
        self.last_error = None
        self._watch = LoopingCall(self._check_confirms)
        self._watch.clock = self.clock
        self._watch.start(WATCH_INTERVAL, now=False)
        self._schedule_flush(0)

    def _connect_failed(self, failure: Any, generation: int) -> None:
        if generation != self._generation or self.state in ("stopped", "closing"):
            return
        self._drop_connection(_describe(failure))

    def _lost(self, reason: Any, generation: int) -> None:
        if generation == self._generation and self.state not in ("stopped",):
            self._disconnected(generation, _describe(reason))
        return None

    def _channel_closed(self, reason: Any, generation: int) -> None:
        """The broker closed our channel (e.g. the exchange vanished): start over."""
        if generation == self._generation and self.state == "ready":
            self._drop_connection(f"channel closed: {_describe(reason)}")
        return None

    def _drop_connection(self, why: str) -> None:
        protocol = self._protocol
        self._disconnected(self._generation, why)
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abortConnection()

    def _disconnected(self, generation: int, why: str) -> None:
        was_ready = self.state == "ready"
        self._generation += 1  # late callbacks of the old connection are ignored
        self._channel = None
        self._protocol = None
        self._cancel_timers()
        requeued = self.queue.requeue_in_flight()
        if was_ready:
            self.disconnects += 1
            log.warn("AMQP {name}: connection lost ({why}); {n} unconfirmed event(s) will be "
                     "sent again", name=self.name, why=why, n=requeued)
        else:
            self.failures += 1
        self.last_error = why
        delay = backoff_delay(self.failures, self.settings.reconnect_min,
                              self.settings.reconnect_max, self.rand)
        if not was_ready:
            log.warn("AMQP {name}: cannot connect ({why}); retrying in {delay:.1f}s "
                     "({pending} event(s) buffered, {dropped} dropped so far)", name=self.name,
                     why=why, delay=delay, pending=len(self.queue.pending),
                     dropped=self.queue.dropped)
        self.state = "waiting"
        self._retry_call = self.clock.callLater(delay, self._retry)

    def _retry(self) -> None:
        self._retry_call = None
        if self.state == "waiting":
            self._connect()

    # -- publishing --------------------------------------------------------------------
    def publish(self, message: Message) -> None:
        """Buffer `message`; it goes out in the next batch when connected."""
        self.queue.add(message)
        if self.state == "ready":
            full = len(self.queue.pending) >= self.settings.batch_size
            self._schedule_flush(0 if full else self.settings.batch_interval)

    def _schedule_flush(self, delay: float) -> None:
        if self._flush_call is not None and self._flush_call.active():
            if delay > 0 or self._flush_call.getTime() <= self.clock.seconds():
                return
            self._flush_call.cancel()
        self._flush_call = self.clock.callLater(delay, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        if self.state != "ready" or self._channel is None:
            return
        room = self.settings.max_in_flight - len(self.queue.in_flight)
        count = min(room, self.settings.batch_size)
        if count <= 0:
            return
        generation = self._generation
        channel = self._channel
        durable = self.settings.durable
        exchange = self.settings.exchange
        for tag, message in self.queue.take(count, self._next_tag, self.clock.seconds()):
            self._next_tag = tag + 1
            try:
                d = channel.basic_publish(exchange=exchange, routing_key=message.routing_key,
                                          body=message.body,
                                          properties=message.properties(durable))
            except Exception as err:
                self._drop_connection(f"publish failed: {err}")
                return
            self.published += 1
            d.addCallbacks(self._confirmed, self._refused, callbackArgs=(tag, generation),
                           errbackArgs=(tag, generation))
        if self.queue.pending and len(self.queue.in_flight) < self.settings.max_in_flight:
            self._schedule_flush(0)  # yield to other work between batches

    def _confirmed(self, _: Any, tag: int, generation: int) -> None:
        if generation != self._generation:
            return
        self.queue.confirm(tag)
        self._after_confirm()

    def _refused(self, failure: Any, tag: int, generation: int) -> None:
        if generation != self._generation:
            return None
        if failure.check(NackError, UnroutableError):
            self.queue.nack(tag)
            self.nacks += 1
            now = self.clock.seconds()
            if self._nack_logged_at is None or now - self._nack_logged_at >= 10.0:
                self._nack_logged_at = now
                log.warn("AMQP {name}: broker refused an event ({why}); refused {n} time(s) "
                         "so far, {rejected} event(s) given up after {max} tries",
                         name=self.name, why=_describe(failure), n=self.nacks,
                         rejected=self.queue.rejected, max=MAX_NACKS)
            self._after_confirm()
            return None
        # Channel or connection closing under us: the connection handler requeues.
        self._drop_connection(f"publish not confirmed: {_describe(failure)}")
        return None

    def _after_confirm(self) -> None:
        if self.queue.pending:
            self._schedule_flush(0 if len(self.queue.pending) >= self.settings.batch_size
                                 else self.settings.batch_interval)
        if not len(self.queue):
            waiting, self._drained = self._drained, []
            for d in waiting:
                if not d.called:
                    d.callback(None)

    def _check_confirms(self) -> None:
        oldest = self.queue.oldest_in_flight()
        if oldest is not None and self.clock.seconds() - oldest > self.settings.confirm_timeout:
            self._drop_connection(f"no confirm within {self.settings.confirm_timeout:g}s")

    # -- reporting ---------------------------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        return {"endpoint": self.shown_url, "state": self.state, "connected": self.state == "ready",
                "buffered": len(self.queue.pending), "in_flight": len(self.queue.in_flight),
                "published": self.published, "confirmed": self.queue.confirmed,
                "dropped": self.queue.dropped, "rejected": self.queue.rejected,
                "connects": self.connects, "disconnects": self.disconnects,
                "last_error": self.last_error}


def _within(clock: IReactorTime, d: Deferred, timeout: float, what: str,
            on_timeout: Optional[Callable[[], Any]] = None) -> Deferred:
    """`d`, failing with TimeoutError after `timeout` seconds."""
    result: Deferred = Deferred()

    def expire() -> None:
        if on_timeout is not None:
            on_timeout()
        else:
            d.cancel()
        if not result.called:
            result.errback(TimeoutError(f"{what} timed out after {timeout:g}s"))

    timer = clock.callLater(timeout, expire)

    def done(value: Any) -> None:
        if timer.active():
            timer.cancel()
        if not result.called:
            if isinstance(value, Failure):
                result.errback(value)
            else:
                result.callback(value)

    d.addBoth(done)
    return result


def _describe(reason: Any) -> str:
    value = getattr(reason, "value", reason)
    text = f"{type(value).__name__}: {value}" if str(value) else type(value).__name__
    return text.splitlines()[0][:200] if text else "unknown"


# -- which events go to AMQP ------------------------------------------------------------

def event_filter(*, realtime: bool, partial: bool, final: bool, sentiment: bool = True,
                 keywords: bool = True) -> Callable[[Event], bool]:
    """The publishing rules of the module docstring as a predicate."""

    def wanted(event: Event) -> bool:
        if event.type == ev.TRANSCRIPT_FINAL:
            return final
        if not realtime:
            return False
        if event.type == ev.TRANSCRIPT_PARTIAL:
            return partial
        if event.type == ev.ANALYTICS_SNAPSHOT:
            return sentiment or keywords
        return True

    return wanted


class AmqpPublisher(service.Service):
    """Takes events from the bus, filters, encodes once, hands a copy to every link."""

    name = "amqp"

    def __init__(self, bus: EventBus, urls: Sequence[str], settings: AmqpSettings, reactor: Any,
                 *, accept: Callable[[Event], bool] = lambda _: True,
                 rand: Callable[[], float] = random.random) -> None:
        if not urls:
            raise ValueError("no AMQP endpoint")
        self.bus = bus
        self.settings = settings
        self.accept = accept
        self.links = [BrokerLink(url, settings, reactor, rand=rand,
                                 name=f"#{i + 1} {redact_url(url)}") for i, url in enumerate(urls)]
        self.subscription: Optional[Subscription] = None
        self.filtered = 0

    def startService(self) -> None:
        super().startService()
        self.subscription = self.bus.subscribe(self.on_event, name="amqp")
        for link in self.links:
            link.start()

    def stopService(self) -> Deferred:
        super().stopService()
        if self.subscription is not None:
            self.bus.flush()
            self.subscription.cancel()
            self.subscription = None
        stopping = [link.stop() for link in self.links]
        return DeferredList(stopping, consumeErrors=True).addCallback(lambda _: None)

    def on_event(self, event: Event) -> None:
        if not self.accept(event):
            self.filtered += 1
            return
        message = Message.from_event(event, self.settings)
        for link in self.links:
            link.publish(message)

    def stats(self) -> Dict[str, Any]:
        return {"filtered": self.filtered, "endpoints": [link.stats() for link in self.links]}


def amqp_publisher_from_config(config: Any, bus: EventBus, reactor: Any) -> Optional[AmqpPublisher]:
    """The publisher for AMQP_URL + AMQP_ENDPOINTS, or None when neither is set.

    Raises siprec.config.ConfigError (one line naming the setting) when the
    settings cannot work together.
    """
    from siprec.config import ConfigError

    urls = ([config.amqp_url] if config.amqp_url else []) + list(config.amqp_endpoints)
    if not urls:
        return None
    for name, url in [("AMQP_URL", config.amqp_url)] + [("AMQP_ENDPOINTS", u)
                                                        for u in config.amqp_endpoints]:
        if not url:
            continue
        try:
            pika.URLParameters(url)
        except Exception as err:
            raise ConfigError(f"{name}: {redact_url(url)} is not usable ({_describe(err)})",
                              name) from None
    try:
        settings = AmqpSettings(
            exchange="" if config.amqp_exchange == DEFAULT_EXCHANGE else config.amqp_exchange, exchange_type=config.amqp_exchange_type,
            queue=config.amqp_queue_name, binding=config.amqp_queue_binding,
            durable=config.amqp_durable, buffer_size=config.amqp_buffer_size,
            batch_size=config.amqp_batch_size, batch_interval=config.amqp_batch_interval,
            max_in_flight=config.amqp_max_in_flight,
            confirm_timeout=config.amqp_confirm_timeout,
            reconnect_min=config.amqp_reconnect_min_delay,
            reconnect_max=config.amqp_reconnect_max_delay)
    except ValueError as err:
        raise ConfigError(f"AMQP_EXCHANGE: {err}", "AMQP_EXCHANGE") from None
    accept = event_filter(realtime=config.enable_realtime_amqp,
                          partial=config.publish_partial_transcripts,
                          final=config.publish_final_transcripts,
                          sentiment=config.publish_sentiment_updates,
                          keywords=config.publish_keyword_detections)
    return AmqpPublisher(bus, urls, settings, reactor, accept=accept)

"""Tests for siprec.realtime.amqp: the sans-IO parts under a Clock, the rest against real RabbitMQ."""

from __future__ import annotations

import json
import shutil
import uuid
from typing import Any, List

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from siprec.config import ConfigError, load_config
from siprec.realtime import events
from siprec.realtime.amqp import (
    MAX_NACKS, AmqpPublisher, AmqpSettings, Message, PublishQueue, amqp_publisher_from_config,
    backoff_delay, event_filter, redact_url,
)
from siprec.realtime.bus import EventBus
from tests.realtime import rabbit

CALL = {"id": "sess-1", "call_id": "call-1@src.example"}


def final(i: int) -> events.Event:
    return events.transcript_final(CALL, leg="leg0", text=f"segment {i}", start=float(i),
                                   end=i + 0.5, segment_id=f"s{i}")


def partial(i: int) -> events.Event:
    return events.transcript_partial(CALL, leg="leg0", text=f"seg {i}", start=float(i),
                                     end=i + 0.2, segment_id=f"s{i}")


def message(i: int) -> Message:
    return Message(routing_key="transcript.final", body=b"%d" % i, message_id=f"m{i}",
                   type="transcript.final", timestamp=0)


class PublishQueueTests(SynchronousTestCase):
    def test_bounded_drops_oldest(self):
        queue = PublishQueue(3)
        for i in range(5):
            queue.add(message(i))
        self.assertEqual([m.message_id for m in queue.pending], ["m2", "m3", "m4"])
        self.assertEqual(queue.dropped, 2)

    def test_take_confirm(self):
        queue = PublishQueue(10)
        for i in range(4):
            queue.add(message(i))
        batch = queue.take(3, 7, now=100.0)
        self.assertEqual([(t, m.message_id) for t, m in batch], [(7, "m0"), (8, "m1"), (9, "m2")])
        self.assertEqual(queue.oldest_in_flight(), 100.0)
        queue.confirm(8)
        queue.confirm(8)  # twice: counted once
        self.assertEqual((queue.confirmed, len(queue)), (1, 3))

    def test_requeue_in_flight_keeps_order_in_front(self):
        queue = PublishQueue(10)
        for i in range(5):
            queue.add(message(i))
        queue.take(3, 1, now=0)
        queue.confirm(2)
        self.assertEqual(queue.requeue_in_flight(), 2)
        self.assertEqual([m.message_id for m in queue.pending], ["m0", "m2", "m3", "m4"])
        self.assertEqual(queue.in_flight, {})

    def test_requeue_respects_the_limit(self):
        queue = PublishQueue(3)
        for i in range(3):
            queue.add(message(i))
        queue.take(3, 1, now=0)
        for i in range(3, 6):
            queue.add(message(i))
        queue.requeue_in_flight()
        self.assertEqual([m.message_id for m in queue.pending], ["m3", "m4", "m5"])
        self.assertEqual(queue.dropped, 3)

    def test_nack_retries_then_rejects(self):
        queue = PublishQueue(10)
        queue.add(message(0))
        tag = 1
        for attempt in range(MAX_NACKS):
            queue.take(1, tag, now=0)
            queue.nack(tag)
            tag += 1
        self.assertEqual((len(queue.pending), queue.rejected), (0, 1))


class HelperTests(SynchronousTestCase):
    def test_backoff(self):
        self.assertEqual(backoff_delay(0, 0.5, 30, rand=lambda: 1.0), 0.5)
        self.assertEqual(backoff_delay(0, 0.5, 30, rand=lambda: 0.0), 0.25)
        self.assertEqual(backoff_delay(3, 0.5, 30, rand=lambda: 1.0), 4.0)
        self.assertEqual(backoff_delay(50, 0.5, 30, rand=lambda: 1.0), 30.0)
        self.assertEqual(backoff_delay(10_000, 0.5, 30, rand=lambda: 0.0), 15.0)

    def test_redact(self):
        self.assertEqual(redact_url("amqp://u:secret@mq.example:5672/vh"),
                         "amqp://u:***@mq.example:5672/vh")
        self.assertEqual(redact_url("amqp://mq.example/"), "amqp://mq.example/")
        self.assertNotIn("secret", redact_url("amqp://u:secret@[::1]:5672/"))

    def test_filter(self):
        ended = events.call_ended({**CALL, "end_reason": "bye"})
        snapshot = events.analytics_snapshot(CALL, sentiment={"score": 1})
        off = event_filter(realtime=False, partial=True, final=True)
        self.assertEqual([off(e) for e in (final(1), partial(1), ended, snapshot)],
                         [True, False, False, False])
        on = event_filter(realtime=True, partial=False, final=True, sentiment=False, keywords=False)
        self.assertEqual([on(e) for e in (final(1), partial(1), ended, snapshot)],
                         [True, False, True, False])
        no_finals = event_filter(realtime=True, partial=True, final=False)
        self.assertEqual([no_finals(e) for e in (final(1), partial(1))], [False, True])

    def test_settings_checks(self):
        self.assertRaises(ValueError, AmqpSettings, exchange="", queue="")
        self.assertRaises(ValueError, AmqpSettings, exchange_type="headers")
        self.assertRaises(ValueError, AmqpSettings, buffer_size=0)
        self.assertEqual(AmqpSettings(exchange="", queue="q").routing_key("dtmf"), "q")
        self.assertEqual(AmqpSettings().routing_key("dtmf"), "dtmf")

    def test_from_config(self):
        bus = EventBus(task.Clock())
        self.assertIsNone(amqp_publisher_from_config(load_config({}, env_file=None), bus, reactor))
        config = load_config({"AMQP_URL": "amqp://a:b@mq1/", "AMQP_ENDPOINTS":
                              "amqp://mq2:5673/,amqps://mq3/vh", "AMQP_QUEUE_NAME": "q"},
                             env_file=None)
        publisher = amqp_publisher_from_config(config, bus, reactor)
        self.assertEqual([l.params.port for l in publisher.links], [5672, 5673, 5671])
        self.assertEqual(publisher.settings.queue, "q")
        bad = load_config({"AMQP_URL": "amqp://mq/", "AMQP_EXCHANGE": "amq.default"},
                          env_file=None)
        err = self.assertRaises(ConfigError, amqp_publisher_from_config, bad, bus, reactor)
        self.assertIn("AMQP_QUEUE_NAME", str(err))
        default = load_config({"AMQP_URL": "amqp://mq/", "AMQP_EXCHANGE": "amq.default",
                               "AMQP_QUEUE_NAME": "q"}, env_file=None)
        settings = amqp_publisher_from_config(default, bus, reactor).settings
        self.assertEqual((settings.exchange, settings.routing_key("dtmf")), ("", "q"))

    def test_message(self):
        event = final(3).stamped(9, 1_700_000_000.5)
        msg = Message.from_event(event, AmqpSettings())
        self.assertEqual((msg.routing_key, msg.message_id, msg.timestamp),
                         ("transcript.final", event.id, 1_700_000_000))
        props = msg.properties(durable=True)
        self.assertEqual((props.delivery_mode, props.content_type, props.type),
                         (2, "application/json", "transcript.final"))
        self.assertEqual(props.headers["schema"], "siprec.event/1")


class RabbitTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        rabbit.require_rabbitmq()
        suffix = uuid.uuid4().hex[:10]
        self.exchange = f"siprec-test-{suffix}"
        self.queue = f"siprec-test-q-{suffix}"
        self.bus = EventBus(reactor)
        self.consumer = rabbit.Consumer()
        self.publishers: List[AmqpPublisher] = []
        self.proxies: List[rabbit.TcpProxy] = []
        self.addCleanup(self._cleanup)

    @inlineCallbacks
    def _cleanup(self):
        for publisher in self.publishers:
            if publisher.running:
                yield publisher.stopService()
        for proxy in self.proxies:
            yield proxy.stop()
        yield self.consumer.delete([self.queue], [self.exchange])
        yield self.consumer.stop()

    def settings(self, **changes: Any) -> AmqpSettings:
        base = dict(exchange=self.exchange, queue=self.queue, durable=False, batch_size=20,
                    batch_interval=0.01, reconnect_min=0.05, reconnect_max=0.2,
                    confirm_timeout=2.0, connect_timeout=2.0)
        base.update(changes)
        return AmqpSettings(**base)

    def publisher(self, urls: List[str], settings: AmqpSettings, **kwargs: Any) -> AmqpPublisher:
        publisher = AmqpPublisher(self.bus, urls, settings, reactor, **kwargs)
        publisher.startService()
        self.publishers.append(publisher)
        return publisher

    def proxy(self) -> rabbit.TcpProxy:
        proxy = rabbit.TcpProxy()
        self.proxies.append(proxy)
        return proxy

    @inlineCallbacks
    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition"):
        for _ in range(int(timeout / 0.02)):
            if predicate():
                return
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.fail(f"{what} not reached in {timeout}s")

    @inlineCallbacks
    def receive(self, count: int, timeout: float = 10.0):
        got = []
        for _ in range(count):
            d = self.consumer.messages.get()
            timer = reactor.callLater(timeout, d.cancel)
            got.append((yield d))
            if timer.active():
                timer.cancel()
        return got

    @inlineCallbacks
    def nothing_more(self, wait: float = 0.3):
        yield task.deferLater(reactor, wait, lambda: None)
        self.assertEqual(len(self.consumer.messages.pending), 0)


class PublishTests(RabbitTestCase):
    @inlineCallbacks
    def test_declare_publish_confirm_consume(self):
        """Exchange and queue declared, events confirmed, consumed in order with properties."""
        yield self.consumer.start(self.queue)
        publisher = self.publisher([rabbit.URL], self.settings())
        link = publisher.links[0]
        yield self.wait_for(lambda: link.state == "ready", what="connected")
        sent = [self.bus.publish(final(i)) for i in range(50)]
        got = yield self.receive(50)
        self.assertEqual([p.message_id for _, p, _ in got], [e.id for e in sent])
        self.assertEqual([json.loads(b) for _, _, b in got], [e.to_dict() for e in sent])
        method, props, _ = got[0]
        self.assertEqual((method.exchange, method.routing_key), (self.exchange, "transcript.final"))
        self.assertEqual((props.content_type, props.type, props.app_id, props.delivery_mode),
                         ("application/json", "transcript.final", "siprec", 1))
        yield self.wait_for(lambda: link.queue.confirmed == 50, what="50 confirms")
        stats = link.stats()
        self.assertEqual((stats["published"], stats["buffered"], stats["in_flight"],
                          stats["dropped"]), (50, 0, 0, 0))
        self.assertNotIn("guest:guest", json.dumps(publisher.stats()))

    @inlineCallbacks
    def test_routing_keys_and_filter(self):
        """Routing key = event type; the filter keeps partials out when asked."""
        yield self.consumer.start(self.queue)
        accept = event_filter(realtime=True, partial=False, final=True)
        publisher = self.publisher([rabbit.URL], self.settings(), accept=accept)
        yield self.wait_for(lambda: publisher.links[0].state == "ready")
        self.bus.publish(partial(1))
        kept = [self.bus.publish(e) for e in (
            events.call_started({**CALL, "state": "active"}), final(1),
            events.dtmf(CALL, leg="leg0", digit="7", start=1.0))]
        got = yield self.receive(3)
        self.assertEqual([m.routing_key for m, _, _ in got], [e.type for e in kept])
        yield self.nothing_more()
        self.assertEqual(publisher.filtered, 1)

    @inlineCallbacks
    def test_default_exchange_to_queue(self):
        """AMQP_EXCHANGE empty: straight to AMQP_QUEUE_NAME, as the Go server does."""
        yield self.consumer.start(self.queue)
        self.publisher([rabbit.URL], self.settings(exchange=""))
        sent = self.bus.publish(final(1))
        (method, props, _), = yield self.receive(1)
        self.assertEqual((method.exchange, method.routing_key, props.message_id),
                         ("", self.queue, sent.id))

    @inlineCallbacks
    def test_stop_waits_for_confirms(self):
        yield self.consumer.start(self.queue)
        publisher = self.publisher([rabbit.URL], self.settings(batch_interval=0.5))
        yield self.wait_for(lambda: publisher.links[0].state == "ready")
        for i in range(30):
            self.bus.publish(final(i))
        yield publisher.stopService()
        link = publisher.links[0]
        self.assertEqual((link.queue.confirmed, len(link.queue), link.state), (30, 0, "stopped"))
        self.assertEqual(len((yield self.receive(30))), 30)


class OutageTests(RabbitTestCase):
    @inlineCallbacks
    def test_broker_down_buffers_bounded_then_delivers(self):
        """While the broker is unreachable the buffer keeps the newest events and counts drops."""
        yield self.consumer.start(self.queue)
        proxy = self.proxy()
        proxy.down = True
        publisher = self.publisher([proxy.url], self.settings(buffer_size=10))
        link = publisher.links[0]
        sent = [self.bus.publish(final(i)) for i in range(25)]
        yield self.wait_for(lambda: link.failures >= 2, what="failed attempts")
        self.assertEqual((link.state, link.queue.dropped, len(link.queue.pending)),
                         ("waiting", 15, 10))
        self.assertTrue(link.stats()["last_error"])
        proxy.down = False
        got = yield self.receive(10)
        self.assertEqual([p.message_id for _, p, _ in got], [e.id for e in sent[15:]])
        yield self.nothing_more()
        self.assertEqual(link.stats()["dropped"], 15)

    @inlineCallbacks
    def test_connection_cut_reconnects_without_loss(self):
        """Connections cut mid-stream: every event still arrives (at least once)."""
        yield self.consumer.start(self.queue)
        proxy = self.proxy()
        publisher = self.publisher([proxy.url], self.settings())
        link = publisher.links[0]
        yield self.wait_for(lambda: link.state == "ready")
        sent = []
        for round_ in range(3):
            for i in range(40):
                sent.append(self.bus.publish(final(round_ * 100 + i)))
                if i == 20:
                    yield task.deferLater(reactor, 0.01, lambda: None)
                    self.assertEqual((round_, proxy.cut()), (round_, 1))
            yield self.wait_for(lambda: link.disconnects == round_ + 1, what="cut noticed")
            yield self.wait_for(lambda: link.state == "ready" and not len(link.queue)
                                and not publisher.subscription.queue,
                                what=f"round {round_} confirmed")
        self.assertGreaterEqual(link.disconnects, 3)
        ids = set()
        while len(ids) < len(sent):
            (_, props, _), = yield self.receive(1)
            ids.add(props.message_id)
        self.assertEqual(ids, {e.id for e in sent})

    @inlineCallbacks
    def test_no_confirm_in_time_reconnects_and_resends(self):
        yield self.consumer.start(self.queue)
        proxy = self.proxy()
        publisher = self.publisher([proxy.url], self.settings(confirm_timeout=0.5))
        link = publisher.links[0]
        yield self.wait_for(lambda: link.state == "ready")
        proxy.stall()  # the broker's confirms no longer reach us
        sent = self.bus.publish(final(1))
        yield self.wait_for(lambda: link.disconnects == 1, what="confirm timeout")
        yield self.wait_for(lambda: link.queue.confirmed == 1, what="resent and confirmed")
        got = yield self.receive(1)
        self.assertEqual(got[0][1].message_id, sent.id)

    @inlineCallbacks
    def test_fan_out_endpoints_are_independent(self):
        """Two endpoints: one down does not hold back the other; it catches up later."""
        yield self.consumer.start(self.queue)
        up, down = self.proxy(), self.proxy()
        down.down = True
        publisher = self.publisher([up.url, down.url], self.settings())
        first, second = publisher.links
        yield self.wait_for(lambda: first.state == "ready")
        sent = [self.bus.publish(final(i)) for i in range(10)]
        got = yield self.receive(10)
        self.assertEqual([p.message_id for _, p, _ in got], [e.id for e in sent])
        self.assertEqual(len(second.queue.pending), 10)
        down.down = False
        again = yield self.receive(10)
        self.assertEqual([p.message_id for _, p, _ in again], [e.id for e in sent])
        yield self.nothing_more()

    @inlineCallbacks
    def test_server_side_close_reconnects(self):
        """The broker itself closes our connection (rabbitmqctl close_connection)."""
        rabbitmqctl = shutil.which("rabbitmqctl")
        if rabbitmqctl is None:
            self.skipTest("rabbitmqctl not installed; the proxy tests cover reconnecting")
        yield self.consumer.start(self.queue)
        publisher = self.publisher([rabbit.URL], self.settings())
        link = publisher.links[0]
        yield self.wait_for(lambda: link.state == "ready")
        out, err, code = yield getProcessOutputAndValue(
            rabbitmqctl, ["-q", "list_connections", "pid", "client_properties"])
        if code != 0:
            self.skipTest(f"rabbitmqctl list_connections failed: {err[:200]!r}")
        pids = [line.split()[0] for line in out.decode().splitlines()
                if link.params.client_properties["connection_name"] in line]
        self.assertEqual(len(pids), 1, out[:500])
        _, err, code = yield getProcessOutputAndValue(
            rabbitmqctl, ["-q", "close_connection", pids[0], "siprec test"])
        self.assertEqual(code, 0, err)
        yield self.wait_for(lambda: link.disconnects == 1, what="close noticed")
        yield self.wait_for(lambda: link.state == "ready", what="reconnected")
        sent = self.bus.publish(final(1))
        got = yield self.receive(1)
        self.assertEqual(got[0][1].message_id, sent.id)

    @inlineCallbacks
    def test_nacks_retried_then_counted(self):
        """A queue that refuses (x-overflow reject-publish) makes the broker nack."""
        yield self.consumer.open()
        publisher = self.publisher([rabbit.URL], self.settings(queue=""))
        link = publisher.links[0]
        yield self.wait_for(lambda: link.state == "ready")
        yield self.consumer.channel.queue_declare(
            queue=self.queue, durable=False,
            arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
        yield self.consumer.channel.queue_bind(queue=self.queue, exchange=self.exchange,
                                               routing_key="#")
        for i in range(5):
            self.bus.publish(final(i))
        yield self.wait_for(lambda: link.queue.confirmed + link.queue.rejected == 5,
                            what="all settled")
        self.assertEqual(len(link.queue), 0)
        self.assertEqual((link.queue.confirmed, link.queue.rejected), (2, 3))
        self.assertEqual(link.state, "ready")
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_stop_while_broker_down_is_prompt(self):
        proxy = self.proxy()
        proxy.down = True
        publisher = self.publisher([proxy.url], self.settings(reconnect_min=0.05))
        link = publisher.links[0]
        self.bus.publish(final(1))
        yield self.wait_for(lambda: link.failures >= 1)
        started = reactor.seconds()
        yield publisher.stopService()
        self.assertLess(reactor.seconds() - started, 1.0)
        self.assertEqual(link.state, "stopped")
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(link.state, "stopped")  # no reconnect after stopping


"""siprec.realtime.metrics: real-time figures in the Prometheus exposition."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from siprec.ops.metrics import Metrics
from siprec.realtime import events
from siprec.realtime.amqp import AmqpPublisher, AmqpSettings
from siprec.realtime.bus import EventBus
from siprec.realtime.metrics import RealtimeCollector
from siprec.realtime.websocket import EventStreamFactory


class CollectorTests(SynchronousTestCase):
    def samples(self, metrics: Metrics) -> dict:
        body, _ = metrics.render()
        text = body.decode()
        self.assertNotIn("secret", text)
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def test_figures(self):
        clock = Clock()
        bus = EventBus(clock)
        factory = EventStreamFactory(bus, clock, channel="events", ping_interval=0)
        publisher = AmqpPublisher(bus, ["amqp://u:secret@mq1/", "amqp://mq2/"],
                                  AmqpSettings(buffer_size=2), clock)
        bus.subscribe(lambda e: 1 / 0, name="broken")
        publisher.on_event(events.dtmf({"id": "s", "call_id": "c"}, leg=None, digit="1", start=0))
        for _ in range(3):
            publisher.on_event(events.transcript_final({"id": "s", "call_id": "c"}, leg=None,
                                                       text="t", start=0, end=1, segment_id="x"))
        bus.publish(events.dtmf({"id": "s", "call_id": "c"}, leg=None, digit="1", start=0))
        clock.advance(0)
        self.flushLoggedErrors(ZeroDivisionError)
        metrics = Metrics(process_metrics=False)
        metrics.registry.register(RealtimeCollector(bus, [factory], publisher))
        got = self.samples(metrics)
        self.assertEqual(got[("siprec_events_published_total", ())], 1)
        self.assertEqual(got[("siprec_event_subscriber_failures_total",
                              (("subscriber", "broken"),))], 1)
        self.assertEqual(got[("siprec_websocket_clients", (("channel", "events"),))], 0)
        for endpoint in ("1", "2"):
            label = (("endpoint", endpoint),)
            self.assertEqual(got[("siprec_amqp_buffered_events", label)], 2)
            self.assertEqual(got[("siprec_amqp_events_dropped_total", label)], 2)
            self.assertEqual(got[("siprec_amqp_connected", label)], 0)

    def test_parts_optional(self):
        metrics = Metrics(process_metrics=False)
        metrics.registry.register(RealtimeCollector())
        self.assertFalse([k for k in self.samples(metrics) if "amqp" in k[0] or "websocket" in k[0]])


class BuildRealtimeTests(SynchronousTestCase):
    def test_from_settings(self):
        from siprec.config import load_config
        from siprec.realtime.setup import build_realtime

        clock = Clock()
        plain = build_realtime(load_config({}, env_file=None), clock, None)
        self.assertIsNone(plain.amqp)
        self.assertEqual(set(plain.resources), {"/ws", "/ws/analytics"})
        self.assertEqual(plain.services, [plain.websocket_service])
        config = load_config({"AMQP_URL": "amqp://mq/", "WS_CLIENT_BUFFER": "7",
                              "WS_MAX_CLIENTS": "3"}, env_file=None)
        full = build_realtime(config, clock, None)
        factory = full.resources["/ws"].factory
        self.assertEqual((factory.buffer_messages, factory.max_clients), (7, 3))
        self.assertEqual(full.services, [full.websocket_service, full.amqp])
        self.assertEqual(len(full.bus.subscriptions), 2)  # the two WebSocket endpoints

"""One transcript reaches a WebSocket client and a RabbitMQ queue within a second."""

from __future__ import annotations

import json
import uuid

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from siprec.realtime import events
from siprec.realtime.amqp import AmqpPublisher, AmqpSettings, event_filter
from tests.realtime import rabbit
from tests.realtime.test_websocket import CALL_A, WebSocketTestCase


class DeliveryTests(WebSocketTestCase):
    auth_enabled = True

    @inlineCallbacks
    def test_transcript_on_websocket_and_amqp_within_a_second(self):
        rabbit.require_rabbitmq()
        suffix = uuid.uuid4().hex[:10]
        exchange, queue = f"siprec-test-{suffix}", f"siprec-test-q-{suffix}"
        consumer = rabbit.Consumer()
        yield consumer.start(queue)
        self.addCleanup(consumer.stop)
        self.addCleanup(consumer.delete, [queue], [exchange])
        publisher = AmqpPublisher(self.bus, [rabbit.URL],
                                  AmqpSettings(exchange=exchange, queue=queue, durable=False),
                                  reactor, accept=event_filter(realtime=True, partial=True,
                                                               final=True))
        publisher.startService()
        self.addCleanup(publisher.stopService)
        yield self.wait_for(lambda: publisher.links[0].state == "ready")
        client = yield self.open(token=self.token())
        client.sendMessage(b'{"type": "subscribe", "events": ["transcript.final"]}')
        yield self.next_event(client)
        started = reactor.seconds()
        event = self.bus.publish(events.transcript_final(
            CALL_A, leg="leg0", text="I'd like to cancel my order", start=3.0, end=5.2,
            segment_id="leg0-1", confidence=0.91))
        on_ws = yield self.next_event(client, timeout=1.0)
        ws_latency = reactor.seconds() - started
        d = consumer.messages.get()
        timer = reactor.callLater(1.0, d.cancel)
        _, props, body = yield d
        amqp_latency = reactor.seconds() - started
        if timer.active():
            timer.cancel()
        self.assertEqual(on_ws, event.to_dict())
        self.assertEqual(json.loads(body), event.to_dict())
        self.assertEqual(props.message_id, event.id)
        self.assertLess(ws_latency, 1.0)
        self.assertLess(amqp_latency, 1.0)

"""End to end: a real call's events on /ws and RabbitMQ, pause/resume through the
authenticated API, and the pause written as silence of the right length."""

from __future__ import annotations

import json
import os
import secrets

import numpy as np
import treq
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from siprec.testing.src import SrcClient, StreamOffer, tone
from tests.e2e.harness import _sleep, packets_arrived, read_wav, start_server, wait_for
from tests.realtime.rabbit import URL, Consumer, require_rabbitmq
from tests.realtime.test_websocket import Client
from tests.security import tokens


class RealtimeCallTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        require_rabbitmq()
        self.queue = "siprec-e2e-" + secrets.token_hex(4)
        self.exchange = "siprec-e2e-x-" + secrets.token_hex(4)
        self.service = start_server(
            self, AUTH_ENABLED="true", JWT_SECRET=tokens.SECRET.decode(),
            JWT_ISSUER=tokens.ISSUER, JWT_AUDIENCE=tokens.AUDIENCE,
            AMQP_URL=URL, AMQP_EXCHANGE=self.exchange, AMQP_QUEUE_NAME=self.queue,
            ENABLE_REALTIME_AMQP="true", AMQP_BATCH_INTERVAL="50ms", AMQP_DURABLE="false")
        self.consumer = Consumer()
        yield self.consumer.start(self.queue)  # the publisher declares the exchange and binds
        self.addCleanup(self.consumer.stop)
        self.addCleanup(self.consumer.delete, [self.queue], [self.exchange])
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = f"http://127.0.0.1:{self.service.config.http_port}"
        self.client = SrcClient(reactor, ("127.0.0.1", self.service.config.ports[0]))
        yield self.client.start()
        self.addCleanup(self.client.stop)

    def token(self, role):
        return tokens.hs256(tokens.claims(role, now=reactor.seconds()))

    def post(self, path, role=None):
        headers = {"Authorization": [f"Bearer {self.token(role)}"]} if role else {}
        return treq.post(self.http + path, headers=headers, pool=self.pool)

    def websocket(self):
        factory = WebSocketClientFactory(
            f"ws://127.0.0.1:{self.service.config.http_port}/ws?token={self.token('viewer')}")
        factory.protocol = Client
        factory.opened, factory.closed, factory.proto = Deferred(), Deferred(), None
        factory.messages, factory.received = DeferredQueue(), []
        factory.setProtocolOptions(autoPingInterval=None)
        reactor.connectTCP("127.0.0.1", self.service.config.http_port, factory)

        def close():
            if factory.proto is not None and not factory.closed.called:
                factory.proto.transport.abortConnection()
            return factory.closed
        self.addCleanup(close)
        return factory

    @defer.inlineCallbacks
    def test_call_events_pause_and_auth(self):
        """call/stream/pause/DTMF events reach /ws and RabbitMQ; pause needs the operator
        role; the paused span is silence of the pause's length in the WAV."""
        ws = self.websocket()
        yield ws.opened
        call = yield self.client.invite([StreamOffer("leg0", 0), StreamOffer("leg1", 8)])
        self.assertEqual(call.final.status, 200)
        session = self.service.manager.get(call.call_id)

        # auth matrix for the control route
        for role, code in ((None, 401), ("viewer", 403)):
            response = yield self.post(f"/api/pause/{session.id}", role)
            self.assertEqual(response.code, code)
            yield response.content()
        self.assertFalse(session.recording_paused)

        # the SRC keeps sending while the operator pauses: 1 s audio, 1 s paused, 1 s audio
        sending = self.client.send_audio(call, {"leg0": tone(440, 3.0), "leg1": tone(1000, 3.0)})
        yield wait_for(packets_arrived(session, {"leg0": 50, "leg1": 50}), 5, "1 s of audio")
        response = yield self.post(f"/api/pause/{session.id}", "operator")
        self.assertEqual(response.code, 200)
        yield response.content()
        # real time on purpose: the pause's length is what the WAV is checked for
        yield _sleep(1.0)
        response = yield self.post(f"/api/resume/{session.id}", "operator")
        self.assertEqual(response.code, 200)
        yield response.content()
        yield sending
        yield self.client.send_dtmf(call, "leg0", "7")
        yield wait_for(lambda: session.detail()["dtmf"], 5, "the digit to be detected")
        yield self.client.bye(call)
        yield session.end("test")

        def events(kind):
            return [m for m in ws.received if m.get("type") == kind]

        def queued(kind):
            return [body for _, _, body in self.consumer.messages.pending
                    if json.loads(body)["type"] == kind]

        yield wait_for(lambda: events("call.ended") and queued("call.ended"), 5,
                       "call.ended on /ws and on RabbitMQ")
        seen = [m["type"] for m in ws.received if m.get("schema") == "siprec.event/1"]
        for kind in ("call.started", "stream.started", "recording.paused", "recording.resumed",
                     "dtmf", "stream.stopped", "call.ended"):
            self.assertIn(kind, seen)
        self.assertEqual(seen[0], "call.started")
        self.assertEqual(seen[-1], "call.ended")

        amqp = []
        while self.consumer.messages.pending:
            _, _, body = yield self.consumer.messages.get()
            amqp.append(json.loads(body)["type"])
        self.assertIn("call.started", amqp)
        self.assertIn("call.ended", amqp)

        rate, _, data = read_wav(os.path.join(self.service.config.recording_dir,
                                              call.call_id + "_leg0.wav"))
        level = np.abs(data[:, 0].astype(np.int32))
        frames = level[: len(level) // 160 * 160].reshape(-1, 160).mean(axis=1)
        quiet = frames < 50
        self.assertLessEqual(abs(len(data) / rate - 3.0), 0.2)
        # one run of silent 20 ms frames of about 1 s in the middle
        runs, run = [], 0
        for q in quiet:
            if q:
                run += 1
            elif run:
                runs.append(run)
                run = 0
        if run:
            runs.append(run)
        self.assertEqual(len([r for r in runs if r > 5]), 1, runs)
        self.assertLessEqual(abs(max(runs) * 0.02 - 1.0), 0.15, runs)
        pauses = [p for p in session.pauses if p["reason"] == "api"]
        self.assertEqual(len(pauses), 1)
        self.assertLessEqual(abs(pauses[0]["end"] - pauses[0]["start"] - 1.0), 0.15)

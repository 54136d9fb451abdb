"""Tests for siprec.realtime.websocket: real Autobahn clients against a real listening Site."""

from __future__ import annotations

import json
import socket
from typing import Any, Dict, List, Optional

import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from siprec.http.app import SiprecApi, make_site
from siprec.ops.health import Health
from siprec.ops.metrics import Metrics
from siprec.realtime import events
from siprec.realtime.bus import EventBus
from siprec.realtime.websocket import (
    CLOSE_GOING_AWAY, CLOSE_SLOW_CONSUMER, CLOSE_TOKEN_EXPIRED, CONTROL_SCHEMA,
    SubscriptionError, WebSocketService, parse_client_message, websocket_resources,
)
from siprec.security.auth import Authenticator, JwtVerifier
from tests.security import tokens

CALL_A = {"id": "sess-a", "call_id": "call-a@src.example"}
CALL_B = {"id": "sess-b", "call_id": "call-b@src.example"}
UPGRADE = {"Connection": ["Upgrade"], "Upgrade": ["websocket"], "Sec-WebSocket-Version": ["13"],
           "Sec-WebSocket-Key": ["dGhlIHNhbXBsZSBub25jZQ=="]}


class FakeManager:
    active_count = 0

    def sessions(self) -> list:
        return []

    def get(self, _: str) -> None:
        return None


class Client(WebSocketClientProtocol):
    """Collects messages; its factory's Deferreds fire on open and close."""

    def onOpen(self) -> None:
        self.factory.proto = self
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.received.append(json.loads(payload))
        self.factory.messages.put(json.loads(payload))

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"handshake failed: {reason}"))
        self.factory.closed.callback((wasClean, code, reason))


def transcript(call: Dict[str, str], text: str, final: bool = True, leg: str = "leg0") -> events.Event:
    make = events.transcript_final if final else events.transcript_partial
    return make(call, leg=leg, text=text, start=1.0, end=2.0, segment_id=f"seg-{text[:20]}")


class WebSocketTestCase(TestCase):
    buffer = 1000
    auth_enabled = True

    def setUp(self) -> None:
        self.bus = EventBus(reactor)
        self.auth = Authenticator(
            enabled=self.auth_enabled,
            jwt_verifier=JwtVerifier(reactor, secret=tokens.SECRET, issuer=tokens.ISSUER,
                                     audience=tokens.AUDIENCE, leeway=0),
            api_keys=tokens.api_key_store())
        self.resources = websocket_resources(self.bus, reactor, self.auth,
                                             buffer_messages=self.buffer, max_clients=4,
                                             ping_interval=0)
        api = SiprecApi(FakeManager(), Metrics(process_metrics=False), Health(reactor), reactor,
                        auth=self.auth)
        self.site = make_site(api, timeout=1.0, mounts=self.resources)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = f"ws://127.0.0.1:{self.port.getHost().port}"
        self.http = f"http://127.0.0.1:{self.port.getHost().port}"
        self.clients: List[WebSocketClientFactory] = []
        self.addCleanup(self._close_clients)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    def token(self, role: str = "viewer", ttl: float = 3600) -> str:
        return tokens.hs256(tokens.claims(role, now=reactor.seconds(), ttl=ttl))

    @inlineCallbacks
    def _close_clients(self):
        waits = []
        for factory in self.clients:
            proto = factory.proto
            if proto is not None and proto.transport is not None and not factory.closed.called:
                proto.transport.abortConnection()
            waits.append(factory.closed)
        for d in waits:
            yield d
        for resource in self.resources.values():
            resource.factory.subscription.cancel()

    def connect(self, path: str = "/ws", *, token: Optional[str] = None, query: bool = False,
                headers: Optional[Dict[str, str]] = None) -> WebSocketClientFactory:
        url = self.base + path
        headers = dict(headers or {})
        if token is not None and query:
            url += "?token=" + token
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        factory = WebSocketClientFactory(url, headers=headers)
        factory.protocol = Client
        factory.opened, factory.closed, factory.proto = Deferred(), Deferred(), None
        factory.opened.addErrback(lambda f: f)  # examined by the tests that expect failure
        factory.messages, factory.received = DeferredQueue(), []
        factory.setProtocolOptions(autoPingInterval=None)
        reactor.connectTCP("127.0.0.1", self.port.getHost().port, factory)
        self.clients.append(factory)
        return factory

    @inlineCallbacks
    def open(self, path: str = "/ws", **kwargs: Any):
        factory = self.connect(path, **kwargs)
        client = yield factory.opened
        welcome = yield factory.messages.get()
        self.assertEqual((welcome["schema"], welcome["type"]), (CONTROL_SCHEMA, "welcome"))
        return client

    @inlineCallbacks
    def next_event(self, client: Client, timeout: float = 5.0):
        d = client.factory.messages.get()
        timer = reactor.callLater(timeout, d.cancel)
        message = yield d
        if timer.active():
            timer.cancel()
        return message

    @inlineCallbacks
    def wait_for(self, predicate, timeout: float = 5.0):
        for _ in range(int(timeout / 0.01)):
            if predicate():
                return
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.fail("condition not reached in time")


class StreamTests(WebSocketTestCase):
    @inlineCallbacks
    def test_every_event_without_subscription(self):
        """A client that sends nothing receives every event, in publish order."""
        client = yield self.open(token=self.token())
        published = [self.bus.publish(e) for e in (
            events.call_started({**CALL_A, "state": "active", "streams": []}),
            transcript(CALL_A, "hello"), transcript(CALL_B, "bonjour", final=False),
            events.dtmf(CALL_B, leg="leg1", digit="5", start=3.0),
            events.analytics_snapshot(CALL_A, sentiment={"score": 0.4}))]
        got = []
        for _ in published:
            got.append((yield self.next_event(client)))
        self.assertEqual([g["id"] for g in got], [p.id for p in published])
        self.assertEqual([g["seq"] for g in got], [p.seq for p in published])
        self.assertEqual(got[1], published[1].to_dict())
        self.assertEqual(got[1]["schema"], "siprec.event/1")

    @inlineCallbacks
    def test_subscription_narrows_by_call_and_type(self):
        client = yield self.open(token=self.token())
        client.sendMessage(json.dumps({"type": "subscribe", "call_ids": ["call-b@src.example"],
                                       "events": ["transcript.*"]}).encode())
        ack = yield self.next_event(client)
        self.assertEqual(ack["type"], "subscribed")
        self.assertEqual(ack["subscription"], {"call_ids": ["call-b@src.example"],
                                               "events": ["transcript.*"]})
        self.bus.publish(transcript(CALL_A, "not for you"))
        self.bus.publish(events.dtmf(CALL_B, leg="leg1", digit="1", start=1.0))
        wanted = self.bus.publish(transcript(CALL_B, "for you", final=False))
        got = yield self.next_event(client)
        self.assertEqual(got["id"], wanted.id)
        # by our session id too, and back to everything with nulls
        client.sendMessage(b'{"type": "subscribe", "call_ids": ["sess-a"], "events": null}')
        yield self.next_event(client)
        mine = self.bus.publish(events.dtmf(CALL_A, leg="leg0", digit="#", start=1.0))
        self.assertEqual((yield self.next_event(client))["id"], mine.id)

    @inlineCallbacks
    def test_bad_messages_answered_not_fatal(self):
        client = yield self.open(token=self.token())
        for raw, code in ((b"not json", "invalid_json"), (b"[1]", "invalid_json"),
                          (b'{"type": "dance"}', "unknown_type"),
                          (b'{"type": "subscribe", "events": ["nope"]}', "bad_subscription"),
                          (b'{"type": "subscribe", "call_ids": "x"}', "bad_subscription"),
                          (b'\xff\xfe', "invalid_json")):
            client.sendMessage(raw, isBinary=raw.startswith(b"\xff"))
            reply = yield self.next_event(client)
            self.assertEqual(reply["type"], "error")
            if not raw.startswith(b"\xff"):
                self.assertEqual(reply["code"], code)
        client.sendMessage(b'{"type": "ping"}')
        self.assertEqual((yield self.next_event(client))["type"], "pong")
        event = self.bus.publish(transcript(CALL_A, "still here"))
        self.assertEqual((yield self.next_event(client))["id"], event.id)

    @inlineCallbacks
    def test_analytics_endpoint_only_analytics(self):
        client = yield self.open("/ws/analytics", token=self.token())
        self.bus.publish(transcript(CALL_A, "words"))
        snapshot = self.bus.publish(events.analytics_snapshot(CALL_A, keywords=[{"word": "cancel"}]))
        got = yield self.next_event(client)
        self.assertEqual((got["type"], got["id"]), ("analytics.snapshot", snapshot.id))

    @inlineCallbacks
    def test_token_in_query_and_api_key_header(self):
        first = yield self.open(token=self.token("operator"), query=True)
        second = yield self.open(headers={"X-API-Key": tokens.API_KEYS["viewer"]})
        event = self.bus.publish(transcript(CALL_A, "both"))
        for client in (first, second):
            self.assertEqual((yield self.next_event(client))["id"], event.id)

    @inlineCallbacks
    def test_outlives_http_idle_timeout(self):
        """The Site's 1 s HTTP idle timeout does not cut an idle WebSocket."""
        client = yield self.open(token=self.token())
        yield task.deferLater(reactor, 1.6, lambda: None)
        event = self.bus.publish(transcript(CALL_A, "later"))
        self.assertEqual((yield self.next_event(client))["id"], event.id)
        self.assertFalse(client.factory.closed.called)

    @inlineCallbacks
    def test_token_expiry_closes_with_4001(self):
        client = yield self.open(token=self.token(ttl=1))
        wasClean, code, _ = yield client.factory.closed
        self.assertEqual(code, CLOSE_TOKEN_EXPIRED)

    @inlineCallbacks
    def test_shutdown_closes_with_1001(self):
        client = yield self.open(token=self.token())
        service = WebSocketService(self.resources, timeout=2)
        service.startService()
        yield service.stopService()
        _, code, _ = yield client.factory.closed
        self.assertEqual(code, CLOSE_GOING_AWAY)
        self.assertEqual(self.resources["/ws"].factory.clients, set())
        response = yield treq.get(self.http + "/ws", pool=self.pool, headers={
            **UPGRADE, "Authorization": [f"Bearer {self.token()}"]})
        self.assertEqual(response.code, 503)
        yield response.content()

    @inlineCallbacks
    def test_client_limit(self):
        for _ in range(4):
            yield self.open(token=self.token())
        response = yield treq.get(self.http + "/ws", pool=self.pool, headers={
            **UPGRADE, "Authorization": [f"Bearer {self.token()}"]})
        self.assertEqual(response.code, 503)
        body = json.loads((yield response.content()))
        self.assertEqual(body["error"]["code"], "too_many_clients")


class AuthTests(WebSocketTestCase):
    @inlineCallbacks
    def refused(self, path: str, headers: Dict[str, List[str]], status: int, code: str,
                query: str = ""):
        response = yield treq.get(self.http + path + query, headers={**UPGRADE, **headers},
                                  pool=self.pool)
        body = yield response.content()
        self.assertEqual(response.code, status, body)
        self.assertEqual(json.loads(body)["error"]["code"], code)
        if status == 401:
            self.assertTrue(response.headers.getRawHeaders("WWW-Authenticate"))

    @inlineCallbacks
    def test_matrix(self):
        now = reactor.seconds()
        bearer = lambda t: {"Authorization": [f"Bearer {t}"]}
        for path in ("/ws", "/ws/analytics"):
            yield self.refused(path, {}, 401, "unauthorized")
            yield self.refused(path, bearer(tokens.hs256(tokens.claims(now=now),
                                                         tokens.OTHER_SECRET)),
                               401, "invalid_token")
            yield self.refused(path, bearer(tokens.hs256(tokens.claims(now=now - 7200))),
                               401, "token_expired")
            yield self.refused(path, bearer(tokens.hs256(tokens.claims(now=now, iss="https://evil/"))),
                               401, "invalid_token")
            yield self.refused(path, bearer(tokens.hs256(tokens.claims(now=now, aud="other"))),
                               401, "invalid_token")
            yield self.refused(path, bearer(tokens.hs256(tokens.claims(role="guest", now=now))),
                               403, "forbidden")
            yield self.refused(path, {}, 401, "invalid_token", query="?token=garbage")
            for role in ("viewer", "operator", "admin"):
                client = yield self.open(path, token=self.token(role))
                client.transport.abortConnection()

    @inlineCallbacks
    def test_handshake_refused_for_autobahn_client(self):
        factory = self.connect(token="not-a-key")
        yield self.assertFailure(factory.opened, ConnectionError)
        yield factory.closed
        self.assertEqual(self.resources["/ws"].factory.clients, set())

    @inlineCallbacks
    def test_not_get(self):
        response = yield treq.post(self.http + "/ws", headers=UPGRADE, pool=self.pool)
        self.assertEqual(response.code, 405)
        yield response.content()


class OpenWhenAuthOffTests(WebSocketTestCase):
    auth_enabled = False

    @inlineCallbacks
    def test_no_credentials_needed(self):
        client = yield self.open()
        event = self.bus.publish(transcript(CALL_A, "open"))
        self.assertEqual((yield self.next_event(client))["id"], event.id)


class SlowConsumerTests(WebSocketTestCase):
    buffer = 20

    @inlineCallbacks
    def test_slow_client_dropped_fast_client_unharmed(self):
        """A client that stops reading is closed with 4008; others get every event."""
        slow = yield self.open(token=self.token())
        fast = yield self.open(token=self.token())
        factory = self.resources["/ws"].factory
        # Small socket buffers on the slow connection, so the test needs little data.
        slow_port = slow.transport.getHost().port
        server_side = [c for c in factory.clients if c.transport.getPeer().port == slow_port][0]
        server_side.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        slow.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.transport.pauseProducing()  # stop reading from the socket
        text = "x" * 8000
        published = []
        for i in range(3000):
            published.append(self.bus.publish(transcript(CALL_A, f"{i:04d}{text}")))
            if i % 4 == 3:
                yield task.deferLater(reactor, 0.001, lambda: None)
            if factory.slow_consumers:
                break
        self.assertEqual(factory.slow_consumers, 1)
        self.assertTrue(all(c.queued <= self.buffer for c in factory.clients))
        # the fast client received everything published so far
        yield self.wait_for(lambda: len(fast.factory.received) == len(published) + 1)
        self.assertEqual([m["id"] for m in fast.factory.received[1:]], [e.id for e in published])
        # once the slow client reads again it finds the close frame 4008
        slow.transport.resumeProducing()
        wasClean, code, reason = yield slow.factory.closed
        self.assertEqual(code, CLOSE_SLOW_CONSUMER)
        self.assertIn("slow", reason)
        self.assertNotIn(server_side, factory.clients)
        self.assertLess(len(slow.factory.received), len(published))
        # the server still serves the fast client
        after = self.bus.publish(transcript(CALL_B, "after"))
        yield self.wait_for(lambda: fast.factory.received[-1].get("id") == after.id)


class ParseClientMessageTests(SynchronousTestCase):
    def test_subscribe(self):
        kind, f = parse_client_message(
            b'{"type":"subscribe","call_ids":["a","b"],"events":["dtmf","call.*"]}')
        self.assertEqual(kind, "subscribe")
        self.assertEqual(f.call_ids, frozenset({"a", "b"}))
        allows = lambda t, c: f.allows(events.Event(type=t, session_id=c, call_id="x", data={}))
        self.assertTrue(allows("dtmf", "a"))
        self.assertTrue(allows("call.ended", "b"))
        self.assertFalse(allows("transcript.final", "a"))
        self.assertFalse(allows("dtmf", "c"))

    def test_everything_by_default(self):
        _, f = parse_client_message(b'{"type":"subscribe"}')
        self.assertEqual(f.to_json(), {"call_ids": None, "events": None})

    def test_hostile(self):
        for raw in (b"", b"{", b"null", b"1", b'"x"', b"[" * 5000, b'{"type":1}',
                    b'{"type":"subscribe","call_ids":[1]}', b'{"type":"subscribe","call_ids":[""]}',
                    b'{"type":"subscribe","events":"dtmf"}', b'{"type":"subscribe","x":1}',
                    b'{"type":"subscribe","call_ids":' + json.dumps(["i"] * 1001).encode() + b"}",
                    b'{"type":"subscribe","events":["*x"]}', b"\x80\x81", b" " * 70_000):
            self.assertRaises(SubscriptionError, parse_client_message, raw)

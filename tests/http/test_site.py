"""Tests for siprec.http.site: the root resource, mounts, and a real listening Site."""

from __future__ import annotations

import json
from typing import Tuple

from prometheus_client.parser import text_string_to_metric_families
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, cooperate
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.static import Data
from zope.interface import implementer

from siprec.http.app import SiprecApi, make_site
from siprec.http.limits import MAX_BODY, BoundedRequest
from siprec.ops.health import Health
from siprec.ops.metrics import Metrics
from tests.http.test_app import CALL_ID, FakeManager, FakeSession

BASE = "http://siprec.test"


def build_api(clock) -> Tuple[SiprecApi, FakeManager, Health]:
    manager = FakeManager([FakeSession("a1", CALL_ID)])
    health = Health(clock)
    return SiprecApi(manager, Metrics(), health, clock), manager, health


class RootTests(SynchronousTestCase):
    """The Site's root resource, driven in memory by StubTreq."""

    def setUp(self) -> None:
        self.api, self.manager, self.health = build_api(Clock())
        self.site = make_site(self.api)
        self.treq = StubTreq(self.site.resource)

    def fetch(self, method: str, path: str, **kwargs) -> Tuple[int, Headers, bytes]:
        response = self.successResultOf(self.treq.request(method, BASE + path, **kwargs))
        return response.code, response.headers, self.successResultOf(self.treq.content(response))

    def assertJsonError(self, path: str, status: int, code: str, method: str = "GET",
                        **kwargs) -> None:
        got, headers, body = self.fetch(method, path, **kwargs)
        self.assertEqual((got, headers.getRawHeaders("Content-Type")),
                         (status, ["application/json"]), body[:200])
        self.assertEqual(json.loads(body)["error"]["code"], code)

    def test_site_settings(self) -> None:
        self.assertIs(self.site.requestFactory, BoundedRequest)
        self.assertFalse(self.site.displayTracebacks)

    def test_api_reached_through_root(self) -> None:
        code, _, body = self.fetch("GET", "/status")
        self.assertEqual((code, json.loads(body)["active_calls"]), (200, 1))
        code, _, body = self.fetch("GET", "/api/sessions/a1")
        self.assertEqual((code, json.loads(body)["call_id"]), (200, CALL_ID))
        self.assertEqual(self.fetch("DELETE", "/api/sessions/a1")[0], 202)

    def test_api_errors_through_root(self) -> None:
        self.assertJsonError("/", 404, "not_found")
        self.assertJsonError("/nope/deeper", 404, "not_found")
        self.assertJsonError("/status", 405, "method_not_allowed", method="POST")

    def test_non_utf8_path(self) -> None:
        """Klein alone would answer plain text; the root answers JSON."""
        self.assertJsonError("/%FF%FE", 400, "bad_request")
        self.assertJsonError("/api/sessions/%C3%28", 400, "bad_request")

    def test_limits_enforced_at_root(self) -> None:
        self.assertJsonError("/status?q=" + "x" * 12_000, 414, "uri_too_long")
        self.assertJsonError("/anything", 413, "payload_too_large", method="POST",
                             data=b"x" * (MAX_BODY + 1))

    def test_reserved_prefixes(self) -> None:
        self.assertEqual(self.site.resource.reserved, {"api", "health", "status", "metrics"})

    def test_mount_child(self) -> None:
        self.site.resource.mount("/ws", Data(b"live events", "text/plain"))
        self.assertEqual(self.fetch("GET", "/ws")[::2], (200, b"live events"))
        self.assertEqual(self.fetch("GET", "/status")[0], 200)

    def test_mount_nested(self) -> None:
        """/ws and /ws/analytics side by side, mounted in either order."""
        root = self.site.resource
        root.mount("/ws/analytics", Data(b"analytics", "text/plain"))
        root.mount("/ws", Data(b"live", "text/plain"))
        self.assertEqual(self.fetch("GET", "/ws")[::2], (200, b"live"))
        self.assertEqual(self.fetch("GET", "/ws/")[::2], (200, b"live"))
        self.assertEqual(self.fetch("GET", "/ws/analytics")[::2], (200, b"analytics"))
        self.assertJsonError("/ws/other", 404, "not_found")

        other = make_site(build_api(Clock())[0])
        other.resource.mount("/ws", Data(b"live", "text/plain"))
        other.resource.mount("/ws/analytics", Data(b"analytics", "text/plain"))
        treq = StubTreq(other.resource)
        for path, expected in (("/ws", b"live"), ("/ws/analytics", b"analytics")):
            response = self.successResultOf(treq.get(BASE + path))
            self.assertEqual(self.successResultOf(treq.content(response)), expected)

    def test_branch_without_index(self) -> None:
        self.site.resource.mount("/ws/analytics", Data(b"analytics", "text/plain"))
        self.assertJsonError("/ws", 404, "not_found")

    def test_cannot_shadow_api(self) -> None:
        root = self.site.resource
        for path in ("/", "", "/api", "/api/ws", "/health", "/metrics", "/status/x"):
            self.assertRaises(ValueError, root.mount, path, Data(b"", "text/plain"))


@implementer(IBodyProducer)
class ChunkedBody:
    """A body of unknown length (sent chunked), produced a piece at a time."""

    length = UNKNOWN_LENGTH

    def __init__(self, total: int, piece: int = 64 * 1024) -> None:
        self.total = total
        self.piece = piece
        self.task = None

    def startProducing(self, consumer):
        def pieces():
            sent = 0
            while sent < self.total:
                consumer.write(b"[" * min(self.piece, self.total - sent))
                sent += self.piece
                yield None

        self.task = cooperate(pieces())
        return self.task.whenDone()

    def pauseProducing(self) -> None:
        self.task.pause()

    def resumeProducing(self) -> None:
        self.task.resume()

    def stopProducing(self) -> None:
        self.task.stop()


class ListeningSiteTests(TestCase):
    """The Site on a real socket on 127.0.0.1, fetched with treq."""

    def setUp(self) -> None:
        self.api, self.manager, self.health = build_api(reactor)
        self.port = reactor.listenTCP(0, make_site(self.api), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.client = HTTPClient(Agent(reactor, pool=pool))
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    @inlineCallbacks
    def test_status_and_sessions(self):
        response = yield self.client.get(self.base + "/status")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Content-Type"), ["application/json"])
        payload = yield response.json()
        self.assertEqual(payload["active_calls"], 1)
        response = yield self.client.get(self.base + "/api/sessions?limit=1")
        payload = yield response.json()
        self.assertEqual((payload["total"], payload["sessions"][0]["id"]), (1, "a1"))
        response = yield self.client.delete(self.base + "/api/sessions/a1")
        self.assertEqual(response.code, 202)
        yield response.content()
        self.assertEqual(self.manager.terminated, ["a1"])

    @inlineCallbacks
    def test_metrics(self):
        self.api.metrics.sip_request("INVITE")
        response = yield self.client.get(self.base + "/metrics")
        text = (yield response.content()).decode("utf-8")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {s.labels.get("method"): s.value
                   for s in families["siprec_sip_requests_received"].samples}
        self.assertEqual(samples["INVITE"], 1)

    @inlineCallbacks
    def test_readiness_while_draining(self):
        self.health.set_draining()
        response = yield self.client.get(self.base + "/health/ready")
        self.assertEqual(response.code, 503)
        self.assertEqual((yield response.json())["status"], "draining")

    @inlineCallbacks
    def test_declared_body_too_large(self):
        response = yield self.client.post(self.base + "/api/sessions",
                                          data=b"[" * (2 * MAX_BODY),
                                          headers={"Content-Type": "application/json"})
        self.assertEqual(response.code, 413)
        self.assertEqual((yield response.json())["error"]["code"], "payload_too_large")

    @inlineCallbacks
    def test_chunked_body_too_large(self):
        response = yield self.client.request("POST", self.base + "/api/sessions",
                                             data=ChunkedBody(MAX_BODY + 100_000),
                                             headers={"Content-Type": "application/json"})
        self.assertEqual(response.code, 413)
        self.assertEqual((yield response.json())["error"]["code"], "payload_too_large")

    @inlineCallbacks
    def test_unknown_route(self):
        response = yield self.client.get(self.base + "/%FF/nope")
        self.assertEqual(response.code, 400)
        self.assertEqual((yield response.json())["error"]["code"], "bad_request")
        response = yield self.client.get(self.base + "/nope")
        self.assertEqual(response.code, 404)
        self.assertEqual((yield response.json())["error"]["code"], "not_found")

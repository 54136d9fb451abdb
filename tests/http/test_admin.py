"""Tests for siprec.http.admin: GET /api/assurance and POST /api/admin/drain."""

from __future__ import annotations

import json
from typing import Any, List, Tuple

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from siprec.http.app import SiprecApi
from siprec.ops.health import Health
from siprec.ops.metrics import Metrics
from siprec.recording.assurance import Assurance

BASE = "http://siprec.test"
START = 1_764_324_000.0


class FakeManager:
    def __init__(self, metrics: Metrics) -> None:
        self.assurance = Assurance(metrics)
        self.active_count = 3


class AdminTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.metrics = Metrics(process_metrics=False)
        self.manager = FakeManager(self.metrics)
        self.health = Health(self.clock)
        self.drains: List[float] = []
        self.api = SiprecApi(self.manager, self.metrics, self.health, self.clock,
                             drain=self.drain)
        self.treq = StubTreq(self.api.app.resource())

    def drain(self) -> None:
        self.drains.append(self.clock.seconds())
        self.health.set_draining()

    def call(self, method: str, path: str) -> Tuple[int, Any]:
        response = self.successResultOf(self.treq.request(method, BASE + path))
        return response.code, json.loads(self.successResultOf(self.treq.content(response)))


class AssuranceRouteTests(AdminTestCase):
    def test_refusals_counted_by_reason_newest_first(self) -> None:
        a = self.manager.assurance
        a.refused("c1", 503, "No RTP port available", START, "198.51.100.7:5060")
        a.refused("c2", 400, "Malformed SDP: line 3 is not <type>=<value>", START + 1)
        a.refused("c3", 503, "No RTP port available", START + 2)
        code, body = self.call("GET", "/api/assurance")
        self.assertEqual(code, 200)
        self.assertEqual(body["calls_refused"], 3)
        self.assertEqual(body["refused_by_reason"], {"No RTP port available": 2,
                                                     "Malformed SDP": 1})
        self.assertEqual([r["call_id"] for r in body["recent_refusals"]], ["c3", "c2", "c1"])
        self.assertEqual(body["recent_refusals"][1]["reason"],
                         "Malformed SDP: line 3 is not <type>=<value>")
        self.assertEqual(body["recent_refusals"][2]["at"], "2025-11-28T10:00:00.000Z")
        text = self.metrics.render()[0].decode()
        self.assertIn('siprec_calls_refused_total{reason="no_rtp_port_available",status="503"} 2.0',
                      text)
        self.assertIn('siprec_calls_refused_total{reason="malformed_sdp",status="400"} 1.0', text)

    def test_nothing_yet(self) -> None:
        code, body = self.call("GET", "/api/assurance")
        self.assertEqual(body, {"calls_recorded": 0, "calls_refused": 0, "refused_by_reason": {},
                                "recent_refusals": [], "calls_incomplete": 0,
                                "recent_incomplete": []})


class DrainRouteTests(AdminTestCase):
    def test_drain_starts_the_drain(self) -> None:
        code, body = self.call("POST", "/api/admin/drain")
        self.assertEqual(code, 202)
        self.assertEqual(self.drains, [START])
        self.assertTrue(body["draining"])
        self.assertEqual(body["active_calls"], 3)

    def test_drain_needs_post(self) -> None:
        code, _ = self.call("GET", "/api/admin/drain")
        self.assertEqual(code, 405)
        self.assertEqual(self.drains, [])

    def test_no_drain_available_is_409(self) -> None:
        api = SiprecApi(self.manager, self.metrics, self.health, self.clock)
        self.treq = StubTreq(api.app.resource())
        code, body = self.call("POST", "/api/admin/drain")
        self.assertEqual((code, body["error"]["code"]), (409, "conflict"))

"""Tests for siprec.http.app: every route through treq's StubTreq, errors included."""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

import siprec
from siprec.http.app import SiprecApi
from siprec.http.limits import MAX_BODY
from siprec.http.params import MAX_LIMIT
from siprec.ops.health import Health
from siprec.ops.metrics import LiveFigures, Metrics

BASE = "http://siprec.test"
START = 1_700_000_000.0
CALL_ID = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6@198.51.100.7"


class FakeSession:
    """The Session interface of siprec.recording.manager, nothing more."""

    def __init__(self, session_id: str, call_id: str, state: str = "active") -> None:
        self.id = session_id
        self.call_id = call_id
        self.state = state

    def summary(self) -> dict:
        return {
            "id": self.id,
            "call_id": self.call_id,
            "state": self.state,
            "started_at": "2023-11-14T22:13:20.000Z",
            "ended_at": None if self.state == "active" else "2023-11-14T22:20:00Z",
            "streams": [
                {"label": "1", "codec": "PCMU", "port": 16384, "packets": 1500},
                {"label": "2", "codec": "PCMU", "port": 16386, "packets": 1498},
            ],
            "participants": [
                {"id": "p1", "aor": "sip:alice@example.com", "name": "Alice"},
                {"id": "p2", "aor": "sip:bob@example.net", "name": "Bob"},
            ],
        }

    def detail(self) -> dict:
        return {**self.summary(),
                "metadata": {"session": "ZnE2dXh5c2VzczEyMzQ=", "groups": []},
                "sip": {"from": "<sip:src@sbc.example.com>;tag=8d2", "user_agent": "SBC/1.0"},
                "pauses": [{"start": 12.5, "end": 20.0}],
                "files": [f"{self.call_id}_1.wav"]}


class FakeManager:
    """The Manager interface: sessions(), get(), terminate(), active_count."""

    def __init__(self, sessions: Optional[List[FakeSession]] = None) -> None:
        self._sessions = list(sessions or [])
        self.looked_up: List[str] = []
        self.terminated: List[str] = []
        self.pending: Dict[str, Deferred] = {}
        self.finalise_at_once = False

    @property
    def active_count(self) -> int:
        return sum(1 for s in self._sessions if s.state == "active")

    def sessions(self) -> list:
        return list(self._sessions)

    def get(self, id_or_call_id: str) -> Optional[FakeSession]:
        self.looked_up.append(id_or_call_id)
        for session in self._sessions:
            if id_or_call_id in (session.id, session.call_id):
                return session
        return None

    def terminate(self, id_or_call_id: str) -> Optional[Deferred]:
        session = self.get(id_or_call_id)
        if session is None:
            return None
        self.terminated.append(session.id)
        if self.finalise_at_once:
            session.state = "ended"
            return succeed(None)
        session.state = "terminating"
        self.pending[session.id] = Deferred()
        return self.pending[session.id]


def make_sessions(count: int) -> List[FakeSession]:
    return [FakeSession(f"s{i}", f"call-{i}@10.0.0.1") for i in range(count)]


class ApiTestCase(SynchronousTestCase):
    """A SiprecApi with a fake manager, real Metrics and Health, on a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.manager = FakeManager([
            FakeSession("a1", CALL_ID),
            FakeSession("b2", "other-call@203.0.113.9", state="ended"),
        ])
        self.metrics = Metrics()
        self.health = Health(self.clock)
        self.api = SiprecApi(self.manager, self.metrics, self.health, self.clock)
        self.treq = StubTreq(self.api.app.resource())

    def fetch(self, method: str, path: str, **kwargs) -> Tuple[int, Headers, bytes]:
        response = self.successResultOf(self.treq.request(method, BASE + path, **kwargs))
        body = self.successResultOf(self.treq.content(response))
        return response.code, response.headers, body

    def json(self, method: str, path: str, status: int = 200, **kwargs) -> dict:
        code, headers, body = self.fetch(method, path, **kwargs)
        self.assertEqual((code, body[:200]), (status, body[:200]))
        self.assertEqual(headers.getRawHeaders("Content-Type"), ["application/json"])
        return json.loads(body)

    def assertError(self, method: str, path: str, status: int, code: str, **kwargs) -> Headers:
        """The one error shape: JSON, right status, code, a message, no traceback."""
        got, headers, body = self.fetch(method, path, **kwargs)
        self.assertEqual(got, status, body[:300])
        self.assertEqual(headers.getRawHeaders("Content-Type"), ["application/json"])
        payload = json.loads(body)
        self.assertEqual(set(payload), {"error"})
        self.assertEqual(set(payload["error"]), {"code", "message"})
        self.assertEqual(payload["error"]["code"], code)
        self.assertIsInstance(payload["error"]["message"], str)
        self.assertTrue(payload["error"]["message"])
        self.assertNotIn(b"Traceback", body)
        self.assertLess(len(body), 300)
        return headers


class SessionListTests(ApiTestCase):
    def test_list(self) -> None:
        payload = self.json("GET", "/api/sessions")
        self.assertEqual(payload["total"], 2)
        self.assertEqual(payload["sessions"], [s.summary() for s in self.manager.sessions()])
        self.assertEqual((payload["limit"], payload["offset"]), (50, 0))

    def test_items_carry_required_fields(self) -> None:
        for item in self.json("GET", "/api/sessions")["sessions"]:
            for key in ("id", "call_id", "state", "started_at", "streams", "participants"):
                self.assertIn(key, item)
            for stream in item["streams"]:
                self.assertLessEqual({"label", "codec", "port", "packets"}, set(stream))

    def test_empty(self) -> None:
        self.manager._sessions.clear()
        self.assertEqual(self.json("GET", "/api/sessions"),
                         {"sessions": [], "total": 0, "limit": 50, "offset": 0})

    def test_pagination_keeps_manager_order(self) -> None:
        self.manager._sessions = make_sessions(10)
        payload = self.json("GET", "/api/sessions?limit=3&offset=4")
        self.assertEqual([s["id"] for s in payload["sessions"]], ["s4", "s5", "s6"])
        self.assertEqual((payload["total"], payload["limit"], payload["offset"]), (10, 3, 4))

    def test_offset_past_the_end(self) -> None:
        payload = self.json("GET", "/api/sessions?offset=100")
        self.assertEqual((payload["sessions"], payload["total"]), ([], 2))

    def test_limit_zero_counts_only(self) -> None:
        payload = self.json("GET", "/api/sessions?limit=0")
        self.assertEqual((payload["sessions"], payload["total"]), ([], 2))

    def test_limit_capped(self) -> None:
        self.manager._sessions = make_sessions(MAX_LIMIT + 20)
        payload = self.json("GET", "/api/sessions?limit=10000")
        self.assertEqual(len(payload["sessions"]), MAX_LIMIT)
        self.assertEqual((payload["limit"], payload["total"]), (MAX_LIMIT, MAX_LIMIT + 20))

    def test_bad_pagination(self) -> None:
        for query in ("limit=abc", "limit=-1", "limit=1.5", "limit=", "limit=1e3", "limit=%20",
                      "offset=-5", "offset=99999999999999999999", "offset=2000000",
                      "limit=1&limit=2", "limit=%D9%A3", "limit=0x10", "offset=%00"):
            headers = self.assertError("GET", "/api/sessions?" + query, 400, "bad_request")
            self.assertIsNotNone(headers)

    def test_bad_pagination_message_names_parameter(self) -> None:
        _, _, body = self.fetch("GET", "/api/sessions?offset=x")
        self.assertIn("offset", json.loads(body)["error"]["message"])

    def test_unknown_parameters_ignored(self) -> None:
        self.assertEqual(self.json("GET", "/api/sessions?state=active&x=%FF%FE")["total"], 2)


class SessionDetailTests(ApiTestCase):
    def test_by_session_id(self) -> None:
        self.assertEqual(self.json("GET", "/api/sessions/a1"), self.manager.get("a1").detail())

    def test_by_call_id(self) -> None:
        payload = self.json("GET", "/api/sessions/" + quote(CALL_ID))
        self.assertEqual(payload["id"], "a1")
        self.assertIn("metadata", payload)

    def test_call_id_with_slash(self) -> None:
        """Call-IDs may hold '/' (RFC 3261 word); percent-encoded it still finds the call."""
        self.manager._sessions.append(FakeSession("c3", "abc/def@host"))
        self.assertEqual(self.json("GET", "/api/sessions/" + quote("abc/def@host", safe=""))["id"],
                         "c3")

    def test_unknown(self) -> None:
        self.assertError("GET", "/api/sessions/nope", 404, "not_found")

    def test_hostile_ids(self) -> None:
        for hostile in ("%00", "..%2F..%2Fetc%2Fpasswd", "%3Cscript%3E", "a%20b", "%E2%80%AE"):
            self.assertError("GET", "/api/sessions/" + hostile, 404, "not_found")

    def test_overlong_id_not_looked_up(self) -> None:
        self.assertError("GET", "/api/sessions/" + "x" * 600, 404, "not_found")
        self.assertNotIn("x" * 600, self.manager.looked_up)

    def test_message_does_not_echo_input(self) -> None:
        _, _, body = self.fetch("GET", "/api/sessions/%3Cscript%3E")
        self.assertNotIn(b"script", body)


class TerminateTests(ApiTestCase):
    def test_active_session_accepted(self) -> None:
        payload = self.json("DELETE", "/api/sessions/a1", status=202)
        self.assertEqual((payload["id"], payload["state"]), ("a1", "terminating"))
        self.assertEqual(self.manager.terminated, ["a1"])
        self.manager.pending["a1"].callback(None)  # finalised later: nothing to do

    def test_by_call_id(self) -> None:
        self.json("DELETE", "/api/sessions/" + quote(CALL_ID), status=202)
        self.assertEqual(self.manager.terminated, ["a1"])

    def test_already_ended(self) -> None:
        payload = self.json("DELETE", "/api/sessions/b2", status=200)
        self.assertEqual(payload["state"], "ended")
        self.assertEqual(self.manager.terminated, [])

    def test_finalised_at_once(self) -> None:
        self.manager.finalise_at_once = True
        self.assertEqual(self.json("DELETE", "/api/sessions/a1", status=200)["state"], "ended")

    def test_unknown(self) -> None:
        self.assertError("DELETE", "/api/sessions/nope", 404, "not_found")
        self.assertEqual(self.manager.terminated, [])

    def test_vanished_between_lookup_and_terminate(self) -> None:
        self.patch(self.manager, "terminate", lambda _id: None)
        self.assertError("DELETE", "/api/sessions/a1", 404, "not_found")

    def test_failed_finalisation_logged(self) -> None:
        self.json("DELETE", "/api/sessions/a1", status=202)
        self.manager.pending["a1"].errback(OSError("disk full"))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_body_must_be_json(self) -> None:
        self.assertError("DELETE", "/api/sessions/a1", 415, "unsupported_media_type",
                         data=b"reason=because")
        self.assertError("DELETE", "/api/sessions/a1", 400, "invalid_json", data=b"{not json",
                         headers={"Content-Type": "application/json"})
        self.assertEqual(self.manager.terminated, [])
        self.json("DELETE", "/api/sessions/a1", status=202, data=b'{"reason": "operator"}',
                  headers={"Content-Type": "application/json; charset=utf-8"})


class HealthRouteTests(ApiTestCase):
    def test_healthy(self) -> None:
        self.health.add_check("sip", lambda: (True, "listening"))
        self.clock.advance(10)
        payload = self.json("GET", "/health")
        self.assertEqual(payload["status"], "healthy")
        self.assertEqual((payload["live"], payload["ready"]), (True, True))
        self.assertEqual(payload["checks"], {"sip": {"ok": True, "detail": "listening"}})
        self.assertEqual((payload["uptime_seconds"], payload["active_calls"]), (10.0, 1))
        self.assertEqual(payload["version"], siprec.__version__)

    def test_failing_check(self) -> None:
        self.health.add_check("sip", lambda: (True, "listening"))
        self.health.add_check("redis", lambda: (False, "connection refused"))
        for path in ("/health", "/health/ready"):
            payload = self.json("GET", path, status=503)
            self.assertEqual(payload["checks"]["redis"], {"ok": False, "detail": "connection refused"})
        self.assertEqual(self.json("GET", "/health", status=503)["status"], "unhealthy")
        self.assertEqual(self.json("GET", "/health/ready", status=503)["status"], "not_ready")
        self.assertEqual(self.json("GET", "/health/live")["status"], "alive")

    def test_draining(self) -> None:
        self.health.set_draining()
        self.assertEqual(self.json("GET", "/health", status=503)["status"], "draining")
        self.assertEqual(self.json("GET", "/health/ready", status=503)["status"], "draining")
        self.assertEqual(self.json("GET", "/health/live")["status"], "alive")
        self.health.set_draining(False)
        self.assertEqual(self.json("GET", "/health/ready")["status"], "ready")

    def test_ready_waits_for_slow_check(self) -> None:
        pending: Deferred = Deferred()
        self.health.add_check("db", lambda: pending)
        request = self.treq.get(BASE + "/health/ready")
        self.assertNoResult(request)
        pending.callback((True, "up"))
        self.treq.flush()
        self.assertEqual(self.successResultOf(request).code, 200)

    def test_ready_times_out_hung_check(self) -> None:
        self.health.add_check("db", Deferred)
        request = self.treq.get(BASE + "/health/ready")
        self.clock.advance(self.health.check_timeout + 0.1)
        self.treq.flush()
        response = self.successResultOf(request)
        self.assertEqual(response.code, 503)
        payload = json.loads(self.successResultOf(self.treq.content(response)))
        self.assertIn("timed out", payload["checks"]["db"]["detail"])

    def test_head_live(self) -> None:
        code, _, body = self.fetch("HEAD", "/health/live")
        self.assertEqual((code, body), (200, b""))

    def test_status(self) -> None:
        self.clock.advance(42)
        self.assertEqual(self.json("GET", "/status"), {
            "version": siprec.__version__,
            "started_at": "2023-11-14T22:13:20.000Z",
            "uptime_seconds": 42.0,
            "draining": False,
            "active_calls": 1,
        })


class MetricsRouteTests(ApiTestCase):
    def scrape(self, **kwargs) -> Dict[Tuple[str, frozenset], float]:
        code, headers, body = self.fetch("GET", "/metrics", **kwargs)
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("Content-Type"), [CONTENT_TYPE_LATEST])
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(body.decode("utf-8"))
                for s in family.samples}

    def test_series_after_events(self) -> None:
        self.metrics.sip_request("INVITE")
        self.metrics.sip_response("INVITE", 200)
        self.metrics.call_started()
        self.metrics.call_ended("bye")
        self.metrics.metadata_warning()
        self.metrics.add_live_source(lambda: LiveFigures(active_calls=self.manager.active_count,
                                                         rtp_packets_received=2998))
        samples = self.scrape()
        self.assertEqual(samples[("siprec_sip_requests_received_total",
                                  frozenset({("method", "INVITE")}))], 1)
        self.assertEqual(samples[("siprec_sip_responses_sent_total",
                                  frozenset({("method", "INVITE"), ("status", "200")}))], 1)
        self.assertEqual(samples[("siprec_calls_started_total", frozenset())], 1)
        self.assertEqual(samples[("siprec_calls_ended_total", frozenset({("reason", "bye")}))], 1)
        self.assertEqual(samples[("siprec_metadata_warnings_total", frozenset())], 1)
        self.assertEqual(samples[("siprec_active_calls", frozenset())], 1)
        self.assertEqual(samples[("siprec_rtp_packets_received_total", frozenset())], 2998)

    def test_api_requests_counted_by_route(self) -> None:
        self.json("GET", "/status")
        self.json("GET", "/status")
        self.fetch("GET", "/api/sessions/nope")
        self.fetch("GET", "/no/such/thing")
        self.fetch("PUT", "/status")
        samples = self.scrape()
        count = "siprec_http_requests_total"
        self.assertEqual(samples[(count, frozenset({("route", "/status"), ("method", "GET"),
                                                    ("status", "200")}))], 2)
        self.assertEqual(samples[(count, frozenset({("route", "/api/sessions/<path:session_id>"),
                                                    ("method", "GET"), ("status", "404")}))], 1)
        self.assertEqual(samples[(count, frozenset({("route", "unmatched"), ("method", "GET"),
                                                    ("status", "404")}))], 1)
        self.assertEqual(samples[(count, frozenset({("route", "unmatched"), ("method", "PUT"),
                                                    ("status", "405")}))], 1)

    def test_openmetrics_negotiated(self) -> None:
        code, headers, body = self.fetch("GET", "/metrics", headers={
            "Accept": "application/openmetrics-text; version=1.0.0"})
        self.assertEqual(code, 200)
        self.assertTrue(headers.getRawHeaders("Content-Type")[0]
                        .startswith("application/openmetrics-text"))
        self.assertTrue(body.endswith(b"# EOF\n"))


class ErrorTests(ApiTestCase):
    def test_unknown_routes(self) -> None:
        for path in ("/", "/nope", "/api", "/api/sessions/", "/health/", "/api//sessions",
                     "/metrics/x", "/%2e%2e/etc/passwd"):
            self.assertError("GET", path, 404, "not_found")

    def test_wrong_method(self) -> None:
        for method, path in (("POST", "/health"), ("DELETE", "/api/sessions"),
                             ("PUT", "/api/sessions/a1"), ("POST", "/metrics"),
                             ("PATCH", "/status")):
            headers = self.assertError(method, path, 405, "method_not_allowed")
            self.assertTrue(headers.getRawHeaders("Allow"))
        headers = self.assertError("PUT", "/api/sessions/a1", 405, "method_not_allowed")
        self.assertEqual(headers.getRawHeaders("Allow"), ["DELETE, GET, HEAD"])

    def test_body_too_large(self) -> None:
        self.assertError("GET", "/api/sessions", 413, "payload_too_large",
                         data=b"{" + b" " * MAX_BODY + b"}",
                         headers={"Content-Type": "application/json"})

    def test_body_too_large_on_unknown_route(self) -> None:
        self.assertError("POST", "/upload", 413, "payload_too_large", data=b"x" * (MAX_BODY + 1))

    def test_body_at_limit_accepted(self) -> None:
        body = b"[" + b" " * (MAX_BODY - 2) + b"]"
        self.json("GET", "/status", data=body, headers={"Content-Type": "application/json"})

    def test_non_json_bodies(self) -> None:
        self.assertError("GET", "/status", 415, "unsupported_media_type", data=b"hello")
        self.assertError("GET", "/status", 415, "unsupported_media_type", data=b"{}",
                         headers={"Content-Type": "text/plain"})
        for garbage in (b"{", b"\xff\xfe", b"[" * 100_000, b"NaN]", b"{'a': 1}"):
            self.assertError("GET", "/status", 400, "invalid_json", data=garbage,
                             headers={"Content-Type": "application/json"})

    def test_huge_query_string(self) -> None:
        self.assertError("GET", "/api/sessions?limit=1&x=" + "A" * 12_000, 414, "uri_too_long")
        self.assertError("GET", "/api/sessions/" + "B" * 12_000, 414, "uri_too_long")

    def test_many_query_parameters_under_the_cap(self) -> None:
        query = "&".join(f"p{i}=v" for i in range(1000))
        self.assertEqual(self.json("GET", "/api/sessions?" + query)["total"], 2)

    def test_manager_failure_is_500_without_details(self) -> None:
        def broken() -> list:
            raise KeyError("internal detail: /var/lib/siprec/secret")

        self.patch(self.manager, "sessions", broken)
        self.assertError("GET", "/api/sessions", 500, "internal_error")
        _, _, body = self.fetch("GET", "/api/sessions")
        self.assertNotIn(b"secret", body)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 2)

    def test_summary_not_json_ready_is_500(self) -> None:
        """A NaN or an object in a summary is a server bug: logged, answered 500."""
        session = self.manager.get("a1")
        self.patch(session, "summary", lambda: {"id": "a1", "mos": float("nan")})
        self.assertError("GET", "/api/sessions", 500, "internal_error")
        self.patch(session, "summary", lambda: {"id": "a1", "when": object()})
        self.assertError("GET", "/api/sessions", 500, "internal_error")
        self.assertEqual(len(self.flushLoggedErrors(ValueError, TypeError)), 2)

    def test_failed_deferred_in_route_is_500(self) -> None:
        def broken_ready():
            raise RuntimeError("boom")

        self.patch(self.health, "ready", broken_ready)
        self.assertError("GET", "/health/ready", 500, "internal_error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

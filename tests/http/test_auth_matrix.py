"""Every REST route family under every kind of credentials, with auth on (and off)."""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Tuple

from treq.testing import StubTreq
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from siprec.http.app import SiprecApi
from siprec.ops.health import Health
from siprec.ops.metrics import Metrics
from siprec.security.auth import Authenticator, JwtVerifier
from tests.http.test_control import FakeSession
from tests.security import tokens
from tests.security.tokens import API_KEYS, AUDIENCE, ISSUER, NOW, claims, hs256, rs256

BASE = "http://siprec.test"


class Manager:
    def __init__(self, clock: Clock) -> None:
        self.session = FakeSession(clock, "a1", "call-a@198.51.100.7")

    @property
    def active_count(self) -> int:
        return 1

    def sessions(self) -> list:
        return [self.session]

    def get(self, key: str) -> Optional[FakeSession]:
        return self.session if key in ("a1", "call-a@198.51.100.7") else None

    def terminate(self, key: str):
        self.session.state = "ending"
        return succeed(None)

    # FakeSession lacks these for the session routes
    @staticmethod
    def patch(session: FakeSession) -> None:
        session.detail = session.summary


# (family, method, path) -- one entry per route, grouped in families
READ = [("GET", "/api/sessions"), ("GET", "/api/sessions/a1"), ("GET", "/api/status/a1"),
        ("GET", "/api/openapi.json")]
CONTROL = [("POST", "/api/pause/a1"), ("POST", "/api/resume/a1"), ("POST", "/api/pause/all"),
           ("POST", "/api/resume/all"), ("DELETE", "/api/sessions/a1")]
HEALTH = [("GET", "/health"), ("GET", "/health/live"), ("GET", "/health/ready"),
          ("GET", "/status")]
METRICS = [("GET", "/metrics")]


def credentials(now: float) -> Dict[str, Dict[str, str]]:
    bearer = lambda token: {"Authorization": f"Bearer {token}"}
    return {
        "none": {},
        "bad signature": bearer(hs256(claims("admin", now=now), tokens.OTHER_SECRET)),
        "expired": bearer(hs256(claims("admin", now=now - 7200))),
        "wrong issuer": bearer(hs256(claims("admin", now=now, iss="https://evil.example/"))),
        "wrong audience": bearer(hs256(claims("admin", now=now, aud="billing"))),
        "unknown key": {"X-API-Key": "sk_siprec_not-a-key"},
        "no role": bearer(hs256(claims(None, now=now))),
        "viewer": bearer(hs256(claims("viewer", now=now))),
        "operator": bearer(rs256(claims("operator", now=now))),
        "admin": bearer(hs256(claims("admin", now=now))),
        "viewer key": {"X-API-Key": API_KEYS["viewer"]},
        "operator key": {"Authorization": f"Bearer {API_KEYS['operator']}"},
    }


# expected (status class) per credentials and permission needed: "ok", 401 or 403
EXPECTED = {
    "none": (401, 401), "bad signature": (401, 401), "expired": (401, 401),
    "wrong issuer": (401, 401), "wrong audience": (401, 401), "unknown key": (401, 401),
    "no role": (403, 403), "viewer": ("ok", 403), "operator": ("ok", "ok"),
    "admin": ("ok", "ok"), "viewer key": ("ok", 403), "operator key": ("ok", "ok"),
}
ERROR_CODES = {"none": "unauthorized", "expired": "token_expired"}


class MatrixTestCase(SynchronousTestCase):
    public_health = True
    public_metrics = False
    enabled = True

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        auth = Authenticator(enabled=self.enabled,
                             jwt_verifier=JwtVerifier(self.clock, secret=tokens.SECRET,
                                                      public_key=tokens.public_pem(),
                                                      issuer=ISSUER, audience=AUDIENCE),
                             api_keys=tokens.api_key_store(), public_health=self.public_health,
                             public_metrics=self.public_metrics)
        self.manager = Manager(self.clock)
        Manager.patch(self.manager.session)
        api = SiprecApi(self.manager, Metrics(process_metrics=False), Health(self.clock),
                        self.clock, auth=auth)
        self.treq = StubTreq(api.app.resource())
        self.creds = credentials(NOW)

    def request(self, method: str, path: str, headers: Dict[str, str]) -> Tuple[int, dict, object]:
        self.manager.session.state = "active"
        response = self.successResultOf(self.treq.request(
            method, BASE + path, headers={k: [v] for k, v in headers.items()}))
        body = self.successResultOf(self.treq.content(response))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        return response.code, payload, response.headers

    def check(self, routes: List[Tuple[str, str]], column: int, public: bool = False) -> None:
        for name, headers in self.creds.items():
            expected = "ok" if public else EXPECTED[name][column]
            for method, path in routes:
                code, payload, response_headers = self.request(method, path, headers)
                where = f"{name}: {method} {path} -> {code} {payload}"
                if expected == "ok":
                    self.assertIn(code, (200, 202, 503), where)
                    continue
                self.assertEqual(code, expected, where)
                self.assertEqual(set(payload["error"]), {"code", "message"}, where)
                challenge = response_headers.getRawHeaders("WWW-Authenticate")
                if expected == 401:
                    self.assertEqual(payload["error"]["code"],
                                     ERROR_CODES.get(name, "invalid_token"), where)
                    self.assertTrue(challenge and challenge[0].startswith("Bearer"), where)
                else:
                    self.assertEqual(payload["error"]["code"], "forbidden", where)
                    self.assertIsNone(challenge, where)


class AuthOnTests(MatrixTestCase):
    def test_read_routes(self):
        self.check(READ, 0)

    def test_control_routes(self):
        self.check(CONTROL, 1)

    def test_health_public_by_default(self):
        self.check(HEALTH, 0, public=True)

    def test_metrics_need_read_by_default(self):
        self.check(METRICS, 0)

    def test_refused_control_has_no_effect(self):
        self.request("POST", "/api/pause/a1", self.creds["viewer"])
        self.request("POST", "/api/pause/all", self.creds["expired"])
        self.request("DELETE", "/api/sessions/a1", self.creds["viewer key"])
        self.assertEqual(self.manager.session.calls, [])

    def test_expiry_follows_the_clock(self):
        headers = {"Authorization": f"Bearer {hs256(claims('viewer', now=NOW, ttl=60))}"}
        self.assertEqual(self.request("GET", "/api/sessions", headers)[0], 200)
        self.clock.advance(91)  # ttl + 30 s leeway passed
        code, payload, _ = self.request("GET", "/api/sessions", headers)
        self.assertEqual((code, payload["error"]["code"]), (401, "token_expired"))

    def test_query_token_not_accepted_on_rest(self):
        token = hs256(claims("admin", now=NOW))
        code, _, _ = self.request("GET", f"/api/sessions?token={token}", {})
        self.assertEqual(code, 401)

    def test_unknown_route_is_404_not_401(self):
        """Routing comes first: an unknown path says 404 to anyone."""
        self.assertEqual(self.request("GET", "/api/nothing", {})[0], 404)


class ClosedHealthTests(MatrixTestCase):
    public_health = False
    public_metrics = True

    def test_health_needs_read(self):
        self.check(HEALTH, 0)

    def test_metrics_public(self):
        self.check(METRICS, 0, public=True)


class AuthOffTests(MatrixTestCase):
    enabled = False

    def test_everything_open(self):
        for routes in (READ, CONTROL, HEALTH, METRICS):
            self.check(routes, 0, public=True)

"""Tests for siprec.http.control: pause/resume/status against a fake manager and sessions."""

from __future__ import annotations

import json
from typing import Any, List, Optional, Tuple

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from siprec.http.app import SiprecApi
from siprec.ops.health import Health
from siprec.ops.metrics import Metrics

BASE = "http://siprec.test"
START = 1_764_324_000.0


class FakeSession:
    """The pause contract of RecordingSession: pause/resume(recording=, transcription=)."""

    def __init__(self, clock: Clock, session_id: str, call_id: str, state: str = "active"):
        self.clock = clock
        self.id = session_id
        self.call_id = call_id
        self.state = state
        self.recording_paused = False
        self.transcription_paused = False
        self.pauses: List[dict] = []
        self.calls: List[Tuple[str, bool, bool]] = []
        self.broken = False

    def pause(self, recording: bool = True, transcription: bool = True) -> None:
        if self.broken:
            raise RuntimeError("media gone")
        self.calls.append(("pause", recording, transcription))
        what = [n for n, on in (("recording", recording), ("transcription", transcription)) if on]
        if recording and not self.recording_paused:
            self.recording_paused = True
        if transcription and not self.transcription_paused:
            self.transcription_paused = True
        self.pauses.append({"label": None, "stream": None, "reason": "api", "what": what,
                            "start": self.clock.seconds(), "end": None})

    def resume(self, recording: bool = True, transcription: bool = True) -> None:
        self.calls.append(("resume", recording, transcription))
        if recording:
            self.recording_paused = False
        if transcription:
            self.transcription_paused = False
        for pause in self.pauses:
            if pause["end"] is None:
                pause["end"] = self.clock.seconds()

    def summary(self) -> dict:
        return {"id": self.id, "call_id": self.call_id, "state": self.state}


class FakeManager:
    def __init__(self, sessions: List[FakeSession]) -> None:
        self._sessions = sessions

    @property
    def active_count(self) -> int:
        return sum(s.state == "active" for s in self._sessions)

    def sessions(self) -> list:
        return list(self._sessions)

    def get(self, key: str) -> Optional[FakeSession]:
        for session in self._sessions:
            if key in (session.id, session.call_id):
                return session
        return None


class ControlTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.a = FakeSession(self.clock, "a1", "call-a@198.51.100.7")
        self.b = FakeSession(self.clock, "b2", "call-b@198.51.100.7")
        self.ended = FakeSession(self.clock, "e3", "call-e@198.51.100.7", state="ended")
        self.setup = FakeSession(self.clock, "s4", "call-s@198.51.100.7", state="setup")
        self.manager = FakeManager([self.a, self.b, self.ended, self.setup])
        api = SiprecApi(self.manager, Metrics(process_metrics=False), Health(self.clock),
                        self.clock)
        self.treq = StubTreq(api.app.resource())

    def call(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None,
             content_type: str = "application/json") -> Tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = Headers({"Content-Type": [content_type]}) if data is not None else None
        response = self.successResultOf(self.treq.request(method, BASE + path, data=data,
                                                          headers=headers))
        content = self.successResultOf(self.treq.content(response))
        return response.code, json.loads(content)


class PauseResumeTests(ControlTestCase):
    def test_pause_both_by_default(self):
        code, body = self.call("POST", "/api/pause/a1")
        self.assertEqual(code, 200)
        self.assertEqual(self.a.calls, [("pause", True, True)])
        self.assertEqual((body["paused"], body["recording_paused"], body["transcription_paused"]),
                         (True, True, True))
        self.assertEqual(body["pauses"][0]["start"], "2025-11-28T10:00:00.000Z")
        self.assertIsNone(body["pauses"][0]["end"])
        self.assertEqual(body["pauses"][0]["what"], ["recording", "transcription"])

    def test_scope_options(self):
        self.call("POST", "/api/pause/a1", {"transcription": False})
        self.call("POST", "/api/pause/call-b@198.51.100.7", {"recording": False})
        self.assertEqual(self.a.calls, [("pause", True, False)])
        self.assertEqual(self.b.calls, [("pause", False, True)])
        code, body = self.call("GET", "/api/status/b2")
        self.assertEqual((body["recording_paused"], body["transcription_paused"]), (False, True))

    def test_resume_closes_interval(self):
        self.call("POST", "/api/pause/a1")
        self.clock.advance(12.5)
        code, body = self.call("POST", "/api/resume/a1", {"recording": True, "transcription": True})
        self.assertEqual(code, 200)
        self.assertFalse(body["paused"])
        self.assertEqual(body["pauses"][0]["end"], "2025-11-28T10:00:12.500Z")

    def test_bad_bodies(self):
        for body, raw in ((None, b"[]"), (None, b"true"), ({"recording": "yes"}, None),
                          ({"recording": False, "transcription": False}, None),
                          ({"audio": True}, None), ({"recording": 1}, None)):
            code, payload = self.call("POST", "/api/pause/a1", body, raw=raw)
            self.assertEqual((code, payload["error"]["code"]), (400, "bad_request"), body or raw)
        code, payload = self.call("POST", "/api/pause/a1", raw=b"{nope")
        self.assertEqual((code, payload["error"]["code"]), (400, "invalid_json"))
        code, payload = self.call("POST", "/api/pause/a1", raw=b"x", content_type="text/plain")
        self.assertEqual(code, 415)
        self.assertEqual(self.a.calls, [])

    def test_unknown_and_ended(self):
        code, payload = self.call("POST", "/api/pause/nope")
        self.assertEqual((code, payload["error"]["code"]), (404, "not_found"))
        code, payload = self.call("POST", "/api/pause/" + "x" * 600)
        self.assertEqual(code, 404)
        code, payload = self.call("POST", "/api/resume/e3")
        self.assertEqual((code, payload["error"]["code"]), (409, "conflict"))
        code, payload = self.call("GET", "/api/status/nope")
        self.assertEqual(code, 404)

    def test_methods(self):
        code, payload = self.call("GET", "/api/pause/a1")
        self.assertEqual((code, payload["error"]["code"]), (405, "method_not_allowed"))
        code, _ = self.call("DELETE", "/api/status/a1")
        self.assertEqual(code, 405)


class BulkTests(ControlTestCase):
    def test_pause_all_active_only(self):
        code, body = self.call("POST", "/api/pause/all", {"transcription": False})
        self.assertEqual(code, 200)
        self.assertEqual(body, {"action": "pause", "recording": True, "transcription": False,
                                "count": 2, "sessions": ["a1", "b2"], "failed": []})
        self.assertEqual((self.ended.calls, self.setup.calls), ([], []))

    def test_one_failure_does_not_stop_the_rest(self):
        self.a.broken = True
        code, body = self.call("POST", "/api/pause/all")
        self.assertEqual((body["count"], body["sessions"]), (1, ["b2"]))
        self.assertEqual(body["failed"], [{"id": "a1", "call_id": "call-a@198.51.100.7"}])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_resume_all(self):
        self.call("POST", "/api/pause/all")
        code, body = self.call("POST", "/api/resume/all")
        self.assertEqual((code, body["action"], body["count"]), (200, "resume", 2))
        self.assertFalse(self.a.recording_paused or self.b.transcription_paused)

    def test_all_is_not_a_session_id(self):
        """/api/pause/all never looks up a session called "all"."""
        self.manager._sessions.append(FakeSession(self.clock, "all", "all"))
        self.call("POST", "/api/pause/all")
        self.assertEqual(len(self.manager._sessions[-1].calls), 1)  # as one of the active ones

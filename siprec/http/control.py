"""Pause, resume and status routes: operators control recording and transcription per call.

``POST /api/pause/{id}`` and ``POST /api/resume/{id}`` take an optional JSON
body ``{"recording": true, "transcription": true}`` (both default to true;
false leaves that part alone); ``/api/pause/all`` and ``/api/resume/all`` do
the same to every active call. The session does the work (silence on the
timeline while paused, intervals in its record); these routes only find the
sessions, call ``session.pause(recording=, transcription=)`` /
``session.resume(...)`` and report the state, read by :func:`pause_state`.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from siprec.http.errors import ApiError, not_found, write_json
from siprec.http.routing import Access, endpoint, principal_of
from siprec.recording.state import SessionState
from siprec.timefmt import iso_time

__all__ = ["ControlRoutes", "pause_state", "parse_scope", "find_session", "FINAL_STATES",
           "MAX_SESSION_ID"]

log = Logger()

FINAL_STATES = frozenset(state for state in SessionState if state.final)
CLOSING_STATES = frozenset(state for state in SessionState if state.closing)
MAX_SESSION_ID = 512


def find_session(manager: Any, session_id: str) -> Any:
    """The session by id or Call-ID, or a 404 (ids past MAX_SESSION_ID are never looked up)."""
    session = None
    if 0 < len(session_id) <= MAX_SESSION_ID:
        session = manager.get(session_id)
    if session is None:
        raise not_found("session not found")
    return session
TAG = "Pause and resume"

_CONTROL_RESPONSES = {
    400: "invalid body (not an object, unknown field, non-boolean, nothing selected)",
    401: "no or invalid credentials", 403: "role lacks the control permission",
    404: "no such session", 409: "the session has ended",
}
_ALL_RESPONSES = {400: "invalid body", 401: "no or invalid credentials",
                  403: "role lacks the control permission"}


def parse_scope(request: IRequest) -> Tuple[bool, bool]:
    """(recording, transcription) from the optional JSON body; ApiError(400) otherwise."""
    request.content.seek(0)
    raw = request.content.read()
    request.content.seek(0)
    if not raw.strip():
        return True, True
    body = json.loads(raw.decode("utf-8"))  # check_request has proven it is JSON
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    unknown = set(body) - {"recording", "transcription"}
    if unknown:
        raise ApiError(400, "bad_request",
                       f"unknown field '{sorted(unknown)[0][:40]}' (use recording, transcription)")
    scope = []
    for name in ("recording", "transcription"):
        value = body.get(name, True)
        if not isinstance(value, bool):
            raise ApiError(400, "bad_request", f"'{name}' must be true or false")
        scope.append(value)
    if not any(scope):
        raise ApiError(400, "bad_request", "nothing selected: recording and transcription are false")
    return scope[0], scope[1]


def pause_state(session: Any) -> Dict[str, Any]:
    """What is paused on `session` and since when, for the status answer.

    Reads ``recording_paused`` / ``transcription_paused`` (``api_paused``
    stands for the former on sessions that only pause recording) and the
    ``pauses`` intervals (floats in seconds, shown as ISO times).
    """
    recording = bool(getattr(session, "recording_paused", getattr(session, "api_paused", False)))
    transcription = bool(getattr(session, "transcription_paused", False))
    pauses = []
    for pause in list(getattr(session, "pauses", []) or [])[-200:]:
        if not isinstance(pause, dict):
            continue
        entry = {key: value for key, value in pause.items()
                 if isinstance(value, (str, int, float, bool, list)) or value is None}
        for key in ("start", "end"):
            value = pause.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                entry[key] = iso_time(value)
        pauses.append(entry)
    return {"id": session.id, "call_id": session.call_id, "state": str(session.state),
            "paused": recording or transcription, "recording_paused": recording,
            "transcription_paused": transcription, "pauses": pauses}


class ControlRoutes:
    """Mixed into SiprecApi (which provides manager, auth, clock, _observe)."""

    manager: Any

    @endpoint("/api/pause/all", "POST", access=Access.CONTROL, tag=TAG,
              summary="Pause every active call", responses=_ALL_RESPONSES,
              response_schema="BulkControlResult", body_schema="PauseScope")
    def pause_all(self, request: IRequest) -> bytes:
        return self._bulk(request, "pause")

    @endpoint("/api/resume/all", "POST", access=Access.CONTROL, tag=TAG,
              summary="Resume every active call", responses=_ALL_RESPONSES,
              response_schema="BulkControlResult", body_schema="PauseScope")
    def resume_all(self, request: IRequest) -> bytes:
        return self._bulk(request, "resume")

    @endpoint("/api/pause/<path:session_id>", "POST", access=Access.CONTROL, tag=TAG,
              summary="Pause recording and/or transcription of one call",
              responses=_CONTROL_RESPONSES, response_schema="PauseStatus",
              body_schema="PauseScope")
    def pause_session(self, request: IRequest, session_id: str) -> bytes:
        return self._control(request, session_id, "pause")

    @endpoint("/api/resume/<path:session_id>", "POST", access=Access.CONTROL, tag=TAG,
              summary="Resume recording and/or transcription of one call",
              responses=_CONTROL_RESPONSES, response_schema="PauseStatus",
              body_schema="PauseScope")
    def resume_session(self, request: IRequest, session_id: str) -> bytes:
        return self._control(request, session_id, "resume")

    @endpoint("/api/status/<path:session_id>", "GET", access=Access.READ, tag=TAG,
              summary="What is paused on one call, with its pause intervals",
              responses={401: "no or invalid credentials", 403: "role lacks read",
                         404: "no such session"},
              response_schema="PauseStatus")
    def session_status(self, request: IRequest, session_id: str) -> bytes:
        return write_json(request, 200, pause_state(self._lookup(session_id)))

    # -- helpers -----------------------------------------------------------------------
    def _lookup(self, session_id: str) -> Any:
        return find_session(self.manager, session_id)

    def _control(self, request: IRequest, session_id: str, action: str) -> bytes:
        recording, transcription = parse_scope(request)
        session = self._lookup(session_id)
        if session.state in CLOSING_STATES:
            raise ApiError(409, "conflict", "the session has ended")
        getattr(session, action)(recording=recording, transcription=transcription)
        self._audit(request, action, [session.id], recording, transcription)
        return write_json(request, 200, pause_state(session))

    def _bulk(self, request: IRequest, action: str) -> bytes:
        recording, transcription = parse_scope(request)
        done: List[str] = []
        failed: List[Dict[str, str]] = []
        for session in list(self.manager.sessions()):
            if session.state in CLOSING_STATES or session.state == SessionState.SETUP:
                continue
            try:
                getattr(session, action)(recording=recording, transcription=transcription)
            except Exception:
                log.failure("{action} of session {id} failed", action=action, id=session.id)
                failed.append({"id": session.id, "call_id": session.call_id})
            else:
                done.append(session.id)
        self._audit(request, action, done, recording, transcription)
        return write_json(request, 200, {
            "action": action, "recording": recording, "transcription": transcription,
            "count": len(done), "sessions": done, "failed": failed})

    @staticmethod
    def _audit(request: IRequest, action: str, ids: List[str], recording: bool,
               transcription: bool) -> None:
        principal = principal_of(request)
        who: Optional[str] = principal.subject if principal is not None else "anonymous"
        scope = "+".join(n for n, on in (("recording", recording),
                                          ("transcription", transcription)) if on)
        log.info("API {action} ({scope}) of {count} session(s) by {who}: {ids}",
                 action=action, scope=scope, count=len(ids), who=who,
                 ids=", ".join(ids[:20]) + (" ..." if len(ids) > 20 else ""))

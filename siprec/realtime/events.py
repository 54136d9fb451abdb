"""The real-time event schema ``siprec.event/1``: one JSON shape for every consumer.

WebSocket clients, AMQP consumers and analytics all receive the same
document (documented with examples in docs/realtime-transcription.md)::

    {"schema": "siprec.event/1", "type": "transcript.final", "id": "...",
     "seq": 42, "time": "2026-11-28T10:00:03.250Z", "session_id": "...",
     "call_id": "...", "leg": "leg0", "participant": {...}, "data": {...}}

Events are frozen values built by the constructors below (one per event
type), validated when built so a bad event fails where it is made, not in a
consumer. ``seq`` and ``time`` are stamped by the EventBus when published, so
constructors stay pure and need no clock.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Optional, Sequence

from siprec.timefmt import iso_time

__all__ = [
    "SCHEMA", "EVENT_TYPES", "ANALYTICS_TYPES", "Event", "EventError", "CallRef",
    "call_started", "call_updated", "call_ended", "stream_started", "stream_stopped",
    "transcript_partial", "transcript_final", "dtmf", "recording_paused",
    "recording_resumed", "quality_snapshot", "analytics_snapshot", "iso_time",
]

SCHEMA = "siprec.event/1"

CALL_STARTED = "call.started"
CALL_UPDATED = "call.updated"
CALL_ENDED = "call.ended"
STREAM_STARTED = "stream.started"
STREAM_STOPPED = "stream.stopped"
TRANSCRIPT_PARTIAL = "transcript.partial"
TRANSCRIPT_FINAL = "transcript.final"
DTMF = "dtmf"
RECORDING_PAUSED = "recording.paused"
RECORDING_RESUMED = "recording.resumed"
QUALITY_SNAPSHOT = "quality.snapshot"
ANALYTICS_SNAPSHOT = "analytics.snapshot"

EVENT_TYPES = frozenset({
    CALL_STARTED, CALL_UPDATED, CALL_ENDED, STREAM_STARTED, STREAM_STOPPED,
    TRANSCRIPT_PARTIAL, TRANSCRIPT_FINAL, DTMF, RECORDING_PAUSED, RECORDING_RESUMED,
    QUALITY_SNAPSHOT, ANALYTICS_SNAPSHOT,
})
ANALYTICS_TYPES = frozenset({ANALYTICS_SNAPSHOT})

PAUSE_SCOPES = ("recording", "transcription")
DTMF_DIGITS = frozenset("0123456789*#ABCD")

MAX_ID = 512            # session ids and Call-IDs longer than this are refused
MAX_LABEL = 256
MAX_TEXT = 64 * 1024    # characters of one transcript segment
MAX_EVENT = 1024 * 1024  # bytes of one encoded event (from_json)
MAX_DEPTH = 8           # nesting of data values
MAX_ITEMS = 10_000      # entries of one list or object inside data


class EventError(ValueError):
    """An event cannot be built or parsed; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class CallRef:
    """Which call an event is about: our session id and the SIP Call-ID."""

    session_id: str
    call_id: str

    def __post_init__(self) -> None:
        _check_id("session_id", self.session_id)
        _check_id("call_id", self.call_id)

    @classmethod
    def of(cls, call: Any) -> "CallRef":
        """A CallRef from a CallRef, a session summary dict or a session object."""
        if isinstance(call, CallRef):
            return call
        if isinstance(call, Mapping):
            session_id = call.get("session_id", call.get("id"))
            return cls(_fit(session_id, MAX_ID, "session id"),
                       _fit(call.get("call_id"), MAX_ID, "call_id"))
        session_id = getattr(call, "id", None)
        call_id = getattr(call, "call_id", None)
        if session_id is None and call_id is None:
            raise EventError(f"cannot tell which call {type(call).__name__} is")
        return cls(_fit(session_id, MAX_ID, "session id"), _fit(call_id, MAX_ID, "call_id"))


@dataclass(frozen=True, slots=True)
class Event:
    """One event. ``seq`` 0 and ``time`` None mean "not published yet"."""

    type: str
    session_id: str
    call_id: str
    data: Mapping[str, Any]
    leg: Optional[str] = None
    participant: Optional[Mapping[str, str]] = None
    id: str = ""
    seq: int = 0
    time: Optional[float] = None

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise EventError(f"unknown event type {_shown(self.type)}")
        _check_id("session_id", self.session_id)
        _check_id("call_id", self.call_id)
        if self.leg is not None:
            _check_text("leg", self.leg, MAX_LABEL)
        if not isinstance(self.data, Mapping):
            raise EventError("data must be an object")
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) or self.seq < 0:
            raise EventError("seq must be a non-negative integer")
        if self.time is not None and not _finite(self.time):
            raise EventError("time must be a finite number of seconds")
        if not self.id:
            object.__setattr__(self, "id", uuid.uuid4().hex)
        else:
            _check_text("id", self.id, 64)

    def __hash__(self) -> int:
        return hash(self.id)  # data is a dict; the id identifies the event

    @property
    def is_analytics(self) -> bool:
        return self.type in ANALYTICS_TYPES

    def stamped(self, seq: int, time: float) -> "Event":
        """This event as published: with its bus sequence number and time."""
        return replace(self, seq=seq, time=time)

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "type": self.type,
            "id": self.id,
            "seq": self.seq,
            "time": iso_time(self.time),
            "session_id": self.session_id,
            "call_id": self.call_id,
            "leg": self.leg,
            "participant": dict(self.participant) if self.participant else None,
            "data": _plain(self.data, "data"),
        }

    def to_json(self) -> bytes:
        """Strict compact JSON (no NaN), UTF-8; what every transport sends."""
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> "Event":
        """Parse an encoded event (consumers, tests); raises EventError on anything else."""
        if not isinstance(raw, (bytes, bytearray)):
            raise EventError("an event is UTF-8 JSON bytes")
        if len(raw) > MAX_EVENT:
            raise EventError(f"event over {MAX_EVENT} bytes")
        try:
            doc = json.loads(bytes(raw).decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise EventError(f"not JSON: {_reason(err)}") from None
        if not isinstance(doc, dict):
            raise EventError("an event is a JSON object")
        if doc.get("schema") != SCHEMA:
            raise EventError(f"schema is {_shown(doc.get('schema'))}, not {SCHEMA!r}")
        missing = {"type", "id", "seq", "time", "session_id", "call_id", "data"} - set(doc)
        if missing:
            raise EventError(f"missing field(s): {', '.join(sorted(missing))}")
        participant = doc.get("participant")
        if participant is not None and not isinstance(participant, dict):
            raise EventError("participant must be an object or null")
        return cls(type=doc["type"], session_id=doc["session_id"], call_id=doc["call_id"],
                   data=_clean(doc["data"], "data"), leg=doc.get("leg"),
                   participant=_participant(participant), id=_str_or_error("id", doc["id"]),
                   seq=doc["seq"], time=_parse_time(doc["time"]))


# -- constructors: one per event type --------------------------------------------------

def call_started(call: Any, *, at: Optional[float] = None) -> Event:
    """A recording session became active. ``call`` is normally ``session.summary()``."""
    summary = _summary(call)
    return _event(CALL_STARTED, call, {
        "state": summary.get("state", "active"),
        "started_at": summary.get("started_at"),
        "group_id": summary.get("group_id"),
        "participants": summary.get("participants", []),
        "streams": [_stream_brief(s) for s in summary.get("streams", [])],
    }, at=at)


def call_updated(call: Any, *, reason: str, at: Optional[float] = None) -> Event:
    """Metadata, participants or streams of a call changed (``reason`` says which)."""
    _check_text("reason", reason, 64)
    summary = _summary(call)
    return _event(CALL_UPDATED, call, {
        "reason": reason,
        "state": summary.get("state"),
        "group_id": summary.get("group_id"),
        "participants": summary.get("participants", []),
        "streams": [_stream_brief(s) for s in summary.get("streams", [])],
    }, at=at)


def call_ended(call: Any, *, reason: Optional[str] = None, at: Optional[float] = None) -> Event:
    """A session ended and its files are final; ``reason`` defaults to its end_reason."""
    summary = _summary(call)
    reason = reason if reason is not None else summary.get("end_reason") or "unknown"
    _check_text("reason", reason, 64)
    return _event(CALL_ENDED, call, {
        "reason": reason,
        "started_at": summary.get("started_at"),
        "ended_at": summary.get("ended_at"),
        "duration_seconds": summary.get("duration_seconds"),
        "files": summary.get("files"),
        "streams": [_stream_brief(s) for s in summary.get("streams", [])],
    }, at=at)


def stream_started(call: Any, stream: Mapping[str, Any], *, at: Optional[float] = None) -> Event:
    """A leg began receiving; ``stream`` is one entry of ``summary()["streams"]``."""
    brief = _stream_brief(stream)
    return _event(STREAM_STARTED, call, brief, leg=brief["label"],
                  participant=stream.get("participant"), at=at)


def stream_stopped(call: Any, stream: Mapping[str, Any], *, reason: str,
                   at: Optional[float] = None) -> Event:
    """A leg stopped (removed, call ended, timed out) with its final counters."""
    _check_text("reason", reason, 64)
    brief = _stream_brief(stream)
    brief.update({"reason": reason, "packets": _count(stream.get("packets")),
                  "bytes": _count(stream.get("bytes"))})
    return _event(STREAM_STOPPED, call, brief, leg=brief["label"],
                  participant=stream.get("participant"), at=at)


def transcript_partial(call: Any, *, leg: Optional[str], text: str, start: float, end: float,
                       segment_id: str, participant: Optional[Mapping[str, Any]] = None,
                       confidence: Optional[float] = None, language: Optional[str] = None,
                       provider: Optional[str] = None, at: Optional[float] = None) -> Event:
    """An interim hypothesis; a later partial or final with the same segment_id replaces it."""
    return _transcript(TRANSCRIPT_PARTIAL, call, leg, text, start, end, segment_id,
                       participant, confidence, language, provider, (), at)


def transcript_final(call: Any, *, leg: Optional[str], text: str, start: float, end: float,
                     segment_id: str, participant: Optional[Mapping[str, Any]] = None,
                     confidence: Optional[float] = None, language: Optional[str] = None,
                     provider: Optional[str] = None,
                     words: Sequence[Mapping[str, Any]] = (),
                     at: Optional[float] = None) -> Event:
    """The settled text of a segment; ``start``/``end`` are seconds from the call's start."""
    return _transcript(TRANSCRIPT_FINAL, call, leg, text, start, end, segment_id,
                       participant, confidence, language, provider, words, at)


def dtmf(call: Any, *, leg: Optional[str], digit: str, start: float,
         duration_ms: Optional[int] = None, source: str = "rfc4733",
         participant: Optional[Mapping[str, Any]] = None, at: Optional[float] = None) -> Event:
    """A DTMF digit seen on a leg (RFC 4733 telephone-event, SIP INFO or in-band)."""
    if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS or len(digit) != 1:
        raise EventError(f"digit {_shown(digit)} is not one of 0-9 * # A-D")
    if source not in ("rfc4733", "info", "inband"):
        raise EventError(f"source {_shown(source)} is not rfc4733, info or inband")
    if duration_ms is not None:
        duration_ms = _count(duration_ms, "duration_ms")
    return _event(DTMF, call, {"digit": digit.upper(), "start": _seconds("start", start),
                               "duration_ms": duration_ms, "source": source},
                  leg=leg, participant=participant, at=at)


def recording_paused(call: Any, *, recording: bool = True, transcription: bool = True,
                     reason: str = "api", leg: Optional[str] = None,
                     at: Optional[float] = None) -> Event:
    """Recording and/or transcription paused (API, SRC a=inactive, hold); leg None = all."""
    return _event(RECORDING_PAUSED, call, _pause_data(recording, transcription, reason),
                  leg=leg, at=at)


def recording_resumed(call: Any, *, recording: bool = True, transcription: bool = True,
                      reason: str = "api", leg: Optional[str] = None,
                      paused_seconds: Optional[float] = None,
                      at: Optional[float] = None) -> Event:
    """The matching resume; ``paused_seconds`` is the length of the pause just ended."""
    data = _pause_data(recording, transcription, reason)
    data["paused_seconds"] = None if paused_seconds is None else _seconds("paused_seconds",
                                                                          paused_seconds)
    return _event(RECORDING_RESUMED, call, data, leg=leg, at=at)


def quality_snapshot(call: Any, *, leg: str, stats: Mapping[str, Any],
                     participant: Optional[Mapping[str, Any]] = None,
                     at: Optional[float] = None) -> Event:
    """Receive quality of one leg so far: packets, loss, jitter, MOS (what the media reports)."""
    _check_text("leg", leg, MAX_LABEL)
    data = _clean(dict(stats), "stats")
    return _event(QUALITY_SNAPSHOT, call, data, leg=leg, participant=participant, at=at)


def analytics_snapshot(call: Any, *, leg: Optional[str] = None,
                       sentiment: Optional[Mapping[str, Any]] = None,
                       keywords: Sequence[Mapping[str, Any]] = (),
                       compliance: Sequence[Mapping[str, Any]] = (),
                       extra: Optional[Mapping[str, Any]] = None,
                       at: Optional[float] = None) -> Event:
    """Analytics so far (sentiment, keyword hits, compliance flags); streamed on /ws/analytics."""
    data = {"sentiment": _clean(sentiment, "sentiment") if sentiment is not None else None,
            "keywords": _clean(list(keywords), "keywords"),
            "compliance": _clean(list(compliance), "compliance")}
    if extra:
        for key, value in extra.items():
            if key in data:
                raise EventError(f"extra field {key!r} would replace a standard one")
            data[key] = _clean(value, f"extra.{key}")
    return _event(ANALYTICS_SNAPSHOT, call, data, leg=leg, at=at)


# -- helpers ------------------------------------------------------------------------------

def _parse_time(value: Any) -> Optional[float]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.endswith("Z") or len(value) > 40:
        raise EventError(f"time {_shown(value)} is not an ISO 8601 UTC timestamp")
    try:
        moment = datetime.strptime(value[:-1], "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        raise EventError(f"time {_shown(value)} is not an ISO 8601 UTC timestamp") from None
    return moment.replace(tzinfo=timezone.utc).timestamp()


def _fit(value: Any, limit: int, name: str = "value") -> str:
    """What an SRC sent (a label, a name, a Call-ID) fitted into the schema's bounds.

    Building an event from a live call never fails on odd text: too long is
    cut (with a digest of the whole, so distinct values stay distinct) and
    empty becomes "-". A value that is not text at all is our own bug and
    still raises; parsing received events stays strict.
    """
    if not isinstance(value, str):
        raise EventError(f"{name} must be a string, not {type(value).__name__}")
    text = value
    if not text:
        return "-"
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{text[:limit - 13]}~{digest}"


def _event(type_: str, call: Any, data: Mapping[str, Any], *, leg: Optional[str] = None,
           participant: Optional[Mapping[str, Any]] = None,
           at: Optional[float] = None) -> Event:
    ref = CallRef.of(call)
    if leg is not None:
        leg = _fit(leg, MAX_LABEL, "leg")
    if at is not None and not _finite(at):
        raise EventError("at must be a finite number of seconds")
    return Event(type=type_, session_id=ref.session_id, call_id=ref.call_id,
                 data=_clean(data, "data"), leg=leg, participant=_participant(participant),
                 time=at)


def _transcript(type_: str, call: Any, leg: Optional[str], text: str, start: float, end: float,
                segment_id: str, participant: Optional[Mapping[str, Any]],
                confidence: Optional[float], language: Optional[str], provider: Optional[str],
                words: Iterable[Mapping[str, Any]], at: Optional[float]) -> Event:
    if not isinstance(text, str):
        raise EventError(f"text must be a string, not {type(text).__name__}")
    text = text[:MAX_TEXT]
    segment_id = _fit(segment_id, 128, "segment_id")
    start, end = _seconds("start", start), _seconds("end", end)
    if end < start:
        raise EventError(f"end {end} is before start {start}")
    if confidence is not None:
        confidence = _ratio("confidence", confidence)
    for name, value in (("language", language), ("provider", provider)):
        if value is not None:
            _check_text(name, value, 64)
    data: dict = {"text": text, "start": start, "end": end, "segment_id": segment_id,
                  "confidence": confidence, "language": language, "provider": provider}
    if type_ == TRANSCRIPT_FINAL:
        data["words"] = [_word(w) for w in words]
    return _event(type_, call, data, leg=leg, participant=participant, at=at)


def _word(word: Mapping[str, Any]) -> dict:
    if not isinstance(word, Mapping):
        raise EventError("each word is an object with word, start, end")
    text = word.get("word")
    _check_text("word", text, 256)
    out = {"word": text, "start": _seconds("word start", word.get("start")),
           "end": _seconds("word end", word.get("end"))}
    if word.get("confidence") is not None:
        out["confidence"] = _ratio("word confidence", word["confidence"])
    return out


def _pause_data(recording: bool, transcription: bool, reason: str) -> dict:
    if not isinstance(recording, bool) or not isinstance(transcription, bool):
        raise EventError("recording and transcription are booleans")
    if not (recording or transcription):
        raise EventError("a pause covers recording, transcription or both")
    _check_text("reason", reason, 64)
    scope = [name for name, on in zip(PAUSE_SCOPES, (recording, transcription)) if on]
    return {"scope": scope, "reason": reason}


def _summary(call: Any) -> Mapping[str, Any]:
    return call if isinstance(call, Mapping) else {}


def _stream_brief(stream: Any) -> dict:
    if not isinstance(stream, Mapping):
        raise EventError("a stream is an object (an entry of summary()['streams'])")
    label = _fit(stream.get("label"), MAX_LABEL, "stream label")
    return {"label": label, "codec": stream.get("codec"), "direction": stream.get("direction"),
            "channel": stream.get("channel"), "state": stream.get("state"),
            "participant": _participant(stream.get("participant"))}


def _participant(value: Optional[Mapping[str, Any]]) -> Optional[dict]:
    """Keep the identifying fields of a participant, as short strings."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise EventError("participant must be an object")
    out = {}
    for key in ("id", "aor", "name"):
        item = value.get(key, value.get("participant_id") if key == "id" else None)
        if item is not None:
            out[key] = item if isinstance(item, str) and len(item) <= 1024 else \
                _fit(item, 1024, f"participant {key}")
    return out


def _check_id(name: str, value: Any) -> None:
    _check_text(name, value, MAX_ID)


def _check_text(name: str, value: Any, limit: int, empty_ok: bool = False) -> None:
    if not isinstance(value, str):
        raise EventError(f"{name} must be a string, not {type(value).__name__}")
    if not value and not empty_ok:
        raise EventError(f"{name} is empty")
    if len(value) > limit:
        raise EventError(f"{name} is over {limit} characters")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(name: str, value: Any) -> float:
    if not _finite(value) or value < 0:
        raise EventError(f"{name} must be a non-negative number of seconds")
    return float(value)


def _ratio(name: str, value: Any) -> float:
    if not _finite(value) or not 0.0 <= value <= 1.0:
        raise EventError(f"{name} must be a number from 0 to 1")
    return float(value)


def _count(value: Any, name: str = "count") -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EventError(f"{name} must be a non-negative integer")
    return value


def _clean(value: Any, where: str, depth: int = 0) -> Any:
    """A JSON-ready copy: finite numbers (NaN/inf become null), str keys, bounded size."""
    if depth > MAX_DEPTH:
        raise EventError(f"{where} is nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        if len(value) > MAX_ITEMS:
            raise EventError(f"{where} has over {MAX_ITEMS} entries")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EventError(f"{where} has a key that is not a string")
            out[key] = _clean(item, f"{where}.{key}", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise EventError(f"{where} has over {MAX_ITEMS} entries")
        return [_clean(item, f"{where}[]", depth + 1) for item in value]
    raise EventError(f"{where} holds a {type(value).__name__}, which JSON cannot carry")


_plain = _clean


def _str_or_error(name: str, value: Any) -> str:
    _check_text(name, value, 64)
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _reason(err: Exception) -> str:
    return str(err).splitlines()[0][:120] if str(err) else type(err).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

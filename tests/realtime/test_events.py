"""Tests for siprec.realtime.events: every constructor, the JSON form, hostile input."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from siprec.realtime import events
from siprec.realtime.events import EVENT_TYPES, SCHEMA, CallRef, Event, EventError

SUMMARY = {
    "id": "4f0c9a", "call_id": "a84b4c76e66710@src.example", "state": "active",
    "started_at": "2026-11-28T10:00:00.000Z", "ended_at": None, "end_reason": None,
    "group_id": "grp-1",
    "participants": [{"participant_id": "p-0", "aor": "sip:alice@example.com", "name": "Alice"}],
    "streams": [{"label": "leg0", "codec": "PCMU/8000", "direction": "sendonly", "channel": 0,
                 "state": "active", "packets": 10, "bytes": 1720, "port": 10000,
                 "participant": {"id": "p-0", "aor": "sip:alice@example.com", "name": "Alice"}}],
}
STREAM = SUMMARY["streams"][0]
FIELDS = {"schema", "type", "id", "seq", "time", "session_id", "call_id", "leg", "participant",
          "data"}


def every_event() -> list:
    """One event of each type, as the manager and the STT/analytics parts would make them."""
    ended = {**SUMMARY, "state": "ended", "end_reason": "bye",
             "ended_at": "2026-11-28T10:05:00.000Z"}
    return [
        events.call_started(SUMMARY),
        events.call_updated(SUMMARY, reason="metadata"),
        events.call_ended(ended),
        events.stream_started(SUMMARY, STREAM),
        events.stream_stopped(SUMMARY, STREAM, reason="bye"),
        events.transcript_partial(SUMMARY, leg="leg0", text="I'd like to", start=1.0, end=1.8,
                                  segment_id="leg0-1", confidence=0.6, language="en-US"),
        events.transcript_final(SUMMARY, leg="leg0", text="I'd like to cancel", start=1.0,
                                end=2.4, segment_id="leg0-1", confidence=0.93,
                                provider="offline",
                                words=[{"word": "cancel", "start": 2.0, "end": 2.4,
                                        "confidence": 0.9}],
                                participant=STREAM["participant"]),
        events.dtmf(SUMMARY, leg="leg0", digit="5", start=12.5, duration_ms=160),
        events.recording_paused(SUMMARY, transcription=False),
        events.recording_resumed(SUMMARY, paused_seconds=12.0),
        events.quality_snapshot(SUMMARY, leg="leg0", stats={"packets": 500, "lost": 2,
                                                            "jitter_ms": 3.2, "mos": 4.3}),
        events.analytics_snapshot(SUMMARY, sentiment={"score": -0.4, "label": "negative"},
                                  keywords=[{"keyword": "cancel", "count": 1}]),
    ]


class ConstructorTests(SynchronousTestCase):
    def test_one_constructor_per_type(self):
        made = every_event()
        self.assertEqual({e.type for e in made}, set(EVENT_TYPES))

    def test_common_fields(self):
        for event in every_event():
            doc = event.to_dict()
            self.assertEqual(set(doc), FIELDS, event.type)
            self.assertEqual(doc["schema"], SCHEMA)
            self.assertEqual((doc["session_id"], doc["call_id"]),
                             ("4f0c9a", "a84b4c76e66710@src.example"))
            self.assertRegex(doc["id"], r"^[0-9a-f]{32}$")
            self.assertIsNone(doc["time"])  # stamped by the bus

    def test_distinct_ids(self):
        self.assertNotEqual(events.call_started(SUMMARY).id, events.call_started(SUMMARY).id)

    def test_leg_and_participant(self):
        started = events.stream_started(SUMMARY, STREAM)
        self.assertEqual(started.leg, "leg0")
        self.assertEqual(started.participant, {"id": "p-0", "aor": "sip:alice@example.com",
                                               "name": "Alice"})
        self.assertIsNone(events.call_started(SUMMARY).leg)

    def test_call_ref_forms(self):
        class Session:
            id, call_id = "s", "c@h"
        for call in (CallRef("s", "c@h"), {"id": "s", "call_id": "c@h"},
                     {"session_id": "s", "call_id": "c@h"}, Session()):
            event = events.dtmf(call, leg=None, digit="#", start=0)
            self.assertEqual((event.session_id, event.call_id), ("s", "c@h"))

    def test_pause_scope(self):
        self.assertEqual(events.recording_paused(SUMMARY).data["scope"],
                         ["recording", "transcription"])
        self.assertEqual(events.recording_paused(SUMMARY, recording=False).data["scope"],
                         ["transcription"])
        self.assertRaises(EventError, events.recording_paused, SUMMARY, recording=False,
                          transcription=False)

    def test_call_ended_reason(self):
        ended = events.call_ended({**SUMMARY, "end_reason": "rtp-timeout"})
        self.assertEqual(ended.data["reason"], "rtp-timeout")
        self.assertEqual(events.call_ended(SUMMARY).data["reason"], "unknown")

    def test_non_finite_stats_become_null(self):
        event = events.quality_snapshot(SUMMARY, leg="leg0",
                                        stats={"jitter_ms": math.nan, "mos": math.inf, "n": 1})
        self.assertEqual(event.data, {"jitter_ms": None, "mos": None, "n": 1})
        json.loads(event.to_json())  # strict JSON


class ValidationTests(SynchronousTestCase):
    def test_rejections(self):
        cases = [
            lambda: Event(type="call.exploded", session_id="s", call_id="c", data={}),
            lambda: Event(type="dtmf", session_id="", call_id="c", data={}),
            lambda: Event(type="dtmf", session_id="s", call_id="c" * 513, data={}),  # parsing is strict
            lambda: Event(type="dtmf", session_id="s", call_id="c", data=[]),
            lambda: Event(type="dtmf", session_id="s", call_id="c", data={}, seq=-1),
            lambda: Event(type="dtmf", session_id="s", call_id="c", data={}, time=math.nan),
            lambda: events.dtmf(SUMMARY, leg="l", digit="55", start=0),
            lambda: events.dtmf(SUMMARY, leg="l", digit="x", start=0),
            lambda: events.dtmf(SUMMARY, leg="l", digit="5", start=-1),
            lambda: events.dtmf(SUMMARY, leg="l", digit="5", start=0, source="fax"),
            lambda: events.transcript_final(SUMMARY, leg="l", text="t", start=2, end=1,
                                            segment_id="s"),
            lambda: events.transcript_final(SUMMARY, leg="l", text="t", start=0, end=1,
                                            segment_id="s", confidence=1.5),
            lambda: events.transcript_final(SUMMARY, leg="l", text="t", start=0, end=1,
                                            segment_id="s", words=[{"word": "x"}]),
            lambda: events.transcript_partial(SUMMARY, leg="l", text=None, start=0, end=1,
                                              segment_id="s"),
            lambda: events.call_started({"id": "s"}),
            lambda: events.call_started(object()),
            lambda: events.stream_started(SUMMARY, {"codec": "PCMU"}),
            lambda: events.quality_snapshot(SUMMARY, leg="l", stats={1: 2}),
            lambda: events.quality_snapshot(SUMMARY, leg="l", stats={"x": object()}),
            lambda: events.analytics_snapshot(SUMMARY, extra={"keywords": []}),
            lambda: events.analytics_snapshot(SUMMARY, sentiment=_deep(20)),
        ]
        for make in cases:
            self.assertRaises(EventError, make)


def _deep(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


class JsonTests(SynchronousTestCase):
    def test_round_trip(self):
        for i, event in enumerate(every_event(), 1):
            stamped = event.stamped(i, 1_764_324_003.25)
            raw = stamped.to_json()
            self.assertEqual(json.loads(raw)["time"], "2025-11-28T10:00:03.250Z")
            back = Event.from_json(raw)
            self.assertEqual(back.to_dict(), stamped.to_dict())

    def test_hostile_input(self):
        good = json.loads(events.call_started(SUMMARY).stamped(1, 0).to_json())
        cases = [b"", b"\xff", b"[]", b"null", b"{", b"[" * 10_000 + b"]" * 10_000, b"NaN",
                 b"x" * (events.MAX_EVENT + 1), "text".encode(),
                 json.dumps({**good, "schema": "siprec.event/2"}).encode(),
                 json.dumps({k: v for k, v in good.items() if k != "data"}).encode(),
                 json.dumps({**good, "time": "yesterday"}).encode(),
                 json.dumps({**good, "seq": "1"}).encode(),
                 json.dumps({**good, "participant": []}).encode(),
                 json.dumps({**good, "data": {"x": float("nan")}}).encode()]
        for raw in cases:
            self.assertRaises(EventError, Event.from_json, raw)
        self.assertRaises(EventError, Event.from_json, "not bytes")

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300))
    def test_garbage_is_event_error(self, raw):
        try:
            Event.from_json(raw)
        except EventError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                        lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                        max_leaves=30))
    def test_any_json_value_in_data(self, value):
        """Any JSON-like value builds (or raises EventError) and always encodes strictly."""
        try:
            event = events.analytics_snapshot(SUMMARY, extra={"value": value})
        except EventError:
            return
        Event.from_json(event.stamped(1, 0).to_json())


class FittingTests(SynchronousTestCase):
    """What an SRC sends never stops an event from being built: odd text is fitted."""

    def test_long_and_empty_values_are_fitted(self):
        long_call = {"id": "s1", "call_id": "c" * 2000, "state": "active", "streams": []}
        event = events.stream_started(long_call, {"label": "l" * 1000, "codec": "PCMU/8000",
                                                  "participant": {"aor": "a" * 5000, "name": ""}})
        self.assertLessEqual(len(event.call_id), events.MAX_ID)
        self.assertLessEqual(len(event.data["label"]), events.MAX_LABEL)
        self.assertLessEqual(len(event.data["participant"]["aor"]), 1024)
        other = events.stream_started(long_call, {"label": "l" * 999 + "x"})
        self.assertNotEqual(other.data["label"], event.data["label"])
        final = events.transcript_final(long_call, leg="", text="t" * 70_000, start=0, end=1,
                                        segment_id="s" * 500)
        self.assertEqual((final.leg, len(final.data["text"])), ("-", events.MAX_TEXT))
        self.assertEqual(Event.from_json(final.to_json()).call_id, final.call_id)

"""Tests for the analysis path of a recording session: live transcription fed
from media events, and recording that never waits for it."""

from __future__ import annotations

import json
import os
from typing import List, Optional

import numpy as np
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.events import AudioDecoded
from siprec.stt.base import TranscriptResult
from tests.recording.test_session import START, Harness, M, offer, two_legs, two_party_metadata


class FakeLeg:
    """A LegTranscriber: feed(), close() (the test decides when it finishes), status()."""

    def __init__(self, call_id: str, label: str, sample_rate: int, participant) -> None:
        self.call_id = call_id
        self.label = label
        self.sample_rate = sample_rate
        self.participant = participant
        self.fed: List[tuple] = []
        self.state = "live"
        self.closing: Optional[Deferred] = None

    def feed(self, pcm, sample_rate, offset) -> None:
        self.fed.append((len(pcm), sample_rate, offset))

    def close(self) -> Deferred:
        if self.closing is None:
            self.closing = Deferred()
        return self.closing

    def status(self) -> dict:
        return {"state": self.state, "leg": self.label}


class FakeRouter:
    def __init__(self) -> None:
        self.legs: List[FakeLeg] = []
        self.fail = False

    def open_leg(self, call_id, label, participant=None, language=None, sample_rate=8000):
        if self.fail:
            raise RuntimeError("engine not loaded")
        leg = FakeLeg(call_id, label, sample_rate, participant)
        self.legs.append(leg)
        return leg


class FakeTranscription:
    def __init__(self) -> None:
        self.router = FakeRouter()


def result(call_id: str, leg: str, text: str, start: float, final: bool = True):
    return TranscriptResult(call_id=call_id, leg=leg, participant=None, text=text,
                            is_final=final, start=start, end=start + 1.0, confidence=0.9,
                            language="en", provider="offline")


def read_json(path: str) -> dict:
    with open(path, "rb") as f:
        return json.loads(f.read())


class FeedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stt = FakeTranscription()
        self.h = Harness(self, transcription=self.stt)
        self.session, _ = self.h.call(two_legs(), two_party_metadata())
        self.legs = {leg.label: leg for leg in self.stt.router.legs}

    def audio(self, label: str, frames: int = 160, offset: int = 0) -> None:
        stream = next(s for s in self.h.media.opened if s.spec.label == label)
        stream.emit(AudioDecoded(label, np.zeros(frames, dtype=np.int16), 8000, offset))

    def test_each_leg_is_transcribed_with_its_participant(self) -> None:
        """Streams open with audio delivery; each leg gets a transcriber that
        knows who speaks on it."""
        self.assertTrue(all(s.deliver_audio for s in self.h.media.opened))
        self.assertEqual(sorted(self.legs), ["leg0", "leg1"])
        self.assertEqual(self.legs["leg0"].participant["aor"], "sip:alice@example.com")
        self.audio("leg0", 160, 0)
        self.audio("leg0", 160, 160)
        self.assertEqual(self.legs["leg0"].fed, [(160, 8000, 0), (160, 8000, 160)])
        self.assertEqual(self.legs["leg1"].fed, [])
        self.assertEqual(self.session.detail()["transcription"]["status"], "live")

    def test_pauses_stop_the_feed(self) -> None:
        """Transcription paused: nothing reaches the engine; recording paused: neither;
        an SRC pause (a=inactive) of one leg: that leg only."""
        self.session.pause(recording=False, transcription=True)
        self.audio("leg0")
        self.session.resume()
        self.session.pause(recording=True, transcription=False)
        self.audio("leg0")
        self.session.resume()
        self.session.offer(offer([M("leg0", direction="inactive"), M("leg1")], version=2), [])
        self.audio("leg0")
        self.audio("leg1")
        self.assertEqual(self.legs["leg0"].fed, [])
        self.assertEqual(len(self.legs["leg1"].fed), 1)

    def test_files_are_final_before_transcription_finishes(self) -> None:
        """BYE: the legs are combined and the record written at once, transcription
        'pending' while the engine still works; when it finishes the transcript is
        written and the record says 'complete'."""
        self.h.media.opened[0].receive(10, START)
        self.session.transcript_received(result(self.session.call_id, "leg0", "hello", 0.5))
        d = self.session.end("bye")
        self.successResultOf(d)  # not waiting for the engines
        self.assertEqual(str(self.session.state), "ended")
        self.assertEqual(len(self.h.combine.calls), 1)
        record = read_json(self.session.base_path + ".json")
        self.assertEqual(record["transcription"]["status"], "pending")
        self.assertFalse(os.path.exists(self.session.base_path + ".transcript.json"))
        self.assertNoResult(self.session.transcribed)
        self.assertEqual(self.h.manager.active_count, 0)

        self.legs["leg1"].closing.callback(None)
        self.session.transcript_received(result(self.session.call_id, "leg0", "bye now", 2.0))
        self.assertNoResult(self.session.transcribed)
        self.legs["leg0"].closing.callback(None)
        self.successResultOf(self.session.transcribed)
        record = read_json(self.session.base_path + ".json")
        self.assertEqual(record["transcription"]["status"], "complete")
        transcript = read_json(self.session.base_path + ".transcript.json")
        self.assertEqual([s["text"] for s in transcript["segments"]], ["hello", "bye now"])
        self.assertEqual(transcript["status"], "complete")

    def test_a_leg_that_could_not_be_transcribed_is_failed(self) -> None:
        self.legs["leg0"].state = "disabled"  # every provider failed
        self.successResultOf(self.session.end("bye"))
        for leg in self.legs.values():
            leg.closing.callback(None)
        self.successResultOf(self.session.transcribed)
        record = read_json(self.session.base_path + ".json")
        self.assertEqual(record["transcription"]["status"], "failed")
        self.assertEqual(record["transcription"]["legs"], {"leg0": "failed", "leg1": "complete"})

    def test_transcriber_that_cannot_start_costs_nothing(self) -> None:
        """open_leg raising: logged once per leg, the call is recorded, status 'off'."""
        stt = FakeTranscription()
        stt.router.fail = True
        h = Harness(self, transcription=stt)
        session, answer = h.call(two_legs())
        self.assertEqual(len(answer.media), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.successResultOf(session.end("bye"))
        self.successResultOf(session.transcribed)
        self.assertEqual(read_json(session.base_path + ".json")["transcription"]["status"], "off")

    def test_a_broken_engine_never_reaches_the_media(self) -> None:
        """feed() raising is caught by the feed and logged once."""
        def broken(*args):
            raise ValueError("engine bug")
        self.legs["leg0"].feed = broken
        self.audio("leg0")
        self.audio("leg0")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

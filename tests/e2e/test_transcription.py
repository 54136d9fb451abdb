"""End to end: espeak-ng speech sent as RTP through a real SIPREC call is transcribed
live per leg by the embedded engine; results reach the API, the event bus and disk."""

from __future__ import annotations

import json
import os
import re

import numpy as np
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from siprec.testing.src import SrcClient, StreamOffer
from tests.e2e.harness import start_server, wait_for
from tests.stt.speech import require_espeak, speak

CALLER = ("Please call me back tomorrow morning about the invoice.",
          "I want to cancel my subscription.")
AGENT = ("Thank you for calling, how can I help you today?",
         "Let me transfer you to the billing department.")


def words(text):
    return re.findall(r"[a-z']+", text.lower())


def leg_audio(sentences, lead: float):
    silence = np.zeros(int(0.8 * 8000), dtype=np.int16)
    parts = [np.zeros(int(lead * 8000), dtype=np.int16)]
    for sentence in sentences:
        parts += [speak(sentence), silence]
    return np.concatenate(parts)


class LiveTranscriptionTests(TestCase):
    timeout = 120

    def _skip(self, reason):
        from twisted.trial.unittest import SkipTest
        raise SkipTest(reason)

    @defer.inlineCallbacks
    def test_two_legs_transcribed_live(self):
        """Each leg's words come back as finals for that leg, in order, with partials
        on the way; GET /api/sessions/{id}/transcript and <Call-ID>.transcript.json agree."""
        require_espeak(self._skip)
        service = start_server(self, STT_ENABLED="true")
        bus_events = []
        service.realtime.bus.subscribe(bus_events.append, name="test")
        yield wait_for(service.transcription.ready, 30, "the offline STT engine to be ready")
        client = SrcClient(reactor, ("127.0.0.1", service.config.ports[0]))
        yield client.start()
        self.addCleanup(client.stop)
        call = yield client.invite([StreamOffer("caller", 0), StreamOffer("agent", 0)])
        self.assertEqual(call.final.status, 200)
        caller, agent = leg_audio(CALLER, 0.3), leg_audio(AGENT, 0.3)
        n = max(len(caller), len(agent))
        caller = np.pad(caller, (0, n - len(caller)))
        agent = np.pad(agent, (0, n - len(agent)))
        yield client.send_audio(call, {"caller": caller, "agent": agent})
        yield client.bye(call)
        session = service.manager.get(call.call_id)
        yield session.end("test")  # the files are final; transcription may go on
        yield session.transcribed

        view = session.transcript_view()
        for label, sentences in (("caller", CALLER), ("agent", AGENT)):
            said = [w for s in sentences for w in words(s)]
            heard = [w for seg in view["segments"] if seg["leg"] == label
                     for w in words(seg["text"])]
            hits = sum(1 for w in set(said) if w in heard)
            self.assertGreaterEqual(hits / len(set(said)), 0.7, (label, heard))
            starts = [seg["start"] for seg in view["segments"] if seg["leg"] == label]
            self.assertEqual(starts, sorted(starts))
        types = [e.type for e in bus_events]
        self.assertIn("transcript.final", types)
        self.assertIn("transcript.partial", types)
        self.assertLess(types.index("transcript.final"), types.index("call.ended"))
        with open(os.path.join(service.config.recording_dir,
                               call.call_id + ".transcript.json")) as f:
            on_disk = json.load(f)
        self.assertEqual([s["text"] for s in on_disk["segments"]],
                         [s["text"] for s in view["segments"]])

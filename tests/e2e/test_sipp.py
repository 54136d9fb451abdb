"""End to end with a third-party SIP stack: SIPp places a SIPREC call on the
real service (UDP and TCP), pauses and resumes it by re-INVITE, and the
recordings are checked sample by sample.

SIPp 3.6 sends audio on one m-line only (rtp_stream goes to the first
``m=audio`` of the answer), so SIPp feeds leg0 and this test feeds leg1
itself, on the port the server answered for it, without pausing: the
server must record silence while the SRC has the stream inactive.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Tuple

import numpy as np
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.e2e.harness import dominant_frequency, read_wav, start_server, wait_for
from tests.e2e.sipp_support import (
    FRAME, PCMU, RATE, TONE_RMS, LegFeeder, SippRun, exact_fraction, find_sipp, frame_rms,
    inner_silence, iso_seconds, loud_part, run_scenario, session_ended, tone, ulaw_decode,
    ulaw_encode, write_audio_file,
)

TONE_FILE = "leg0_tone.ulaw"  # the name the scenario's rtp_stream plays
TALK1, PAUSE1, TALK2 = 2.0, 1.0, 2.0  # seconds, passed to the scenario
LEG0_HZ, LEG1_HZ = 700.0, 1200.0  # 80 and 20 samples per period: seamless loops


def tone_ulaw(freq: float, seconds: float) -> np.ndarray:
    return ulaw_encode(tone(freq, seconds))


# -- the test -----------------------------------------------------------------------

class SippCallMixin:
    transport = "u1"  # SIPp's -t
    timeout = 60

    def assertClose(self, actual: float, expected: float, delta: float, what: str) -> None:
        self.assertLessEqual(abs(actual - expected), delta,
                             f"{what}: {actual:.3f} is not within {delta} of {expected:.3f}")

    def answered_ports(self, run: SippRun) -> Tuple[int, int]:
        """The answer's ports as SIPp read them (the scenario logs them)."""
        fields = run.logged("answer ports")
        if not fields:
            self.fail("SIPp logged no answer ports")
        return int(fields["leg0"]), int(fields["leg1"])

    @defer.inlineCallbacks
    def test_sipp_siprec_call_with_pause(self):
        """SIPp's SIPREC call passes its own checks of our answers, and the
        recording holds SIPp's tone on leg0 and ours on leg1, with silence
        while paused, a two-channel combined WAV and the pauses in the record."""
        sipp = yield find_sipp(self)
        service = start_server(self)
        workdir = self.mktemp()
        os.makedirs(workdir)
        leg0_audio = tone_ulaw(LEG0_HZ, 1.0)
        write_audio_file(workdir, TONE_FILE, leg0_audio)

        # sends on while the SRC has the stream inactive: the server must mute it
        feeder = LegFeeder(service, "leg1", tone_ulaw(LEG1_HZ, 1.0), PCMU)
        feeder.start(self)
        run = yield run_scenario(sipp, "siprec_uac.xml", service.config.ports[0], workdir,
                                 transport=self.transport, timeout=25,
                                 variables={"talk1": int(TALK1 * 1000), "pause1": int(PAUSE1 * 1000),
                                            "talk2": int(TALK2 * 1000)})
        yield feeder.stop()
        self.assertEqual(run.code, 0, "SIPp failed the scenario:\n" + run.report())

        # the call as the server recorded it, once its BYE has been processed
        self.assertIsNotNone(feeder.call_id, "the server never showed the session")
        yield wait_for(session_ended(service, feeder.call_id), 5, "the call to end after SIPp's BYE")
        records = glob.glob(os.path.join(service.config.recording_dir, "*.json"))
        self.assertEqual(len(records), 1, records)
        with open(records[0]) as f:
            record = json.load(f)
        call_id = record["call_id"]
        self.assertEqual(os.path.basename(records[0]), f"{call_id}.json")
        self.assertEqual(call_id, feeder.call_id)
        self.assertTrue(call_id.endswith("@127.0.0.1"), call_id)  # SIPp's [call_id]
        self.assertGreater(feeder.sent, 0)

        streams = {s["label"]: s for s in record["streams"]}
        self.assertEqual([s["label"] for s in record["streams"]], ["leg0", "leg1"])
        self.assertEqual([streams[l]["channel"] for l in ("leg0", "leg1")], [0, 1])
        self.assertEqual(self.answered_ports(run),
                         (streams["leg0"]["port"], streams["leg1"]["port"]))
        self.assertEqual([p["aor"] for p in record["participants"]],
                         ["sip:carol@caller.example.org", "sip:dave@agents.example.org"])
        self.assertEqual(streams["leg0"]["participant"]["aor"], "sip:carol@caller.example.org")
        self.assertEqual(streams["leg1"]["participant"]["aor"], "sip:dave@agents.example.org")
        self.assertEqual(record["end_reason"], "bye")
        self.assertEqual(record["sip"]["headers"]["User-Agent"], ["SIPp SIPREC scenario"])

        # one pause per leg, as long as SIPp held it
        pauses = {}
        for pause in record["pauses"]:
            self.assertNotIn(pause["label"], pauses, record["pauses"])
            self.assertIsNotNone(pause["end"], pause)
            pauses[pause["label"]] = iso_seconds(pause["end"]) - iso_seconds(pause["start"])
        self.assertEqual(sorted(pauses), ["leg0", "leg1"], record["pauses"])
        for label, length in pauses.items():
            self.assertClose(length, PAUSE1, 0.25, f"{label} pause interval in the record")

        # leg0: SIPp's tone, TALK1 + TALK2 of it, PAUSE1 of silence after TALK1
        files = record["files"]
        self.assertEqual(os.path.basename(files["leg0"]), f"{call_id}_leg0.wav")
        rate, channels, leg0 = read_wav(files["leg0"])
        self.assertEqual((rate, channels), (RATE, 1))
        leg0 = leg0[:, 0]
        tone_seconds = np.count_nonzero(frame_rms(leg0) > TONE_RMS) * FRAME / RATE
        self.assertClose(tone_seconds, TALK1 + TALK2, 0.2, "leg0 seconds of tone")
        silence_at, silence = inner_silence(leg0)
        self.assertClose(silence, PAUSE1, 0.2, "leg0 silence while paused")
        self.assertClose(silence, pauses["leg0"], 0.1, "leg0 silence vs the recorded pause")
        self.assertClose(silence_at, TALK1, 0.2, "leg0 pause start")
        self.assertClose(dominant_frequency(loud_part(leg0), rate), LEG0_HZ, 10, "leg0 tone (Hz)")
        self.assertGreaterEqual(exact_fraction(leg0, ulaw_decode(leg0_audio), RATE // 100), 0.95,
                                "leg0 samples differ from the mu-law SIPp sent")
        self.assertEqual(streams["leg0"]["stats"]["lost"], 0)

        # leg1: our tone, muted by the server while the SRC had it inactive
        self.assertEqual(os.path.basename(files["leg1"]), f"{call_id}_leg1.wav")
        rate, channels, leg1 = read_wav(files["leg1"])
        self.assertEqual((rate, channels), (RATE, 1))
        leg1 = leg1[:, 0]
        self.assertGreater(streams["leg1"]["stats"]["paused_packets"], 0,
                           "no leg1 packet arrived while paused")
        silence_at, silence = inner_silence(leg1)
        self.assertClose(silence, pauses["leg1"], 0.1, "leg1 silence vs the recorded pause")
        self.assertClose(silence_at, TALK1, 0.3, "leg1 pause start")
        self.assertClose(dominant_frequency(loud_part(leg1), rate), LEG1_HZ, 10, "leg1 tone (Hz)")
        self.assertGreaterEqual(
            exact_fraction(leg1, ulaw_decode(tone_ulaw(LEG1_HZ, 1.0)), RATE // 400), 0.95,
            "leg1 samples differ from the mu-law we sent")

        # combined: one channel per leg, caller (leg0) first
        self.assertEqual(os.path.basename(files["combined"]), f"{call_id}.wav")
        rate, channels, both = read_wav(files["combined"])
        self.assertEqual((rate, channels), (RATE, 2))
        self.assertClose(len(both) / rate, max(len(leg0), len(leg1)) / rate, 0.1,
                         "combined length (s)")
        for channel, freq in ((0, LEG0_HZ), (1, LEG1_HZ)):
            self.assertClose(dominant_frequency(loud_part(both[:, channel]), rate), freq, 10, f"combined channel {channel} (Hz)")
        self.assertTrue(os.path.exists(files["metadata"]))


class SippUdpCallTests(SippCallMixin, TestCase):
    transport = "u1"


class SippTcpCallTests(SippCallMixin, TestCase):
    transport = "t1"

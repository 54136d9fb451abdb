"""End to end with SIPp playing real SRCs' call flows, one scenario of our own
per vendor (tests/e2e/sipp/*.xml restate the facts of the flows a commercial
recorder publishes for SIPp; values and text are ours), each recording
checked sample by sample against G.711 decoded here, and each quirk checked
in the call record and in the log as a tolerance.
"""

from __future__ import annotations

import glob
import os

import numpy as np
from twisted.internet import defer

from tests.e2e.harness import read_wav, start_server
from tests.e2e.sipp_support import (
    FRAME, PCMA, RATE, LogCapture, SippTestCase, alaw_decode, alaw_encode, api_get,
    find_sequence, find_sipp, run_scenario, tone, write_audio_file,
)


def only_session(service):
    sessions = service.manager.sessions()
    assert len(sessions) == 1, sessions
    return sessions[0]


class CiscoCubeTests(SippTestCase):
    """Cisco CUBE network-based recording (cisco_cube.xml)."""

    @defer.inlineCallbacks
    def test_pcma_on_a_pcmu_answer(self):
        """A plain-SDP fork answered PCMU but sent as PCMA (PT 8, never offered), with
        ACK and BYE lacking a To-tag: the leg holds exactly the A-law CUBE sent,
        decoded by the packets' own payload type, and the call ends by its BYE."""
        sipp = yield find_sipp(self)
        logs = LogCapture().install(self)
        service = start_server(self)
        workdir = self.mktemp()
        os.makedirs(workdir)
        sent = alaw_encode(tone(700, 1.0))
        write_audio_file(workdir, "cube_leg.alaw", sent)
        run = yield run_scenario(sipp, "cisco_cube.xml", service.config.ports[0], workdir,
                                 variables={"talk": 2600})
        self.assertSippPassed(run)
        call_id = only_session(service).call_id
        session, record = yield self.ended(service, call_id)

        self.assertEqual(record["end_reason"], "bye")
        self.assertEqual(record["sip"]["headers"]["X-Cisco-Recording-Participant"],
                         ['sip:4045550143@carrier.example;media-index="0"',
                          'sip:3120@10.20.30.40;media-index="1"'])
        [stream] = record["streams"]
        self.assertEqual(stream["port"], int(run.logged("answer")["port0"]))
        self.assertEqual(stream["codec"], "PCMU/8000")
        self.assertEqual(stream["stats"]["packets_by_codec"], {"PCMA/8000": 2 * RATE // FRAME})
        self.assertEqual(stream["stats"]["lost"], 0)
        self.assertTolerated(
            record, logs,
            "SRC sent PCMA/8000 (PT 8) on a stream answered PCMU/8000; decoded by its own payload type",
            "INVITE without recording metadata; recording as a plain call",
            "ACK matched to the dialog by Call-ID and From-tag",
            "BYE without To-tag matched to the dialog by Call-ID and From-tag")

        # the leg: exactly the two loops of A-law SIPp played, nothing else
        path = record["files"][stream["key"]]
        self.assertEqual(os.path.basename(path), f"{call_id}_{stream['label']}.wav")
        rate, channels, leg = read_wav(path)
        self.assertEqual((rate, channels), (RATE, 1))
        self.assertPlayed(leg[:, 0], np.tile(alaw_decode(sent), 2), "leg (A-law)")
        rate, channels, combined = read_wav(record["files"]["combined"])
        self.assertEqual((rate, channels), (RATE, 1))
        self.assertPlayed(combined[:, 0], np.tile(alaw_decode(sent), 2), "combined WAV")

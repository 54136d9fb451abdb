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
from scipy.signal import resample_poly
from twisted.internet import defer

from tests.e2e.harness import dominant_frequency, read_wav, start_server, wait_for
from tests.e2e.sipp_support import (
    DECODE, ENCODE, FRAME, PCMA, PCMU, RATE, TONE_RMS, LogCapture, SippTestCase, aligned_snr,
    alaw_decode, alaw_encode, ulaw_decode, ulaw_encode, exact_fraction, find_sipp, frame_rms, inner_silence, iso_seconds,
    LegFeeder, api_get, find_sequence, live_detail, run_scenario, tone, write_audio_file,
)


class CiscoCubeTests(SippTestCase):
    """Cisco CUBE network-based recording (cisco_cube.xml)."""

    @defer.inlineCallbacks
    def test_pcma_on_a_pcmu_answer(self):
        """A plain-SDP fork answered PCMU but sent as PCMA (PT 8, never offered), with
        ACK and BYE lacking a To-tag: the leg holds exactly the A-law CUBE sent,
        decoded by the packets' own payload type, the parties of its headers are the
        call's participants, and the call ends by its BYE."""
        sipp = yield find_sipp(self)
        logs = LogCapture().install(self)
        service = start_server(self)
        workdir = self.mktemp()
        os.makedirs(workdir)
        sent = alaw_encode(tone(700, 1.0))
        write_audio_file(workdir, "cube_leg.alaw", sent)
        running = run_scenario(sipp, "cisco_cube.xml", service.config.ports[0], workdir,
                               variables={"talk": 2600})
        live = yield live_detail(service)
        run = yield running
        self.assertSippPassed(run)
        call_id = live["call_id"]
        session, record = yield self.ended(service, call_id)

        # no rs-metadata: the parties come from X-Cisco-Recording-Participant, media-index
        # naming the m-line each sends (index 1 has none in this mono fork)
        for view in (live, record):
            self.assertEqual([(p["aor"], p["send_labels"]) for p in view["participants"]],
                             [("sip:4045550143@carrier.example", ["0"]), ("sip:3120@10.20.30.40", [])])
            self.assertEqual(view["streams"][0]["participant"]["aor"], "sip:4045550143@carrier.example")

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
            "participants taken from X-Cisco-Recording-Participant headers",
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


class WebexCallingTests(SippTestCase):
    """Cisco Webex Calling inbound, recorded mono (webex_calling.xml)."""

    SECONDS = 1.5

    @defer.inlineCallbacks
    def place(self, codec: str, **env):
        """One call, SIPp sending ``codec`` on the Opus answer; the signal is a
        tone with a slow tremolo, so that resampled audio can be aligned on it."""
        sipp = yield find_sipp(self)
        logs = LogCapture().install(self)
        service = start_server(self, **env)
        workdir = self.mktemp()
        os.makedirs(workdir)
        t = np.arange(int(self.SECONDS * RATE)) / RATE
        signal = (tone(700, self.SECONDS) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))).astype(np.int16)
        pt = PCMU if codec == "PCMU" else PCMA
        sent = ENCODE[pt](signal)
        write_audio_file(workdir, "webex_leg.g711", sent)
        running = run_scenario(sipp, "webex_calling.xml", service.config.ports[0], workdir,
                               variables={"talk": int(self.SECONDS * 1000) + 400, "codec": codec})
        live = yield live_detail(service)
        run = yield running
        self.assertSippPassed(run)
        session, record = yield self.ended(service, live["call_id"])

        # participants from <recording_metadata>, live in the API and in the record
        for view in (live, record):
            self.assertEqual([(p["aor"], p["send_labels"]) for p in view["participants"]],
                             [("sip:rk2mq8vxpl@55510203.int20.bcld.webex.com", ["1"]),
                              ("sip:8842@10.60.1.20;user=phone", ["2"])])
            self.assertEqual(view["streams"][0]["participant"]["aor"],
                             "sip:rk2mq8vxpl@55510203.int20.bcld.webex.com")
        self.assertEqual(record["metadata"]["dialect"], "broadworks")
        self.assertEqual(record["end_reason"], "bye")
        [stream] = record["streams"]
        self.assertEqual(stream["port"], int(run.logged("answer")["port0"]))
        self.assertEqual(stream["codec"], "OPUS/48000/2")
        packets = int(self.SECONDS * RATE) // FRAME
        self.assertEqual(stream["stats"]["packets_by_codec"], {f"{codec}/8000": packets})
        self.assertEqual(stream["stats"]["resampled_packets"], packets)
        rate = int(env.get("OPUS_SAMPLE_RATE", 48000))
        self.assertTolerated(
            record, logs,
            f"SRC sent {codec}/8000 (PT {pt}) on a stream answered OPUS/48000/2; decoded by its "
            f"own payload type and resampled from 8000 to {rate} Hz",
            "Contact ';src' read as '+sip.src'",
            "pre-RFC <recording_metadata> schema (BroadWorks, Webex Calling) read as RFC 7865",
            "BYE without Max-Forwards accepted")

        # the leg at the Opus rate: same length, same pitch, the same signal through
        # an independent resampler (scipy's polyphase filter, not the server's)
        path = record["files"]["1"]
        self.assertEqual(os.path.basename(path), f"{live['call_id']}_1.wav")
        got_rate, channels, leg = read_wav(path)
        self.assertEqual((got_rate, channels), (rate, 1))
        leg = leg[:, 0]
        ratio = rate // RATE
        self.assertClose(len(leg) / rate, self.SECONDS, FRAME / RATE, "leg length (s)")
        self.assertClose(dominant_frequency(leg, rate), 700, 1.0, "leg pitch (Hz)")
        reference = resample_poly(DECODE[pt](sent).astype(np.float64), ratio, 1)
        edge = FRAME * ratio  # leave out the filters' first and last 20 ms
        lag, snr = aligned_snr(leg[edge:], reference[edge:-edge], edge // 2)
        self.assertLessEqual(lag * 1000 / rate, 10, f"the leg is {lag} samples late")
        self.assertGreaterEqual(snr, 40.0, f"the leg differs from the {codec} sent (SNR {snr:.1f} dB)")

        rate_c, channels_c, combined = read_wav(record["files"]["combined"])
        self.assertEqual((rate_c, channels_c), (rate, 1))
        self.assertTrue(any(np.array_equal(combined[o:o + len(leg), 0], leg)
                            for o in range(len(combined) - len(leg) + 1)),
                        "the combined WAV does not hold the leg as recorded")
        return record

    def test_pcma_on_an_opus_answer(self):
        """Opus offered first and answered, PCMA sent: the leg WAV stays at 48 kHz,
        resampled (same pitch, same length), with the Webex participants in the API."""
        return self.place("PCMA")

    def test_pcmu_on_an_opus_answer_at_opus_sample_rate(self):
        """With OPUS_SAMPLE_RATE=16000 the same call sending PCMU gives a 16 kHz leg."""
        return self.place("PCMU", OPUS_SAMPLE_RATE="16000")


class BroadWorksTests(SippTestCase):
    """BroadWorks recording with a hold as pause/resume (broadworks_hold.xml)."""

    TALK1, HOLD, TALK2 = 1.5, 1.0, 1.5

    @defer.inlineCallbacks
    def test_hold_and_cseq_quirks(self):
        """<recording_metadata>, ACKs with foreign CSeqs, a c=0.0.0.0 hold, BYE with
        'CSeq: N INVITE' and no To-tag: the BYE gets its 200 and ends the call ('bye'),
        the hold is silence of its length, the PCMA around it exact."""
        sipp = yield find_sipp(self)
        logs = LogCapture().install(self)
        service = start_server(self)
        workdir = self.mktemp()
        os.makedirs(workdir)
        sent = alaw_encode(tone(700, 1.0))  # 80 samples a period: loops seamlessly
        write_audio_file(workdir, "bw_leg.alaw", sent)
        running = run_scenario(sipp, "broadworks_hold.xml", service.config.ports[0], workdir,
                               variables={"talk1": int(self.TALK1 * 1000), "hold": int(self.HOLD * 1000),
                                          "talk2": int(self.TALK2 * 1000)})
        live = yield live_detail(service)
        run = yield running
        self.assertSippPassed(run)  # every answer, the BYE's 200 included
        session, record = yield self.ended(service, live["call_id"])

        aors = ["sip:7025550147", "sip:+17025550199@bcore.example;user=phone"]
        for view in (live, record):
            self.assertEqual([p["aor"] for p in view["participants"]], aors)
            self.assertEqual(view["streams"][0]["participant"]["aor"], aors[0])
        self.assertEqual(record["end_reason"], "bye")
        self.assertTolerated(
            record, logs,
            "Contact ';src' read as '+sip.src'",
            "pre-RFC <recording_metadata> schema (BroadWorks, Webex Calling) read as RFC 7865",
            "ACK with a CSeq other than its INVITE's accepted",
            "ACK with 'CSeq: N INVITE' accepted in its dialog",
            "BYE with 'CSeq: N INVITE' accepted in its dialog",
            "BYE without To-tag matched to the dialog by Call-ID and From-tag")
        [stream] = record["streams"]
        self.assertEqual(stream["port"], int(run.logged("answer")["port0"]))
        self.assertEqual(stream["codec"], "PCMA/8000")  # PT 8 without rtpmap: static

        # the hold: one pause, as long as SIPp held, and that much silence in the leg
        [pause] = record["pauses"]
        self.assertEqual((pause["label"], pause["reason"]), ("1", "hold"))
        held = iso_seconds(pause["end"]) - iso_seconds(pause["start"])
        self.assertClose(held, self.HOLD, 0.25, "hold interval in the record")
        rate, channels, leg = read_wav(record["files"]["1"])
        self.assertEqual((rate, channels), (RATE, 1))
        leg = leg[:, 0]
        tone_seconds = np.count_nonzero(frame_rms(leg) > TONE_RMS) * FRAME / RATE
        self.assertClose(tone_seconds, self.TALK1 + self.TALK2, 0.2, "seconds of tone")
        silence_at, silence = inner_silence(leg)
        self.assertClose(silence, held, 0.1, "silence vs the recorded hold")
        self.assertClose(silence_at, self.TALK1, 0.2, "hold start in the leg")
        self.assertGreaterEqual(exact_fraction(leg, alaw_decode(sent), RATE // 100), 0.95,
                                "leg samples differ from the A-law SIPp sent")
        self.assertEqual(stream["stats"]["lost"], 0)


class OracleSbcTests(SippTestCase):
    """Oracle/Acme SBC, two streams over TCP (oracle_sbc.xml)."""

    LABELS = ("953421001", "953421002")

    @defer.inlineCallbacks
    def test_stray_sdp_block_and_two_streams(self):
        """A blank line and a second SDP block before the next boundary: the call is
        answered (not 400) from the first description, both streams recorded exactly
        (SIPp's on the first, ours on the second), draft metadata's participants shown."""
        sipp = yield find_sipp(self)
        logs = LogCapture().install(self)
        service = start_server(self)
        workdir = self.mktemp()
        os.makedirs(workdir)
        first = alaw_encode(tone(700, 1.0))
        write_audio_file(workdir, "oracle_leg.alaw", first)
        second = alaw_encode(tone(1200, 2.0))
        feeder = LegFeeder(service, self.LABELS[1], second, PCMA, loop_audio=False)
        feeder.start(self)
        running = run_scenario(sipp, "oracle_sbc.xml", service.config.ports[0], workdir,
                               transport="t1", variables={"talk": 2600})
        live = yield live_detail(service)
        run = yield running
        self.assertSippPassed(run)
        session, record = yield self.ended(service, live["call_id"])
        call_id = live["call_id"]

        self.assertEqual(record["end_reason"], "bye")
        self.assertEqual(record["sip"]["transport"], "TCP")
        self.assertEqual(record["metadata"]["dialect"], "draft")
        aors = ["sip:+14155550101@carrier.example", "sip:2101@pbx.example"]
        for view in (live, record):
            self.assertEqual([(p["aor"], p["send_labels"]) for p in view["participants"]],
                             [(aors[0], [self.LABELS[0]]), (aors[1], [self.LABELS[1]])])
            self.assertEqual([s["participant"]["aor"] for s in view["streams"]], aors)
        streams = {s["label"]: s for s in record["streams"]}
        self.assertEqual([s["label"] for s in record["streams"]], list(self.LABELS))
        answer = run.logged("answer")
        self.assertEqual((streams[self.LABELS[0]]["port"], streams[self.LABELS[1]]["port"]),
                         (int(answer["port0"]), int(answer["port1"])))
        self.assertTolerated(record, logs, "(stray text '--SBC-core-boundary', after a blank line); "
                                           "the rest of the body was ignored")
        self.assertEqual(feeder.sent, 2 * RATE // FRAME)

        expected = {self.LABELS[0]: np.tile(alaw_decode(first), 2), self.LABELS[1]: alaw_decode(second)}
        for label, audio in expected.items():
            stream = streams[label]
            self.assertEqual(stream["codec"], "PCMA/8000")
            self.assertEqual(stream["stats"]["lost"], 0, label)
            path = record["files"][stream["key"]]
            self.assertEqual(os.path.basename(path), f"{call_id}_{label}.wav")
            rate, channels, leg = read_wav(path)
            self.assertEqual((rate, channels), (RATE, 1))
            self.assertPlayed(leg[:, 0], audio, f"leg {label}")
        rate, channels, combined = read_wav(record["files"]["combined"])
        self.assertEqual((rate, channels), (RATE, 2))
        for label, audio in expected.items():
            channel = streams[label]["channel"]
            self.assertPlayed(combined[:, channel], audio, f"combined channel {channel}",
                              rest_silent=False, within=RATE // 2)


class AvayaSbceTests(SippTestCase):
    """Avaya SBCE inbound, a placeholder participant replaced by an UPDATE (avaya_sbce.xml)."""

    TALK1, TALK2 = 1.2, 1.2

    @defer.inlineCallbacks
    def test_update_replaces_placeholder_participant(self):
        """The INVITE names sip:ASBCE@asbce.com and a stream without id; the metadata-only
        UPDATE (application/rs-metadata) brings the real parties: the API shows each
        set while it holds, the record the final one; PCMA on the PCMU answer exact."""
        sipp = yield find_sipp(self)
        logs = LogCapture().install(self)
        service = start_server(self)
        workdir = self.mktemp()
        os.makedirs(workdir)
        sent = alaw_encode(tone(700, 1.0))
        write_audio_file(workdir, "avaya_leg.alaw", sent)
        running = run_scenario(sipp, "avaya_sbce.xml", service.config.ports[0], workdir,
                               variables={"talk1": int(self.TALK1 * 1000), "talk2": int(self.TALK2 * 1000)})
        before = yield live_detail(service)
        session = service.manager.get(before["call_id"])
        yield wait_for(lambda: session.metadata.documents_applied >= 2, 5, "the UPDATE's metadata")
        code, after = yield api_get(service, f"/api/sessions/{session.id}")
        self.assertEqual(code, 200)
        run = yield running
        self.assertSippPassed(run)
        session, record = yield self.ended(service, before["call_id"])

        self.assertEqual([p["aor"] for p in before["participants"]],
                         ["sip:3035550100@10.64.1.5", "sip:ASBCE@asbce.com"])
        final = [("sip:3035550100@10.64.1.5", ["10"]), ("sip:7205550142@10.64.1.32", ["20"])]
        for view in (after, record):
            self.assertEqual([(p["aor"], p["send_labels"]) for p in view["participants"]], final)
            self.assertEqual(view["streams"][0]["participant"]["aor"], "sip:3035550100@10.64.1.5")
        self.assertEqual(record["metadata_documents"], 2)
        with open(record["files"]["metadata"], "rb") as f:
            self.assertEqual(f.read().count(b"<document "), 2)
        self.assertEqual(record["end_reason"], "bye")
        [stream] = record["streams"]
        self.assertEqual(stream["port"], int(run.logged("answer")["port0"]))
        self.assertEqual(stream["codec"], "PCMU/8000")
        self.assertTolerated(
            record, logs,
            "SRC sent PCMA/8000 (PT 8) on a stream answered PCMU/8000; decoded by its own payload type",
            "element <dataMode> read as <datamode>",
            "empty stream_id tolerated")

        rate, channels, leg = read_wav(record["files"][stream["key"]])
        self.assertEqual((rate, channels), (RATE, 1))
        leg = leg[:, 0]
        tone_seconds = np.count_nonzero(frame_rms(leg) > TONE_RMS) * FRAME / RATE
        self.assertClose(tone_seconds, self.TALK1 + self.TALK2, 0.2, "seconds of tone")
        self.assertClose(len(leg) / RATE, self.TALK1 + self.TALK2, 0.2, "leg length (s)")
        self.assertGreaterEqual(exact_fraction(leg, alaw_decode(sent), RATE // 100), 0.95,
                                "leg samples differ from the A-law SIPp sent")


class MetaswitchTests(SippTestCase):
    """Metaswitch CFS basic inbound call (metaswitch_cfs.xml)."""

    @defer.inlineCallbacks
    def test_basic_inbound_call(self):
        """Static payload types without rtpmap, draft metadata typed application/rs-metadata
        with bare-number AORs on one shared stream, a '+'-laden From-tag with a parameter
        after it: both parties on the stream, the PCMA SIPp sent recorded exactly."""
        sipp = yield find_sipp(self)
        logs = LogCapture().install(self)
        service = start_server(self)
        workdir = self.mktemp()
        os.makedirs(workdir)
        sent = alaw_encode(tone(700, 1.0))
        write_audio_file(workdir, "ms_leg.alaw", sent)
        running = run_scenario(sipp, "metaswitch_cfs.xml", service.config.ports[0], workdir,
                               variables={"talk": 2600})
        live = yield live_detail(service)
        run = yield running
        self.assertSippPassed(run)
        session, record = yield self.ended(service, live["call_id"])

        for view in (live, record):
            self.assertEqual([(p["aor"], p["aor_normalized"], p["send_labels"], p["recv_labels"])
                              for p in view["participants"]],
                             [("6195550123", "sip:6195550123", ["1"], ["1"]),
                              ("6195550100", "sip:6195550100", ["1"], ["1"])])
        self.assertEqual(record["metadata"]["dialect"], "draft")
        self.assertEqual(record["end_reason"], "bye")
        [stream] = record["streams"]
        answer = run.logged("answer")
        self.assertEqual(stream["port"], int(answer["port0"]))
        # the first offered type we decode is answered, whatever the SRC then sends
        self.assertEqual((stream["codec"], answer["pt0"]), ("G729/8000", "18"))
        self.assertEqual(stream["stats"]["packets_by_codec"], {"PCMA/8000": 2 * RATE // FRAME})
        self.assertTolerated(
            record, logs,
            "SRC sent PCMA/8000 (PT 8) on a stream answered G729/8000; decoded by its own payload type",
            "pre-RFC namespace 'urn:ietf:params:xml:ns:recording' (without ':1') accepted",
            "AORs without URI scheme were normalised with 'sip:'",
            "draft-era 'id' attribute read as stream_id")
        path = record["files"][stream["key"]]
        self.assertEqual(os.path.basename(path), f"{live['call_id']}_1.wav")
        rate, channels, leg = read_wav(path)
        self.assertEqual((rate, channels), (RATE, 1))
        self.assertPlayed(leg[:, 0], np.tile(alaw_decode(sent), 2), "leg (A-law)")


class StreamReaddedTests(SippTestCase):
    """A label dropped (port 0) and offered again (stream_readded.xml)."""

    TALK1, PARKED, TALK2 = 1.2, 1.0, 1.2

    @defer.inlineCallbacks
    def test_readded_label_continues_its_file(self):
        """A re-INVITE drops label 2 (port 0), a later one offers it again: the leg goes
        on in the same <Call-ID>_2.wav and combined channel, the time between as
        silence, both spurts sample for sample; no second file for the label."""
        sipp = yield find_sipp(self)
        logs = LogCapture().install(self)
        service = start_server(self)
        workdir = self.mktemp()
        os.makedirs(workdir)
        first = ulaw_encode(tone(700, 1.0))
        write_audio_file(workdir, "park_leg.ulaw", first)
        second = ulaw_encode(tone(1000, 1.0))
        feeder = LegFeeder(service, "2", second, PCMU)
        feeder.start(self)
        running = run_scenario(sipp, "stream_readded.xml", service.config.ports[0], workdir,
                               variables={"talk1": int(self.TALK1 * 1000), "parked": int(self.PARKED * 1000),
                                          "talk2": int(self.TALK2 * 1000)})
        live = yield live_detail(service)
        run = yield running
        self.assertSippPassed(run)
        session, record = yield self.ended(service, live["call_id"])
        call_id = live["call_id"]

        # one stream per label, the parked one still on channel 1, one file each
        self.assertEqual([(s["label"], s["channel"]) for s in live["streams"]], [("1", 0), ("2", 1)])
        self.assertEqual([(s["label"], s["channel"]) for s in record["streams"]], [("1", 0), ("2", 1)])
        wavs = sorted(os.path.basename(p) for p in glob.glob(
            os.path.join(service.config.recording_dir, "*.wav")))
        self.assertEqual(wavs, [f"{call_id}.wav", f"{call_id}_1.wav", f"{call_id}_2.wav"])
        answer, again = run.logged("answer"), run.logged("readded")
        parked = record["streams"][1]
        self.assertEqual(parked["port"], int(again["port1"]))  # answered anew, on a port of its own
        self.assertEqual((record["streams"][0]["port"], int(again["port0"])), (int(answer["port0"]),) * 2)
        self.assertEqual(record["end_reason"], "bye")
        # dropping and re-offering a stream is plain RFC 3264, no quirk to tolerate
        self.assertEqual((record["tolerances"], logs.tolerated()), ([], []))

        # label 2: the first spurt, the parked time as silence, the second spurt, exactly
        self.assertEqual(len(feeder.spurts), 2, feeder.spurts)  # before the park, after the retrieve
        self.assertEqual(parked["stats"]["continued"], True)
        self.assertEqual(parked["packets"], feeder.sent)
        self.assertEqual(parked["stats"]["packets_by_codec"], {"PCMU/8000": feeder.sent})
        rate, channels, leg = read_wav(record["files"]["2"])
        self.assertEqual((rate, channels), (RATE, 1))
        leg = leg[:, 0]
        audio = np.resize(ulaw_decode(second), feeder.sent * FRAME)
        (first_at, n1), (second_at, n2) = feeder.spurts
        spurt1 = audio[first_at * FRAME:(first_at + n1) * FRAME]
        spurt2 = audio[second_at * FRAME:(second_at + n2) * FRAME]
        offset = self.assertPlayed(leg, spurt1, "label 2 before the park", rest_silent=False)
        gap_start = offset + len(spurt1)
        resumed = find_sequence(leg[gap_start:], spurt2, len(leg))
        self.assertIsNotNone(resumed, "label 2 after the retrieve is not in its file")
        self.assertFalse(np.any(leg[gap_start:gap_start + resumed]), "sound while parked")
        self.assertEqual(resumed, parked["stats"]["resume_gap_samples"])
        self.assertClose(resumed / RATE, self.PARKED, 0.25, "silence while parked (s)")
        self.assertPlayed(leg[gap_start + resumed:], spurt2, "label 2 after the retrieve")

        # label 1, SIPp's, went on throughout
        rate, channels, leg1 = read_wav(record["files"]["1"])
        leg1 = leg1[:, 0]
        self.assertClose(len(leg1) / RATE, self.TALK1 + self.PARKED + self.TALK2, 0.3, "label 1 length (s)")
        self.assertEqual(inner_silence(leg1), (0.0, 0.0))
        self.assertGreaterEqual(exact_fraction(leg1, ulaw_decode(first), RATE // 100), 0.95,
                                "label 1 samples differ from the mu-law SIPp sent")

        # the combined file: the parked leg on its channel as in its own file
        rate, channels, combined = read_wav(record["files"]["combined"])
        self.assertEqual((rate, channels), (RATE, 2))
        self.assertPlayed(combined[:, 1], leg[offset:], "combined channel 1", rest_silent=False,
                          within=RATE // 2)

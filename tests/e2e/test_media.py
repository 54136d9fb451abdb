"""End to end: SRTP calls, DTMF events and quality figures on the real service."""

from __future__ import annotations

import json
import os

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from siprec.testing.src import SrcClient, StreamOffer, tone
from tests.e2e.harness import dominant_frequency, frames, packets_arrived, read_wav, start_server, wait_for


class SrtpCallTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def place(self, enable_srtp: bool):
        service = start_server(self, ENABLE_SRTP="true" if enable_srtp else "false")
        client = SrcClient(reactor, ("127.0.0.1", service.config.ports[0]))
        yield client.start()
        self.addCleanup(client.stop)
        streams = [StreamOffer("leg0", 0, srtp_key=os.urandom(30)),
                   StreamOffer("leg1", 8, srtp_key=os.urandom(30))]
        call = yield client.invite(streams)
        return service, client, call

    @defer.inlineCallbacks
    def test_srtp_call_recorded(self):
        """An RTP/SAVP offer is answered RTP/SAVP with our own a=crypto key, and the
        decrypted audio is recorded."""
        service, client, call = yield self.place(True)
        self.assertEqual(call.final.status, 200)
        for media in call.answer.media:
            self.assertEqual(media.proto, "RTP/SAVP")
            self.assertTrue(media.crypto and "AES_CM_128_HMAC_SHA1_80" in media.crypto[0])
        signals = {"leg0": tone(440, 0.6), "leg1": tone(1000, 0.6)}
        yield client.send_audio(call, signals)
        session = service.manager.get(call.call_id)
        yield wait_for(packets_arrived(session, {k: frames(v) for k, v in signals.items()}), 5,
                       "every SRTP packet sent to reach the server before the BYE")
        yield client.bye(call)
        yield session.end("test")
        base = os.path.join(service.config.recording_dir, call.call_id)
        for label, freq in (("leg0", 440), ("leg1", 1000)):
            rate, _, data = read_wav(f"{base}_{label}.wav")
            self.assertLessEqual(abs(dominant_frequency(data[:, 0], rate) - freq), 10)
            self.assertGreater(len(data), 0.5 * rate)
        with open(base + ".json") as f:
            record = json.load(f)
        self.assertTrue(all(s["srtp"] for s in record["streams"]))

    @defer.inlineCallbacks
    def test_srtp_refused_when_disabled(self):
        """With ENABLE_SRTP=false an SRTP-only offer gets 488, never an RTP/AVP answer."""
        _, _, call = yield self.place(False)
        self.assertEqual(call.final.status, 488)


class DtmfAndQualityTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_dtmf_events_and_quality(self):
        """RFC 4733 digits become events on the session (not tones in the WAV), and each
        stream reports quality figures with a MOS."""
        service = start_server(self)
        client = SrcClient(reactor, ("127.0.0.1", service.config.ports[0]))
        yield client.start()
        self.addCleanup(client.stop)
        call = yield client.invite([StreamOffer("leg0", 0), StreamOffer("leg1", 0)])
        yield client.send_audio(call, {"leg0": tone(440, 0.4), "leg1": tone(1000, 0.4)})
        yield client.send_dtmf(call, "leg0", "5")
        yield client.send_dtmf(call, "leg0", "#")
        yield client.send_audio(call, {"leg0": tone(440, 0.4), "leg1": tone(1000, 0.4)})
        session = service.manager.get(call.call_id)
        yield wait_for(lambda: len(session.detail()["dtmf"]) >= 2
                       and packets_arrived(session, {"leg0": 40, "leg1": 40})(), 5,
                       "both digits and all the audio to arrive")
        detail = session.detail()
        self.assertEqual([d["digit"] for d in detail["dtmf"]], ["5", "#"])
        self.assertEqual({d["leg"] for d in detail["dtmf"]}, {"leg0"})
        quality = detail["streams"][0]["quality"]
        self.assertIsNotNone(quality)
        self.assertGreater(quality["mos"], 4.0)
        yield client.bye(call)
        yield session.end("test")
        text, _ = service.metrics.render()
        self.assertIn(b"siprec_stream_mos_count 2.0", text)
        rate, _, data = read_wav(os.path.join(service.config.recording_dir,
                                              call.call_id + "_leg0.wav"))
        # no DTMF tones rendered: the only energy is at 440 Hz
        self.assertLessEqual(abs(dominant_frequency(data[:, 0], rate) - 440), 10)


class AudioAnalysisTests(TestCase):
    timeout = 60

    def _skip(self, reason):
        from twisted.trial.unittest import SkipTest
        raise SkipTest(reason)

    @defer.inlineCallbacks
    def test_talk_figures_and_overtalk(self):
        """AUDIO_ANALYSIS_ENABLED: talk time per leg and overtalk from the VAD on the
        analysis copy; the archived WAV is untouched (same samples as without it)."""
        import numpy as np
        service = start_server(self, AUDIO_ANALYSIS_ENABLED="true")
        analytics = []
        service.realtime.bus.subscribe(analytics.append, name="t", types=["analytics.*"])
        client = SrcClient(reactor, ("127.0.0.1", service.config.ports[0]))
        yield client.start()
        self.addCleanup(client.stop)
        call = yield client.invite([StreamOffer("leg0", 0), StreamOffer("leg1", 0)])
        from tests.stt.speech import require_espeak, speak
        require_espeak(self._skip)
        rate = 8000
        gap = lambda seconds: np.zeros(int(seconds * rate), dtype=np.int16)  # noqa: E731
        one = speak("I would like to check the status of my order please.")
        two = speak("Let me transfer you to the billing department right away.")
        leg0 = np.concatenate([gap(0.5), one, gap(3.0)])
        leg1 = np.concatenate([gap(1.5), two, gap(2.0)])
        n = max(len(leg0), len(leg1))
        leg0, leg1 = np.pad(leg0, (0, n - len(leg0))), np.pad(leg1, (0, n - len(leg1)))
        def active(x):  # reference: 20 ms frames clearly above silence
            frames = x[: len(x) // 160 * 160].astype(np.float64).reshape(-1, 160)
            return np.sqrt((frames ** 2).mean(axis=1)) > 300
        a0, a1 = active(leg0), active(leg1)
        d1, d2 = a0.sum() * 0.02, a1.sum() * 0.02
        expected_overtalk = (a0 & a1).sum() * 0.02
        yield client.send_audio(call, {"leg0": leg0, "leg1": leg1})
        yield client.bye(call)
        session = service.manager.get(call.call_id)
        yield session.end("test")
        yield wait_for(lambda: analytics and session.detail()["analysis"], 5,
                       "the analysis figures and their analytics event")
        analysis = session.detail()["analysis"]
        self.assertLessEqual(abs(analysis["legs"]["leg0"]["talk_seconds"] - d1), 0.3 * d1, (analysis, d1))
        self.assertLessEqual(abs(analysis["legs"]["leg1"]["talk_seconds"] - d2), 0.3 * d2, (analysis, d2))
        self.assertLessEqual(abs(analysis["overtalk_seconds"] - expected_overtalk), 0.5,
                             (analysis, expected_overtalk))
        self.assertEqual(len(analytics), 1)
        rate_, _, data = read_wav(os.path.join(service.config.recording_dir,
                                               call.call_id + "_leg0.wav"))
        from siprec.media.codecs.g711 import ULAW_TO_PCM, encode_ulaw
        sent = ULAW_TO_PCM[np.frombuffer(encode_ulaw(leg0), dtype=np.uint8)]
        self.assertTrue(np.array_equal(data[:len(sent), 0], sent[:len(data)]))

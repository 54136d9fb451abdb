"""End to end: SRTP calls, DTMF events and quality figures on the real service."""

from __future__ import annotations

import json
import os

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from siprec.testing.src import SrcClient, StreamOffer, tone
from tests.e2e.harness import _sleep, dominant_frequency, read_wav, start_server


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
        yield client.send_audio(call, {"leg0": tone(440, 0.6), "leg1": tone(1000, 0.6)})
        yield _sleep(0.3)
        yield client.bye(call)
        session = service.manager.get(call.call_id)
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
        yield _sleep(0.4)
        session = service.manager.get(call.call_id)
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

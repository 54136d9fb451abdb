"""End to end: the real service on 127.0.0.1, SIPREC calls over UDP, TCP and TLS
with real RTP, recordings checked sample by sample."""

from __future__ import annotations

import json
import os

from twisted.internet import defer, reactor, ssl
from twisted.trial.unittest import TestCase

from siprec.testing.src import SrcClient, StreamOffer, tone
from tests.e2e.harness import (TEST_CERT, dominant_frequency, frames, packets_arrived, read_wav,
                               start_server, wait_for)

SECONDS = 1.0


def assert_close(test, actual, expected, delta):
    test.assertLessEqual(abs(actual - expected), delta, f"{actual} is not within {delta} of {expected}")


class TwoLegCallMixin:
    transport = "UDP"

    def server_address(self, service):
        if self.transport == "TLS":
            return ("127.0.0.1", service.config.tls_port)
        return ("127.0.0.1", service.config.ports[0])

    def tls_options(self):
        if self.transport != "TLS":
            return None
        with open(TEST_CERT, "rb") as f:
            authority = ssl.Certificate.loadPEM(f.read())
        return ssl.optionsForClientTLS("localhost", trustRoot=authority)

    @defer.inlineCallbacks
    def test_two_leg_call_recorded(self):
        """A two-leg PCMU/PCMA call gives one WAV per leg with its own tone and a
        combined two-channel WAV, caller first."""
        service = start_server(self, tls=self.transport == "TLS")
        client = SrcClient(reactor, self.server_address(service), self.transport,
                           tls_options=self.tls_options())
        yield client.start()
        self.addCleanup(client.stop)
        streams = [StreamOffer("leg0", payload_type=0), StreamOffer("leg1", payload_type=8)]
        call = yield client.invite(streams)
        self.assertEqual(call.final.status, 200, call.final.reason)
        self.assertIn("+sip.srs", call.final.headers.get("Contact"))
        self.assertEqual(call.final.headers.get("Content-Type"), "application/sdp")
        self.assertEqual(len(call.answer.media), 2)
        signals = {"leg0": tone(440, SECONDS), "leg1": tone(1000, SECONDS)}
        yield client.send_audio(call, signals)
        session = service.manager.get(call.call_id)
        yield wait_for(packets_arrived(session, {k: frames(v) for k, v in signals.items()}), 5,
                       "every RTP packet sent to reach the server before the BYE")
        response = yield client.bye(call)
        self.assertEqual(response.status, 200)
        yield session.end("bye")  # already ending: wait for finalisation

        rec = service.config.recording_dir
        base = os.path.join(rec, call.call_id.replace("@", "@"))
        for label, freq in (("leg0", 440), ("leg1", 1000)):
            rate, channels, data = read_wav(f"{base}_{label}.wav")
            self.assertEqual((rate, channels), (8000, 1))
            assert_close(self, len(data) / rate, SECONDS, 0.05)
            assert_close(self, dominant_frequency(data[:, 0], rate), freq, 10)
        rate, channels, data = read_wav(f"{base}.wav")
        self.assertEqual((rate, channels), (8000, 2))
        assert_close(self, dominant_frequency(data[:, 0], rate), 440, 10)
        assert_close(self, dominant_frequency(data[:, 1], rate), 1000, 10)
        with open(f"{base}.json") as f:
            record = json.load(f)
        self.assertEqual(record["call_id"], call.call_id)
        self.assertEqual([s["label"] for s in record["streams"]], ["leg0", "leg1"])
        self.assertEqual(record["participants"][0]["aor"], "sip:alice@example.com")
        self.assertTrue(os.path.exists(f"{base}.metadata.xml"))


class UdpCallTests(TwoLegCallMixin, TestCase):
    transport = "UDP"


class TcpCallTests(TwoLegCallMixin, TestCase):
    transport = "TCP"


class TlsCallTests(TwoLegCallMixin, TestCase):
    transport = "TLS"

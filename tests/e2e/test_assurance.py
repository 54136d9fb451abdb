"""End to end: every INVITE is accounted for. A call refused for want of RTP
ports leaves no file behind and shows in /metrics and GET /api/assurance; a
call recorded without audio on one leg is listed as incomplete."""

from __future__ import annotations

import json
import os

import treq
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from siprec.testing.src import SrcClient, StreamOffer, tone
from tests.e2e.harness import start_server


class AssuranceTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def get(self, service, path: str):
        url = f"http://127.0.0.1:{service.config.http_port}{path}"
        response = yield treq.get(url, pool=HTTPConnectionPool(reactor, persistent=False))
        body = yield response.content()
        return response.code, body

    @defer.inlineCallbacks
    def test_refused_for_ports_leaves_nothing_and_is_counted(self):
        """One port pair for two streams: 503 with Retry-After, no file in
        RECORDING_DIR, the refusal in /api/assurance and in /metrics."""
        from tests.netutil import free_udp_range
        base = free_udp_range(2)
        service = start_server(self, RTP_PORT_MIN=str(base), RTP_PORT_MAX=str(base + 1))
        client = SrcClient(reactor, ("127.0.0.1", service.config.ports[0]))
        yield client.start()
        self.addCleanup(client.stop)
        call = yield client.invite([StreamOffer("caller", 0), StreamOffer("agent", 0)])
        self.assertEqual(call.final.status, 503)
        self.assertEqual(call.final.headers.get("Retry-After"), "5")
        yield service.manager.files.idle()
        self.assertEqual(os.listdir(service.config.recording_dir), [])

        code, body = yield self.get(service, "/api/assurance")
        self.assertEqual(code, 200)
        view = json.loads(body)
        self.assertEqual(view["calls_refused"], 1)
        self.assertEqual(view["refused_by_reason"], {"No RTP port available": 1})
        [refusal] = view["recent_refusals"]
        self.assertEqual((refusal["call_id"], refusal["status"]), (call.call_id, 503))
        code, metrics = yield self.get(service, "/metrics")
        self.assertIn(b'siprec_calls_refused_total{reason="no_rtp_port_available",status="503"} 1.0',
                      metrics)

    @defer.inlineCallbacks
    def test_silent_leg_listed_as_incomplete(self):
        service = start_server(self)
        client = SrcClient(reactor, ("127.0.0.1", service.config.ports[0]))
        yield client.start()
        self.addCleanup(client.stop)
        call = yield client.invite([StreamOffer("caller", 0), StreamOffer("agent", 0)])
        self.assertEqual(call.final.status, 200)
        yield client.send_audio(call, {"caller": tone(440, 0.4)})
        yield client.bye(call)
        yield service.manager.get(call.call_id).end("test")
        code, body = yield self.get(service, "/api/assurance")
        view = json.loads(body)
        self.assertEqual((view["calls_recorded"], view["calls_incomplete"]), (1, 1))
        [entry] = view["recent_incomplete"]
        self.assertEqual(entry["call_id"], call.call_id)
        self.assertEqual(entry["problems"], ["leg agent: no audio received"])

"""End to end: a drain (POST /api/admin/drain, as SIGTERM starts it) is visible
to load balancers: OPTIONS and new INVITEs get 503 with Retry-After and
readiness fails, while the call already up is recorded to its end."""

from __future__ import annotations

import json
import os

import treq
from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from siprec.sip.message import parse_message
from siprec.testing.src import SrcClient, StreamOffer, tone
from tests.e2e.harness import start_server

OPTIONS = (b"OPTIONS sip:127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-lb%d\r\n"
           b"From: <sip:lb@127.0.0.1>;tag=lb\r\nTo: <sip:127.0.0.1>\r\nCall-ID: lb-%d@127.0.0.1\r\n"
           b"CSeq: %d OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


class KeepAlive(protocol.DatagramProtocol):
    """A load balancer's OPTIONS probe."""

    def __init__(self) -> None:
        self.waiting = None
        self.n = 0

    def probe(self, sip_port: int) -> defer.Deferred:
        self.n += 1
        self.waiting = defer.Deferred()
        port = self.transport.getHost().port
        self.transport.write(OPTIONS % (sip_port, port, self.n, self.n, self.n),
                             ("127.0.0.1", sip_port))
        return self.waiting

    def datagramReceived(self, data, addr):
        if self.waiting is not None:
            d, self.waiting = self.waiting, None
            d.callback(parse_message(data))


class DrainTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def http(self, service, method: str, path: str):
        url = f"http://127.0.0.1:{service.config.http_port}{path}"
        response = yield treq.request(method, url,
                                      pool=HTTPConnectionPool(reactor, persistent=False))
        body = yield response.content()
        return response.code, json.loads(body)

    @defer.inlineCallbacks
    def test_drain_refuses_new_calls_and_keeps_the_one_up(self):
        service = start_server(self)
        sip_port = service.config.ports[0]
        probe = KeepAlive()
        port = reactor.listenUDP(0, probe, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = SrcClient(reactor, ("127.0.0.1", sip_port))
        yield client.start()
        self.addCleanup(client.stop)

        ok = yield probe.probe(sip_port)
        self.assertEqual(ok.status, 200)
        call = yield client.invite([StreamOffer("caller", 0), StreamOffer("agent", 0)])
        self.assertEqual(call.final.status, 200)

        code, body = yield self.http(service, "POST", "/api/admin/drain")
        self.assertEqual((code, body["draining"], body["active_calls"]), (202, True, 1))
        refused = yield probe.probe(sip_port)
        self.assertEqual((refused.status, refused.headers.get("Retry-After")), (503, "30"))
        late = yield client.invite([StreamOffer("caller", 0)])
        self.assertEqual((late.final.status, late.final.headers.get("Retry-After")), (503, "30"))
        code, _ = yield self.http(service, "GET", "/health/ready")
        self.assertEqual(code, 503)

        yield client.send_audio(call, {"caller": tone(500, 0.5), "agent": tone(900, 0.5)})
        bye = yield client.bye(call)
        self.assertEqual(bye.status, 200)
        session = service.manager.get(call.call_id)
        yield session.end("bye")
        self.assertEqual(session.end_reason, "bye")
        self.assertTrue(os.path.exists(os.path.join(service.config.recording_dir,
                                                    call.call_id + ".wav")))
        code, view = yield self.http(service, "GET", "/api/assurance")
        self.assertEqual((view["calls_recorded"], view["refused_by_reason"]),
                         (1, {"Shutting down": 1}))

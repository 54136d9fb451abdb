"""The real ``twistd siprec`` process: startup errors, serving, SIGTERM."""

from __future__ import annotations

import os
import signal
import sys

import treq
from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from siprec.testing.src import SrcClient, StreamOffer, tone
from tests.e2e.harness import _sleep, free_ports, read_wav, rtp_range


def twistd_env(tmp: str, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG", "PYTHONPATH", "CI")}
    env.update(overrides)
    return env


class _Collect(protocol.ProcessProtocol):
    def __init__(self, ready_marker: bytes = b""):
        self.out = b""
        self.ended = defer.Deferred()
        self.ready = defer.Deferred()
        self.marker = ready_marker

    def outReceived(self, data):
        self.out += data
        if self.marker and self.marker in self.out and not self.ready.called:
            self.ready.callback(None)

    errReceived = outReceived

    def processEnded(self, reason):
        if self.marker and not self.ready.called:
            self.ready.errback(RuntimeError("twistd exited early:\n" + self.out.decode(errors="replace")))
        # twistd re-raises the signal it stopped on, so SIGTERM is a clean exit too.
        if reason.value.signal == signal.SIGTERM:
            self.ended.callback("SIGTERM")
        else:
            self.ended.callback(reason.value.exitCode)


def spawn_twistd(testcase, env, *args, marker=b""):
    proto = _Collect(marker)
    cwd = testcase.mktemp()
    os.makedirs(cwd)
    reactor.spawnProcess(proto, sys.executable,
                         [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                          "-n", "--pidfile=", "siprec", *args],
                         env=env, path=cwd)
    return proto, cwd


class StartupErrorTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def check_error(self, expected, *args, **env):
        proto, _ = spawn_twistd(self, twistd_env(self.mktemp(), **env), *args)
        code = yield proto.ended
        self.assertNotEqual(code, 0)
        lines = [l for l in proto.out.decode().splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, proto.out.decode())
        self.assertIn(expected, lines[0])

    def test_rtp_range_inverted(self):
        """RTP_PORT_MIN > RTP_PORT_MAX stops startup with one line naming the variable."""
        return self.check_error("RTP_PORT_MIN", RTP_PORT_MIN="20000", RTP_PORT_MAX="10000")

    def test_port_not_a_number(self):
        """A port that is not a number names HTTP_PORT."""
        return self.check_error("HTTP_PORT", HTTP_PORT="eighty")

    def test_tls_file_missing(self):
        """ENABLE_TLS with a missing certificate names TLS_CERT_FILE."""
        return self.check_error("TLS_CERT_FILE", ENABLE_TLS="true",
                                TLS_CERT_FILE="/nonexistent/cert.pem", TLS_KEY_FILE="/nonexistent/key.pem")

    def test_missing_config_file(self):
        """--config naming a file that does not exist is one line too."""
        return self.check_error("--config", "--config", "/nonexistent/siprec.env")


class TwistdProcessTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_serves_and_shuts_down_gracefully(self):
        """twistd -n siprec serves /health, records a call, and on SIGTERM sends BYE,
        finalises the recording and exits 0."""
        sip_port, http_port = free_ports(2)
        rtp_min, rtp_max = rtp_range()
        rec = os.path.abspath(self.mktemp())
        env = twistd_env(rec, SIP_HOST="127.0.0.1", PORTS=str(sip_port), HTTP_HOST="127.0.0.1",
                         HTTP_PORT=str(http_port), RECORDING_DIR=rec, EXTERNAL_IP="127.0.0.1",
                         RTP_PORT_MIN=str(rtp_min), RTP_PORT_MAX=str(rtp_max))
        proto, _ = spawn_twistd(self, env, marker=b"ready: SIP on")
        self.addCleanup(lambda: proto.ended if proto.ended.called else _kill(proto))
        yield proto.ready
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = yield treq.get(f"http://127.0.0.1:{http_port}/health/ready", pool=pool)
        self.assertEqual(response.code, 200)
        yield response.content()

        client = SrcClient(reactor, ("127.0.0.1", sip_port))
        yield client.start()
        self.addCleanup(client.stop)
        call = yield client.invite([StreamOffer("a", 0), StreamOffer("b", 8)])
        self.assertEqual(call.final.status, 200)
        yield client.send_audio(call, {"a": tone(440, 0.6), "b": tone(880, 0.6)})
        proto.transport.signalProcess("TERM")
        code = yield proto.ended
        self.assertIn(code, (0, "SIGTERM"), proto.out.decode())
        yield _sleep(0.1)
        self.assertEqual([r.method for r in call.requests], ["BYE"])
        rate, channels, data = read_wav(os.path.join(rec, call.call_id + ".wav"))
        self.assertEqual(channels, 2)
        self.assertGreater(len(data), 0.5 * rate)
        self.assertIn(b"Shutting down: finalising 1 call(s)", proto.out)


def _kill(proto):
    try:
        proto.transport.signalProcess("KILL")
    except Exception:
        pass
    return proto.ended

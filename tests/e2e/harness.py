"""Start the real service tree on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import wave
from typing import Tuple

import numpy as np
from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher

from siprec.config import load_config
from siprec.service import SiprecService
from tests.netutil import free_port, free_ports  # noqa: F401 (re-exported for tests)

__all__ = ["free_port", "start_server", "read_wav", "dominant_frequency", "TEST_CERT",
           "TracebackWatch"]

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_CERT = os.path.join(HERE, "fixtures", "server.pem")
TEST_KEY = os.path.join(HERE, "fixtures", "server.key")


def rtp_range(size: int = 40) -> Tuple[int, int]:
    """A random even RTP range so parallel test workers rarely collide."""
    import random
    start = random.randrange(20000, 60000 - size, 2)
    return start, start + size - 1


class TracebackWatch:
    """Fails the test if anything logged a Python traceback while the server ran.

    End-to-end runs feed the server real peers' traffic: a traceback in its
    log is a bug even when the call still worked, so it fails the test
    (trial itself only catches failures logged with ``log.failure``).
    """

    def __init__(self) -> None:
        self.seen: list = []

    def __call__(self, event: dict) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            self.seen.append(failure.getTraceback())
            return
        try:
            text = formatEvent(event)
        except Exception:
            return
        if "Traceback (most recent call last)" in text:
            self.seen.append(text)

    def install(self, testcase) -> None:
        globalLogPublisher.addObserver(self)
        testcase.addCleanup(self.check, testcase)

    def check(self, testcase) -> None:
        globalLogPublisher.removeObserver(self)
        if self.seen:
            testcase.fail(f"{len(self.seen)} traceback(s) logged during the test; first:\n"
                          f"{self.seen[0][-3000:]}")


def start_server(testcase, tls: bool = False, **env) -> SiprecService:
    """Start a SiprecService in this process; stopped by the test's cleanup, after
    which the test fails if any traceback was logged meanwhile."""
    rec_dir = testcase.mktemp()
    os.makedirs(rec_dir)
    rtp_min, rtp_max = rtp_range()
    sip_port, http_port, tls_port = free_ports(3)
    environ = {
        "SIP_HOST": "127.0.0.1",
        "PORTS": str(sip_port),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port),
        "RECORDING_DIR": rec_dir,
        "RTP_PORT_MIN": str(rtp_min),
        "RTP_PORT_MAX": str(rtp_max),
        "EXTERNAL_IP": "127.0.0.1",
        "SHUTDOWN_TIMEOUT": "5s",
        "STT_ENABLED": "false",  # tests of transcription turn it on
    }
    if tls:
        environ.update({"ENABLE_TLS": "true", "TLS_PORT": str(tls_port),
                        "TLS_CERT_FILE": TEST_CERT, "TLS_KEY_FILE": TEST_KEY})
    environ.update({k.upper(): str(v) for k, v in env.items()})
    config = load_config(environ=environ, env_file=None)
    service = SiprecService(config, reactor)
    TracebackWatch().install(testcase)  # checked after the server stopped (cleanups run LIFO)
    service.startService()
    testcase.addCleanup(service.stopService)
    return service


def read_wav(path: str) -> Tuple[int, int, np.ndarray]:
    with wave.open(path, "rb") as w:
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return rate, channels, data.reshape(-1, channels)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    samples = samples.astype(np.float64)
    if not len(samples):
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def _sleep(seconds: float) -> defer.Deferred:
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d

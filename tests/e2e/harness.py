"""Start the real service tree on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import wave
from typing import Any, Callable, Dict, Tuple

import numpy as np
from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher

from siprec.config import load_config
from siprec.service import SiprecService
from tests.netutil import free_port, free_ports  # noqa: F401 (re-exported for tests)

__all__ = ["free_port", "start_server", "read_wav", "dominant_frequency", "TEST_CERT",
           "TracebackWatch", "wait_for", "packets_arrived", "frames"]

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


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "the condition",
             interval: float = 0.02) -> defer.Deferred:
    """Fire with ``predicate()``'s first truthy value, checked every ``interval``.

    Tests wait for what they need (a file, a state, N packets) instead of
    sleeping a guess: fast when the server is, and a failure naming ``what``
    (an AssertionError, so trial reports a failure) when it never happens.
    """
    pending = []
    d = defer.Deferred(lambda _: pending and pending[0].active() and pending[0].cancel())
    deadline = reactor.seconds() + timeout

    def check() -> None:
        pending.clear()
        try:
            value = predicate()
        except BaseException:
            d.errback()
            return
        if value:
            d.callback(value)
        elif reactor.seconds() >= deadline:
            d.errback(AssertionError(f"timed out after {timeout:g} s waiting for {what}"))
        else:
            pending.append(reactor.callLater(interval, check))

    check()
    return d


def packets_arrived(session, counts: Dict[str, int]) -> Callable[[], bool]:
    """A wait_for predicate: each listed stream label has received at least its
    number of RTP packets (what an SRC sent before it goes on to the next step)."""
    def check() -> bool:
        got = {s["label"]: s["packets"] for s in session.summary()["streams"]}
        return all(got.get(label, 0) >= n for label, n in counts.items())
    return check


def frames(signal, ptime: float = 0.02, rate: int = 8000) -> int:
    """RTP packets SrcClient.send_audio makes of ``signal``."""
    per_packet = int(rate * ptime)
    return -(-len(signal) // per_packet)


def _sleep(seconds: float) -> defer.Deferred:
    """Real elapsed time, for tests about time itself (an RTP timeout, a pause's length)."""
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d

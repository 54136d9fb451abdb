"""Start the real service tree on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import socket
import wave
from typing import Optional, Tuple

import numpy as np
from twisted.internet import defer, reactor

from siprec.config import load_config
from siprec.service import SiprecService

__all__ = ["free_port", "start_server", "read_wav", "dominant_frequency", "TEST_CERT"]

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_CERT = os.path.join(HERE, "fixtures", "server.pem")
TEST_KEY = os.path.join(HERE, "fixtures", "server.key")


def free_port(kind=(socket.SOCK_DGRAM, socket.SOCK_STREAM)) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", port))
            udp.close()
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def rtp_range(size: int = 40) -> Tuple[int, int]:
    """A random even RTP range so parallel test workers rarely collide."""
    import random
    start = random.randrange(20000, 60000 - size, 2)
    return start, start + size - 1


def start_server(testcase, tls: bool = False, **env) -> SiprecService:
    """Start a SiprecService in this process; stopped by the test's cleanup."""
    rec_dir = testcase.mktemp()
    os.makedirs(rec_dir)
    rtp_min, rtp_max = rtp_range()
    environ = {
        "SIP_HOST": "127.0.0.1",
        "PORTS": str(free_port()),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(free_port()),
        "RECORDING_DIR": rec_dir,
        "RTP_PORT_MIN": str(rtp_min),
        "RTP_PORT_MAX": str(rtp_max),
        "EXTERNAL_IP": "127.0.0.1",
        "SHUTDOWN_TIMEOUT": "5s",
        "STT_ENABLED": "false",  # tests of transcription turn it on
    }
    if tls:
        environ.update({"ENABLE_TLS": "true", "TLS_PORT": str(free_port()),
                        "TLS_CERT_FILE": TEST_CERT, "TLS_KEY_FILE": TEST_KEY})
    environ.update({k.upper(): str(v) for k, v in env.items()})
    config = load_config(environ=environ, env_file=None)
    service = SiprecService(config, reactor)
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


def sleep(seconds: float) -> defer.Deferred:
    return defer.Deferred.fromFuture if False else _sleep(seconds)


def _sleep(seconds: float) -> defer.Deferred:
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d

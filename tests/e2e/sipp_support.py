"""SIPp as a real SRC in end-to-end tests, and what checking its recordings takes.

Finding SIPp, running one of our scenarios bounded (``-m 1``, ``-timeout``),
reading what a scenario logged, feeding the legs SIPp cannot (3.6 sends
``rtp_stream`` audio to the first ``m=audio`` of the answer only), and
G.711 written here from the ITU-T segment definitions so that the server's
codecs are never checked against themselves.
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
from datetime import datetime
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import treq
from twisted.internet import defer, protocol, reactor, task, utils
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import HTTPConnectionPool

from tests.e2e.harness import free_port, wait_for
from tests.netutil import free_udp_range

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "sipp")

RATE = 8000
FRAME = 160  # 20 ms of G.711
AMPLITUDE = 8000.0
TONE_RMS, SILENCE_RMS = 1000.0, 50.0
PCMU, PCMA = 0, 8


# -- G.711, from the segment/step definitions of ITU-T G.711 ----------------------

def ulaw_encode(samples: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(samples, dtype=np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.abs(x) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def ulaw_decode(octets: np.ndarray) -> np.ndarray:
    b = ~np.asarray(octets, dtype=np.int32) & 0xFF
    exponent, mantissa = (b >> 4) & 7, b & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(b & 0x80, -magnitude, magnitude).astype(np.int16)


# Lower edge of each A-law step (segment s, step m) in 13-bit magnitude units:
# segment 0 has 16 steps of 2 from 0, segment s >= 1 16 steps of 2**s from 32 << (s-1).
_ALAW_LOWER_EDGES = np.array([2 * m if s == 0 else (32 + 2 * m) << (s - 1)
                              for s in range(8) for m in range(16)])


def alaw_encode(samples: np.ndarray) -> np.ndarray:
    """A-law octets: the step holding each 13-bit magnitude, even bits inverted."""
    x = np.asarray(samples, dtype=np.int32) >> 3
    negative = x < 0
    magnitude = np.where(negative, -x - 1, x)
    step = np.searchsorted(_ALAW_LOWER_EDGES, magnitude, side="right") - 1
    return (step ^ np.where(negative, 0x55, 0xD5)).astype(np.uint8)


def alaw_decode(octets: np.ndarray) -> np.ndarray:
    """Each octet's step midpoint, scaled from 13 to 16 bits."""
    code = np.asarray(octets, dtype=np.int32) ^ 0x55
    segment, step = (code >> 4) & 7, code & 0x0F
    middle = np.where(segment == 0, 2 * step + 1, (33 + 2 * step) << np.maximum(segment - 1, 0))
    return np.where(code & 0x80, middle * 8, -middle * 8).astype(np.int16)


ENCODE = {PCMU: ulaw_encode, PCMA: alaw_encode}
DECODE = {PCMU: ulaw_decode, PCMA: alaw_decode}


def tone(freq: float, seconds: float, rate: int = RATE, amplitude: float = AMPLITUDE) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def write_audio_file(workdir: str, name: str, octets: np.ndarray) -> str:
    """Raw G.711 octets for rtp_stream: SIPp 3.6.1 sends the file's bytes as
    they are (a WAV header would go out as audio)."""
    path = os.path.join(workdir, name)
    with open(path, "wb") as f:
        f.write(np.asarray(octets, dtype=np.uint8).tobytes())
    return path


# -- finding and running SIPp -----------------------------------------------------

def _unavailable(testcase: TestCase, reason: str) -> None:
    """Skip with one line; on CI a missing SIPp is a failure, not a skip."""
    if os.environ.get("CI") == "true":
        testcase.fail(f"{reason} (CI=true, so this is a failure)")
    raise SkipTest(reason)


@defer.inlineCallbacks
def find_sipp(testcase: TestCase):
    path = shutil.which("sipp")
    if path is None:
        _unavailable(testcase, "sipp not installed (Debian package sip-tester)")
    out, err, _ = yield utils.getProcessOutputAndValue(path, ["-v"], env=dict(os.environ))
    if b"RTPSTREAM" not in out + err:
        _unavailable(testcase, f"{path} was built without RTPSTREAM (no rtp_stream)")
    return path


def free_media_port() -> int:
    """An even port with it and the next three free on UDP (SIPp's -mp)."""
    return free_udp_range(4, 30000, 60000)


class SippRun:
    """One finished SIPp run: exit code, output, and the files it left."""

    def __init__(self, code: int, output: str, workdir: str):
        self.code = code
        self.output = output
        self.workdir = workdir

    def report(self) -> str:
        parts = [self.output.strip()]
        for pattern in ("*_errors.log", "*_messages.log"):
            for path in glob.glob(os.path.join(self.workdir, pattern)):
                with open(path, errors="replace") as f:
                    parts.append(f"--- {os.path.basename(path)}\n{f.read()[-6000:]}")
        return "\n".join(parts)

    def logged(self, tag: str) -> Dict[str, str]:
        """The ``key=value`` fields of the first ``<log>`` line starting with ``tag``."""
        for path in glob.glob(os.path.join(self.workdir, "*_logs.log")):
            with open(path) as f:
                for line in f:
                    if line.startswith(tag):
                        return dict(part.split("=", 1) for part in line.split() if "=" in part)
        return {}

    def messages(self) -> str:
        out = []
        for path in glob.glob(os.path.join(self.workdir, "*_messages.log")):
            with open(path, errors="replace") as f:
                out.append(f.read())
        return "\n".join(out)


@defer.inlineCallbacks
def run_scenario(sipp: str, scenario: str, sip_port: int, workdir: str,
                 transport: str = "u1", variables: Optional[Dict[str, object]] = None,
                 timeout: int = 15):
    """Run ``tests/e2e/sipp/<scenario>`` for one call; its -timeout bounds it."""
    args = ["-sf", os.path.join(SCENARIOS, scenario), "-m", "1", "-t", transport,
            "-i", "127.0.0.1", "-p", str(free_port()),
            "-mi", "127.0.0.1", "-mp", str(free_media_port()),
            "-timeout", f"{timeout}s", "-timeout_error", "-recv_timeout", "5000",
            "-trace_err", "-trace_msg", "-trace_logs", "-nostdin"]
    for name, value in (variables or {}).items():
        args += ["-set", name, str(value)]
    args.append(f"127.0.0.1:{sip_port}")
    out, err, code = yield utils.getProcessOutputAndValue(sipp, args, env=dict(os.environ),
                                                          path=workdir)
    return SippRun(code, (out + err).decode("utf-8", "replace"), workdir)


# -- the legs SIPp cannot feed ----------------------------------------------------

def stream_port(service, label: str) -> Optional[Tuple[object, int]]:
    """(session, port) of the first live session's stream ``label``, once answered."""
    for session in service.manager.sessions():
        for stream in session.summary()["streams"]:
            if stream["label"] == label and stream["port"]:
                return session, stream["port"]
    return None


def _live_port(session, label: str) -> Optional[int]:
    """The port the stream ``label`` is answered on now; None while it is removed."""
    for stream in session.summary()["streams"]:
        if stream["label"] == label and stream["state"] != "closed" and stream["port"]:
            return stream["port"]
    return None


class LegFeeder(protocol.DatagramProtocol):
    """Sends ``octets`` (G.711 of ``payload_type``) to the port the server
    answers for ``label``, 20 ms a packet, from the moment the stream shows
    up until the session stops being active or the audio runs out.

    Like a real SRC it follows the stream: silent while the stream is
    removed, on the new port once it is offered again, with its RTP
    timestamps counting the silence. ``spurts`` lists (first packet,
    packets) of each run sent.
    """

    def __init__(self, service, label: str, octets: np.ndarray, payload_type: int,
                 loop_audio: bool = True):
        self.service = service
        self.label = label
        self.audio = np.asarray(octets, dtype=np.uint8)
        self.payload_type = payload_type
        self.loop_audio = loop_audio
        self.session = None
        self.target: Optional[Tuple[str, int]] = None
        self.sent = 0
        self.spurts: List[List[int]] = []
        self.seq = random.randrange(1 << 16)
        self.timestamp = random.randrange(1 << 32)
        self.ssrc = random.randrange(1 << 32)
        self.loop = task.LoopingCall.withCount(self._tick)
        self.loop.clock = reactor

    @property
    def call_id(self) -> Optional[str]:
        return self.session.call_id if self.session is not None else None

    def start(self, testcase: TestCase) -> None:
        self.port = reactor.listenUDP(0, self, interface="127.0.0.1")
        testcase.addCleanup(self.stop)
        self.loop.start(FRAME / RATE, now=True)

    def stop(self) -> defer.Deferred:
        if self.loop.running:
            self.loop.stop()
        return defer.maybeDeferred(self.port.stopListening)

    def _tick(self, count: int) -> None:
        if self.session is None:
            found = stream_port(self.service, self.label)
            if found is None:
                return
            self.session = found[0]
        if self.session.state != "active":
            self.loop.stop()
            return
        port = _live_port(self.session, self.label)
        if port is None:  # removed: silence, but time goes on
            self.timestamp = (self.timestamp + max(1, count) * FRAME) & 0xFFFFFFFF
            self.target = None
            return
        if self.target is None:
            self.spurts.append([self.sent, 0])
        self.target = ("127.0.0.1", port)
        for _ in range(max(1, count)):  # catch up when the reactor was late
            start = self.sent * FRAME
            if not self.loop_audio and start >= len(self.audio):
                self.loop.stop()
                return
            start %= len(self.audio)
            payload = self.audio[start:start + FRAME].tobytes()
            first = not self.spurts[-1][1]
            header = bytes([0x80, (0x80 if first else 0) | self.payload_type]) + \
                self.seq.to_bytes(2, "big") + self.timestamp.to_bytes(4, "big") + \
                self.ssrc.to_bytes(4, "big")
            self.transport.write(header + payload, self.target)
            self.sent += 1
            self.spurts[-1][1] += 1
            self.seq = (self.seq + 1) & 0xFFFF
            self.timestamp = (self.timestamp + FRAME) & 0xFFFFFFFF


# -- what the server said ----------------------------------------------------------

class LogCapture:
    """Every log line the server wrote during the test, as text."""

    def __init__(self) -> None:
        self.lines: List[str] = []

    def __call__(self, event: dict) -> None:
        try:
            self.lines.append(formatEvent(event))
        except Exception:
            pass

    def install(self, testcase: TestCase) -> "LogCapture":
        globalLogPublisher.addObserver(self)
        testcase.addCleanup(globalLogPublisher.removeObserver, self)
        return self

    def tolerated(self) -> List[str]:
        return [line for line in self.lines if "tolerated: " in line]


def session_ended(service, call_id: str) -> Callable[[], object]:
    """A wait_for predicate: the call's files are final (its BYE processed)."""
    def check():
        session = service.manager.get(call_id)
        return session is not None and session.state == "ended" and session
    return check


@defer.inlineCallbacks
def api_get(service, path: str):
    pool = HTTPConnectionPool(reactor, persistent=False)
    response = yield treq.get(f"http://127.0.0.1:{service.config.http_port}{path}", pool=pool)
    body = yield response.json()
    return response.code, body


@defer.inlineCallbacks
def live_detail(service, what: str = "the call to be answered", timeout: float = 5.0):
    """GET /api/sessions/{id} of the one call, as soon as it is answered."""
    session = yield wait_for(lambda: next((s for s in service.manager.sessions()
                                           if s.state == "active"), None), timeout, what)
    code, body = yield api_get(service, f"/api/sessions/{session.id}")
    assert code == 200, (code, body)
    return body


def read_record(service, call_id: str) -> dict:
    with open(os.path.join(service.config.recording_dir, f"{call_id}.json")) as f:
        return json.load(f)


# -- looking at recordings ----------------------------------------------------------

def frame_rms(samples: np.ndarray, frame: int = FRAME) -> np.ndarray:
    n = len(samples) // frame
    frames = samples[:n * frame].astype(np.float64).reshape(n, frame)
    return np.sqrt(np.mean(frames ** 2, axis=1))


def loud_part(samples: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """The 20 ms frames that carry tone, back to back."""
    n = len(samples) // frame
    frames = samples[:n * frame].reshape(n, frame)
    return frames[frame_rms(samples, frame) > TONE_RMS].reshape(-1)


def runs(mask: Sequence[bool]) -> List[Tuple[int, int]]:
    """(start, length) of each run of True, in frames."""
    out, start = [], None
    for i, value in enumerate(list(mask) + [False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            out.append((start, i - start))
            start = None
    return out


def inner_silence(samples: np.ndarray, rate: int = RATE) -> Tuple[float, float]:
    """(start, length) in seconds of the longest silent run between tone."""
    frame = rate // 50
    rms = frame_rms(samples, frame)
    loud = np.nonzero(rms > TONE_RMS)[0]
    if not len(loud):
        return 0.0, 0.0
    gaps = runs(rms[loud[0]:loud[-1] + 1] < SILENCE_RMS)
    if not gaps:
        return 0.0, 0.0
    start, length = max(gaps, key=lambda r: r[1])
    return (loud[0] + start) * frame / rate, length * frame / rate


def exact_fraction(samples: np.ndarray, reference: np.ndarray, period: int) -> float:
    """Share of the tone's 20 ms windows that equal the decoded reference
    exactly, each tone segment aligned on its own phase."""
    rms = frame_rms(samples)
    matched = total = 0
    for start, length in runs(rms > TONE_RMS):
        # leave out the edge frames, which may hold part silence
        seg = samples[(start + 1) * FRAME:(start + length - 1) * FRAME]
        if len(seg) < period:
            continue
        errors = [np.count_nonzero(seg[:period] - np.roll(reference, -p)[:period]) for p in range(period)]
        phase = int(np.argmin(errors))
        expected = np.resize(np.roll(reference, -phase), len(seg))
        for i in range(0, len(seg) - FRAME + 1, FRAME):
            total += 1
            matched += np.array_equal(seg[i:i + FRAME], expected[i:i + FRAME])
    return matched / total if total else 0.0


def find_sequence(samples: np.ndarray, expected: np.ndarray, search: int) -> Optional[int]:
    """First offset below ``search`` where ``samples`` start with ``expected``'s first frame."""
    head = expected[:FRAME]
    for offset in range(0, min(search, len(samples) - FRAME + 1)):
        if np.array_equal(samples[offset:offset + FRAME], head):
            return offset
    return None


def aligned_snr(samples: np.ndarray, reference: np.ndarray, max_lag: int) -> Tuple[int, float]:
    """(lag, SNR in dB) of ``samples`` against ``reference`` at the best lag in
    0..max_lag, over the reference's length (for audio that went through a
    resampler and cannot match sample for sample)."""
    reference = reference.astype(np.float64)
    best = (0, -np.inf)
    n = len(reference)
    for lag in range(0, max_lag + 1):
        part = samples[lag:lag + n].astype(np.float64)
        if len(part) < n:
            break
        noise = np.sum((part - reference) ** 2)
        snr = 10 * np.log10(np.sum(reference ** 2) / max(noise, 1e-9))
        if snr > best[1]:
            best = (lag, snr)
    return best


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class SippTestCase(TestCase):
    """Assertions the SIPp tests share."""

    timeout = 40

    def assertClose(self, actual: float, expected: float, delta: float, what: str) -> None:
        self.assertLessEqual(abs(actual - expected), delta,
                             f"{what}: {actual:.3f} is not within {delta} of {expected:.3f}")

    def assertTolerated(self, record: dict, logs: LogCapture, *notes: str) -> None:
        """Each note is in the record's tolerances and was logged as tolerated."""
        for note in notes:
            self.assertTrue(any(note in t for t in record["tolerances"]),
                            f"{note!r} not among the record's tolerances: {record['tolerances']}")
            self.assertTrue(any(note in line for line in logs.tolerated()),
                            f"{note!r} was not logged as tolerated: {logs.tolerated()}")

    def assertPlayed(self, samples: np.ndarray, expected: np.ndarray, what: str,
                     rest_silent: bool = True, within: int = FRAME) -> int:
        """``samples`` hold ``expected`` sample for sample, starting within the
        first ``within`` samples, and (``rest_silent``) nothing but silence
        around it. Returns where it starts."""
        offset = find_sequence(samples, expected, within)
        self.assertIsNotNone(offset, f"{what}: the audio sent does not start in the first "
                                     f"{within / RATE:.3f} s of the file")
        got = samples[offset:offset + len(expected)]
        self.assertEqual(len(got), len(expected),
                         f"{what}: {len(got) / RATE:.3f} s recorded of {len(expected) / RATE:.3f} s played")
        differ = int(np.count_nonzero(got != expected))
        self.assertEqual(differ, 0, f"{what}: {differ} of {len(expected)} samples differ from what was sent")
        if rest_silent:
            outside = np.concatenate([samples[:offset], samples[offset + len(expected):]])
            self.assertLessEqual(len(outside), within + FRAME,
                                 f"{what}: {len(outside)} samples beyond what was played")
            self.assertFalse(np.any(outside), f"{what}: sound outside what was played")
        return offset

    def assertSippPassed(self, run: SippRun) -> None:
        self.assertEqual(run.code, 0, "SIPp failed the scenario:\n" + run.report())

    @defer.inlineCallbacks
    def ended(self, service, call_id: str, timeout: float = 5.0):
        """The session once its files are final; the record read back from disk."""
        session = yield wait_for(session_ended(service, call_id), timeout,
                                 f"call {call_id} to end after SIPp's BYE")
        return session, read_record(service, call_id)

"""End to end with a third-party SIP stack: SIPp places a SIPREC call on the
real service (UDP and TCP), pauses and resumes it by re-INVITE, and the
recordings are checked sample by sample.

SIPp 3.6 sends audio on one m-line only (rtp_stream goes to the first
``m=audio`` of the answer), so SIPp feeds leg0 and this test feeds leg1
itself, on the port the server answered for it, without pausing: the
server must record silence while the SRC has the stream inactive.
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
from datetime import datetime
from typing import List, Optional, Tuple

import numpy as np
from twisted.internet import defer, protocol, reactor, task, utils
from twisted.trial.unittest import SkipTest, TestCase

from tests.netutil import free_udp_range
from tests.e2e.harness import dominant_frequency, free_port, read_wav, start_server

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIO = os.path.join(HERE, "sipp", "siprec_uac.xml")
TONE_FILE = "leg0_tone.ulaw"  # the name the scenario's rtp_stream plays

RATE = 8000
FRAME = 160  # 20 ms of PCMU
TALK1, PAUSE1, TALK2 = 2.0, 1.0, 2.0  # seconds, passed to the scenario
LEG0_HZ, LEG1_HZ = 700.0, 1200.0  # 80 and 20 samples per period: seamless loops
AMPLITUDE = 8000.0
TONE_RMS, SILENCE_RMS = 1000.0, 50.0


# -- G.711 mu-law, written here so the server's codec is not checked by itself --

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


def tone_ulaw(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return ulaw_encode(AMPLITUDE * np.sin(2 * np.pi * freq * t))


# -- finding SIPp ---------------------------------------------------------------

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


# -- the second leg ---------------------------------------------------------------

class Leg1Feeder(protocol.DatagramProtocol):
    """Sends a PCMU tone to the port the server answered for leg1, every
    20 ms from the moment the session shows up until it stops being active."""

    def __init__(self, service, label: str = "leg1"):
        self.service = service
        self.label = label
        self.audio = tone_ulaw(LEG1_HZ, 1.0)
        self.call_id: Optional[str] = None
        self.target: Optional[Tuple[str, int]] = None
        self.session = None
        self.sent = 0
        self.seq = random.randrange(1 << 16)
        self.timestamp = random.randrange(1 << 32)
        self.ssrc = random.randrange(1 << 32)
        self.loop = task.LoopingCall.withCount(self._tick)
        self.loop.clock = reactor

    def start(self) -> None:
        self.port = reactor.listenUDP(0, self, interface="127.0.0.1")
        self.loop.start(FRAME / RATE, now=True)

    def stop(self) -> defer.Deferred:
        if self.loop.running:
            self.loop.stop()
        return defer.maybeDeferred(self.port.stopListening)

    def _find(self) -> None:
        for session in self.service.manager.sessions():
            for stream in session.summary()["streams"]:
                if stream["label"] == self.label and stream["port"]:
                    self.session, self.call_id = session, session.call_id
                    self.target = ("127.0.0.1", stream["port"])
                    return

    def _tick(self, count: int) -> None:
        if self.session is None:
            self._find()
            return
        if self.session.state != "active":
            self.loop.stop()
            return
        for _ in range(max(1, count)):  # catch up when the reactor was late
            start = (self.sent * FRAME) % len(self.audio)
            payload = self.audio[start:start + FRAME].tobytes()
            header = bytes([0x80, 0x80 if self.sent == 0 else 0x00]) + \
                self.seq.to_bytes(2, "big") + self.timestamp.to_bytes(4, "big") + \
                self.ssrc.to_bytes(4, "big")
            self.transport.write(header + payload, self.target)
            self.sent += 1
            self.seq = (self.seq + 1) & 0xFFFF
            self.timestamp = (self.timestamp + FRAME) & 0xFFFFFFFF


# -- looking at recordings ------------------------------------------------------------

def frame_rms(samples: np.ndarray) -> np.ndarray:
    n = len(samples) // FRAME
    frames = samples[:n * FRAME].astype(np.float64).reshape(n, FRAME)
    return np.sqrt(np.mean(frames ** 2, axis=1))


def loud_part(samples: np.ndarray) -> np.ndarray:
    """The 20 ms frames that carry tone, back to back."""
    n = len(samples) // FRAME
    frames = samples[:n * FRAME].reshape(n, FRAME)
    return frames[frame_rms(samples) > TONE_RMS].reshape(-1)


def runs(mask: np.ndarray) -> List[Tuple[int, int]]:
    """(start, length) of each run of True, in frames."""
    out, start = [], None
    for i, value in enumerate(list(mask) + [False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            out.append((start, i - start))
            start = None
    return out


def inner_silence(samples: np.ndarray) -> Tuple[float, float]:
    """(start, length) in seconds of the longest silent run between tone."""
    rms = frame_rms(samples)
    loud = np.nonzero(rms > TONE_RMS)[0]
    if not len(loud):
        return 0.0, 0.0
    inner = rms[loud[0]:loud[-1] + 1] < SILENCE_RMS
    gaps = runs(inner)
    if not gaps:
        return 0.0, 0.0
    start, length = max(gaps, key=lambda r: r[1])
    return (loud[0] + start) * FRAME / RATE, length * FRAME / RATE


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


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- the test -----------------------------------------------------------------------

class SippCallMixin:
    transport = "u1"  # SIPp's -t
    timeout = 60

    def assertClose(self, actual: float, expected: float, delta: float, what: str) -> None:
        self.assertLessEqual(abs(actual - expected), delta,
                             f"{what}: {actual:.3f} is not within {delta} of {expected:.3f}")

    @defer.inlineCallbacks
    def run_sipp(self, sipp: str, workdir: str, sip_port: int):
        args = ["-sf", SCENARIO, "-m", "1", "-t", self.transport,
                "-i", "127.0.0.1", "-p", str(free_port()),
                "-mi", "127.0.0.1", "-mp", str(free_media_port()),
                "-timeout", "25s", "-timeout_error", "-recv_timeout", "5000",
                "-trace_err", "-trace_msg", "-trace_logs", "-nostdin",
                "-set", "talk1", str(int(TALK1 * 1000)),
                "-set", "pause1", str(int(PAUSE1 * 1000)),
                "-set", "talk2", str(int(TALK2 * 1000)),
                f"127.0.0.1:{sip_port}"]
        out, err, code = yield utils.getProcessOutputAndValue(sipp, args, env=dict(os.environ),
                                                              path=workdir)
        return code, (out + err).decode("utf-8", "replace")

    def sipp_report(self, workdir: str, output: str) -> str:
        parts = [output.strip()]
        for pattern in ("*_errors.log", "*_messages.log"):
            for path in glob.glob(os.path.join(workdir, pattern)):
                with open(path, errors="replace") as f:
                    parts.append(f"--- {os.path.basename(path)}\n{f.read()[-6000:]}")
        return "\n".join(parts)

    def answered_ports(self, workdir: str) -> Tuple[int, int]:
        """The answer's ports as SIPp read them (the scenario logs them)."""
        for path in glob.glob(os.path.join(workdir, "*_logs.log")):
            with open(path) as f:
                for line in f:
                    if "answer ports" in line:
                        fields = dict(part.split("=") for part in line.split() if "=" in part)
                        return int(fields["leg0"]), int(fields["leg1"])
        self.fail("SIPp logged no answer ports")

    @defer.inlineCallbacks
    def test_sipp_siprec_call_with_pause(self):
        """SIPp's SIPREC call passes its own checks of our answers, and the
        recording holds SIPp's tone on leg0 and ours on leg1, with silence
        while paused, a two-channel combined WAV and the pauses in the record."""
        sipp = yield find_sipp(self)
        service = start_server(self)
        workdir = self.mktemp()
        os.makedirs(workdir)
        leg0_audio = tone_ulaw(LEG0_HZ, 1.0)
        with open(os.path.join(workdir, TONE_FILE), "wb") as f:
            f.write(leg0_audio.tobytes())

        feeder = Leg1Feeder(service)
        feeder.start()
        self.addCleanup(feeder.stop)
        code, output = yield self.run_sipp(sipp, workdir, service.config.ports[0])
        yield feeder.stop()
        self.assertEqual(code, 0, "SIPp failed the scenario:\n" + self.sipp_report(workdir, output))

        # the call as the server recorded it
        records = glob.glob(os.path.join(service.config.recording_dir, "*.json"))
        if not records:  # BYE answered, finalising still under way
            self.assertIsNotNone(feeder.call_id, "the server never showed the session")
            yield service.manager.get(feeder.call_id).end("bye")
            records = glob.glob(os.path.join(service.config.recording_dir, "*.json"))
        self.assertEqual(len(records), 1, records)
        with open(records[0]) as f:
            record = json.load(f)
        call_id = record["call_id"]
        self.assertEqual(os.path.basename(records[0]), f"{call_id}.json")
        self.assertEqual(call_id, feeder.call_id)
        self.assertTrue(call_id.endswith("@127.0.0.1"), call_id)  # SIPp's [call_id]
        self.assertGreater(feeder.sent, 0)

        streams = {s["label"]: s for s in record["streams"]}
        self.assertEqual([s["label"] for s in record["streams"]], ["leg0", "leg1"])
        self.assertEqual([streams[l]["channel"] for l in ("leg0", "leg1")], [0, 1])
        self.assertEqual(self.answered_ports(workdir),
                         (streams["leg0"]["port"], streams["leg1"]["port"]))
        self.assertEqual([p["aor"] for p in record["participants"]],
                         ["sip:carol@caller.example.org", "sip:dave@agents.example.org"])
        self.assertEqual(streams["leg0"]["participant"]["aor"], "sip:carol@caller.example.org")
        self.assertEqual(streams["leg1"]["participant"]["aor"], "sip:dave@agents.example.org")
        self.assertEqual(record["end_reason"], "bye")
        self.assertEqual(record["sip"]["headers"]["User-Agent"], ["SIPp SIPREC scenario"])

        # one pause per leg, as long as SIPp held it
        pauses = {}
        for pause in record["pauses"]:
            self.assertNotIn(pause["label"], pauses, record["pauses"])
            self.assertIsNotNone(pause["end"], pause)
            pauses[pause["label"]] = iso_seconds(pause["end"]) - iso_seconds(pause["start"])
        self.assertEqual(sorted(pauses), ["leg0", "leg1"], record["pauses"])
        for label, length in pauses.items():
            self.assertClose(length, PAUSE1, 0.25, f"{label} pause interval in the record")

        # leg0: SIPp's tone, TALK1 + TALK2 of it, PAUSE1 of silence after TALK1
        files = record["files"]
        self.assertEqual(os.path.basename(files["leg0"]), f"{call_id}_leg0.wav")
        rate, channels, leg0 = read_wav(files["leg0"])
        self.assertEqual((rate, channels), (RATE, 1))
        leg0 = leg0[:, 0]
        tone_seconds = np.count_nonzero(frame_rms(leg0) > TONE_RMS) * FRAME / RATE
        self.assertClose(tone_seconds, TALK1 + TALK2, 0.2, "leg0 seconds of tone")
        silence_at, silence = inner_silence(leg0)
        self.assertClose(silence, PAUSE1, 0.2, "leg0 silence while paused")
        self.assertClose(silence, pauses["leg0"], 0.1, "leg0 silence vs the recorded pause")
        self.assertClose(silence_at, TALK1, 0.2, "leg0 pause start")
        self.assertClose(dominant_frequency(loud_part(leg0), rate), LEG0_HZ, 10, "leg0 tone (Hz)")
        self.assertGreaterEqual(exact_fraction(leg0, ulaw_decode(leg0_audio), RATE // 100), 0.95,
                                "leg0 samples differ from the mu-law SIPp sent")
        self.assertEqual(streams["leg0"]["stats"]["lost"], 0)

        # leg1: our tone, muted by the server while the SRC had it inactive
        self.assertEqual(os.path.basename(files["leg1"]), f"{call_id}_leg1.wav")
        rate, channels, leg1 = read_wav(files["leg1"])
        self.assertEqual((rate, channels), (RATE, 1))
        leg1 = leg1[:, 0]
        self.assertGreater(streams["leg1"]["stats"]["paused_packets"], 0,
                           "no leg1 packet arrived while paused")
        silence_at, silence = inner_silence(leg1)
        self.assertClose(silence, pauses["leg1"], 0.1, "leg1 silence vs the recorded pause")
        self.assertClose(silence_at, TALK1, 0.3, "leg1 pause start")
        self.assertClose(dominant_frequency(loud_part(leg1), rate), LEG1_HZ, 10, "leg1 tone (Hz)")
        self.assertGreaterEqual(
            exact_fraction(leg1, ulaw_decode(tone_ulaw(LEG1_HZ, 1.0)), RATE // 400), 0.95,
            "leg1 samples differ from the mu-law we sent")

        # combined: one channel per leg, caller (leg0) first
        self.assertEqual(os.path.basename(files["combined"]), f"{call_id}.wav")
        rate, channels, both = read_wav(files["combined"])
        self.assertEqual((rate, channels), (RATE, 2))
        self.assertClose(len(both) / rate, max(len(leg0), len(leg1)) / rate, 0.1,
                         "combined length (s)")
        for channel, freq in ((0, LEG0_HZ), (1, LEG1_HZ)):
            self.assertClose(dominant_frequency(loud_part(both[:, channel]), rate), freq, 10, f"combined channel {channel} (Hz)")
        self.assertTrue(os.path.exists(files["metadata"]))


class SippUdpCallTests(SippCallMixin, TestCase):
    transport = "u1"


class SippTcpCallTests(SippCallMixin, TestCase):
    transport = "t1"

"""Tests for siprec.media.stream: MediaStream on fake and real UDP."""

from __future__ import annotations

import os
from typing import Any, Dict, List

import numpy as np
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock, deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from siprec.media.codecs.g711 import ALAW_TO_PCM, ULAW_TO_PCM, encode_alaw, encode_ulaw
from siprec.media.rtp import RtpPacket, serialize
from siprec.media.spec import PayloadFormat, StreamSpec
from siprec.media.stream import MAX_PENDING, RELATCH_AFTER, MediaStream
from siprec.media.wav import read_wav

PCMU = PayloadFormat(0, "PCMU", 8000)
PCMA = PayloadFormat(8, "PCMA", 8000)
CN = PayloadFormat(19, "CN", 8000)
EVENT = PayloadFormat(101, "TELEPHONE-EVENT", 8000)
SRC = ("127.0.0.1", 40000)
FRAME = 160


def tone(freq: float, frames: int, rate: int = 8000, start: int = 0) -> np.ndarray:
    t = (np.arange(frames) + start) / rate
    return np.round(8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rtp(seq: int, payload: bytes, pt: int = 0, ssrc: int = 0xABCD, ts: int | None = None) -> bytes:
    return serialize(RtpPacket(pt, seq & 0xFFFF, (FRAME * seq if ts is None else ts) & 0xFFFFFFFF, ssrc, payload))


def ulaw_frames(count: int, freq: float = 440.0) -> List[bytes]:
    samples = tone(freq, count * FRAME)
    return [encode_ulaw(samples[i * FRAME : (i + 1) * FRAME]) for i in range(count)]


class Listener:
    def __init__(self) -> None:
        self.first: List[MediaStream] = []
        self.stats: List[Dict[str, Any]] = []

    def stream_first_packet(self, stream: MediaStream) -> None:
        self.first.append(stream)

    def stream_stats(self, stream: MediaStream) -> None:
        self.stats.append(stream.stats())


class FakeUdpPort:
    """The little of a listening UDP port a MediaStream touches."""

    def __init__(self, protocol: DatagramProtocol, port: int) -> None:
        self.protocol = protocol
        self.host = IPv4Address("UDP", "127.0.0.1", port)
        self.listening = True
        protocol.makeConnection(self)

    def getHost(self) -> IPv4Address:
        return self.host

    def stopListening(self) -> None:
        self.listening = False
        self.protocol.doStop()


class StreamTestsMixin:
    def make_stream(self, *formats: PayloadFormat, **kwargs: Any) -> MediaStream:
        self.dir = self.mktemp()  # type: ignore[attr-defined]
        os.makedirs(self.dir)
        spec_fields = dict(
            call_id="call-1",
            label="1",
            index=0,
            formats=formats or (PCMU,),
            wav_path=os.path.join(self.dir, "call-1_1.wav"),
        )
        spec_fields.update(kwargs.pop("spec", {}))
        self.spec = StreamSpec(**spec_fields)  # type: ignore[arg-type]
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.listener = Listener()
        call_start = self.clock.seconds() - kwargs.pop("started_before", 0.0)
        return MediaStream(self.spec, self.clock, self.listener, call_start, **kwargs)


class StreamUnitTests(StreamTestsMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.stream = self.make_stream(PCMU, PCMA, CN, EVENT)
        self.events: List[dict] = []
        self.stream.log = Logger(observer=self.events.append)
        self.rtp_port = FakeUdpPort(self.stream, 30000)
        self.rtcp_port = FakeUdpPort(self.stream.rtcp, 30001)

    def send(self, data: bytes, addr: tuple = SRC, after: float = 0.02) -> None:
        self.stream.datagramReceived(data, addr)
        self.clock.advance(after)

    def wav(self) -> np.ndarray:
        rate, channels, data = read_wav(self.spec.wav_path)
        self.assertEqual((rate, channels), (8000, 1))
        return data

    def test_records_decoded_audio(self) -> None:
        """Decoded PCMU reaches the WAV exactly, starting at the first packet's offset."""
        self.clock.advance(0.25)  # first packet 250 ms into the call
        frames = ulaw_frames(20)
        for seq, payload in enumerate(frames):
            self.send(rtp(seq, payload))
        stats = self.successResultOf(self.stream.close())
        np.testing.assert_array_equal(self.wav(), ULAW_TO_PCM[np.frombuffer(b"".join(frames), np.uint8)])
        self.assertEqual(stats["start_offset_samples"], 2000)
        self.assertEqual(self.stream.start_offset_samples, 2000)
        self.assertEqual((stats["packets"], stats["lost"], stats["recorded_frames"]), (20, 0, 20 * FRAME))

    def test_writes_in_batches(self) -> None:
        """Nothing is decoded per packet; the flush timer writes batches."""
        for seq, payload in enumerate(ulaw_frames(5)):
            self.stream.datagramReceived(rtp(seq, payload), SRC)
        self.assertEqual(self.stream.writer.frames, 0)
        self.clock.advance(0.2)
        # The reorder window still holds the newest packets until the stream goes quiet.
        self.assertEqual(self.stream.writer.frames, 0)
        self.clock.advance(0.2)
        self.assertEqual(self.stream.writer.frames, 5 * FRAME)

    def test_first_packet_once(self) -> None:
        """The first packet is logged and reported once, with call id and label."""
        for seq, payload in enumerate(ulaw_frames(3)):
            self.send(rtp(seq, payload))
        self.assertEqual(self.listener.first, [self.stream])
        firsts = [e for e in self.events if "First RTP packet received" in e.get("log_format", "")]
        self.assertEqual(len(firsts), 1)
        self.assertEqual((firsts[0]["call_id"], firsts[0]["label"]), ("call-1", "1"))
        self.assertEqual(self.stream.first_packet_at, 1000.0)
        self.assertAlmostEqual(self.stream.last_packet_at, 1000.04)

    def test_no_per_packet_logging(self) -> None:
        """Hundreds of bad, foreign and good packets log nothing beyond the first packet."""
        for seq in range(100):
            self.send(b"\x00" * 5, after=0)
            self.send(rtp(seq, b"\xff" * FRAME))
            self.send(rtp(seq, b"\xff" * FRAME), addr=("127.0.0.1", 1), after=0)
        self.clock.advance(1.0)
        self.assertEqual(len(self.events), 1)

    def test_bad_and_rtcp_packets_counted(self) -> None:
        """Malformed datagrams and muxed RTCP are counted, never raise."""
        self.send(b"")
        self.send(b"\x80\x00\x00")
        self.send(bytes([0x40]) + bytes(20))
        self.send(bytes([0x80, 200, 0, 6]) + bytes(24))  # RTCP SR on the RTP port
        self.rtcp_port.protocol.datagramReceived(bytes([0x80, 201, 0, 1]) + bytes(4), SRC)
        stats = self.stream.stats()
        self.assertEqual((stats["bad_packets"], stats["rtcp_packets"], stats["packets"]), (3, 2, 0))
        self.assertEqual(self.listener.first, [])

    def test_payload_types(self) -> None:
        """Audio PTs decode by their own format; events, CN and unknown PTs are counted, not rendered."""
        alaw = encode_alaw(tone(300, FRAME))
        self.send(rtp(0, b"\xff" * FRAME))  # PCMU silence
        self.send(rtp(1, alaw, pt=8))
        self.send(rtp(2, b"\x0a\x00\x00\xa0", pt=101))  # DTMF event
        self.send(rtp(3, b"\x40", pt=19))  # comfort noise
        self.send(rtp(4, b"\x00" * FRAME, pt=99))  # never negotiated
        self.send(rtp(5, b"\xff" * FRAME))
        stats = self.successResultOf(self.stream.close())
        self.assertEqual(
            (stats["telephone_events"], stats["comfort_noise"], stats["undecodable"], stats["unknown_payload_type"]),
            (1, 1, 0, 1),
        )
        data = self.wav()
        self.assertEqual(len(data), 6 * FRAME)
        np.testing.assert_array_equal(data[FRAME : 2 * FRAME], ALAW_TO_PCM[np.frombuffer(alaw, np.uint8)])
        self.assertFalse(data[2 * FRAME :].any())  # events, CN, unknown: silence
        self.assertEqual((stats["codec"], stats["payload_type"], stats["lost"]), ("PCMU", 0, 0))

    def test_pause_resume(self) -> None:
        """Paused packets become silence of the same span; audio resumes in place."""
        frames = ulaw_frames(30)
        for seq in range(10):
            self.send(rtp(seq, frames[seq]))
        self.stream.pause()
        for seq in range(10, 20):
            self.send(rtp(seq, frames[seq]))
        self.stream.resume()
        for seq in range(20, 30):
            self.send(rtp(seq, frames[seq]))
        stats = self.successResultOf(self.stream.close())
        data = self.wav()
        expected = ULAW_TO_PCM[np.frombuffer(b"".join(frames), np.uint8)].copy()
        expected[10 * FRAME : 20 * FRAME] = 0
        np.testing.assert_array_equal(data, expected)
        self.assertEqual(stats["paused_packets"], 10)
        self.assertFalse(stats["paused"])

    def test_inactive_gap(self) -> None:
        """No packets for a while (a=inactive) leaves silence for the span when audio returns."""
        frames = ulaw_frames(4)
        self.send(rtp(0, frames[0]))
        self.send(rtp(1, frames[1]), after=3.0)
        self.send(rtp(2, frames[2], ts=FRAME * 2 + 24000))  # sender clock kept running
        self.send(rtp(3, frames[3], ts=FRAME * 3 + 24000))
        self.successResultOf(self.stream.close())
        data = self.wav()
        self.assertEqual(len(data), 4 * FRAME + 24000)
        self.assertFalse(data[2 * FRAME : 2 * FRAME + 24000].any())

    def test_source_latching(self) -> None:
        """The first sender is latched; others are dropped until it goes quiet."""
        self.send(rtp(0, b"\xff" * FRAME))
        self.send(rtp(1, b"\xff" * FRAME), addr=("127.0.0.1", 50000))
        self.assertEqual((self.stream.source, self.stream.foreign_packets), (SRC, 1))
        self.clock.advance(RELATCH_AFTER + 0.1)
        self.send(rtp(2, b"\xff" * FRAME), addr=("127.0.0.1", 50000))
        self.assertEqual(self.stream.source, ("127.0.0.1", 50000))
        self.assertEqual(self.stream.stats()["source_changes"], 1)

    def test_remote_address_wins(self) -> None:
        """The SDP's address is accepted even after another sender was latched."""
        stream = self.make_stream(spec={"remote_address": ("127.0.0.1", 6000)})
        FakeUdpPort(stream, 30002)
        stream.datagramReceived(rtp(0, b"\xff" * FRAME), SRC)
        stream.datagramReceived(rtp(1, b"\xff" * FRAME), ("127.0.0.1", 6000))
        stream.datagramReceived(rtp(2, b"\xff" * FRAME), SRC)
        self.assertEqual(stream.source, ("127.0.0.1", 6000))
        self.assertEqual((stream.packets, stream.foreign_packets), (2, 1))
        self.successResultOf(stream.close())

    def test_close(self) -> None:
        """close finalises the WAV, stops both ports, fires with stats; twice is harmless."""
        for seq, payload in enumerate(ulaw_frames(3)):
            self.send(rtp(seq, payload))
        stats = self.successResultOf(self.stream.close())
        self.assertTrue(stats["closed"])
        self.assertFalse(self.rtp_port.listening or self.rtcp_port.listening)
        self.assertTrue(self.stream.writer.closed)
        self.assertEqual(len(self.wav()), 3 * FRAME)
        self.stream.datagramReceived(rtp(3, b"\xff" * FRAME), SRC)
        self.assertEqual(self.successResultOf(self.stream.close()), stats)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.listener.stats[-1]["packets"], 3)

    def test_rtp_after_close_is_ignored_quietly(self) -> None:
        """RTP and RTCP that keep coming after BYE change nothing, log nothing, schedule nothing."""
        for seq, payload in enumerate(ulaw_frames(3)):
            self.send(rtp(seq, payload))
        stats = self.successResultOf(self.stream.close())
        logged = len(self.events)
        for seq in range(3, 1003):
            self.stream.datagramReceived(rtp(seq, b"\xff" * FRAME), SRC)
            self.stream.datagramReceived(rtp(seq, b"\xff" * FRAME, ssrc=7), ("127.0.0.1", 1))
            self.stream.rtcp.datagramReceived(bytes([0x80, 201, 0, 1]) + bytes(4), SRC)
        self.clock.advance(5.0)
        self.assertEqual(self.stream.stats(), stats)
        self.assertEqual(len(self.events), logged)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.wav()), 3 * FRAME)

    def test_late_rtp_of_a_previous_call_on_a_reused_port(self) -> None:
        """Stale RTP of the port's previous call may latch first, but the new call's SDP
        address takes over at its first packet; the stale sender is then dropped and counted."""
        new_src = ("127.0.0.1", 6000)
        stream = self.make_stream(spec={"remote_address": new_src})
        events: List[dict] = []
        stream.log = Logger(observer=events.append)
        FakeUdpPort(stream, 30002)
        stale = ("127.0.0.1", 7000)
        stream.datagramReceived(rtp(500, b"\x00" * FRAME, ssrc=0x1111), stale)
        self.clock.advance(0.02)
        frames = ulaw_frames(20)
        for seq, payload in enumerate(frames):
            stream.datagramReceived(rtp(seq, payload, ssrc=0x2222), new_src)
            stream.datagramReceived(rtp(501 + seq, b"\x00" * FRAME, ssrc=0x1111), stale)
            self.clock.advance(0.02)
        stats = self.successResultOf(stream.close())
        self.assertEqual((stats["source"], stats["source_changes"], stats["foreign_packets"]), (new_src, 1, 20))
        self.assertEqual((stats["ssrc"], stats["packets"]), (0x2222, 21))
        data = read_wav(self.spec.wav_path)[2]
        np.testing.assert_array_equal(data[-20 * FRAME :], ULAW_TO_PCM[np.frombuffer(b"".join(frames), np.uint8)])
        self.assertEqual(len(events), 2)  # the first packet, the close summary: nothing per packet

    def test_stats_plain_data(self) -> None:
        """stats() holds only plain values, with the documented keys."""
        self.send(rtp(0, b"\xff" * FRAME))
        stats = self.stream.stats()
        for key in (
            "label", "codec", "port", "packets", "bytes", "lost", "duplicates", "late_dropped",
            "first_packet_at", "last_packet_at", "ssrc", "source", "paused",
        ):
            self.assertIn(key, stats)
        self.assertEqual((stats["port"], stats["rtcp_port"], stats["ssrc"]), (30000, 30001, None))
        plain = (str, int, float, bool, tuple, type(None))
        quality = stats.pop("quality")
        by_codec, tolerances = stats.pop("packets_by_codec"), stats.pop("tolerances")
        self.assertTrue(all(isinstance(v, plain) for v in stats.values()), stats)
        self.assertTrue(all(isinstance(v, plain) for v in quality.values()), quality)
        self.assertEqual((by_codec, tolerances), ({}, []))
        by_codec["x"], tolerances[:] = 1, ["x"]  # copies: the stream's own stay as they are
        self.assertEqual((self.stream.stats()["packets_by_codec"], self.stream.stats()["tolerances"]), ({}, []))
        self.clock.advance(0.2)
        self.assertEqual(self.stream.stats()["ssrc"], 0xABCD)

    def test_periodic_stats(self) -> None:
        """The optional stream_stats callback runs about once per stats interval."""
        self.clock.pump([0.2] * 10)
        self.assertEqual(len(self.listener.stats), 2)

    def test_flush_error_keeps_timer(self) -> None:
        """A failing write is counted and logged once; the timer keeps running."""
        def broken(samples: np.ndarray) -> None:
            raise OSError("disk full")

        self.stream.writer.write = broken  # type: ignore[method-assign]
        for seq in range(20):
            self.send(rtp(seq, b"\xff" * FRAME))
        self.clock.advance(1.0)
        self.assertGreaterEqual(self.stream.flush_errors, 2)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 0)
        self.assertEqual(len([e for e in self.events if e.get("log_failure")]), 1)
        self.assertTrue(self.stream._loop.running)

    def test_overflow(self) -> None:
        """A flood between flushes is bounded and counted."""
        for seq in range(MAX_PENDING + 10):
            self.stream.datagramReceived(rtp(seq, b"\xff"), SRC)
        self.assertEqual(self.stream.overflow_dropped, 10)


class StreamSetupTests(StreamTestsMixin, SynchronousTestCase):
    def test_no_decodable_format(self) -> None:
        """Without a decodable codec no WAV is written; packets are still counted."""
        stream = self.make_stream(CN, PayloadFormat(110, "EVS", 16000))
        FakeUdpPort(stream, 30000)
        stream.datagramReceived(rtp(0, b"\x00" * 20, pt=110), SRC)
        stats = self.successResultOf(stream.close())
        self.assertEqual((stats["packets"], stats["undecodable"], stats["wav_path"]), (1, 1, None))
        self.assertFalse(os.path.exists(self.spec.wav_path))

    def test_unwritable_path(self) -> None:
        """A WAV that cannot be created is reported, not raised into the reactor."""
        stream = self.make_stream(spec={"wav_path": "/nonexistent/dir/x.wav"})
        FakeUdpPort(stream, 30000)
        stream.datagramReceived(rtp(0, b"\xff" * FRAME), SRC)
        self.clock.advance(1.0)
        stats = self.successResultOf(stream.close())
        self.assertIn("No such file", stats["wav_error"])
        self.assertEqual(stats["packets"], 1)
        self.flushLoggedErrors()

    def test_starts_paused(self) -> None:
        """A stream offered as inactive/paused starts paused."""
        stream = self.make_stream(spec={"paused": True})
        self.assertTrue(stream.paused)

    def test_no_timer_before_start(self) -> None:
        """Building a stream starts nothing; binding it starts the flush timer."""
        stream = self.make_stream()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        FakeUdpPort(stream, 30000)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.successResultOf(stream.close())


class Sender(DatagramProtocol):
    def send(self, data: bytes, addr: tuple) -> None:
        self.transport.write(data, addr)


class RealUdpTests(StreamTestsMixin, TestCase):
    """Real sockets on 127.0.0.1; the flush timer still runs on a Clock."""

    @inlineCallbacks
    def wait_for(self, condition: Any, timeout: float = 5.0) -> Any:
        waited = 0.0
        while not condition():
            if waited > timeout:
                self.fail("timed out waiting for packets")
            yield deferLater(reactor, 0.01, lambda: None)
            waited += 0.01

    @inlineCallbacks
    def test_tone_over_udp(self) -> None:
        """One second of a 440 Hz PCMU tone sent over UDP is recorded as 1 s of 440 Hz."""
        stream = self.make_stream(started_before=0.5)
        rtp_port = reactor.listenUDP(0, stream, interface="127.0.0.1")
        rtcp_port = reactor.listenUDP(0, stream.rtcp, interface="127.0.0.1")
        self.addCleanup(lambda: rtcp_port.stopListening() if rtcp_port.connected else None)
        sender = Sender()
        sender_port = reactor.listenUDP(0, sender, interface="127.0.0.1")
        self.addCleanup(sender_port.stopListening)

        target = ("127.0.0.1", rtp_port.getHost().port)
        for seq, payload in enumerate(ulaw_frames(50)):
            sender.send(rtp(seq, payload), target)
            if seq % 10 == 9:
                yield self.wait_for(lambda: stream.packets == seq + 1)
                self.clock.advance(0.2)
        sender.send(bytes([0x80, 200, 0, 1]) + bytes(4), ("127.0.0.1", rtcp_port.getHost().port))
        yield self.wait_for(lambda: stream.rtcp.packets == 1)

        stats = yield stream.close()
        self.assertEqual(stats["packets"], 50)
        self.assertEqual(stats["source"], ("127.0.0.1", sender_port.getHost().port))
        self.assertEqual(stats["start_offset_samples"], 4000)
        self.assertFalse(rtp_port.connected)

        rate, channels, data = read_wav(self.spec.wav_path)
        self.assertEqual((rate, channels, len(data)), (8000, 1, 8000))  # exactly one second
        spectrum = np.abs(np.fft.rfft(data.astype(np.float64)))
        peak = np.fft.rfftfreq(len(data), 1 / rate)[int(np.argmax(spectrum))]
        self.assertAlmostEqual(peak, 440.0, delta=1.0)

"""Tests for siprec.media.service: binding port pairs on 127.0.0.1."""

from __future__ import annotations

import os
import socket
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from siprec.media.ports import PortsExhausted
from siprec.media.rtp import RtpPacket, serialize
from siprec.media.service import MediaService
from siprec.media.spec import PayloadFormat, StreamSpec
from siprec.media.wav import read_wav
from tests.netutil import free_udp_range


def free_even_range(pairs: int) -> int:
    """An even port with ``2 * pairs`` free UDP ports from it (best effort)."""
    return free_udp_range(2 * pairs)


class Listener:
    def __init__(self) -> None:
        self.first: List[Any] = []

    def stream_first_packet(self, stream: Any) -> None:
        self.first.append(stream)


class MediaServiceTests(TestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.clock = Clock()
        self.base = free_even_range(3)
        self.service = MediaService(reactor, self.base, self.base + 5, "127.0.0.1", clock=self.clock)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def spec(self, label: str) -> StreamSpec:
        return StreamSpec(
            call_id="c1",
            label=label,
            index=int(label),
            formats=(PayloadFormat(0, "PCMU", 8000),),
            wav_path=os.path.join(self.dir, f"c1_{label}.wav"),
        )

    @inlineCallbacks
    def test_open_binds_pair_and_records(self) -> None:
        """open_stream binds RTP on an even port and RTCP on the next; audio is recorded."""
        listener = Listener()
        stream = self.service.bind_stream(self.spec("1"), listener, self.clock.seconds())
        self.assertEqual(stream.port, self.base)
        self.assertEqual(self.service.free_ports, 2)

        received = []
        sender = DatagramProtocol()
        sender.datagramReceived = lambda data, addr: received.append(data)  # type: ignore[method-assign]
        port = reactor.listenUDP(0, sender, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        for seq in range(3):
            sender.transport.write(serialize(RtpPacket(0, seq, 160 * seq, 9, b"\xff" * 160)), ("127.0.0.1", self.base))
        sender.transport.write(bytes([0x81, 201, 0, 1]) + bytes(4), ("127.0.0.1", self.base + 1))
        for _ in range(500):
            if stream.packets == 3 and stream.rtcp.packets == 1:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(listener.first, [stream])

        stats = yield self.service.close_stream(stream)
        self.assertEqual((stats["packets"], stats["rtcp_packets"], stats["recorded_frames"]), (3, 1, 480))
        self.assertEqual(self.service.free_ports, 3)
        self.assertEqual(read_wav(stream.spec.wav_path)[2].size, 480)

    @inlineCallbacks
    def test_skips_ports_taken_elsewhere(self) -> None:
        """A pair whose RTP or RTCP port another process holds is skipped."""
        blockers = []
        for port in (self.base, self.base + 3):  # RTP of pair 1, RTCP of pair 2
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", port))
            blockers.append(s)
            self.addCleanup(s.close)
        stream = self.service.bind_stream(self.spec("1"), Listener(), 0.0)
        self.assertEqual(stream.port, self.base + 4)
        self.assertEqual(self.service.ports.in_use, 1)  # the failed pairs were given back
        with self.assertRaises(PortsExhausted):
            self.service.bind_stream(self.spec("2"), Listener(), 0.0)
        self.assertEqual(self.service.ports.in_use, 1)
        self.assertFalse(os.path.exists(self.spec("2").wav_path))
        yield self.service.close_stream(stream)

    @inlineCallbacks
    def test_exhausted(self) -> None:
        """Once every pair is in use, open_stream raises PortsExhausted."""
        streams = [self.service.bind_stream(self.spec(str(i)), Listener(), 0.0) for i in range(3)]
        self.assertEqual(sorted(s.port for s in streams), [self.base, self.base + 2, self.base + 4])
        self.assertRaises(PortsExhausted, self.service.open_stream, self.spec("9"), Listener(), 0.0)
        yield self.service.close_stream(streams[1])
        again = self.service.bind_stream(self.spec("9"), Listener(), 0.0)
        self.assertEqual(again.port, self.base + 2)

    @inlineCallbacks
    def test_stop_closes_all(self) -> None:
        """stopService closes every stream (final WAV header) and frees every port."""
        streams = [self.service.bind_stream(self.spec(str(i)), Listener(), 0.0) for i in range(2)]
        yield self.service.stopService()
        self.assertTrue(all(s.closed for s in streams))
        self.assertEqual(self.service.streams, [])
        self.assertEqual(self.service.free_ports, 3)
        for s in streams:
            self.assertTrue(s.writer.closed)
            # The ports are really free again.
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", s.port))
            probe.close()

"""Tests for siprec.media.ports: RTP/RTCP port pairs."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from siprec.media.ports import PortAllocator, PortsExhausted


class PortAllocatorTests(SynchronousTestCase):
    def test_even_pairs_in_range(self) -> None:
        """Every port handed out is even and its RTCP partner is in range."""
        ports = PortAllocator(10001, 10010)  # pairs 10002..10008 (10010 has no partner)
        got = [ports.allocate() for _ in range(ports.capacity)]
        self.assertEqual(got, [10002, 10004, 10006, 10008])
        self.assertEqual(ports.capacity, 4)

    def test_never_twice_while_in_use(self) -> None:
        """A port is not handed out again until released; exhaustion raises."""
        ports = PortAllocator(20000, 20005)
        a, b, c = ports.allocate(), ports.allocate(), ports.allocate()
        self.assertEqual(len({a, b, c}), 3)
        self.assertEqual(ports.free, 0)
        with self.assertRaises(PortsExhausted) as cm:
            ports.allocate()
        self.assertIn("20000-20005", str(cm.exception))
        ports.release(b)
        self.assertEqual(ports.free, 1)
        self.assertEqual(ports.allocate(), b)

    def test_round_robin(self) -> None:
        """A released port waits for the rest of the range before coming back."""
        ports = PortAllocator(30000, 30007)  # 4 pairs
        first = ports.allocate()
        ports.release(first)
        sequence = []
        for _ in range(4):
            port = ports.allocate()
            sequence.append(port)
            ports.release(port)
        self.assertEqual(sequence, [30002, 30004, 30006, 30000])

    def test_skips_ports_in_use(self) -> None:
        """Round robin passes over ports still in use."""
        ports = PortAllocator(40000, 40007)
        kept = ports.allocate()  # 40000
        for port in [ports.allocate() for _ in range(3)]:
            ports.release(port)
        self.assertEqual(ports.allocate(), 40002)
        self.assertNotEqual(kept, 40002)
        self.assertEqual((ports.in_use, ports.free), (2, 2))

    def test_release_unknown(self) -> None:
        """Releasing a port that was not handed out is an error."""
        ports = PortAllocator(40000, 40007)
        self.assertRaises(ValueError, ports.release, 40000)
        port = ports.allocate()
        ports.release(port)
        self.assertRaises(ValueError, ports.release, port)

    def test_bad_ranges(self) -> None:
        """Ranges that are reversed, out of bounds or hold no pair are refused."""
        for low, high in ((2000, 1000), (0, 100), (65000, 65536), (3001, 3002), (3000, 3000)):
            self.assertRaises(ValueError, PortAllocator, low, high)
        self.assertEqual(PortAllocator(3000, 3001).capacity, 1)

"""STUN binding (RFC 5389) for EXTERNAL_IP=auto, against a local STUN responder."""

from __future__ import annotations

import socket
import struct
import threading

from twisted.trial.unittest import SynchronousTestCase

from siprec.ops.stun import (
    MAGIC_COOKIE,
    StunError,
    binding_request,
    discover_external_address,
    parse_binding_response,
)


def xor_mapped(tid: bytes, ip: str, port: int) -> bytes:
    raw = socket.inet_aton(ip)
    xport = port ^ (MAGIC_COOKIE >> 16)
    xaddr = bytes(a ^ b for a, b in zip(raw, struct.pack("!I", MAGIC_COOKIE)))
    value = b"\x00\x01" + struct.pack("!H", xport) + xaddr
    attr = struct.pack("!HH", 0x0020, len(value)) + value
    return struct.pack("!HHI", 0x0101, len(attr), MAGIC_COOKIE) + tid + attr


class ParseTests(SynchronousTestCase):
    def test_request_shape(self):
        """A binding request is a 20-byte header with the magic cookie."""
        request, tid = binding_request(b"x" * 12)
        self.assertEqual(len(request), 20)
        self.assertEqual(request[:2], b"\x00\x01")
        self.assertEqual(struct.unpack("!I", request[4:8])[0], MAGIC_COOKIE)
        self.assertEqual(request[8:], tid)

    def test_xor_mapped_address(self):
        """XOR-MAPPED-ADDRESS decodes to the reflexive address."""
        tid = b"t" * 12
        self.assertEqual(parse_binding_response(xor_mapped(tid, "203.0.113.7", 40000), tid),
                         ("203.0.113.7", 40000))

    def test_rejects_bad_input(self):
        """Truncations, other transactions and garbage raise StunError."""
        tid = b"t" * 12
        good = xor_mapped(tid, "203.0.113.7", 40000)
        for n in range(len(good)):
            self.assertRaises(StunError, parse_binding_response, good[:n], tid)
        self.assertRaises(StunError, parse_binding_response, good, b"u" * 12)
        self.assertRaises(StunError, parse_binding_response, b"\xff" * 40, tid)


class DiscoveryTests(SynchronousTestCase):
    def test_local_responder(self):
        """discover_external_address asks the server and returns what it maps."""
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]

        def answer():
            data, addr = server.recvfrom(2048)
            server.sendto(xor_mapped(data[8:20], "198.51.100.9", addr[1]), addr)

        thread = threading.Thread(target=answer)
        thread.start()
        try:
            self.assertEqual(discover_external_address(("127.0.0.1", port), timeout=2), "198.51.100.9")
        finally:
            thread.join()
            server.close()

    def test_unreachable_gives_none(self):
        """No answer within the timeout gives None (the caller falls back)."""
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        try:
            self.assertIsNone(discover_external_address(silent.getsockname(), timeout=0.2))
        finally:
            silent.close()

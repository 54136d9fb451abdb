"""EXTERNAL_IP=auto: one STUN binding request (RFC 5389) at startup.

Encoding and decoding are pure functions; :func:`discover_external_address`
does one blocking round trip with a short timeout, before the reactor runs.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Optional, Tuple

from twisted.logger import Logger

log = Logger()

__all__ = ["binding_request", "parse_binding_response", "discover_external_address", "StunError"]

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
MAPPED_ADDRESS = 0x0001
XOR_MAPPED_ADDRESS = 0x0020


class StunError(ValueError):
    pass


def binding_request(transaction_id: Optional[bytes] = None) -> Tuple[bytes, bytes]:
    tid = transaction_id or os.urandom(12)
    return struct.pack("!HHI", BINDING_REQUEST, 0, MAGIC_COOKIE) + tid, tid


def parse_binding_response(data: bytes, transaction_id: bytes) -> Tuple[str, int]:
    """The reflexive (address, port) from a Binding success response."""
    if len(data) < 20:
        raise StunError("STUN response shorter than its 20-byte header")
    msg_type, length, cookie = struct.unpack("!HHI", data[:8])
    if cookie != MAGIC_COOKIE:
        raise StunError("not a STUN message (bad magic cookie)")
    if data[8:20] != transaction_id:
        raise StunError("STUN response for another transaction")
    if msg_type != BINDING_SUCCESS:
        raise StunError(f"STUN answered with message type 0x{msg_type:04x}")
    if 20 + length > len(data):
        raise StunError("STUN response truncated")
    pos, end = 20, 20 + length
    plain = None
    while pos + 4 <= end:
        attr_type, attr_len = struct.unpack("!HH", data[pos:pos + 4])
        value = data[pos + 4:pos + 4 + attr_len]
        if len(value) < attr_len:
            raise StunError("STUN attribute truncated")
        if attr_type == XOR_MAPPED_ADDRESS:
            return _address(value, xor=True, tid=transaction_id)
        if attr_type == MAPPED_ADDRESS:
            plain = _address(value, xor=False, tid=transaction_id)
        pos += 4 + attr_len + (-attr_len % 4)
    if plain is not None:
        return plain
    raise StunError("STUN response carries no mapped address")


def _address(value: bytes, xor: bool, tid: bytes) -> Tuple[str, int]:
    if len(value) < 8:
        raise StunError("STUN address attribute too short")
    family, port = value[1], struct.unpack("!H", value[2:4])[0]
    raw = value[4:]
    if xor:
        port ^= MAGIC_COOKIE >> 16
        mask = struct.pack("!I", MAGIC_COOKIE) + tid
        raw = bytes(b ^ m for b, m in zip(raw, mask))
    if family == 1:
        return str(ipaddress.IPv4Address(raw[:4])), port
    if family == 2 and len(raw) >= 16:
        return str(ipaddress.IPv6Address(raw[:16])), port
    raise StunError(f"STUN address family {family} unknown")


def discover_external_address(server, timeout: float = 1.5) -> Optional[str]:
    """Ask ``server`` (host, port) for our public address; None when it does not answer."""
    host, port = server[0], int(server[1])
    request, tid = binding_request()
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as e:
        log.warn("STUN server {host} cannot be resolved: {error}", host=host, error=e)
        return None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout / 2)
    try:
        address = infos[0][4]
        for _ in range(2):
            try:
                sock.sendto(request, address)
                data, _ = sock.recvfrom(2048)
                found, _port = parse_binding_response(data, tid)
                log.info("STUN {host}:{port} says our external address is {found}",
                         host=host, port=port, found=found)
                return found
            except socket.timeout:
                continue
            except (OSError, StunError) as e:
                log.warn("STUN query to {host}:{port} failed: {error}", host=host, port=port, error=e)
                return None
        return None
    finally:
        sock.close()

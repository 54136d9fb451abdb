"""Free local ports for tests (127.0.0.1 only)."""

from __future__ import annotations

import random
import socket
from typing import List

__all__ = ["free_ports", "free_port", "free_udp_range"]


def free_ports(count: int) -> List[int]:
    """``count`` distinct ports free for both UDP and TCP on 127.0.0.1 right now.

    Every probe stays bound until all are chosen, so no two are the same.
    """
    held, ports = [], []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                tcp.close()
                udp.close()
                continue
            held += [tcp, udp]
            ports.append(port)
        return ports
    finally:
        for sock in held:
            sock.close()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    return free_ports(1)[0]


def free_udp_range(size: int, low: int = 20000, high: int = 60000) -> int:
    """An even port with ``size`` consecutive UDP ports free from it (best effort)."""
    for _ in range(200):
        base = random.randrange(low, high - size, 2)
        sockets: List[socket.socket] = []
        try:
            for port in range(base, base + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free UDP port range found")

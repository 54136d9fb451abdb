"""RTP port pairs handed out from a configured range (RTP even, RTCP odd)."""

from __future__ import annotations

from typing import Set


class PortsExhausted(Exception):
    """Every RTP/RTCP pair in the range is in use."""


class PortAllocator:
    """Even RTP ports from ``port_min..port_max``, round-robin.

    Round-robin (rather than lowest-free) keeps a just-released port idle
    for as long as possible, so late packets of an old call do not land in
    a new one.
    """

    def __init__(self, port_min: int, port_max: int) -> None:
        if not 1 <= port_min <= port_max <= 65535:
            raise ValueError(f"RTP port range {port_min}-{port_max} is not within 1-65535 in order")
        first = port_min + (port_min % 2)
        last = port_max - 1  # the RTCP port must fit too
        if first > last:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even/odd port pair")
        self.port_min = port_min
        self.port_max = port_max
        self._first = first
        self._count = (last - first) // 2 + 1
        self._next = 0  # index of the next pair to try
        self._in_use: Set[int] = set()

    @property
    def capacity(self) -> int:
        return self._count

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def free(self) -> int:
        return self._count - len(self._in_use)

    def allocate(self) -> int:
        """Reserve the next free pair; return its (even) RTP port."""
        if len(self._in_use) >= self._count:
            raise PortsExhausted(
                f"all {self._count} RTP port pairs in {self.port_min}-{self.port_max} are in use"
            )
        for step in range(self._count):
            index = (self._next + step) % self._count
            port = self._first + 2 * index
            if port not in self._in_use:
                self._in_use.add(port)
                self._next = (index + 1) % self._count
                return port
        raise AssertionError("free count and in-use set disagree")  # pragma: no cover

    def release(self, port: int) -> None:
        """Return a pair; releasing a port not handed out is an error."""
        try:
            self._in_use.remove(port)
        except KeyError:
            raise ValueError(f"RTP port {port} was not allocated") from None

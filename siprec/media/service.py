"""The media service: binds a UDP port pair per stream and closes them all on stop."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTime, IReactorUDP
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from siprec.media.ports import PortAllocator, PortsExhausted
from siprec.media.spec import StreamSpec
from siprec.media.stream import DEFAULT_FLUSH_INTERVAL, MediaStream


class MediaService(Service):
    """Owns the RTP port range and every open MediaStream."""

    name = "media"
    log = Logger()

    def __init__(
        self,
        reactor: IReactorUDP,
        port_min: int,
        port_max: int,
        bind_ip: str = "0.0.0.0",
        clock: Optional[IReactorTime] = None,
        **stream_options: Any,
    ) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = clock if clock is not None else reactor  # type: ignore[assignment]
        self.bind_ip = bind_ip
        self.ports = PortAllocator(port_min, port_max)
        self.stream_options = stream_options  # passed on to every MediaStream
        self.flush_interval: float = stream_options.get("flush_interval", DEFAULT_FLUSH_INTERVAL)
        self._streams: Dict[MediaStream, int] = {}
        # One timer flushes every stream: a thousand per-stream timers cost
        # more in scheduling than the flushes themselves.
        self._loop: Optional[LoopingCall] = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._tick_all)
        self._loop.clock = self.clock
        self._loop.start(self.flush_interval, now=False)

    def _tick_all(self) -> None:
        for stream in list(self._streams):
            stream.tick()

    @property
    def streams(self) -> List[MediaStream]:
        return list(self._streams)

    @property
    def free_ports(self) -> int:
        """Free RTP/RTCP pairs, for metrics."""
        return self.ports.free

    def open_stream(self, spec: StreamSpec, listener: Any, call_start: float) -> MediaStream:
        """Bind a port pair for ``spec`` and start receiving.

        Ports taken by other processes are skipped; raises PortsExhausted
        when no pair in the range can be bound.
        """
        busy: List[int] = []
        try:
            for _ in range(self.ports.capacity):
                port = self.ports.allocate()
                stream = MediaStream(
                    spec, self.clock, listener, call_start, scheduled=False, **self.stream_options
                )
                if self._listen(port, stream):
                    self._streams[stream] = port
                    if busy:
                        self.log.warn(
                            "RTP port pairs {busy} are taken by another process; skipped",
                            busy=busy,
                        )
                    return stream
                busy.append(port)
        finally:
            # Kept reserved while searching so the loop moves on; free now.
            for port in busy:
                self.ports.release(port)
        raise PortsExhausted(f"no bindable RTP port pair left in {self.ports.port_min}-{self.ports.port_max}")

    def _listen(self, port: int, stream: MediaStream) -> bool:
        # RTCP first: its protocol has no side effects, whereas binding the
        # RTP protocol opens the WAV and starts the flush timer.
        try:
            rtcp = self.reactor.listenUDP(port + 1, stream.rtcp, interface=self.bind_ip)
        except CannotListenError:
            return False
        try:
            self.reactor.listenUDP(port, stream, interface=self.bind_ip)
        except CannotListenError:
            rtcp.stopListening()
            return False
        return True

    def close_stream(self, stream: MediaStream) -> Deferred:
        """Close a stream and give its ports back; fires with its stats."""
        port = self._streams.pop(stream, None)
        d = stream.close()
        if port is not None:

            def release(result: Any) -> Any:
                self.ports.release(port)
                return result

            d.addBoth(release)
        return d

    def stopService(self) -> Deferred:
        """Close every stream (final flush, WAV headers) before stopping."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        closing = [self.close_stream(stream) for stream in list(self._streams)]
        return gatherResults(closing, consumeErrors=True).addCallback(lambda _: None)

"""The media service: binds a UDP port pair per stream and closes them all on stop.

Its one door is :meth:`MediaService.open_stream`: plain data in (a
:class:`StreamSpec`), a small :class:`StreamHandle` out, and everything
the stream has to say delivered as frozen events (:mod:`siprec.media.events`)
to the ``on_event`` callback. Callers never touch the MediaStream itself,
which is what lets streams move into worker processes later.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTime, IReactorUDP
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from siprec.media.events import (
    AudioDecoded,
    DtmfDigit,
    FirstPacket,
    OnEvent,
    RtcpBye,
    StatsReport,
    StreamEvent,
)
from siprec.media.ports import PortAllocator, PortsExhausted
from siprec.media.spec import StreamSpec
from siprec.media.stream import DEFAULT_FLUSH_INTERVAL, MediaStream

__all__ = ["MediaService", "StreamHandle", "PortsExhausted"]


class _EventRelay:
    """Turns a MediaStream's listener calls into frozen events for ``on_event``.

    A failing ``on_event`` is logged once per stream and never reaches the
    stream: recording goes on whatever its owner does with the news.
    """

    log = Logger()

    def __init__(self, label: str, on_event: OnEvent) -> None:
        self.label = label
        self.on_event = on_event
        self.failures = 0

    def _send(self, event: StreamEvent) -> None:
        try:
            self.on_event(event)
        except Exception:
            self.failures += 1
            if self.failures == 1:
                self.log.failure("Handling {kind} of stream {label} failed",
                                 kind=type(event).__name__, label=self.label)

    def stream_first_packet(self, stream: MediaStream) -> None:
        self._send(FirstPacket(self.label, stream.first_packet_at or 0.0, stream.source))

    def stream_stats(self, stream: MediaStream) -> None:
        self._send(StatsReport(self.label, stream.stats()))

    def stream_dtmf(self, stream: MediaStream, event) -> None:
        self._send(DtmfDigit(self.label, event.digit, event.start, event.duration, event.end_seen))

    def stream_rtcp_bye(self, stream: MediaStream, bye) -> None:
        self._send(RtcpBye(self.label, tuple(bye.ssrcs), bye.reason or ""))

    def audio(self, label: str, pcm, sample_rate: int, offset: int) -> None:
        # The stream counts and logs sink failures itself (sink_errors).
        self.on_event(AudioDecoded(label, pcm, sample_rate, offset))


class StreamHandle:
    """What the owner of a stream may do with it, and nothing more."""

    def __init__(self, service: "MediaService", stream: MediaStream) -> None:
        self._service = service
        self._stream = stream
        self.label = stream.spec.label
        self.port: int = stream.port or 0
        self._closing: Optional[Deferred] = None

    def pause(self) -> None:
        """Record silence instead of audio (the timeline keeps running)."""
        self._stream.pause()

    def resume(self) -> None:
        self._stream.resume()

    @property
    def paused(self) -> bool:
        return self._stream.paused

    def set_remote(self, address: Optional[Tuple[str, int]]) -> None:
        """The SDP's connection address changed (re-offer): accept it as a source."""
        self._stream.set_remote(address)

    @property
    def last_packet_at(self) -> Optional[float]:
        return self._stream.last_packet_at

    def stats(self) -> Dict[str, Any]:
        """Counters and quality so far, as plain data; changes nothing."""
        return self._stream.stats()

    def close(self) -> Deferred:
        """Final flush, WAV finalised, ports given back; fires with the final stats."""
        if self._closing is None:
            self._closing = self._service.close_stream(self._stream)
        return self._closing


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

    def open_stream(self, spec: StreamSpec, on_event: OnEvent, call_start: float,
                    deliver_audio: bool = False) -> StreamHandle:
        """Bind a port pair for ``spec``, start receiving, return its handle.

        ``on_event`` receives the stream's :mod:`~siprec.media.events`;
        ``AudioDecoded`` only when ``deliver_audio``. Ports taken by other
        processes are skipped; raises PortsExhausted when no pair in the
        range can be bound.
        """
        relay = _EventRelay(spec.label, on_event)
        stream = self.bind_stream(spec, relay, call_start)
        if deliver_audio:
            stream.audio_sink = relay.audio
        return StreamHandle(self, stream)

    def bind_stream(self, spec: StreamSpec, listener: Any, call_start: float) -> MediaStream:
        """The MediaStream itself, bound: for benchmarks and the media tests."""
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

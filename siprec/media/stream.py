"""One recorded RTP stream: a thin DatagramProtocol around the sans-IO parts.

The per-packet path only demultiplexes, parses the header, latches the
source and queues the packet. Decoding, placing on the call timeline and
writing the leg WAV happen in batches on a timer (``flush_interval``), so a
burst of packets costs one disk write.

Everything the stream needs comes in as plain data (a StreamSpec); it
reports back through the listener's callbacks and ``stats()`` dicts.

RTCP arriving on the RTP port is always recognised (RFC 5761) and counted,
whether or not rtcp-mux was negotiated: some SRCs mux without saying so.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, Set, Tuple

import numpy as np
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from siprec.media.codecs import Decoder, get_decoder
from siprec.media.rtp import RtpPacket, RtpParseError, is_rtcp, parse_rtp
from siprec.media.spec import StreamSpec
from siprec.media.timeline import DEFAULT_REORDER_WINDOW, DEFAULT_RESYNC_THRESHOLD, Chunk, LegTimeline
from siprec.media.wav import WavWriter

DEFAULT_FLUSH_INTERVAL = 0.2
DEFAULT_STATS_INTERVAL = 1.0
# A latched source silent this long may be replaced by a new one (SRC
# failover, NAT rebinding); before that, other senders are ignored.
RELATCH_AFTER = 2.0
# Queue bound between flushes: 200 ms of a flood must not exhaust memory.
MAX_PENDING = 4096

Address = Tuple[str, int]


class StreamListener(Protocol):
    """What a stream calls back. ``stream_stats`` is optional."""

    def stream_first_packet(self, stream: "MediaStream") -> None: ...


class RtcpCounter(DatagramProtocol):
    """Listens on the RTCP port (RTP port + 1) and only counts, for now."""

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.packets += 1
        self.bytes += len(data)


class MediaStream(DatagramProtocol):
    """Receives one stream's RTP and records it to the leg WAV."""

    log = Logger()

    def __init__(
        self,
        spec: StreamSpec,
        clock: IReactorTime,
        listener: Any,
        call_start: float,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        reorder_window: int = DEFAULT_REORDER_WINDOW,
        resync_threshold: float = DEFAULT_RESYNC_THRESHOLD,
        stats_interval: float = DEFAULT_STATS_INTERVAL,
        header_interval: float = 1.0,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.listener = listener
        self.call_start = call_start
        self.flush_interval = flush_interval
        self.stats_interval = stats_interval
        self.header_interval = header_interval
        self.rtcp = RtcpCounter()

        self._decoders: Dict[int, Decoder] = {}
        self._event_pts: Set[int] = set()
        self._cn_pts: Set[int] = set()
        self._undecodable_pts: Set[int] = set()
        self._primary: Optional[Decoder] = None
        self._primary_pt: Optional[int] = None
        self._choose_decoders()
        self.timeline: Optional[LegTimeline] = None
        if self._primary is not None:
            self.timeline = LegTimeline(
                self._primary.sample_rate,
                call_start,
                self._primary.channels,
                reorder_window=reorder_window,
                resync_threshold=resync_threshold,
            )

        self.writer: Optional[WavWriter] = None
        self.wav_error: Optional[str] = None
        self.port: Optional[int] = None
        self.source: Optional[Address] = None
        self.first_packet_at: Optional[float] = None
        self.last_packet_at: Optional[float] = None
        self.closed = False
        self._paused = spec.paused
        self._pending: List[Tuple[float, RtpPacket, bool]] = []
        self._loop: Optional[LoopingCall] = None
        self._last_stats_at: Optional[float] = None
        self._final_stats: Optional[Dict[str, Any]] = None

        # Counters kept here; the timeline keeps the ordering ones.
        self.packets = 0
        self.bytes = 0
        self.bad_packets = 0
        self.muxed_rtcp_packets = 0
        self.foreign_packets = 0
        self.source_changes = 0
        self.overflow_dropped = 0
        self.paused_packets = 0
        self.telephone_events = 0
        self.comfort_noise = 0
        self.unknown_payload_type = 0
        self.undecodable = 0
        self.decode_errors = 0
        self.flush_errors = 0

    def _choose_decoders(self) -> None:
        """One decoder per payload type, chosen by rtpmap name."""
        event_formats = [f for f in self.spec.formats if f.is_telephone_event]
        if self.spec.telephone_event is not None:
            event_formats.append(self.spec.telephone_event)
        self._event_pts = {f.payload_type for f in event_formats}
        for fmt in self.spec.formats:
            if fmt.is_telephone_event:
                continue
            if fmt.encoding.upper() == "CN":
                self._cn_pts.add(fmt.payload_type)
                continue
            decoder = get_decoder(fmt)
            if decoder is None:
                self._undecodable_pts.add(fmt.payload_type)
                continue
            primary = self._primary
            if primary is None:
                self._primary, self._primary_pt = decoder, fmt.payload_type
            elif (decoder.sample_rate, decoder.channels) != (primary.sample_rate, primary.channels):
                # One leg WAV has one rate; switching rate mid-stream is left out.
                self._undecodable_pts.add(fmt.payload_type)
                continue
            self._decoders[fmt.payload_type] = decoder

    # -- lifecycle ----------------------------------------------------------

    def startProtocol(self) -> None:
        host = self.transport.getHost()
        self.port = host.port
        if self._primary is None:
            self.log.warn(
                "No decodable format for stream {label} of call {call_id}; counting packets only",
                label=self.spec.label,
                call_id=self.spec.call_id,
            )
        else:
            try:
                self.writer = WavWriter(
                    self.spec.wav_path,
                    self._primary.sample_rate,
                    self._primary.channels,
                    header_interval=self.header_interval,
                )
            except OSError as e:
                self.wav_error = str(e)
                self.log.error(
                    "Cannot open {path} for stream {label} of call {call_id}: {error}",
                    path=self.spec.wav_path,
                    label=self.spec.label,
                    call_id=self.spec.call_id,
                    error=e,
                )
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.flush_interval, now=False)

    def stopProtocol(self) -> None:
        # Reached by close() or when the port is torn down under us.
        if not self.closed:
            self._stop_loop()
            self._tick()
            if self.writer is not None:
                self.writer.flush()

    def close(self) -> Deferred:
        """Final flush, finalise the WAV, stop listening; fires with stats()."""
        if self.closed:
            return succeed(self._final_stats if self._final_stats is not None else self.stats())
        self.closed = True
        self._stop_loop()
        try:
            self.flush(final=True)
            if self.writer is not None:
                self.writer.close()
        except Exception:
            # The ports must still close; what reached the file stays valid.
            self.flush_errors += 1
            self.log.failure(
                "Closing stream {label} of call {call_id} failed",
                label=self.spec.label,
                call_id=self.spec.call_id,
            )
        stats = self._final_stats = self.stats()
        self.log.info(
            "Stream {label} of call {call_id} closed: {packets} packets, {lost} lost, "
            "{seconds:.1f} s recorded",
            label=self.spec.label,
            call_id=self.spec.call_id,
            packets=stats["packets"],
            lost=stats["lost"],
            seconds=stats["recorded_seconds"],
        )
        self._report_stats()
        stopping = [
            maybeDeferred(proto.transport.stopListening)
            for proto in (self, self.rtcp)
            if proto.transport is not None
        ]
        return gatherResults(stopping, consumeErrors=True).addCallback(lambda _: stats)

    def _stop_loop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    # -- per packet ---------------------------------------------------------

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if self.closed:
            return
        if is_rtcp(data):
            self.muxed_rtcp_packets += 1
            return
        try:
            packet = parse_rtp(data)
        except RtpParseError:
            self.bad_packets += 1
            return
        now = self.clock.seconds()
        if addr != self.source and not self._accept_source(addr, now):
            self.foreign_packets += 1
            return
        if len(self._pending) >= MAX_PENDING:
            self.overflow_dropped += 1
            return
        self.packets += 1
        self.bytes += len(data)
        if self._paused:
            self.paused_packets += 1
        self._pending.append((now, packet, self._paused))
        self.last_packet_at = now
        if self.first_packet_at is None:
            self._first_packet(now, packet)

    def _accept_source(self, addr: Address, now: float) -> bool:
        """Symmetric latching: the first sender, the SDP's address, or a
        new sender once the latched one has gone quiet."""
        addr = tuple(addr)  # type: ignore[assignment]
        if self.source is None:
            self.source = addr
            return True
        remote = self.spec.remote_address
        quiet = self.last_packet_at is None or now - self.last_packet_at > RELATCH_AFTER
        if (remote is not None and addr == tuple(remote)) or quiet:
            self.source = addr
            self.source_changes += 1
            return True
        return False

    def _first_packet(self, now: float, packet: RtpPacket) -> None:
        self.first_packet_at = now
        self.log.info(
            "First RTP packet received for call {call_id} stream {label} "
            "(payload type {pt}, SSRC {ssrc:#010x}, from {source})",
            call_id=self.spec.call_id,
            label=self.spec.label,
            pt=packet.payload_type,
            ssrc=packet.ssrc,
            source=self.source,
        )
        callback = getattr(self.listener, "stream_first_packet", None)
        if callback is not None:
            callback(self)

    # -- batches ------------------------------------------------------------

    def pause(self) -> None:
        """Stop recording audio; the timeline keeps running (silence)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def start_offset_samples(self) -> Optional[int]:
        """Where this leg's first sample sits on the call timeline."""
        return self.timeline.start_offset if self.timeline is not None else None

    def _tick(self) -> None:
        """Timer body; never lets an error stop the timer."""
        try:
            self.flush()
        except Exception:
            self.flush_errors += 1
            if self.flush_errors == 1:
                self.log.failure(
                    "Flushing stream {label} of call {call_id} failed",
                    label=self.spec.label,
                    call_id=self.spec.call_id,
                )
        now = self.clock.seconds()
        if self._last_stats_at is None or now - self._last_stats_at >= self.stats_interval:
            self._last_stats_at = now
            self._report_stats()

    def flush(self, final: bool = False) -> None:
        """Decode queued packets, place them, write what left the window.

        When no packet came since the last flush (or ``final``), the
        reorder window is drained too, so a quiet stream reaches disk.
        """
        pending, self._pending = self._pending, []
        timeline = self.timeline
        if timeline is None:
            self.undecodable += len(pending)
            return
        chunks: List[Chunk] = []
        for arrival, packet, muted in pending:
            pt = packet.payload_type
            decoder = self._decoders.get(pt)
            if decoder is None:
                if pt in self._event_pts:
                    self.telephone_events += 1
                elif pt in self._cn_pts:
                    self.comfort_noise += 1
                elif pt in self._undecodable_pts:
                    self.undecodable += 1
                else:
                    self.unknown_payload_type += 1
                # Same sequence space: keeps these from looking like losses.
                chunks += timeline.add(arrival, packet, None)
                continue
            try:
                pcm = decoder.decode(packet.payload)
            except Exception:
                self.decode_errors += 1
                continue
            chunks += timeline.add(arrival, packet, pcm, decoder.samples_per_tick, muted)
        if final or not pending:
            chunks += timeline.drain()
        self._write(chunks)

    def _write(self, chunks: List[Chunk]) -> None:
        writer = self.writer
        if writer is None or not chunks:
            return
        batch: List[np.ndarray] = []
        for chunk in chunks:
            if chunk.pcm is None:
                if batch:
                    writer.write(np.concatenate(batch))
                    batch = []
                writer.write_silence(chunk.frames)
            else:
                batch.append(chunk.pcm)
        if batch:
            writer.write(np.concatenate(batch))

    # -- reporting ----------------------------------------------------------

    def _report_stats(self) -> None:
        callback = getattr(self.listener, "stream_stats", None)
        if callback is not None:
            callback(self)

    def stats(self) -> Dict[str, Any]:
        """Plain data about this stream (safe to send across processes)."""
        timeline = self.timeline
        primary = self._primary
        writer = self.writer
        rtcp_port = self.port + 1 if self.port is not None else None
        return {
            "call_id": self.spec.call_id,
            "label": self.spec.label,
            "codec": primary.encoding if primary is not None else None,
            "payload_type": self._primary_pt,
            "sample_rate": primary.sample_rate if primary is not None else None,
            "channels": primary.channels if primary is not None else None,
            "port": self.port,
            "rtcp_port": rtcp_port,
            "packets": self.packets,
            "bytes": self.bytes,
            "lost": timeline.lost if timeline is not None else 0,
            "duplicates": timeline.duplicates if timeline is not None else 0,
            "late_dropped": timeline.late_dropped if timeline is not None else 0,
            "gaps_filled_samples": timeline.gaps_filled_samples if timeline is not None else 0,
            "ssrc_changes": timeline.ssrc_changes if timeline is not None else 0,
            "resyncs": timeline.resyncs if timeline is not None else 0,
            "bad_packets": self.bad_packets,
            "foreign_packets": self.foreign_packets,
            "overflow_dropped": self.overflow_dropped,
            "paused_packets": self.paused_packets,
            "telephone_events": self.telephone_events,
            "comfort_noise": self.comfort_noise,
            "unknown_payload_type": self.unknown_payload_type,
            "undecodable": self.undecodable,
            "decode_errors": self.decode_errors,
            "flush_errors": self.flush_errors,
            "rtcp_packets": self.rtcp.packets + self.muxed_rtcp_packets,
            "first_packet_at": self.first_packet_at,
            "last_packet_at": self.last_packet_at,
            "ssrc": timeline.ssrc if timeline is not None else None,
            "source": self.source,
            "source_changes": self.source_changes,
            "paused": self._paused,
            "start_offset_samples": self.start_offset_samples,
            "wav_path": self.spec.wav_path if writer is not None else None,
            "wav_error": self.wav_error,
            "recorded_frames": writer.frames if writer is not None else 0,
            "recorded_seconds": writer.frames / writer.sample_rate if writer is not None else 0.0,
            "wav_full": writer.full if writer is not None else False,
            "closed": self.closed,
        }

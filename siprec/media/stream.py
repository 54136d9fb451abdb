"""One recorded RTP stream: a thin DatagramProtocol around the sans-IO parts.

The per-packet path only checks the sender (symmetric latching) and queues
the datagram with its arrival time: no parsing, no allocation beyond the
queue entry. Every ``flush_interval`` the queue is worked off in one go:
SRTP unprotect, raw capture (pcap), RTCP demultiplexing, header parsing,
quality counters, telephone-events, decoding, placing on the call
timeline and writing the leg WAV, then handing the new audio to the
optional ``audio_sink``.

The common case, a run of same-source G.711 packets each following the
last, takes a vectorised path: headers are read as one numpy array, the
whole run is decoded with one table lookup (resampled in one call when
the leg runs at 16 or 48 kHz) and placed with one timeline call. Anything else (reordering, loss, SSRC or payload-type changes,
other codecs) goes packet by packet through the same sans-IO parts.

Each packet is decoded by its own payload type, whatever was answered:
any offered type, and the static audio types even when not offered
(SRCs such as Cisco CUBE and Webex send PCMA on a PCMU or Opus answer).
Decoders are made when a type is first seen. The leg WAV keeps the
answered codec's rate and channel count; other audio is resampled and
remixed to it (codecs/route.py). Each such quirk is logged once and kept
in ``stats()["tolerances"]`` for the call record. A dynamic type that was
not offered is counted as unknown and not recorded.

Everything the stream needs comes in as plain data (a StreamSpec and
keyword settings); it reports back through the listener's optional
callbacks and ``stats()`` dicts.

RTCP arriving on the RTP port is always recognised (RFC 5761), whether or
not rtcp-mux was negotiated: some SRCs mux without saying so.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import numpy as np
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from siprec.media.codecs import DecoderOptions, get_decoder, static_format
from siprec.media.codecs.base import DEFAULT_OPUS_SAMPLE_RATE
from siprec.media.codecs.route import LegFormat, PayloadRoute, format_name
from siprec.media.dtmf import DtmfEvent, DtmfParseError, DtmfReceiver
from siprec.media.pcap import PcapWriter
from siprec.media.quality import StreamQuality
from siprec.media.rtcp import Bye, ReceiverReport, RtcpParseError, SenderReport, SourceDescription, parse_rtcp
from siprec.media.rtp import RtpParseError, is_rtcp, parse_rtp
from siprec.media.spec import PayloadFormat, StreamSpec
from siprec.media.srtp import CryptoError, SrtpReceiver
from siprec.media.timeline import DEFAULT_REORDER_WINDOW, DEFAULT_RESYNC_THRESHOLD, Chunk, LegTimeline
from siprec.media.wav import WavError, WavWriter

DEFAULT_FLUSH_INTERVAL = 0.2
DEFAULT_STATS_INTERVAL = 1.0
# A latched source silent this long may be replaced by a new one (SRC
# failover, NAT rebinding); before that, other senders are ignored.
RELATCH_AFTER = 2.0
# Queue bound between flushes: 200 ms of a flood must not exhaust memory,
# yet one stream at 50,000 packets/s must fit.
MAX_PENDING = 16384
MAX_DTMF_KEPT = 1000
RTP_HEADER = 12
# What a payload type turned out to be, the first time it was seen.
AUDIO, EVENT, COMFORT_NOISE, UNDECODABLE, UNKNOWN = "audio", "event", "cn", "undecodable", "unknown"
_HEADER = struct.Struct("!BBHII")

Address = Tuple[str, int]
AudioSink = Callable[[str, np.ndarray, int, int], None]


class StreamListener(Protocol):
    """What a stream calls back. Only ``stream_first_packet`` is required;
    ``stream_stats``, ``stream_dtmf`` and ``stream_rtcp_bye`` are optional."""

    def stream_first_packet(self, stream: "MediaStream") -> None: ...


class RtcpReceiver(DatagramProtocol):
    """Listens on the RTCP port (RTP port + 1) and hands datagrams to the stream."""

    def __init__(self, stream: Optional["MediaStream"] = None) -> None:
        self.stream = stream
        self.packets = 0
        self.bytes = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if self.stream is not None and self.stream.closed:
            return  # after BYE: the stream's final figures stay as they were
        self.packets += 1
        self.bytes += len(data)
        if self.stream is not None:
            self.stream.rtcp_received(data, addr)


# Kept for imports elsewhere: the RTCP port used to only count.
RtcpCounter = RtcpReceiver


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
        opus_sample_rate: int = DEFAULT_OPUS_SAMPLE_RATE,
        record_raw_rtp: bool = False,
        audio_sink: Optional[AudioSink] = None,
        dtmf_end_timeout: float = 1.0,
        scheduled: bool = True,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.listener = listener
        self.call_start = call_start
        self.flush_interval = flush_interval
        self.stats_interval = stats_interval
        self.header_interval = header_interval
        self.record_raw_rtp = record_raw_rtp
        self.audio_sink = audio_sink
        # False: someone else (the MediaService's one timer for all
        # streams) calls tick() every flush_interval.
        self.scheduled = scheduled
        self.decoder_options = DecoderOptions(opus_sample_rate=opus_sample_rate)
        self.rtcp = RtcpReceiver(self)

        self._offered: Dict[int, PayloadFormat] = {f.payload_type: f for f in reversed(spec.formats)}
        self._kinds: Dict[int, str] = {}  # payload type -> AUDIO, EVENT, ... once seen
        self._routes: Dict[int, PayloadRoute] = {}  # audio payload types
        self._tables: Dict[int, np.ndarray] = {}  # G.711 lookup tables by PT: the fast path
        self._primary: Optional[PayloadRoute] = None
        self._last_pt: Optional[int] = None  # payload type of the last audio decoded
        self.leg: Optional[LegFormat] = None
        self.dtmf: Optional[DtmfReceiver] = None
        self._choose_primary(dtmf_end_timeout)
        self.reorder_window = reorder_window
        self.resync_threshold = resync_threshold
        self.timeline: Optional[LegTimeline] = None
        self.quality: Optional[StreamQuality] = None
        self.continued = False  # appending to a leg file an earlier stream left
        if self._primary is not None:
            self.quality = StreamQuality(self._primary.decoder.clock_rate, self._primary.decoder.encoding)
            if spec.continue_from is None:
                self.timeline = self._make_timeline(None)
            # else: made when the file is opened, which says where it ends

        self.srtp: Optional[SrtpReceiver] = None
        self.srtp_error: Optional[str] = None
        if spec.srtp is not None:
            try:
                self.srtp = SrtpReceiver(spec.srtp)
            except CryptoError as e:
                self.srtp_error = str(e)

        self.writer: Optional[WavWriter] = None
        self.pcap: Optional[PcapWriter] = None
        self.wav_error: Optional[str] = None
        self.pcap_error: Optional[str] = None
        self.port: Optional[int] = None
        self.source: Optional[Address] = None
        self.remote: Optional[Address] = tuple(spec.remote_address) if spec.remote_address else None  # type: ignore[assignment]
        self.first_packet_at: Optional[float] = None
        self.last_packet_at: Optional[float] = None
        self.closed = False
        self._paused = spec.paused
        self._pending: List[Tuple[float, bytes, bool]] = []
        self._loop: Optional[LoopingCall] = None
        self._last_stats_at: Optional[float] = None
        self._final_stats: Optional[Dict[str, Any]] = None
        self.dtmf_events: List[DtmfEvent] = []

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
        self.packets_by_codec: Dict[str, int] = {}  # audio packets decoded, by format name
        self.other_codec_packets = 0  # audio packets of another type than the answered one
        self.resampled_packets = 0  # audio packets converted to the leg's rate or channels
        self.tolerances: List[str] = []  # quirks of the SRC we recorded anyway, one sentence each
        self.decode_errors = 0
        self.flush_errors = 0
        self.sink_errors = 0
        self.fast_packets = 0  # packets that took the vectorised path
        self.rtcp_reports = 0
        self.rtcp_errors = 0
        self.rtcp_bye: Optional[Dict[str, Any]] = None
        self.rtcp_cname: Optional[str] = None
        self.last_sender_report: Optional[Dict[str, Any]] = None

    def _choose_primary(self, dtmf_end_timeout: float) -> None:
        """Events and CN by their offered types; the answered codec's decoder
        now (it sets the leg's format), every other decoder when first seen."""
        event_formats = [f for f in self.spec.formats if f.is_telephone_event]
        if self.spec.telephone_event is not None:
            event_formats.append(self.spec.telephone_event)
        for fmt in event_formats:
            self._kinds[fmt.payload_type] = EVENT
        if event_formats:
            self.dtmf = DtmfReceiver(event_formats[0].clock_rate, dtmf_end_timeout)
        for fmt in self.spec.formats:
            if fmt.payload_type in self._kinds:
                continue
            if fmt.encoding.upper() == "CN":
                self._kinds[fmt.payload_type] = COMFORT_NOISE
                continue
            decoder = get_decoder(fmt, self.decoder_options)
            if decoder is None:
                self._kinds[fmt.payload_type] = UNDECODABLE
                continue
            continuing = self.spec.continue_from
            if continuing is not None:  # the file's format, whatever the codec now
                self.leg = LegFormat(continuing.sample_rate, continuing.channels)
            else:
                self.leg = LegFormat(decoder.sample_rate, decoder.channels)
            self._primary = self._add_route(fmt, decoder)
            return

    def _make_timeline(self, resume: Optional[Tuple[int, int]]) -> LegTimeline:
        assert self.leg is not None
        return LegTimeline(
            self.leg.sample_rate,
            self.call_start,
            self.leg.channels,
            reorder_window=self.reorder_window,
            resync_threshold=self.resync_threshold,
            resume=resume,
        )

    def _add_route(self, fmt: PayloadFormat, decoder: Any) -> PayloadRoute:
        assert self.leg is not None
        route = PayloadRoute(fmt, decoder, self.leg)
        self._routes[fmt.payload_type] = route
        self._kinds[fmt.payload_type] = AUDIO
        if route.table is not None:
            self._tables[fmt.payload_type] = route.table
        return route

    def _classify(self, pt: int) -> str:
        """First packet of a payload type: what is it, and can we decode it?"""
        fmt = self._offered.get(pt) or static_format(pt)
        if fmt is None:
            kind = UNKNOWN
            self._tolerate(f"SRC sent payload type {pt}, which was neither offered nor static; "
                           f"its packets are counted, not recorded")
        elif fmt.encoding.upper() == "CN":
            kind = COMFORT_NOISE
        else:
            decoder = get_decoder(fmt, self.decoder_options)
            if decoder is None:
                kind = UNDECODABLE
            else:
                route = self._add_route(fmt, decoder)
                assert self._primary is not None
                self._tolerate(route.tolerance(self._primary.name))
                kind = AUDIO
        self._kinds[pt] = kind
        return kind

    def _tolerate(self, sentence: str) -> None:
        """Log a quirk of the SRC once and keep it for the call record."""
        if sentence in self.tolerances:
            return
        self.tolerances.append(sentence)
        self.log.warn("Call {call_id} stream {label}: {tolerance}", call_id=self.spec.call_id,
                      label=self.spec.label, tolerance=sentence)

    # -- lifecycle ----------------------------------------------------------

    @property
    def pcap_path(self) -> str:
        base, _ = os.path.splitext(self.spec.wav_path)
        return base + ".pcap"

    def startProtocol(self) -> None:
        host = self.transport.getHost()
        self.port = host.port
        if self.srtp_error is not None:
            self.log.error(
                "SRTP keys of stream {label} of call {call_id} are unusable: {error}",
                label=self.spec.label,
                call_id=self.spec.call_id,
                error=self.srtp_error,
            )
        if self._primary is None:
            self.log.warn(
                "No decodable format for stream {label} of call {call_id}; counting packets only",
                label=self.spec.label,
                call_id=self.spec.call_id,
            )
        else:
            self._open_wav()
        if self.record_raw_rtp:
            try:
                self.pcap = PcapWriter(self.pcap_path, (host.host, host.port))
            except OSError as e:
                self.pcap_error = str(e)
                self.log.error(
                    "Cannot open {path} for raw RTP of call {call_id}: {error}",
                    path=self.pcap_path,
                    call_id=self.spec.call_id,
                    error=e,
                )
        if self.scheduled:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.clock
            self._loop.start(self.flush_interval, now=False)

    def _open_wav(self) -> None:
        """A new leg WAV, or the earlier one of this leg continued (spec.continue_from)."""
        leg = self.leg
        assert leg is not None
        path = self.spec.wav_path
        continuing = self.spec.continue_from
        append = continuing is not None and os.path.exists(path)
        if continuing is not None and not append:
            self.log.warn("Leg file {path} of stream {label} of call {call_id} is gone; starting it afresh",
                          path=path, label=self.spec.label, call_id=self.spec.call_id)
        resume: Optional[Tuple[int, int]] = None
        try:
            self.writer = WavWriter(path, leg.sample_rate, leg.channels,
                                    header_interval=self.header_interval, append=append)
        except (OSError, WavError) as e:
            # A file we cannot continue is left as it is, never overwritten.
            self.wav_error = str(e)
            self.log.error(
                "Cannot open {path} for stream {label} of call {call_id}: {error}",
                path=path,
                label=self.spec.label,
                call_id=self.spec.call_id,
                error=e,
            )
        else:
            if append and continuing is not None:
                self.continued = True
                start = continuing.start_offset_samples
                resume = (start, start + self.writer.appended_to)
        if continuing is not None:
            self.timeline = self._make_timeline(resume)

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
        except Exception:
            self.flush_errors += 1
            self.log.failure(
                "Final flush of stream {label} of call {call_id} failed",
                label=self.spec.label,
                call_id=self.spec.call_id,
            )
        for closing in (self.writer, self.pcap):
            if closing is None:
                continue
            try:
                closing.close()
            except Exception:
                # The ports must still close; what reached the file stays valid.
                self.flush_errors += 1
                self.log.failure(
                    "Closing {path} of call {call_id} failed",
                    path=closing.path,
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
        now = self.clock.seconds()
        if addr != self.source:
            if self.first_packet_at is None and not self._plausible_first(data):
                return
            if not self._accept_source(addr, now):
                self.foreign_packets += 1
                return
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            self.overflow_dropped += 1
            return
        self.packets += 1
        pending.append((now, data, self._paused))
        self.last_packet_at = now
        if self.first_packet_at is None:
            self._first_packet(now, data)

    def _plausible_first(self, data: bytes) -> bool:
        """Before anything was latched, only a parseable RTP packet may latch a source."""
        if is_rtcp(data):
            self.muxed_rtcp_packets += 1
            self._handle_rtcp(data, self.clock.seconds())
            return False
        try:
            parse_rtp(data)
        except RtpParseError:
            self.bad_packets += 1
            return False
        return True

    def _accept_source(self, addr: Address, now: float) -> bool:
        """Symmetric latching: the first sender, the SDP's address, or a
        new sender once the latched one has gone quiet."""
        addr = tuple(addr)  # type: ignore[assignment]
        if self.source is None:
            self.source = addr
            return True
        quiet = self.last_packet_at is None or now - self.last_packet_at > RELATCH_AFTER
        if addr == self.remote or quiet:
            self.source = addr
            self.source_changes += 1
            return True
        return False

    def set_remote(self, address: Optional[Address]) -> None:
        """The SDP's connection address changed (re-INVITE): accept it as a source."""
        self.remote = tuple(address) if address else None  # type: ignore[assignment]

    def _first_packet(self, now: float, data: bytes) -> None:
        self.first_packet_at = now
        pt = data[1] & 0x7F if len(data) > 1 else None
        ssrc = int.from_bytes(data[8:12], "big") if len(data) >= 12 else None
        self.log.info(
            "First RTP packet received for call {call_id} stream {label} "
            "(payload type {pt}, SSRC {ssrc:#010x}, from {source})",
            call_id=self.spec.call_id,
            label=self.spec.label,
            pt=pt,
            ssrc=ssrc or 0,
            source=self.source,
        )
        callback = getattr(self.listener, "stream_first_packet", None)
        if callback is not None:
            callback(self)

    # -- RTCP -----------------------------------------------------------------

    def rtcp_received(self, data: bytes, addr: Any) -> None:
        """A datagram on the RTCP port (low rate: handled at once)."""
        if self.closed:
            return
        self._handle_rtcp(data, self.clock.seconds())

    def _handle_rtcp(self, data: bytes, now: float) -> None:
        if self.srtp is not None:
            plain = self.srtp.unprotect_rtcp(data)
            if plain is None:
                return
            data = plain
        try:
            packets = parse_rtcp(data)
        except RtcpParseError:
            self.rtcp_errors += 1
            return
        for packet in packets:
            if isinstance(packet, SenderReport):
                self.rtcp_reports += 1
                self.last_sender_report = {
                    "ssrc": packet.ssrc,
                    "ntp_seconds": packet.ntp_seconds,
                    "rtp_timestamp": packet.rtp_timestamp,
                    "packet_count": packet.packet_count,
                    "octet_count": packet.octet_count,
                    "received_at": now,
                }
            elif isinstance(packet, ReceiverReport):
                self.rtcp_reports += 1
            elif isinstance(packet, SourceDescription):
                for chunk in packet.chunks:
                    if chunk.cname is not None:
                        self.rtcp_cname = chunk.cname
            elif isinstance(packet, Bye):
                self._rtcp_bye(packet, now)

    def _rtcp_bye(self, bye: Bye, now: float) -> None:
        self.rtcp_bye = {"ssrcs": bye.ssrcs, "reason": bye.reason, "received_at": now}
        self.log.info(
            "RTCP BYE on stream {label} of call {call_id} (SSRCs {ssrcs}, reason {reason!r})",
            label=self.spec.label,
            call_id=self.spec.call_id,
            ssrcs=[f"{s:#010x}" for s in bye.ssrcs],
            reason=bye.reason,
        )
        callback = getattr(self.listener, "stream_rtcp_bye", None)
        if callback is not None:
            callback(self, bye)

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

    def tick(self) -> None:
        """One flush and, when due, a stats report (what the timer runs)."""
        if not self.closed:
            self._tick()

    def _tick(self) -> None:
        """Timer body; never lets an error stop the timer."""
        try:
            self.flush()
        except Exception:
            self._failed_once("flush_errors", "Flushing")
        now = self.clock.seconds()
        if self._last_stats_at is None or now - self._last_stats_at >= self.stats_interval:
            self._last_stats_at = now
            self._report_stats()

    def flush(self, final: bool = False) -> None:
        """Work off the queue: decrypt, capture, parse, measure, decode, place, write.

        When no packet came since the last flush (or ``final``), the
        reorder window is drained too, so a quiet stream reaches disk.
        """
        pending, self._pending = self._pending, []
        if pending:
            self.bytes += sum([len(entry[1]) for entry in pending])
            if self.srtp is not None:
                pending = self._unprotect(pending)
            if self.pcap is not None:
                source = self.source or ("0.0.0.0", 0)
                for arrival, data, _ in pending:
                    self.pcap.add(arrival, source, data)
        chunks: List[Chunk] = []
        if self.timeline is None:
            self._count_only(pending)
        elif pending:
            fast = self._fast_run(pending)
            if fast is None:
                chunks = self._one_by_one(pending)
            else:
                chunks = fast
        if self.timeline is not None and (final or not pending):
            chunks += self.timeline.drain()
        self._write(chunks)
        if self.dtmf is not None:
            now = self.clock.seconds()
            for event in self.dtmf.close() if final else self.dtmf.expire(now):
                self._dtmf_event(event)
        if self.pcap is not None:
            self.pcap.flush()

    def _unprotect(self, pending: List[Tuple[float, bytes, bool]]) -> List[Tuple[float, bytes, bool]]:
        srtp = self.srtp
        assert srtp is not None
        out = []
        for arrival, data, muted in pending:
            if is_rtcp(data):
                out.append((arrival, data, muted))  # SRTCP: unprotected where RTCP is handled
                continue
            plain = srtp.unprotect(data)
            if plain is None:
                self.packets -= 1
            else:
                out.append((arrival, plain, muted))
        return out

    def _count_only(self, pending: List[Tuple[float, bytes, bool]]) -> None:
        """No decoder: classify and count, keep nothing."""
        for arrival, data, _ in pending:
            if is_rtcp(data):
                self.packets -= 1
                self.muxed_rtcp_packets += 1
                self._handle_rtcp(data, arrival)
                continue
            try:
                parse_rtp(data)
            except RtpParseError:
                self.packets -= 1
                self.bad_packets += 1
                continue
            self.undecodable += 1

    def _fast_run(self, pending: List[Tuple[float, bytes, bool]]) -> Optional[List[Chunk]]:
        """The whole batch at once when it is a clean G.711 run; else None (nothing changed).

        Clean: same length, version 2 without padding/extension/CSRCs or
        marker, one payload type with a lookup-table decoder, one SSRC,
        each packet one sequence number and one packet's worth of
        timestamp after the previous, none muted. Checked in plain Python:
        for the ten or so packets a stream gets per flush, numpy's
        per-call cost would exceed the work.
        """
        count = len(pending)
        if count < 2 or not self._tables:
            return None
        first = pending[0][1]
        size = len(first)
        if size <= RTP_HEADER:
            return None
        unpack = _HEADER.unpack_from
        octet0, octet1, seq0, ts0, ssrc = unpack(first)
        table = self._tables.get(octet1)  # a marker bit makes octet1 miss the table
        if octet0 != 0x80 or table is None:
            return None
        frames = size - RTP_HEADER
        seq, ts = seq0, ts0
        arrivals: List[float] = []
        for arrival, data, muted in pending:
            if muted or len(data) != size:
                return None
            if unpack(data) != (0x80, octet1, seq, ts, ssrc):
                return None
            seq = (seq + 1) & 0xFFFF
            ts = (ts + frames) & 0xFFFFFFFF
            arrivals.append(arrival)
        timeline = self.timeline
        assert timeline is not None
        chunks: List[Chunk] = []
        start = 0
        if timeline.ssrc != ssrc:
            chunks = self._one_by_one(pending[:1])
            start = 1
            seq0 = (seq0 + 1) & 0xFFFF
            ts0 = (ts0 + frames) & 0xFFFFFFFF
        quality = self.quality  # the first packet may have set it to this codec
        route = self._routes[octet1]
        scale = int(route.samples_per_tick)
        assert quality is not None
        if (
            quality.clock_rate != 8000  # jitter is measured on another codec's clock
            or timeline.run_start(arrivals[start:], seq0, ts0, ssrc, frames * scale, scale) is None
        ):
            return chunks + self._one_by_one(pending[start:]) if start else None
        ran = count - start
        joined = b"".join([entry[1] for entry in pending[start:]])
        rows = np.frombuffer(joined, dtype=np.uint8).reshape(ran, size)
        pcm = table[rows[:, RTP_HEADER:]]
        if route.converts:  # G.711 on a wider leg: the whole run through the resampler at once
            pcm = pcm.reshape(-1)
        pcm = route.convert_run(pcm, seq0, (seq - 1) & 0xFFFF, self._last_pt != octet1)
        run = timeline.add_run(arrivals[start:], seq0, ts0, ssrc, pcm.reshape(ran, -1), frames * ran, scale)
        assert run is not None  # run_start said it fits
        quality.update_run(ssrc, seq0, ts0, frames, arrivals[start:])
        self.fast_packets += ran
        self._count_audio(route, ran)
        self._last_pt = octet1
        return chunks + run

    def _one_by_one(self, pending: List[Tuple[float, bytes, bool]]) -> List[Chunk]:
        timeline = self.timeline
        quality = self.quality
        assert timeline is not None and quality is not None
        chunks: List[Chunk] = []
        routes = self._routes
        kinds = self._kinds
        for arrival, data, muted in pending:
            if is_rtcp(data):
                self.packets -= 1
                self.muxed_rtcp_packets += 1
                self._handle_rtcp(data, arrival)
                continue
            try:
                packet = parse_rtp(data)
            except RtpParseError:
                self.packets -= 1
                self.bad_packets += 1
                continue
            if muted:
                self.paused_packets += 1
            pt = packet.payload_type
            route = routes.get(pt)
            if route is None:
                kind = kinds.get(pt) or self._classify(pt)
                route = routes.get(pt) if kind is AUDIO else None
            if route is None:
                quality.update(packet.ssrc, packet.sequence, packet.timestamp, arrival, timing=False)
                if kind is EVENT:
                    self.telephone_events += 1
                    self._telephone_event(packet.timestamp, packet.payload, arrival, packet.ssrc)
                elif kind is COMFORT_NOISE:
                    self.comfort_noise += 1
                elif kind is UNDECODABLE:
                    self.undecodable += 1
                else:
                    self.unknown_payload_type += 1
                # Same sequence space: keeps these from looking like losses.
                chunks += timeline.add(arrival, packet, None)
                continue
            quality = self._quality_for(route)
            quality.update(packet.ssrc, packet.sequence, packet.timestamp, arrival,
                           timing=route.decoder.clock_rate == quality.clock_rate)
            interrupted = self._last_pt != pt
            self._last_pt = pt
            try:
                pcm = route.decode(packet.payload, packet.sequence, interrupted)
            except Exception:
                self.decode_errors += 1
                continue
            self._count_audio(route, 1)
            chunks += timeline.add(arrival, packet, pcm, route.samples_per_tick, muted)
        return chunks

    def _quality_for(self, route: PayloadRoute) -> StreamQuality:
        """The quality counters, set to the clock and codec of the first audio that came.

        The stream that only ever carries PCMA on an Opus answer is scored as PCMA,
        its jitter measured on PCMA's clock.
        """
        quality = self.quality
        assert quality is not None
        decoder = route.decoder
        if quality.current is None and (quality.clock_rate, quality.codec) != (decoder.clock_rate, decoder.encoding):
            quality = self.quality = StreamQuality(decoder.clock_rate, decoder.encoding)
        return quality

    def _count_audio(self, route: PayloadRoute, packets: int) -> None:
        by_codec = self.packets_by_codec
        by_codec[route.name] = by_codec.get(route.name, 0) + packets
        if route is not self._primary:
            self.other_codec_packets += packets
        if route.converts:
            self.resampled_packets += packets

    def _telephone_event(self, timestamp: int, payload: bytes, arrival: float, ssrc: int) -> None:
        dtmf = self.dtmf
        if dtmf is None:
            return
        try:
            events = dtmf.feed(timestamp, payload, arrival, ssrc)
        except DtmfParseError:
            return
        for event in events:
            self._dtmf_event(event)

    def _dtmf_event(self, event: DtmfEvent) -> None:
        if len(self.dtmf_events) < MAX_DTMF_KEPT:
            self.dtmf_events.append(event)
        callback = getattr(self.listener, "stream_dtmf", None)
        if callback is not None:
            callback(self, event)

    def _write(self, chunks: List[Chunk]) -> None:
        writer = self.writer
        if not chunks:
            return
        if writer is not None:
            batch: List[np.ndarray] = []
            for chunk in chunks:
                if chunk.pcm is None:
                    if batch:
                        writer.write(batch[0] if len(batch) == 1 else np.concatenate(batch))
                        batch = []
                    writer.write_silence(chunk.frames)
                else:
                    batch.append(chunk.pcm)
            if batch:
                writer.write(batch[0] if len(batch) == 1 else np.concatenate(batch))
        if self.audio_sink is not None:
            self._feed_sink(chunks)

    def _feed_sink(self, chunks: List[Chunk]) -> None:
        """Hand new audio to the sink: one call per contiguous span, in order."""
        leg = self.leg
        assert leg is not None and self.audio_sink is not None
        spans: List[Tuple[int, List[np.ndarray]]] = []
        next_offset: Optional[int] = None
        for chunk in chunks:
            if chunk.pcm is None or chunk.frames == 0:
                next_offset = None
                continue
            if next_offset == chunk.offset and spans:
                spans[-1][1].append(chunk.pcm)
            else:
                spans.append((chunk.offset, [chunk.pcm]))
            next_offset = chunk.offset + chunk.frames
        for offset, parts in spans:
            pcm = parts[0] if len(parts) == 1 else np.concatenate(parts)
            if leg.channels > 1:
                pcm = pcm.reshape(-1, leg.channels)
            try:
                self.audio_sink(self.spec.label, pcm, leg.sample_rate, offset)
            except Exception:
                self._failed_once("sink_errors", "Feeding the audio sink of")

    def _failed_once(self, counter: str, what: str) -> None:
        """Count a failure of a periodic job; log its traceback the first time only."""
        count = getattr(self, counter) + 1
        setattr(self, counter, count)
        if count == 1:
            self.log.failure("{what} stream {label} of call {call_id} failed", what=what,
                             label=self.spec.label, call_id=self.spec.call_id)

    # -- reporting ----------------------------------------------------------

    def _report_stats(self) -> None:
        callback = getattr(self.listener, "stream_stats", None)
        if callback is not None:
            callback(self)

    def quality_report(self) -> Optional[Dict[str, Any]]:
        """Loss, jitter and MOS as plain data (None without a decodable codec)."""
        return self.quality.report().as_dict() if self.quality is not None else None

    def stats(self) -> Dict[str, Any]:
        """Plain data about this stream (safe to send across processes)."""
        timeline = self.timeline
        primary = self._primary
        leg = self.leg
        writer = self.writer
        rtcp_port = self.port + 1 if self.port is not None else None
        stats: Dict[str, Any] = {
            "call_id": self.spec.call_id,
            "label": self.spec.label,
            "codec": primary.decoder.encoding if primary is not None else None,
            "payload_type": primary.payload_type if primary is not None else None,
            "sample_rate": leg.sample_rate if leg is not None else None,
            "channels": leg.channels if leg is not None else None,
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
            "dtmf_digits": len(self.dtmf_events),
            "comfort_noise": self.comfort_noise,
            "unknown_payload_type": self.unknown_payload_type,
            "undecodable": self.undecodable,
            "packets_by_codec": dict(self.packets_by_codec),
            "other_codec_packets": self.other_codec_packets,
            "resampled_packets": self.resampled_packets,
            "clock_switches": timeline.clock_switches if timeline is not None else 0,
            "tolerances": list(self.tolerances),
            "decode_errors": self.decode_errors,
            "flush_errors": self.flush_errors,
            "sink_errors": self.sink_errors,
            "rtcp_packets": self.rtcp.packets + self.muxed_rtcp_packets,
            "rtcp_reports": self.rtcp_reports,
            "rtcp_errors": self.rtcp_errors,
            "rtcp_cname": self.rtcp_cname,
            "rtcp_bye": self.rtcp_bye is not None,
            "first_packet_at": self.first_packet_at,
            "last_packet_at": self.last_packet_at,
            "ssrc": timeline.ssrc if timeline is not None else None,
            "source": self.source,
            "source_changes": self.source_changes,
            "paused": self._paused,
            "start_offset_samples": self.start_offset_samples,
            "wav_path": self.spec.wav_path if writer is not None else None,
            "wav_error": self.wav_error,
            "pcap_path": self.pcap_path if self.pcap is not None else None,
            "pcap_error": self.pcap_error,
            # The whole leg file, earlier streams' frames included when continued:
            "recorded_frames": writer.frames if writer is not None else 0,
            "recorded_seconds": writer.frames / writer.sample_rate if writer is not None else 0.0,
            "continued": self.continued,
            "continued_from_frames": writer.appended_to if writer is not None else 0,
            "written_frames": writer.frames - writer.appended_to if writer is not None else 0,
            "resume_gap_samples": timeline.resume_gap_samples if timeline is not None else 0,
            "wav_full": writer.full if writer is not None else False,
            "srtp": self.srtp is not None,
            "srtp_error": self.srtp_error,
            "quality": self.quality_report(),
            "closed": self.closed,
        }
        if self.srtp is not None:
            stats.update(self.srtp.stats())
        return stats

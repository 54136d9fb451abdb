"""RFC 4733 telephone-events (DTMF) as events, never as tones (sans-IO).

A named event is sent as a run of RTP packets sharing one timestamp (the
event's start) with a growing duration, the last three usually repeating
with the E (end) bit set. This turns such runs into one ``DtmfEvent`` per
key press:

* retransmitted end packets and late duplicates are ignored;
* when every end packet is lost, the event still ends: at the next event,
  or when ``expire`` finds it silent for ``end_timeout`` seconds
  (``end_seen`` is then False and the duration is the longest reported);
* a long event split into segments (RFC 4733 section 2.5.2.3: each
  segment gets a new timestamp once the 16-bit duration would overflow)
  is reported once with the summed duration.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List, Optional

from siprec.media.rtp import ts_delta

EVENT_SIZE = 4
MAX_DURATION = 0xFFFF
DEFAULT_END_TIMEOUT = 1.0
_BLOCK = struct.Struct("!BBH")

# RFC 4733 section 3.2: events 0-15 are the DTMF keys, 16 is flash.
_NAMES = "0123456789*#ABCD"


class DtmfParseError(ValueError):
    """A telephone-event payload that is not whole RFC 4733 event blocks."""


def event_name(code: int) -> str:
    if code < len(_NAMES):
        return _NAMES[code]
    if code == 16:
        return "flash"
    return f"event-{code}"


@dataclass(frozen=True, slots=True)
class EventBlock:
    """One 4-octet RFC 4733 event block."""

    event: int
    end: bool
    volume: int  # 0..63, -dBm0
    duration: int  # RTP timestamp units since the event's timestamp


def parse_events(payload: bytes) -> List[EventBlock]:
    """Parse a telephone-event payload (one or more 4-octet blocks)."""
    if not payload:
        raise DtmfParseError("empty telephone-event payload")
    if len(payload) % EVENT_SIZE:
        raise DtmfParseError(
            f"telephone-event payload of {len(payload)} octets is not a whole number of {EVENT_SIZE}-octet events"
        )
    blocks = []
    for offset in range(0, len(payload), EVENT_SIZE):
        event, flags, duration = _BLOCK.unpack_from(payload, offset)
        blocks.append(EventBlock(event, bool(flags & 0x80), flags & 0x3F, duration))
    return blocks


def build_event(event: int, duration: int, end: bool = False, volume: int = 10) -> bytes:
    """One event block (for tests and the test client)."""
    if not 0 <= event <= 255 or not 0 <= volume <= 63 or not 0 <= duration <= MAX_DURATION:
        raise ValueError("event 0..255, volume 0..63, duration 0..65535")
    return _BLOCK.pack(event, (0x80 if end else 0) | volume, duration)


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A finished key press on one stream."""

    digit: str  # "0".."9", "*", "#", "A".."D", "flash" or "event-<n>"
    event: int
    timestamp: int  # RTP timestamp of the event's start
    start: float  # arrival time of its first packet (the stream's clock)
    duration: float  # seconds
    volume: int  # -dBm0 of the last packet
    end_seen: bool  # False when no end packet arrived (inferred end)
    ssrc: int


class _Current:
    __slots__ = ("event", "timestamp", "segment_ts", "start", "base", "duration", "volume", "ssrc", "last_seen")

    def __init__(self, block: EventBlock, timestamp: int, arrival: float, ssrc: int) -> None:
        self.event = block.event
        self.timestamp = timestamp  # first segment
        self.segment_ts = timestamp  # current segment
        self.start = arrival
        self.base = 0  # duration of earlier segments
        self.duration = block.duration
        self.volume = block.volume
        self.ssrc = ssrc
        self.last_seen = arrival


class DtmfReceiver:
    """Per-stream telephone-event state; ``feed`` packets, collect finished events."""

    def __init__(self, clock_rate: int = 8000, end_timeout: float = DEFAULT_END_TIMEOUT) -> None:
        if clock_rate <= 0:
            raise ValueError("clock rate must be positive")
        self.clock_rate = clock_rate
        self.end_timeout = end_timeout
        self._current: Optional[_Current] = None
        # (ssrc, timestamp) of the last finished segment: its stragglers
        # and retransmitted end packets must not start a new event.
        self._finished: Optional[tuple] = None
        self.events = 0
        self.retransmissions = 0
        self.inferred_ends = 0
        self.bad_payloads = 0

    def feed(self, timestamp: int, payload: bytes, arrival: float, ssrc: int = 0) -> List[DtmfEvent]:
        """One telephone-event packet; returns the events it finished.

        A malformed payload raises DtmfParseError (and is counted).
        """
        try:
            blocks = parse_events(payload)
        except DtmfParseError:
            self.bad_payloads += 1
            raise
        out: List[DtmfEvent] = []
        # Several blocks in one packet describe consecutive events (the
        # earlier ones finished); the last block is the live one.
        for block in blocks:
            self._block(block, timestamp, arrival, ssrc, out)
        return out

    def _block(self, block: EventBlock, timestamp: int, arrival: float, ssrc: int, out: List[DtmfEvent]) -> None:
        current = self._current
        if current is not None and current.ssrc == ssrc and timestamp == current.segment_ts:
            if block.event != current.event:
                return  # inconsistent packet inside an event: ignore it
            current.duration = max(current.duration, block.duration)
            current.volume = block.volume
            current.last_seen = arrival
            if block.end:
                out.append(self._finish(True))
            return
        if self._finished == (ssrc, timestamp):
            self.retransmissions += 1
            return
        if current is not None and current.ssrc == ssrc and self._continues(current, block, timestamp):
            current.base += current.duration
            current.segment_ts = timestamp
            current.duration = block.duration
            current.last_seen = arrival
            if block.end:
                out.append(self._finish(True))
            return
        if current is not None:
            if current.ssrc == ssrc and ts_delta(timestamp, current.segment_ts) < 0:
                self.retransmissions += 1  # a straggler from before the live event
                return
            out.append(self._finish(False))
        self._current = _Current(block, timestamp, arrival, ssrc)
        if block.end:
            out.append(self._finish(True))

    def _continues(self, current: _Current, block: EventBlock, timestamp: int) -> bool:
        """A new segment of a long event: same key, starting where the last one filled up."""
        if block.event != current.event or current.duration < MAX_DURATION - 2 * self.clock_rate // 10:
            return False
        return 0 < ts_delta(timestamp, current.segment_ts) <= MAX_DURATION

    def _finish(self, end_seen: bool) -> DtmfEvent:
        current = self._current
        assert current is not None
        self._current = None
        self._finished = (current.ssrc, current.segment_ts)
        self.events += 1
        if not end_seen:
            self.inferred_ends += 1
        return DtmfEvent(
            digit=event_name(current.event),
            event=current.event,
            timestamp=current.timestamp,
            start=current.start,
            duration=(current.base + current.duration) / self.clock_rate,
            volume=current.volume,
            end_seen=end_seen,
            ssrc=current.ssrc,
        )

    def expire(self, now: float) -> List[DtmfEvent]:
        """End an event whose packets stopped ``end_timeout`` ago without an end bit."""
        current = self._current
        if current is not None and now - current.last_seen >= self.end_timeout:
            return [self._finish(False)]
        return []

    def close(self) -> List[DtmfEvent]:
        """The stream ends: whatever is still live ends now."""
        return [self._finish(False)] if self._current is not None else []

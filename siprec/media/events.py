"""What a media stream tells its owner, as frozen values.

A stream reports through one callback, ``on_event(event)``, with one of
these. They carry plain data only (no stream object to reach back into),
so the same events can later cross a process boundary when media moves
into worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple, Union

import numpy as np

__all__ = ["FirstPacket", "DtmfDigit", "RtcpBye", "StatsReport", "AudioDecoded",
           "StreamEvent", "OnEvent"]


@dataclass(frozen=True, slots=True)
class FirstPacket:
    """The first RTP packet of the stream arrived (it may latch the source)."""

    label: str
    at: float
    source: Optional[Tuple[str, int]]


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A finished RFC 4733 key press; never part of the recorded audio."""

    label: str
    digit: str
    start: float  # arrival time of its first packet
    duration: float  # seconds
    end_seen: bool  # False when its end was inferred


@dataclass(frozen=True, slots=True)
class RtcpBye:
    """The SRC sent RTCP BYE on this stream: the stream (not the call) is over."""

    label: str
    ssrcs: Tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class StatsReport:
    """Periodic counters and quality of the stream (what ``stats()`` returns)."""

    label: str
    stats: Mapping[str, Any]


@dataclass(frozen=True, slots=True, eq=False)
class AudioDecoded:
    """Newly decoded audio for the analysis path (transcription, talk analysis).

    ``pcm`` is int16, shaped (frames,) or (frames, channels); ``offset`` is
    its first frame on the call timeline at ``sample_rate``. Sent only for
    streams opened with ``deliver_audio``; the archive never depends on it.
    """

    label: str
    pcm: np.ndarray
    sample_rate: int
    offset: int


StreamEvent = Union[FirstPacket, DtmfDigit, RtcpBye, StatsReport, AudioDecoded]
OnEvent = Callable[[StreamEvent], None]

"""Plain data describing a media stream.

Everything a MediaStream needs crosses module (and, later, process)
boundaries as these frozen values, never as live objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Tuple

if TYPE_CHECKING:
    from siprec.media.srtp import SrtpKeys


@dataclass(frozen=True)
class PayloadFormat:
    """One negotiated RTP payload format (an ``a=rtpmap`` line, or a static one)."""

    payload_type: int
    encoding: str  # upper case, e.g. "PCMU", "OPUS", "TELEPHONE-EVENT"
    clock_rate: int
    channels: int = 1
    fmtp: Optional[str] = None

    @property
    def is_telephone_event(self) -> bool:
        return self.encoding == "TELEPHONE-EVENT"


@dataclass(frozen=True)
class LegContinuation:
    """A leg WAV an earlier stream of the same leg (same ``a=label``) left.

    A stream the SRC removes (port 0) and offers again later is the same
    leg: its new MediaStream appends to the same file rather than start
    another. The values come from the earlier stream's final ``stats()``:

    - ``sample_rate``, ``channels``: the file's (``stats()["sample_rate"]``,
      ``["channels"]``). The new stream records at these whatever codec it
      now gets (other rates are resampled), and refuses a file whose header
      says otherwise.
    - ``start_offset_samples``: where the file's first frame sits on the
      call timeline, in ``sample_rate`` frames since the call start (the
      first stream's ``stats()["start_offset_samples"]``); the continued
      stream reports the same, so the combined file lines up.

    Where the file ends is read from the file itself (its start plus the
    frames it holds), so it cannot disagree with what is on disk; the span
    from there to the new stream's first packet is written as silence.
    Only for a file that holds audio: an earlier stream that recorded
    nothing has no start offset, and a fresh stream may overwrite its file.
    """

    sample_rate: int
    channels: int
    start_offset_samples: int

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> Optional["LegContinuation"]:
        """From the earlier stream's final ``stats()`` (or the leg's pieces added
        up): None when it recorded no audio, so there is no file to continue."""
        start = stats.get("start_offset_samples")
        rate, channels = stats.get("sample_rate"), stats.get("channels")
        if start is None or not rate or not channels:
            return None
        return cls(int(rate), int(channels), int(start))

    def __post_init__(self) -> None:
        for name in ("sample_rate", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} of a leg continuation must be a positive int, got {value!r}")
        start = self.start_offset_samples
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"start_offset_samples of a leg continuation must be an int >= 0, got {start!r}")


@dataclass(frozen=True)
class StreamSpec:
    """What the media layer needs to receive and record one offered stream."""

    call_id: str
    label: str
    index: int  # m-line index in the offer
    # Formats we accept on this stream; the first one is the answered codec.
    # Packets may carry any of them (some SRCs switch payload type).
    formats: Tuple[PayloadFormat, ...]
    wav_path: str
    telephone_event: Optional[PayloadFormat] = None
    remote_address: Optional[Tuple[str, int]] = None
    rtcp_mux: bool = False
    paused: bool = False
    extra: Tuple[Tuple[str, str], ...] = field(default=())
    # SRTP keys of the SRC (from its a=crypto, see media.srtp.negotiate_sdes);
    # None for plain RTP/AVP.
    srtp: Optional["SrtpKeys"] = None
    # Set when wav_path is a leg file an earlier stream of this leg left:
    # this stream appends to it on the same call timeline (LegContinuation).
    continue_from: Optional[LegContinuation] = None

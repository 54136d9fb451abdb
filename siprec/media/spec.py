"""Plain data describing a media stream.

Everything a MediaStream needs crosses module (and, later, process)
boundaries as these frozen values, never as live objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Tuple

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

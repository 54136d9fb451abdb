"""iLBC (RFC 3951, RTP payload RFC 3952) decoded by FFmpeg.

Two frame modes: 20 ms frames of 38 octets and 30 ms frames of 50. The
fmtp ``mode`` says which (30 when absent, RFC 3952 section 5); a payload
whose length only fits the other mode is decoded in that mode, since
some senders ignore the negotiation.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from siprec.media.codecs.avcodec import AvDecoderContext
from siprec.media.codecs.base import DecodeError, Decoder, DecoderOptions
from siprec.media.codecs.fmtp import fmtp_params
from siprec.media.spec import PayloadFormat

# mode (ms) -> (octets per frame, samples per frame)
MODES = {20: (38, 160), 30: (50, 240)}


class IlbcDecoder(Decoder):
    encoding = "ILBC"
    clock_rate = 8000
    sample_rate = 8000
    channels = 1

    def __init__(self, mode: int = 30) -> None:
        if mode not in MODES:
            raise ValueError(f"iLBC mode must be 20 or 30, got {mode}")
        self.mode = mode
        self._contexts: Dict[int, AvDecoderContext] = {}

    def _context(self, mode: int) -> AvDecoderContext:
        ctx = self._contexts.get(mode)
        if ctx is None:
            octets = MODES[mode][0]
            ctx = self._contexts[mode] = AvDecoderContext(
                "ilbc", 8000, 1, options={"block_align": str(octets)}
            )
        return ctx

    def mode_for(self, size: int) -> int:
        """The frame mode a payload of ``size`` octets must be in."""
        fits = [m for m, (octets, _) in MODES.items() if size and size % octets == 0]
        if not fits:
            raise DecodeError(f"iLBC payload of {size} octets is neither 38- nor 50-octet frames")
        return self.mode if self.mode in fits else fits[0]

    def decode(self, payload: bytes) -> np.ndarray:
        mode = self.mode_for(len(payload))
        octets, samples = MODES[mode]
        ctx = self._context(mode)
        parts: List[np.ndarray] = []
        for i in range(0, len(payload), octets):
            pcm = ctx.decode(payload[i : i + octets])
            if pcm.size != samples:
                raise DecodeError(f"iLBC decoder returned {pcm.size} samples for a {mode} ms frame")
            parts.append(pcm)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def make_ilbc(fmt: PayloadFormat, options: DecoderOptions) -> Optional[Decoder]:
    if fmt.clock_rate != 8000 or fmt.channels != 1:
        return None
    mode = fmtp_params(fmt.fmtp).get("mode", "30")
    return IlbcDecoder(20 if mode.strip() == "20" else 30)

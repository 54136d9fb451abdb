"""G.726 ADPCM at 16/24/32/40 kbit/s decoded by FFmpeg.

``G726-<rate>`` (RFC 3551 section 4.5.4) packs code words from the least
significant bit of each octet up (FFmpeg's ``g726le``); ``AAL2-G726-<rate>``
(RFC 3551 section 4.5.4 too, ITU-T I.366.2) packs them from the most
significant bit (FFmpeg's ``g726``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from siprec.media.codecs.avcodec import AvDecoderContext
from siprec.media.codecs.base import DecodeError, Decoder, DecoderOptions
from siprec.media.spec import PayloadFormat

BITS_PER_RATE = {16: 2, 24: 3, 32: 4, 40: 5}


def parse_g726_name(encoding: str) -> Optional[tuple]:
    """``"G726-32"`` -> (32, False); ``"AAL2-G726-32"`` -> (32, True); else None."""
    name = encoding.upper()
    aal2 = name.startswith("AAL2-")
    if aal2:
        name = name[5:]
    if not name.startswith("G726-"):
        return None
    try:
        rate = int(name[5:])
    except ValueError:
        return None
    return (rate, aal2) if rate in BITS_PER_RATE else None


class G726Decoder(Decoder):
    clock_rate = 8000
    sample_rate = 8000
    channels = 1

    def __init__(self, rate: int = 32, aal2: bool = False) -> None:
        self.encoding = f"{'AAL2-' if aal2 else ''}G726-{rate}"
        self.bits = BITS_PER_RATE[rate]
        self._ctx = AvDecoderContext(
            "g726" if aal2 else "g726le", 8000, 1, options={"bits_per_coded_sample": str(self.bits)}
        )

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:
            raise DecodeError(f"empty {self.encoding} payload")
        return self._ctx.decode(payload)


def make_g726(fmt: PayloadFormat, options: DecoderOptions) -> Optional[Decoder]:
    parsed = parse_g726_name(fmt.encoding)
    if parsed is None or fmt.clock_rate != 8000 or fmt.channels != 1:
        return None
    return G726Decoder(*parsed)

"""G.722 (wideband ADPCM, 64 kbit/s) decoded by FFmpeg.

RFC 3551 keeps the RTP clock at 8000 Hz for G.722 for historical reasons
although it carries 16 kHz audio: every payload octet is two samples, and
``samples_per_tick`` is 2. A few SRCs write ``G722/16000``; then the
timestamps really run at 16 kHz and are taken as such.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from siprec.media.codecs.avcodec import AvDecoderContext
from siprec.media.codecs.base import Decoder, DecoderOptions
from siprec.media.spec import PayloadFormat

SAMPLE_RATE = 16000


class G722Decoder(Decoder):
    encoding = "G722"
    sample_rate = SAMPLE_RATE
    channels = 1

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._ctx = AvDecoderContext("g722", SAMPLE_RATE, 1)

    def decode(self, payload: bytes) -> np.ndarray:
        return self._ctx.decode(payload)


def make_g722(fmt: PayloadFormat, options: DecoderOptions) -> Optional[Decoder]:
    if fmt.clock_rate not in (8000, 16000) or fmt.channels != 1:
        return None
    return G722Decoder(fmt.clock_rate)

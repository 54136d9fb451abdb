"""Comfort noise (RFC 3389, static payload type 13).

A CN packet announces silence until the next speech packet; how long is
only known when that packet arrives. So it decodes to no samples: the
timeline fills the span up to the next packet with silence, and the CN
packet still counts as received in the sequence space (it is not loss).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from siprec.media.codecs.base import DecodeError, Decoder, DecoderOptions
from siprec.media.spec import PayloadFormat

MAX_NOISE_LEVEL = 127  # -dBov


class ComfortNoiseDecoder(Decoder):
    encoding = "CN"
    channels = 1

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = self.sample_rate = clock_rate
        self.last_level: Optional[int] = None  # -dBov of the last CN packet

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:
            raise DecodeError("empty comfort noise payload: the noise level octet is missing")
        level = payload[0] & 0x7F  # RFC 3389 section 3: first bit reserved
        self.last_level = level
        return np.zeros(0, dtype=np.int16)


def make_cn(fmt: PayloadFormat, options: DecoderOptions) -> Optional[Decoder]:
    if fmt.channels != 1 or fmt.clock_rate <= 0:
        return None
    return ComfortNoiseDecoder(fmt.clock_rate)

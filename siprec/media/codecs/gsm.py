"""GSM 06.10 full rate (RFC 3551 section 4.5.8) decoded by FFmpeg: 33-octet frames of 20 ms."""

from __future__ import annotations

from typing import List, Optional

from siprec.media.codecs.avcodec import AvDecoderContext
from siprec.media.codecs.base import Decoder, DecoderOptions
from siprec.media.codecs.framed import FramedDecoder, split_fixed
from siprec.media.spec import PayloadFormat

FRAME_OCTETS = 33
FRAME_SAMPLES = 160


class GsmDecoder(FramedDecoder):
    encoding = "GSM"
    frame_samples = FRAME_SAMPLES

    def __init__(self) -> None:
        super().__init__(AvDecoderContext("gsm", 8000, 1))

    def split(self, payload: bytes) -> List[bytes]:
        return split_fixed(payload, FRAME_OCTETS, "GSM")


def make_gsm(fmt: PayloadFormat, options: DecoderOptions) -> Optional[Decoder]:
    if fmt.clock_rate != 8000 or fmt.channels != 1:
        return None
    return GsmDecoder()

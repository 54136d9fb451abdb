"""G.729 / G.729A (8 kbit/s CS-ACELP, RFC 3551 section 4.5.6) decoded by FFmpeg.

A payload is zero or more 10-octet frames, optionally ending in one
2-octet Annex B SID frame. ``G729D`` (6.4 kbit/s) carries 8-octet frames.
"""

from __future__ import annotations

from typing import List, Optional

from siprec.media.codecs.avcodec import AvDecoderContext
from siprec.media.codecs.base import DecodeError, Decoder, DecoderOptions
from siprec.media.codecs.framed import FramedDecoder
from siprec.media.spec import PayloadFormat

FRAME_SAMPLES = 80  # 10 ms
SID_OCTETS = 2
FRAME_OCTETS = {"G729": 10, "G729D": 8}


class G729Decoder(FramedDecoder):
    frame_samples = FRAME_SAMPLES

    def __init__(self, encoding: str = "G729") -> None:
        self.encoding = encoding
        self._frame = FRAME_OCTETS[encoding]
        super().__init__(AvDecoderContext("g729", 8000, 1))

    def split(self, payload: bytes) -> List[bytes]:
        size = self._frame
        speech, rest = divmod(len(payload), size)
        if rest not in (0, SID_OCTETS):
            raise DecodeError(
                f"{self.encoding} payload of {len(payload)} octets is neither {size}-octet "
                f"frames nor frames and a {SID_OCTETS}-octet SID"
            )
        frames = [payload[i * size : (i + 1) * size] for i in range(speech)]
        if rest:
            frames.append(b"")
        return frames


def make_g729(fmt: PayloadFormat, options: DecoderOptions) -> Optional[Decoder]:
    if fmt.clock_rate != 8000 or fmt.channels != 1:
        return None
    return G729Decoder(fmt.encoding.upper())

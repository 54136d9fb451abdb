"""G.723.1 (5.3/6.3 kbit/s, RFC 3551 section 4.5.3) decoded by FFmpeg.

Frames are 30 ms; the two low bits of each frame's first octet give its
size: 24 octets (6.3 kbit/s), 20 (5.3 kbit/s) or 4 (SID). FFmpeg decodes
SID frames itself (comfort noise), so they are handed over like speech.
"""

from __future__ import annotations

from typing import List, Optional

from siprec.media.codecs.avcodec import AvDecoderContext
from siprec.media.codecs.base import DecodeError, Decoder, DecoderOptions
from siprec.media.codecs.framed import FramedDecoder
from siprec.media.spec import PayloadFormat

FRAME_SAMPLES = 240
FRAME_OCTETS = {0: 24, 1: 20, 2: 4}


class G723Decoder(FramedDecoder):
    encoding = "G723"
    frame_samples = FRAME_SAMPLES

    def __init__(self) -> None:
        super().__init__(AvDecoderContext("g723_1", 8000, 1))

    def split(self, payload: bytes) -> List[bytes]:
        frames: List[bytes] = []
        offset = 0
        while offset < len(payload):
            kind = payload[offset] & 0x03
            size = FRAME_OCTETS.get(kind)
            if size is None:
                raise DecodeError(f"G.723.1 frame at octet {offset} has the reserved type 3")
            if offset + size > len(payload):
                raise DecodeError(
                    f"G.723.1 frame at octet {offset} needs {size} octets, {len(payload) - offset} left"
                )
            frames.append(payload[offset : offset + size])
            offset += size
        return frames


def make_g723(fmt: PayloadFormat, options: DecoderOptions) -> Optional[Decoder]:
    if fmt.clock_rate != 8000 or fmt.channels != 1:
        return None
    return G723Decoder()

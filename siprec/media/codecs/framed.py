"""Shared shape of the frame-based narrowband codecs (G.729, GSM, iLBC, G.723.1).

An RTP payload of these carries one or more whole codec frames back to
back; the decoder splits the payload, hands FFmpeg one frame at a time
and joins the PCM. Comfort-noise (SID) frames come out as silence of one
frame's length: the timeline fills the silence that follows from the
timestamps.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import List

import numpy as np

from siprec.media.codecs.avcodec import AvDecoderContext
from siprec.media.codecs.base import DecodeError, Decoder


class FramedDecoder(Decoder):
    """Base for codecs whose payload is a run of frames; subclasses split it."""

    clock_rate = 8000
    sample_rate = 8000
    channels = 1
    frame_samples: int  # PCM samples per speech frame

    def __init__(self, ctx: AvDecoderContext) -> None:
        self._ctx = ctx

    @abstractmethod
    def split(self, payload: bytes) -> List[bytes]:
        """Cut a payload into frames; an empty frame stands for a SID frame."""

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:
            raise DecodeError(f"empty {self.encoding} payload")
        parts: List[np.ndarray] = []
        for frame in self.split(payload):
            if not frame:
                parts.append(np.zeros(self.frame_samples, dtype=np.int16))
                continue
            pcm = self._ctx.decode(frame)
            if pcm.size != self.frame_samples:
                # Keep the frame's span whatever FFmpeg returned, so the
                # timeline stays aligned.
                fixed = np.zeros(self.frame_samples, dtype=np.int16)
                fixed[: min(pcm.size, self.frame_samples)] = pcm[: self.frame_samples]
                pcm = fixed
            parts.append(pcm)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def split_fixed(payload: bytes, size: int, name: str) -> List[bytes]:
    """Frames of exactly ``size`` octets, or DecodeError naming the length."""
    if len(payload) % size:
        raise DecodeError(f"{name} payload of {len(payload)} octets is not a whole number of {size}-octet frames")
    return [payload[i : i + size] for i in range(0, len(payload), size)]

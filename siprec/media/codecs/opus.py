"""Opus (RFC 6716, RTP payload RFC 7587) decoded by libopus through PyAV.

The rtpmap is always ``opus/48000/2`` whatever the sender encodes, so the
channel count of the recording comes from the fmtp: ``sprop-stereo=1``
(the sender says it may send stereo) or ``stereo=1`` gives a stereo WAV,
otherwise the stream is decoded to mono, as RFC 7587 section 6.1 lets a
receiver do. A nonstandard ``opus/48000/1`` is mono.

Output is 48 kHz unless the options ask for another Opus rate (then the
product's one resampler converts each packet to exactly its share of
samples); the RTP clock stays 48 kHz, so ``samples_per_tick`` becomes
out_rate / 48000.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from siprec.media.codecs.avcodec import AvDecoderContext
from siprec.media.codecs.base import Decoder, DecoderOptions
from siprec.media.codecs.fmtp import flag, fmtp_params
from siprec.media.resample import PacketResampler
from siprec.media.spec import PayloadFormat

CLOCK_RATE = 48000


def opus_channels(fmt: PayloadFormat) -> int:
    """How many channels to record for this negotiated Opus format."""
    if fmt.channels == 1:
        return 1
    params = fmtp_params(fmt.fmtp)
    return 2 if flag(params, "sprop-stereo") or flag(params, "stereo") else 1


class OpusDecoder(Decoder):
    encoding = "OPUS"
    clock_rate = CLOCK_RATE

    def __init__(self, channels: int = 1, sample_rate: int = CLOCK_RATE) -> None:
        self.channels = channels
        self.sample_rate = sample_rate
        # libopus in FFmpeg always decodes at 48 kHz; other rates are resampled.
        self._ctx = AvDecoderContext("libopus", CLOCK_RATE, channels)
        self._resampler = (
            PacketResampler(CLOCK_RATE, sample_rate, channels) if sample_rate != CLOCK_RATE else None
        )

    def decode(self, payload: bytes) -> np.ndarray:
        pcm = self._ctx.decode(payload)
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        return pcm


def make_opus(fmt: PayloadFormat, options: DecoderOptions) -> Optional[Decoder]:
    if fmt.clock_rate != CLOCK_RATE or fmt.channels not in (1, 2):
        return None
    return OpusDecoder(opus_channels(fmt), options.opus_sample_rate)

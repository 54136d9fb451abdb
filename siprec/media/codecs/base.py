"""What every audio decoder offers the media path."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

# Opus always runs an RTP clock of 48 kHz; recordings keep that unless told.
DEFAULT_OPUS_SAMPLE_RATE = 48000
OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)


class DecodeError(ValueError):
    """A payload the decoder could not turn into audio."""


@dataclass(frozen=True, slots=True)
class DecoderOptions:
    """Settings that change what a decoder outputs (plain data: crosses processes)."""

    opus_sample_rate: int = DEFAULT_OPUS_SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.opus_sample_rate not in OPUS_SAMPLE_RATES:
            raise ValueError(
                f"Opus sample rate must be one of {', '.join(map(str, OPUS_SAMPLE_RATES))}, "
                f"got {self.opus_sample_rate}"
            )


DEFAULT_OPTIONS = DecoderOptions()


class Decoder(ABC):
    """Turns one RTP payload into 16-bit PCM.

    ``decode`` returns int16 samples, interleaved when ``channels > 1``.
    Decoders may keep state between packets (most codecs do), so use one
    instance per stream, and feed packets in sequence order.
    """

    encoding: str  # rtpmap name, upper case
    clock_rate: int  # RTP timestamp units per second
    sample_rate: int  # output PCM samples per second (per channel)
    channels: int = 1

    @property
    def samples_per_tick(self) -> float:
        """Output samples (per channel) per RTP timestamp unit.

        Not always 1: G.722 is 16 kHz audio on an 8000 Hz RTP clock.
        """
        return self.sample_rate / self.clock_rate

    @abstractmethod
    def decode(self, payload: bytes) -> np.ndarray:
        """Decode one payload into int16 PCM; raise DecodeError on garbage."""

    def decode_batch(self, payloads: Sequence[bytes]) -> List[Optional[np.ndarray]]:
        """Decode several payloads in order; None where one failed.

        Stateless codecs override this to decode a whole batch at once.
        """
        out: List[Optional[np.ndarray]] = []
        for payload in payloads:
            try:
                out.append(self.decode(payload))
            except DecodeError:
                out.append(None)
        return out

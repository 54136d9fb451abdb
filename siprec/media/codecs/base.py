"""What every audio decoder offers the media path."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Decoder(ABC):
    """Turns one RTP payload into 16-bit PCM.

    ``decode`` returns int16 samples, interleaved when ``channels > 1``.
    Decoders may keep state between packets (later codecs do), so use one
    instance per stream.
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
        """Decode one payload into int16 PCM."""

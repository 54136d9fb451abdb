"""One payload type's way onto a leg: its own decoder, then the leg's format.

An SRC may send another codec than the one answered (Cisco CUBE and Webex
send PCMA on a PCMU or Opus answer), so each packet is decoded by its own
payload type. The leg's WAV keeps one rate and channel count, so audio
decoded at another rate goes through the product's one resampler
(:class:`~siprec.media.resample.PacketResampler`: exactly the packet's
span, about 4 ms late) and is mixed down or copied to the leg's channels.
Sans-IO: payload bytes in, int16 at the leg's format out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from siprec.media.codecs.base import Decoder
from siprec.media.resample import PacketResampler
from siprec.media.spec import PayloadFormat

__all__ = ["LegFormat", "PayloadRoute", "format_name"]


@dataclass(frozen=True, slots=True)
class LegFormat:
    """What a leg's WAV holds: one rate, one channel count."""

    sample_rate: int
    channels: int

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.channels <= 0:
            raise ValueError(f"a leg needs a positive rate and channel count, got {self.sample_rate}/{self.channels}")


def format_name(fmt: PayloadFormat) -> str:
    """``PCMA/8000``, ``OPUS/48000/2``: how a format is named in stats and logs."""
    channels = f"/{fmt.channels}" if fmt.channels > 1 else ""
    return f"{fmt.encoding.upper()}/{fmt.clock_rate}{channels}"


class PayloadRoute:
    """The decoder of one payload type and the conversion to the leg's format.

    ``samples_per_tick`` is leg frames per tick of this payload's RTP
    clock (PCMA on a 48 kHz leg: 6), what the timeline needs to place its
    packets. ``table`` is the G.711 lookup table when a whole number of
    leg frames falls on each tick (G.711 on an 8, 16 or 48 kHz leg), so
    the stream's vectorised path can decode whole runs and, when the leg
    needs it, convert them with :meth:`convert_run`.
    """

    def __init__(self, fmt: PayloadFormat, decoder: Decoder, leg: LegFormat) -> None:
        self.fmt = fmt
        self.decoder = decoder
        self.leg = leg
        self.payload_type = fmt.payload_type
        self.name = format_name(fmt)
        self.samples_per_tick = leg.sample_rate / decoder.clock_rate
        self.resamples = decoder.sample_rate != leg.sample_rate
        self.remixes = decoder.channels != leg.channels
        self.converts = self.resamples or self.remixes
        table = getattr(decoder, "table", None)
        whole = self.samples_per_tick == int(self.samples_per_tick) and self.samples_per_tick >= 1
        self.table: Optional[np.ndarray] = table if table is not None and whole else None
        self._resampler: Optional[PacketResampler] = None
        self._expected: Optional[int] = None  # sequence number that would follow the last packet

    def decode(self, payload: bytes, sequence: int, interrupted: bool) -> np.ndarray:
        """int16 at the leg's rate and channels (interleaved).

        ``interrupted``: packets of another payload type came since this
        one's last. Then, or after a gap in the sequence, the resampler
        starts afresh rather than run the old signal's tail into the new.
        """
        pcm = self.decoder.decode(payload)
        return self._converted(pcm, sequence, sequence, interrupted)

    def convert_run(self, pcm: np.ndarray, first: int, last: int, interrupted: bool) -> np.ndarray:
        """Already decoded audio of packets ``first..last`` (sequence numbers), converted."""
        return self._converted(pcm, first, last, interrupted)

    def _converted(self, pcm: np.ndarray, first: int, last: int, interrupted: bool) -> np.ndarray:
        follows = not interrupted and first == self._expected
        self._expected = (last + 1) & 0xFFFF
        if not self.converts:
            return pcm
        channels = self.decoder.channels
        if self.remixes and channels > 1:
            frames = pcm.reshape(-1, channels).astype(np.int32)
            pcm = (frames.sum(axis=1) // channels).astype(np.int16)
            channels = 1
        if self.resamples:
            if self._resampler is None or not follows:
                self._resampler = PacketResampler(self.decoder.sample_rate, self.leg.sample_rate, channels)
            pcm = self._resampler.process(pcm)
        if self.remixes and self.leg.channels > 1:
            pcm = np.repeat(pcm, self.leg.channels)
        return pcm

    def tolerance(self, answered: str) -> str:
        """The sentence for the call record: what the SRC did and what we made of it."""
        text = (f"SRC sent {self.name} (PT {self.payload_type}) on a stream answered {answered}; "
                f"decoded by its own payload type")
        changes = []
        if self.resamples:
            changes.append(f"resampled from {self.decoder.sample_rate} to {self.leg.sample_rate} Hz")
        if self.remixes:
            changes.append("mixed down to mono" if self.leg.channels == 1
                           else f"copied to all {self.leg.channels} channels")
        return text + (" and " + " and ".join(changes) if changes else "")

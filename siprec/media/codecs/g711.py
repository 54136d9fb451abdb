"""G.711 µ-law (PCMU) and A-law (PCMA), built from the ITU-T G.711 tables.

Decoding is one 256-entry lookup; the tables are computed here from the
segment/mantissa definitions rather than pasted in. Encoders exist for
tests and the test client.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from siprec.media.codecs.base import Decoder

_ULAW_BIAS = 0x84  # 132: 33 in 14-bit units, scaled to 16 bits
_ULAW_CLIP = 32635  # largest magnitude that still encodes without overflow


def _ulaw_table() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF  # µ-law is sent inverted
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32) ^ 0x55  # even bits are inverted
    segment = (code >> 4) & 0x07
    mantissa = code & 0x0F
    # Segment 0 has no implied leading one; the +8 / +0x108 put the
    # decoded value in the middle of its quantisation step.
    low = (mantissa << 4) + 8
    high = ((mantissa << 4) + 0x108) << np.maximum(segment - 1, 0)
    magnitude = np.where(segment == 0, low, high)
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


ULAW_TO_PCM: np.ndarray = _ulaw_table()
ALAW_TO_PCM: np.ndarray = _alaw_table()
ULAW_TO_PCM.flags.writeable = False
ALAW_TO_PCM.flags.writeable = False


def _highest_bit(values: np.ndarray) -> np.ndarray:
    """Index of the most significant set bit of each positive int32."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int32) - 1


def encode_ulaw(samples: np.ndarray) -> bytes:
    """Encode int16 PCM as µ-law octets."""
    x = np.asarray(samples, dtype=np.int32)
    negative = x < 0
    magnitude = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS
    exponent = _highest_bit(magnitude) - 7  # magnitude >= 132, so 0..7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    code = np.where(negative, 0x80, 0) | (exponent << 4) | mantissa
    return (~code & 0xFF).astype(np.uint8).tobytes()


def encode_alaw(samples: np.ndarray) -> bytes:
    """Encode int16 PCM as A-law octets."""
    x = np.asarray(samples, dtype=np.int32) >> 3  # A-law works on 13 bits
    negative = x < 0
    magnitude = np.where(negative, -x - 1, x)  # one's complement for negatives
    segment = np.clip(_highest_bit(np.maximum(magnitude, 1)) - 4, 0, 7)
    mantissa = np.where(segment == 0, magnitude >> 1, magnitude >> segment) & 0x0F
    code = (segment << 4) | mantissa
    code = np.where(magnitude >= 0x1000, 0x7F, code)  # clip to the top step
    mask = np.where(negative, 0x55, 0xD5)
    return (code ^ mask).astype(np.uint8).tobytes()


class _G711Decoder(Decoder):
    clock_rate = 8000
    sample_rate = 8000
    channels = 1
    _table: np.ndarray

    @property
    def samples_per_tick(self) -> float:
        return 1.0

    @property
    def table(self) -> np.ndarray:
        """Code -> sample lookup: lets the stream decode a whole batch in one indexing."""
        return self._table

    def decode(self, payload: bytes) -> np.ndarray:
        return self._table[np.frombuffer(payload, dtype=np.uint8)]

    def decode_batch(self, payloads: Sequence[bytes]) -> List[Optional[np.ndarray]]:
        """One table lookup for the whole batch, split into per-packet views."""
        if len(payloads) == 1:
            return [self._table[np.frombuffer(payloads[0], dtype=np.uint8)]]
        pcm = self._table[np.frombuffer(b"".join(payloads), dtype=np.uint8)]
        out: List[Optional[np.ndarray]] = []
        start = 0
        for payload in payloads:
            end = start + len(payload)
            out.append(pcm[start:end])
            start = end
        return out


class PcmuDecoder(_G711Decoder):
    encoding = "PCMU"
    _table = ULAW_TO_PCM


class PcmaDecoder(_G711Decoder):
    encoding = "PCMA"
    _table = ALAW_TO_PCM

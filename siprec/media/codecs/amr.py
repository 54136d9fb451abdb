"""AMR and AMR-WB (RTP payload format RFC 4867) decoded by FFmpeg.

The RTP payload is unpacked here (sans-IO) into the storage format of
RFC 4867 section 5 (one header octet, then the speech bits padded to an
octet), which is what FFmpeg's decoders take one frame at a time.

Both payload modes are handled: bandwidth-efficient (the default: fields
packed bit by bit) and octet-aligned (fmtp ``octet-align=1``), the latter
with optional CRCs (``crc=1``). Interleaving and multi-channel sessions
are not: formats asking for them are not offered. Comfort noise (SID) and
NO_DATA frames come out as one frame of silence so the payload's span is
kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from siprec.media.codecs.avcodec import AvDecoderContext
from siprec.media.codecs.base import DecodeError, Decoder, DecoderOptions
from siprec.media.codecs.fmtp import flag, fmtp_params
from siprec.media.spec import PayloadFormat

NO_DATA = 15


@dataclass(frozen=True, slots=True)
class AmrVariant:
    """What differs between AMR (narrowband) and AMR-WB."""

    encoding: str
    ffmpeg: str
    rate: int
    frame_samples: int
    # speech bits per frame type; None for reserved types
    frame_bits: Tuple[Optional[int], ...]
    speech_types: int  # frame types below this are speech
    silent_types: frozenset  # SID, speech-lost, NO_DATA: silence of one frame


AMR_NB = AmrVariant(
    encoding="AMR",
    ffmpeg="amrnb",
    rate=8000,
    frame_samples=160,
    # RFC 4867 table 1 / 3GPP TS 26.101: modes 4.75 .. 12.2 kbit/s, SIDs, NO_DATA
    frame_bits=(95, 103, 118, 134, 148, 159, 204, 244, 39, 43, 38, 37, None, None, None, 0),
    speech_types=8,
    silent_types=frozenset({8, 9, 10, 11, NO_DATA}),
)

AMR_WB = AmrVariant(
    encoding="AMR-WB",
    ffmpeg="amrwb",
    rate=16000,
    frame_samples=320,
    # 3GPP TS 26.201: modes 6.60 .. 23.85 kbit/s, SID, reserved, speech lost, NO_DATA
    frame_bits=(132, 177, 253, 285, 317, 365, 397, 461, 477, 40, None, None, None, None, 0, 0),
    speech_types=9,
    silent_types=frozenset({9, 14, NO_DATA}),
)


class AmrPayloadError(DecodeError):
    """An AMR RTP payload that does not match RFC 4867."""


@dataclass(frozen=True, slots=True)
class AmrFrame:
    """One frame from a payload: type, quality bit and speech bits (octet-padded)."""

    frame_type: int
    quality: bool
    data: bytes

    def storage(self) -> bytes:
        """The RFC 4867 section 5 storage form: header octet + speech octets."""
        return bytes(((self.frame_type & 0x0F) << 3 | (0x04 if self.quality else 0),)) + self.data


class _Bits:
    """Reads big-endian bit fields from a short payload."""

    __slots__ = ("_value", "_size", "_pos")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._size = 8 * len(data)
        self._pos = 0

    @property
    def left(self) -> int:
        return self._size - self._pos

    def read(self, n: int, what: str) -> int:
        if n > self.left:
            raise AmrPayloadError(f"AMR payload truncated in {what}: needs {n} bits, {self.left} left")
        self._pos += n
        return (self._value >> (self._size - self._pos)) & ((1 << n) - 1)


def _frame_bits(variant: AmrVariant, frame_type: int) -> int:
    bits = variant.frame_bits[frame_type]
    if bits is None:
        raise AmrPayloadError(f"{variant.encoding} frame type {frame_type} is reserved")
    return bits


def unpack_payload(
    payload: bytes, variant: AmrVariant, octet_aligned: bool = False, crc: bool = False
) -> Tuple[int, List[AmrFrame]]:
    """Split one RFC 4867 payload into (CMR, frames)."""
    if not payload:
        raise AmrPayloadError(f"empty {variant.encoding} payload")
    if octet_aligned:
        return _unpack_octet_aligned(payload, variant, crc)
    bits = _Bits(payload)
    cmr = bits.read(4, "the CMR")
    toc: List[Tuple[int, bool]] = []
    while True:
        follow = bits.read(1, "the table of contents")
        frame_type = bits.read(4, "the table of contents")
        quality = bool(bits.read(1, "the table of contents"))
        toc.append((frame_type, quality))
        if not follow:
            break
    frames = []
    for frame_type, quality in toc:
        size = _frame_bits(variant, frame_type)
        value = bits.read(size, f"frame {len(frames)} (type {frame_type})") if size else 0
        pad = -size % 8
        data = (value << pad).to_bytes((size + pad) // 8, "big")
        frames.append(AmrFrame(frame_type, quality, data))
    if bits.left >= 8:
        raise AmrPayloadError(f"{bits.left} bits left after the last {variant.encoding} frame")
    return cmr, frames


def _unpack_octet_aligned(payload: bytes, variant: AmrVariant, crc: bool) -> Tuple[int, List[AmrFrame]]:
    cmr = payload[0] >> 4
    offset = 1
    toc: List[Tuple[int, bool]] = []
    while True:
        if offset >= len(payload):
            raise AmrPayloadError(f"{variant.encoding} payload truncated in the table of contents")
        entry = payload[offset]
        offset += 1
        toc.append(((entry >> 3) & 0x0F, bool(entry & 0x04)))
        if not entry & 0x80:
            break
    if crc:
        # One CRC octet per frame that carries bits (RFC 4867 section 4.4.2.1).
        offset += sum(1 for frame_type, _ in toc if _frame_bits(variant, frame_type))
    frames = []
    for frame_type, quality in toc:
        octets = (_frame_bits(variant, frame_type) + 7) // 8
        if offset + octets > len(payload):
            raise AmrPayloadError(
                f"{variant.encoding} payload truncated in frame {len(frames)} (type {frame_type}): "
                f"needs {offset + octets} octets, got {len(payload)}"
            )
        frames.append(AmrFrame(frame_type, quality, payload[offset : offset + octets]))
        offset += octets
    if offset != len(payload):
        raise AmrPayloadError(f"{len(payload) - offset} octets left after the last {variant.encoding} frame")
    return cmr, frames


def pack_payload(
    frames: Sequence[AmrFrame], variant: AmrVariant, octet_aligned: bool = False, cmr: int = 15
) -> bytes:
    """Build an RFC 4867 payload (for tests and the test client; no CRCs)."""
    if octet_aligned:
        out = bytearray([(cmr & 0x0F) << 4])
        for i, frame in enumerate(frames):
            follow = 0x80 if i + 1 < len(frames) else 0
            out.append(follow | (frame.frame_type & 0x0F) << 3 | (0x04 if frame.quality else 0))
        for frame in frames:
            out += frame.data
        return bytes(out)
    value, size = cmr & 0x0F, 4
    for i, frame in enumerate(frames):
        follow = 1 if i + 1 < len(frames) else 0
        value = (value << 6) | follow << 5 | (frame.frame_type & 0x0F) << 1 | int(frame.quality)
        size += 6
    for frame in frames:
        bits = _frame_bits(variant, frame.frame_type)
        whole = int.from_bytes(frame.data, "big") >> (8 * len(frame.data) - bits) if bits else 0
        value = (value << bits) | whole
        size += bits
    pad = -size % 8
    return (value << pad).to_bytes((size + pad) // 8, "big")


def frame_from_storage(data: bytes, variant: AmrVariant) -> AmrFrame:
    """Read one storage-format frame (as FFmpeg's encoder emits them)."""
    if not data:
        raise AmrPayloadError("empty AMR storage frame")
    frame_type = (data[0] >> 3) & 0x0F
    octets = (_frame_bits(variant, frame_type) + 7) // 8
    if len(data) != 1 + octets:
        raise AmrPayloadError(f"{variant.encoding} storage frame of type {frame_type} must be {1 + octets} octets")
    return AmrFrame(frame_type, bool(data[0] & 0x04), bytes(data[1:]))


class AmrDecoder(Decoder):
    """AMR or AMR-WB; the RTP clock equals the sample rate (8000 / 16000)."""

    channels = 1

    def __init__(self, variant: AmrVariant = AMR_NB, octet_aligned: bool = False, crc: bool = False) -> None:
        self.variant = variant
        self.encoding = variant.encoding
        self.clock_rate = self.sample_rate = variant.rate
        self.octet_aligned = octet_aligned
        self.crc = crc
        self._ctx = AvDecoderContext(variant.ffmpeg, variant.rate, 1)
        self.last_cmr: Optional[int] = None

    def decode(self, payload: bytes) -> np.ndarray:
        cmr, frames = unpack_payload(payload, self.variant, self.octet_aligned, self.crc)
        self.last_cmr = cmr
        samples = self.variant.frame_samples
        parts: List[np.ndarray] = []
        for frame in frames:
            if frame.frame_type in self.variant.silent_types:
                parts.append(np.zeros(samples, dtype=np.int16))
                continue
            pcm = self._ctx.decode(frame.storage())
            if pcm.size != samples:
                fixed = np.zeros(samples, dtype=np.int16)
                fixed[: min(samples, pcm.size)] = pcm[:samples]
                pcm = fixed
            parts.append(pcm)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def make_amr(variant: AmrVariant):
    def make(fmt: PayloadFormat, options: DecoderOptions) -> Optional[Decoder]:
        if fmt.clock_rate != variant.rate or fmt.channels != 1:
            return None
        params = fmtp_params(fmt.fmtp)
        if params.get("interleaving") or flag(params, "robust-sorting"):
            return None
        crc = flag(params, "crc")
        octet_aligned = flag(params, "octet-align") or crc  # crc implies octet-aligned
        return AmrDecoder(variant, octet_aligned, crc)

    return make

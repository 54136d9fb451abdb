"""FFmpeg decoders through PyAV, fed one coded frame at a time.

The codecs beyond G.711 are decoded by FFmpeg's own decoders (libopus for
Opus) via PyAV, whose wheels bundle FFmpeg and libopus, so nothing has to
come from the system. This module only adapts them: raw frames in, int16
interleaved PCM out, FFmpeg's errors turned into DecodeError.

PyAV is imported lazily by :func:`available`; without it the codecs that
need it are simply not offered.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from siprec.media.codecs.base import DecodeError

_LAYOUTS = {1: "mono", 2: "stereo"}
_av: Any = None
_checked = False


def available() -> bool:
    """True when PyAV (and so FFmpeg) can be imported here."""
    global _av, _checked
    if not _checked:
        _checked = True
        try:
            import av  # noqa: PLC0415 - optional dependency, imported once

            _av = av
        except ImportError:  # pragma: no cover - av is an install requirement
            _av = None
    return _av is not None


def has_decoder(name: str) -> bool:
    """True when this FFmpeg build has the decoder ``name``."""
    if not available():
        return False
    try:
        _av.codec.Codec(name, "r")
    except Exception:
        return False
    return True


def frame_to_pcm(frame: Any) -> np.ndarray:
    """An AudioFrame as int16, channels interleaved."""
    arr = frame.to_ndarray()
    fmt = frame.format
    if fmt.is_planar:
        arr = arr.T
    arr = arr.reshape(-1)
    kind = arr.dtype.kind
    if kind == "f":
        return np.clip(np.rint(arr * 32768.0), -32768, 32767).astype(np.int16)
    if arr.dtype == np.int16:
        return arr
    if arr.dtype == np.int32:
        return (arr >> 16).astype(np.int16)
    if arr.dtype == np.uint8:
        return ((arr.astype(np.int16) - 128) << 8).astype(np.int16)
    raise DecodeError(f"unexpected sample format {fmt.name} from the decoder")


class AvDecoderContext:
    """One opened FFmpeg decoder; ``decode(frame_bytes)`` gives int16 PCM."""

    def __init__(
        self,
        codec: str,
        sample_rate: int,
        channels: int = 1,
        options: Optional[Dict[str, str]] = None,
        bit_rate: Optional[int] = None,
    ) -> None:
        if not available():
            raise DecodeError("PyAV is not installed: no FFmpeg decoders")
        self.codec = codec
        self.channels = channels
        ctx = _av.CodecContext.create(codec, "r")
        ctx.sample_rate = sample_rate
        ctx.layout = _LAYOUTS[channels]
        if bit_rate is not None:
            ctx.bit_rate = bit_rate
        if options:
            ctx.options = dict(options)
        try:
            ctx.open()
        except Exception as e:
            raise DecodeError(f"cannot open the FFmpeg {codec} decoder: {e}") from e
        self._ctx = ctx

    def decode(self, data: bytes) -> np.ndarray:
        """Decode one coded frame (or a packet FFmpeg splits itself)."""
        if not data:
            # An empty packet means end-of-stream to FFmpeg: the context
            # would refuse everything after it.
            raise DecodeError(f"empty {self.codec} frame")
        try:
            frames = self._ctx.decode(_av.Packet(data))
        except (_av.error.FFmpegError, ValueError) as e:
            raise DecodeError(f"{self.codec}: {e}") from e
        if not frames:
            return np.zeros(0, dtype=np.int16)
        if len(frames) == 1:
            return self._checked(frame_to_pcm(frames[0]))
        return self._checked(np.concatenate([frame_to_pcm(f) for f in frames]))

    def _checked(self, pcm: np.ndarray) -> np.ndarray:
        if pcm.size % self.channels:
            raise DecodeError(f"{self.codec} returned a partial {self.channels}-channel frame")
        return pcm

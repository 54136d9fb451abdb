"""Encode test signals with PyAV's (FFmpeg's) encoders, to feed our decoders."""

from __future__ import annotations

from typing import Dict, List, Optional

import av
import numpy as np


def encode(
    codec: str,
    pcm: np.ndarray,
    rate: int,
    channels: int = 1,
    bit_rate: Optional[int] = None,
    options: Optional[Dict[str, str]] = None,
    frame_size: Optional[int] = None,
) -> List[bytes]:
    """Encode int16 interleaved ``pcm``; one bytes object per encoder packet."""
    layout = "stereo" if channels == 2 else "mono"
    enc = av.CodecContext.create(codec, "w")
    enc.sample_rate = rate
    enc.layout = layout
    enc.format = "s16"
    if bit_rate is not None:
        enc.bit_rate = bit_rate
    if options:
        enc.options = dict(options)
    enc.open()
    size = frame_size or enc.frame_size or 160
    frames = len(pcm) // channels
    out: List[bytes] = []
    for start in range(0, frames - size + 1, size):
        block = np.ascontiguousarray(pcm[start * channels : (start + size) * channels], dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        out.extend(bytes(p) for p in enc.encode(frame))
    out.extend(bytes(p) for p in enc.encode(None))
    return out

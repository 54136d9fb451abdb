"""Combine leg WAVs into one multichannel WAV aligned on the call timeline.

Pure file I/O and numpy, meant to run in a thread (deferToThread). Calls
last hours, so everything streams through in fixed-size blocks.
"""

from __future__ import annotations

import wave
from typing import List, Optional, Sequence, Tuple

import numpy as np

from siprec.media.wav import SAMPLE_WIDTH, WavWriter

DEFAULT_BLOCK_FRAMES = 1 << 16


class CombineError(ValueError):
    """A leg file or argument combine cannot use."""


class _Leg:
    """Sequential reader of one leg, resampled to the output rate.

    Output frame ``j`` of the leg (counted from its own start) is input
    position ``j * in_rate / out_rate``, interpolated linearly.
    """

    def __init__(self, path: Optional[str], offset: int, out_rate: int) -> None:
        self._wave: Optional[wave.Wave_read] = None
        if path is None:  # a leg that never produced audio: one silent channel
            self.channels, self.in_rate, self.in_frames = 1, out_rate, 0
        else:
            try:
                w = wave.open(path, "rb")
            except (wave.Error, EOFError) as e:
                raise CombineError(f"{path}: not a readable WAV file ({e})") from e
            if w.getsampwidth() != SAMPLE_WIDTH:
                w.close()
                raise CombineError(f"{path}: only 16-bit PCM legs can be combined")
            self._wave = w
            self.channels, self.in_rate, self.in_frames = w.getnchannels(), w.getframerate(), w.getnframes()
        if offset < 0:
            raise CombineError(f"start offset of {path} is negative ({offset})")
        self.path = path
        self.out_rate = out_rate
        # The offset is counted in the leg's own rate; place it in ours.
        self.start = offset * out_rate // self.in_rate
        self.out_frames = self.in_frames * out_rate // self.in_rate
        self._same_rate = self.in_rate == out_rate
        self._buf = np.zeros((0, self.channels), dtype=np.int16)
        self._buf_start = 0  # input frame index of _buf[0]

    @property
    def end(self) -> int:
        return self.start + self.out_frames

    def close(self) -> None:
        if self._wave is not None:
            self._wave.close()
            self._wave = None

    def _input(self, first: int, last: int) -> np.ndarray:
        """Input frames first..last inclusive (clamped to the file)."""
        have = self._buf_start + len(self._buf)
        if first >= have:  # downsampling can step over input frames
            if first > have and self._wave is not None:
                self._wave.setpos(min(first, self.in_frames))
            self._buf = self._buf[:0]
            self._buf_start = have = first
        elif first > self._buf_start:
            self._buf = self._buf[first - self._buf_start :]
            self._buf_start = first
        need = min(last + 1, self.in_frames)
        if need > have:
            assert self._wave is not None
            raw = self._wave.readframes(need - have)
            more = np.frombuffer(raw, dtype="<i2").astype(np.int16)
            more = more[: len(more) // self.channels * self.channels].reshape(-1, self.channels)
            if len(more) < need - have:  # file shorter than its header says
                short = np.zeros((need - have - len(more), self.channels), dtype=np.int16)
                more = np.concatenate([more, short])
            self._buf = np.concatenate([self._buf, more]) if len(self._buf) else more
        return self._buf[: need - self._buf_start]

    def read(self, first: int, count: int) -> np.ndarray:
        """Output frames ``first..first+count`` of this leg; callers keep them in range."""
        if self._same_rate:
            return self._input(first, first + count - 1)
        positions = np.arange(first, first + count, dtype=np.float64) * (self.in_rate / self.out_rate)
        lo = np.floor(positions).astype(np.int64)
        data = self._input(int(lo[0]), int(lo[-1]) + 1).astype(np.float64)
        base = self._buf_start
        lo_idx = np.minimum(lo - base, len(data) - 1)
        hi_idx = np.minimum(lo_idx + 1, len(data) - 1)
        frac = (positions - lo)[:, None]
        mixed = data[lo_idx] * (1.0 - frac) + data[hi_idx] * frac
        return np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)


def combine_legs(
    legs: Sequence[Tuple[Optional[str], int]],
    out_path: str,
    sample_rate: int,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> int:
    """Write ``out_path`` with one channel per leg (two for a stereo leg).

    ``legs`` are (path, start_offset_samples) in channel order, each offset
    counted in that leg's own sample rate (what MediaStream reports). A
    None path stands for a leg with no audio (one silent channel).
    Returns the number of frames written.
    """
    if not legs:
        raise CombineError("no legs to combine")
    if sample_rate <= 0 or block_frames <= 0:
        raise CombineError("sample rate and block size must be positive")
    opened: List[_Leg] = []
    try:
        for path, offset in legs:
            opened.append(_Leg(path, offset, sample_rate))
        total = max(leg.end for leg in opened)
        channels = sum(leg.channels for leg in opened)
        writer = WavWriter(out_path, sample_rate, channels, header_interval=60.0)
        try:
            for block_start in range(0, total, block_frames):
                block_end = min(block_start + block_frames, total)
                block = np.zeros((block_end - block_start, channels), dtype=np.int16)
                column = 0
                for leg in opened:
                    first = max(block_start, leg.start)
                    last = min(block_end, leg.end)
                    if first < last:
                        block[first - block_start : last - block_start, column : column + leg.channels] = (
                            leg.read(first - leg.start, last - first)
                        )
                    column += leg.channels
                writer.write(block.reshape(-1))
        finally:
            writer.close()
        return total
    finally:
        for leg in opened:
            leg.close()

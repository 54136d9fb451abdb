"""Combine leg WAVs into one multichannel WAV aligned on the call timeline.

Pure file I/O and numpy, meant to run in a thread (deferToThread). Calls
last hours, so everything streams through in fixed-size blocks. A leg at
another rate than the output goes through the product's one resampler
(siprec.media.resample).
"""

from __future__ import annotations

import wave
from typing import List, Optional, Sequence, Tuple

import numpy as np

from siprec.media.resample import ResampleError, StreamResampler
from siprec.media.wav import SAMPLE_WIDTH, WavWriter

DEFAULT_BLOCK_FRAMES = 1 << 16


class CombineError(ValueError):
    """A leg file or argument combine cannot use."""


class _Leg:
    """Sequential reader of one leg, resampled to the output rate.

    Read front to back (``read`` calls follow one another); a leg at
    another rate goes through the product's one resampler, so its output
    frame ``j`` (counted from its own start) is input time
    ``j * in_rate / out_rate``.
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
        self.out_frames = -(-self.in_frames * out_rate // self.in_rate)
        self._resampler: Optional[StreamResampler] = None
        if self.in_rate != out_rate:
            try:
                self._resampler = StreamResampler(self.in_rate, out_rate, self.channels)
            except ResampleError as e:
                raise CombineError(f"{path}: {e}") from e
        self._read_in = 0  # input frames taken from the file
        self._served = 0  # output frames handed out
        self._ready = np.zeros((0, self.channels), dtype=np.int16)

    @property
    def end(self) -> int:
        return self.start + self.out_frames

    def close(self) -> None:
        if self._wave is not None:
            self._wave.close()
            self._wave = None

    def _input(self, count: int) -> np.ndarray:
        """The next ``count`` input frames (silence past a file shorter than its header says)."""
        count = min(count, self.in_frames - self._read_in)
        if count <= 0:
            return np.zeros((0, self.channels), dtype=np.int16)
        assert self._wave is not None
        raw = self._wave.readframes(count)
        data = np.frombuffer(raw, dtype="<i2").astype(np.int16)
        data = data[: len(data) // self.channels * self.channels].reshape(-1, self.channels)
        if len(data) < count:  # file shorter than its header says
            data = np.concatenate([data, np.zeros((count - len(data), self.channels), dtype=np.int16)])
        self._read_in += count
        return data

    def read(self, first: int, count: int) -> np.ndarray:
        """Output frames ``first..first+count`` of this leg, read in order."""
        if first != self._served:
            raise CombineError(f"{self.path}: read out of order ({first}, expected {self._served})")
        self._served += count
        resampler = self._resampler
        if resampler is None:
            return self._input(count)
        parts = [self._ready]
        have = len(self._ready)
        while have < count:
            if self._read_in < self.in_frames:
                want = max(1, (count - have) * self.in_rate // self.out_rate) + 64
                more = resampler.process(self._input(want))
            elif not resampler.flushed:
                more = resampler.flush()
            else:  # the resampler owes no more: pad to the promised length
                more = np.zeros((count - have, self.channels), dtype=np.int16)
            parts.append(more)
            have += len(more)
        block = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._ready = block[count:]
        return block[:count]


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

"""16-bit PCM WAV files that stay playable while they are being written.

The header is valid from the moment the file is opened and is rewritten
every ``header_interval`` seconds of audio and on ``flush()``, so a crash
loses at most that much from the header's count (the samples themselves
are on disk and a repair can recover them).

RIFF sizes are 32-bit: a file cannot hold more than 4 GiB. When the data
reaches that limit the writer stops: the file is finalised as it is,
further samples are dropped and counted in ``dropped_frames``, and
``full`` turns True (one warning is logged). At 8 kHz mono that is about
74 hours; at 48 kHz stereo about 6. RF64 would lift the limit later.

A writer can also continue a file an earlier writer left (``append=True``:
a leg whose stream was removed and offered again). Only a header this
module writes is accepted, with the expected rate and channel count; the
data on disk counts, not the header's size, so samples a crash left past
the last header update are kept, and a partial last frame is cut off.
"""

from __future__ import annotations

import os
import struct
import wave
from typing import BinaryIO, Optional, Tuple

import numpy as np
from twisted.logger import Logger

SAMPLE_WIDTH = 2
HEADER_SIZE = 44
WAVE_FORMAT_PCM = 1
RIFF_LIMIT = 0xFFFFFFFF  # largest value the RIFF size field can hold
# RIFF size = 36 + data bytes, so this is the most data one file can carry.
MAX_DATA_BYTES = RIFF_LIMIT - (HEADER_SIZE - 8)

_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_SILENCE_BLOCK_FRAMES = 1 << 16


class WavError(ValueError):
    """A WAV file or write request we cannot handle."""


def read_header(data: bytes, path: str = "WAV file") -> Tuple[int, int, int]:
    """``(sample_rate, channels, data_bytes)`` of a header :func:`wav_header` wrote.

    Anything else (another format, extra chunks, a short file) is a
    WavError saying what is wrong, so such a file is never appended to.
    """
    if len(data) < HEADER_SIZE:
        raise WavError(f"{path} is shorter than a WAV header ({len(data)} bytes)")
    (riff, _, wave_id, fmt_id, fmt_size, fmt_tag, channels, rate, byte_rate, block_align, bits,
     data_id, data_bytes) = _HEADER.unpack_from(data)
    if (riff, wave_id, fmt_id, data_id) != (b"RIFF", b"WAVE", b"fmt ", b"data") or fmt_size != 16:
        raise WavError(f"{path} does not start with the canonical RIFF/WAVE header this server writes")
    if fmt_tag != WAVE_FORMAT_PCM or bits != SAMPLE_WIDTH * 8:
        raise WavError(f"{path} is not 16-bit PCM (format {fmt_tag}, {bits} bits)")
    if channels < 1 or rate < 1 or block_align != channels * SAMPLE_WIDTH or byte_rate != rate * block_align:
        raise WavError(f"{path} has an inconsistent format block ({rate} Hz, {channels} channels)")
    return rate, channels, data_bytes


def wav_header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    """The canonical 44-byte header for 16-bit PCM."""
    block_align = channels * SAMPLE_WIDTH
    return _HEADER.pack(
        b"RIFF",
        HEADER_SIZE - 8 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        WAVE_FORMAT_PCM,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        SAMPLE_WIDTH * 8,
        b"data",
        data_bytes,
    )


class WavWriter:
    """Append-only 16-bit PCM WAV writer with periodic header updates."""

    log = Logger()

    def __init__(
        self,
        path: str,
        sample_rate: int,
        channels: int = 1,
        header_interval: float = 1.0,
        max_data_bytes: int = MAX_DATA_BYTES,
        append: bool = False,
    ) -> None:
        """``append``: continue the file at ``path`` (which must exist and hold
        ``sample_rate``/``channels`` audio) instead of starting a new one."""
        if sample_rate <= 0:
            raise WavError(f"sample rate must be positive, got {sample_rate}")
        if not 1 <= channels <= 0xFFFF:
            raise WavError(f"channel count must be 1..65535, got {channels}")
        self.path = path
        self.sample_rate = sample_rate
        self.channels = channels
        self._frame_bytes = channels * SAMPLE_WIDTH
        self._header_every = max(1, int(header_interval * sample_rate)) * self._frame_bytes
        self._max_data = min(max_data_bytes, MAX_DATA_BYTES) // self._frame_bytes * self._frame_bytes
        self.data_bytes = 0
        self.dropped_frames = 0
        self.full = False
        self.appended_to = 0  # frames the file held when this writer continued it
        self._since_header = 0
        if append:
            self._file: Optional[BinaryIO] = self._continue(path)
        else:
            self._file = open(path, "w+b")
            self._file.write(wav_header(sample_rate, channels, 0))
            self._file.flush()

    def _continue(self, path: str) -> BinaryIO:
        f = open(path, "r+b")
        try:
            rate, channels, claimed = read_header(f.read(HEADER_SIZE), path)
            if (rate, channels) != (self.sample_rate, self.channels):
                raise WavError(f"{path} holds {rate} Hz {channels}-channel audio, "
                               f"not {self.sample_rate} Hz {self.channels}-channel")
            size = f.seek(0, os.SEEK_END) - HEADER_SIZE
            whole = size // self._frame_bytes * self._frame_bytes
            if whole != size:
                f.truncate(HEADER_SIZE + whole)  # a crash cut the last frame short
            if whole != claimed:
                self.log.warn("WAV {path}: header said {claimed} data bytes, the file holds {bytes}; "
                              "continuing after what is there", path=path, claimed=claimed, bytes=whole)
            self.data_bytes = whole
            self.appended_to = whole // self._frame_bytes
            self._file = f
            self._update_header()
            return f
        except BaseException:
            f.close()
            raise

    @property
    def frames(self) -> int:
        return self.data_bytes // self._frame_bytes

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, samples: np.ndarray) -> None:
        """Append int16 samples (interleaved when there are several channels)."""
        if self._file is None:
            raise WavError(f"{self.path} is already closed")
        if samples.dtype != np.int16:
            raise WavError(f"samples must be int16, got {samples.dtype}")
        if samples.size % self.channels:
            raise WavError(f"{samples.size} samples is not a whole number of {self.channels}-channel frames")
        data = samples.astype("<i2", copy=False).tobytes()
        self._append(data)

    def write_silence(self, frames: int) -> None:
        """Append ``frames`` frames of silence without building them all at once."""
        if self._file is None:
            raise WavError(f"{self.path} is already closed")
        while frames > 0:
            block = min(frames, _SILENCE_BLOCK_FRAMES)
            self._append(bytes(block * self._frame_bytes))
            frames -= block

    def _append(self, data: bytes) -> None:
        room = max(0, self._max_data - self.data_bytes)
        if len(data) > room:
            self.dropped_frames += (len(data) - room) // self._frame_bytes
            data = data[:room]
            if not self.full:
                self.full = True
                self.log.warn(
                    "WAV {path} reached the RIFF size limit; later audio is dropped",
                    path=self.path,
                )
        if not data:
            return
        assert self._file is not None
        self._file.write(data)
        self.data_bytes += len(data)
        self._since_header += len(data)
        if self._since_header >= self._header_every or self.full:
            self._update_header()

    def _update_header(self) -> None:
        assert self._file is not None
        # Data first, so the header never claims bytes the OS has not got.
        self._file.flush()
        self._file.seek(0)
        self._file.write(wav_header(self.sample_rate, self.channels, self.data_bytes))
        self._file.seek(0, os.SEEK_END)
        self._file.flush()
        self._since_header = 0

    def flush(self) -> None:
        """Push buffered samples to the OS and make the header match them."""
        if self._file is not None:
            self._update_header()

    def close(self) -> None:
        """Finalise the header and close; closing twice is harmless."""
        if self._file is None:
            return
        try:
            self._update_header()
        finally:
            self._file.close()
            self._file = None


def read_wav(path: str) -> Tuple[int, int, np.ndarray]:
    """Read a whole 16-bit PCM WAV: (sample_rate, channels, interleaved int16).

    For tests and tools; recordings of real calls should be read in chunks.
    """
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != SAMPLE_WIDTH:
            raise WavError(f"{path}: only 16-bit PCM is supported, got {8 * w.getsampwidth()}-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        data = w.readframes(w.getnframes())
    return rate, channels, np.frombuffer(data, dtype="<i2").astype(np.int16)

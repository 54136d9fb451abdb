"""Echo cancellation between legs: remove the far leg's leak from the near leg.

On a recorded call the far party's voice often comes back in the near
leg (a phone's speaker into its microphone, a hybrid), late by tens of
milliseconds and quieter. Left in, it counts as the near party talking
(false overtalk) and confuses transcription. An adaptive FIR filter
learns the path from far to near and subtracts its prediction.

The filter is a partitioned-block frequency-domain NLMS (overlap-save):
the tail (``tail_ms``, delay plus impulse response) is cut into
partitions of one block each, so an echo path of 200 ms costs a few FFTs
per block rather than thousands of taps per sample. Each bin's step is
normalised by the far leg's power in that bin over the tail, and one
partition per block, in turn, is constrained to the first half of its
window (so the filter stays a linear convolution). While the near party talks too (double talk) adaptation
would learn their voice as echo and diverge, so a Geigel detector stops
it: a near block louder than ``dtd_threshold`` times the far leg's peak
over the tail cannot be echo alone, and adaptation stays off for
``dtd_hold_ms`` after. A filter whose output stays 6 dB louder than
its input for about half a second has diverged and is reset (counted in
``resets``).

A linear filter leaves a residual some 15-20 dB under the echo, still
loud enough for a VAD to take for the near party. So each block whose
output is more than ``residual_db`` below the filter's echo estimate is
marked as residual echo in ``last_echo_mask`` (one bool per sample just
returned); the pair pipeline keeps those frames out of the near leg's
speech. When the near party talks the output is far above the estimate.

Input int16 or float (full scale 1.0), both legs at the same rate and the
same positions; output float32, the near leg with the echo removed,
sample-aligned with the input and delivered up to a block late.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Tuple

import numpy as np

from siprec.media.dsp.base import DspError, as_float, check_numbers, check_rate

__all__ = ["EchoCanceller", "EchoConfig"]

_REGULARISATION_DBFS = -60.0  # far-leg power below which bins hardly adapt
_SPECTRAL_FLOOR = 0.1  # of the mean bin power, added to every bin's normaliser
_DIVERGED = 4.0  # error energy over near energy (smoothed) that resets the filter
_GUARD_S = 0.5  # time constant of that smoothing


@dataclass(frozen=True, slots=True)
class EchoConfig:
    """``tail_ms``: longest echo delay plus impulse response covered.
    ``block_ms``: partition (and processing) block. ``step``: NLMS step
    (0..1]. ``dtd_threshold``: Geigel ratio (0.5 assumes the echo is at
    least 6 dB below the far leg). ``dtd_hold_ms``: adaptation off after
    double talk is seen. ``residual_db``: output this far below the echo
    estimate marks a block as residual echo. ``enabled`` False: a pass-through."""

    tail_ms: float = 200.0
    block_ms: float = 8.0
    step: float = 0.5
    dtd_threshold: float = 0.5
    dtd_hold_ms: float = 60.0
    residual_db: float = -6.0
    enabled: bool = True

    def __post_init__(self) -> None:
        check_numbers("echo", self, [f.name for f in fields(self) if f.name != "enabled"])
        if not isinstance(self.enabled, bool):
            raise DspError(f"echo enabled must be true or false, got {self.enabled!r}")
        if not 4.0 <= self.block_ms <= 32.0:
            raise DspError(f"echo block_ms must be within 4..32, got {self.block_ms!r}")
        if not self.block_ms <= self.tail_ms <= 1000.0:
            raise DspError(f"echo tail_ms must be within block_ms..1000, got {self.tail_ms!r}")
        if not 0.0 < self.step <= 1.0:
            raise DspError(f"echo step must be within (0, 1], got {self.step!r}")
        if not 0.0 < self.dtd_threshold:
            raise DspError(f"echo dtd_threshold must be > 0, got {self.dtd_threshold!r}")
        if not self.dtd_hold_ms >= 0.0:
            raise DspError(f"echo dtd_hold_ms must be >= 0, got {self.dtd_hold_ms!r}")
        if not -60.0 <= self.residual_db <= 0.0:
            raise DspError(f"echo residual_db must be within -60..0, got {self.residual_db!r}")


class EchoCanceller:
    """Streaming canceller of ``far`` in ``near``; see the module docstring.

    ``process(near, far)`` takes equal-length spans of the two legs at the
    same positions. Feeding whole or in any chunks gives the same output.
    ``flush`` completes the run and forgets the far leg's recent audio (a
    gap follows), keeping the learned echo path.
    """

    def __init__(self, sample_rate: int, config: EchoConfig = EchoConfig()) -> None:
        self.rate = check_rate(sample_rate)
        self.config = config
        self.block = max(16, int(round(self.rate * config.block_ms / 1000.0)))
        self.partitions = max(1, -(-int(round(self.rate * config.tail_ms / 1000.0)) // self.block))
        self.latency = self.block - 1
        bins = self.block + 1
        self._weights = np.zeros((self.partitions, bins), dtype=np.complex128)
        self._hold_blocks = int(np.ceil(config.dtd_hold_ms / 1000.0 * self.rate / self.block))
        self._delta = self.partitions * 2 * self.block * 10 ** (_REGULARISATION_DBFS / 10)
        self._residual = 10 ** (config.residual_db / 10)
        self.last_echo_mask = np.zeros(0, dtype=bool)
        self._guard_smoothing = float(np.exp(-self.block / (_GUARD_S * self.rate)))
        self._near_energy = 0.0
        self._error_energy = 0.0
        self.blocks = 0
        self.adapted_blocks = 0
        self.double_talk_blocks = 0
        self.resets = 0
        self._constrain_next = 0
        self._reset_run()

    def _reset_run(self) -> None:
        self._spectra = np.zeros((self.partitions, self.block + 1), dtype=np.complex128)
        self._far_prev = np.zeros(self.block, dtype=np.float64)
        self._far_peaks = np.zeros(self.partitions + 1, dtype=np.float64)
        self._near_buf = np.zeros(0, dtype=np.float64)
        self._far_buf = np.zeros(0, dtype=np.float64)
        self._hold = 0

    def impulse_response(self) -> np.ndarray:
        """The learned far-to-near path as FIR taps (``partitions * block`` long)."""
        taps = np.fft.irfft(self._weights, 2 * self.block, axis=1)[:, : self.block]
        return taps.reshape(-1)

    def process(self, near: object, far: object) -> np.ndarray:
        """The near leg with the echo removed, for the blocks now complete (float32)."""
        d = as_float(near, "near")
        x = as_float(far, "far")
        if len(d) != len(x):
            raise DspError(f"near and far spans differ in length ({len(d)} vs {len(x)})")
        if not self.config.enabled:
            self.last_echo_mask = np.zeros(len(d), dtype=bool)
            return d.astype(np.float32)
        d = np.concatenate([self._near_buf, d]) if len(self._near_buf) else d
        x = np.concatenate([self._far_buf, x]) if len(self._far_buf) else x
        n = len(d) // self.block
        out = np.empty(n * self.block, dtype=np.float64)
        mask = np.zeros(n, dtype=bool)
        for i in range(n):
            s = slice(i * self.block, (i + 1) * self.block)
            out[s], mask[i] = self._block(d[s], x[s])
        self._near_buf = d[n * self.block :].copy()
        self._far_buf = x[n * self.block :].copy()
        self.last_echo_mask = np.repeat(mask, self.block)
        return out.astype(np.float32)

    def flush(self) -> np.ndarray:
        """The rest of the run (zero-padded to a block, trimmed back)."""
        self.last_echo_mask = np.zeros(0, dtype=bool)
        if not self.config.enabled:
            return np.zeros(0, dtype=np.float32)
        pending = len(self._near_buf)
        out = np.zeros(0, dtype=np.float32)
        if pending:
            pad = np.zeros(self.block - pending, dtype=np.float64)
            out = self.process(pad, pad)[:pending]
            self.last_echo_mask = self.last_echo_mask[:pending]
        self._reset_run()
        return out

    def _block(self, near: np.ndarray, far: np.ndarray) -> Tuple[np.ndarray, bool]:
        """One block: the output and whether it is residual echo."""
        error, estimate = self._cancel(near, far)
        residual = float(np.dot(error, error)) < self._residual * float(np.dot(estimate, estimate))
        return error, residual

    def _cancel(self, near: np.ndarray, far: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        b = self.block
        spectrum = np.fft.rfft(np.concatenate([self._far_prev, far]))
        self._far_prev = far
        self._spectra[1:] = self._spectra[:-1]
        self._spectra[0] = spectrum
        estimate = np.fft.irfft(np.einsum("ij,ij->j", self._weights, self._spectra), 2 * b)[b:]
        error = near - estimate
        self.blocks += 1

        self._far_peaks[1:] = self._far_peaks[:-1]
        self._far_peaks[0] = float(np.max(np.abs(far)))
        near_peak = float(np.max(np.abs(near)))
        far_peak = float(np.max(self._far_peaks))
        if near_peak > self.config.dtd_threshold * far_peak and near_peak > 0.0:
            self._hold = self._hold_blocks + 1
        if self._hold:
            self._hold -= 1
            self.double_talk_blocks += 1
            return error, estimate

        a = self._guard_smoothing
        self._near_energy = a * self._near_energy + (1 - a) * float(np.dot(near, near))
        self._error_energy = a * self._error_energy + (1 - a) * float(np.dot(error, error))
        if self._error_energy > _DIVERGED * self._near_energy + 1e-10 * b:
            # Worse than doing nothing for a while: the filter diverged.
            self._weights[:] = 0.0
            self._error_energy = self._near_energy
            self.resets += 1
            return near.copy(), np.zeros(b)

        if far_peak > 0.0:
            power = np.sum(self._spectra.real**2 + self._spectra.imag**2, axis=0)
            err_spec = np.fft.rfft(np.concatenate([np.zeros(b), error]))
            # Bins the far leg hardly excites (between a voice's harmonics)
            # would take huge steps on leakage alone: floor their normaliser.
            norm = power + self._delta + _SPECTRAL_FLOOR * float(np.mean(power))
            self._weights += (self.config.step * np.conj(self._spectra)) * (err_spec / norm)
            # The update leaks into each partition's second half (a circular
            # convolution); zeroing it in one partition per block, in turn,
            # keeps the filter linear at 1/partitions of the FFT cost.
            p = self._constrain_next
            self._constrain_next = (p + 1) % self.partitions
            taps = np.fft.irfft(self._weights[p], 2 * b)
            taps[b:] = 0.0
            self._weights[p] = np.fft.rfft(taps)
            self.adapted_blocks += 1
        return error, estimate

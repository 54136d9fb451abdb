"""Synthetic signals and comparisons for codec tests."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import List, Tuple

import numpy as np

VECTORS = Path(__file__).parent / "vectors"


def voiced(rate: int, seconds: float, f0: float = 150.0, top: float = 3400.0, amplitude: float = 6000.0) -> np.ndarray:
    """A steady vowel-like signal: harmonics of ``f0`` up to ``top`` with a falling spectrum.

    Speech codecs (CELP, ADPCM) model this well, unlike white noise.
    """
    t = np.arange(int(rate * seconds)) / rate
    out = np.zeros_like(t)
    k = 1
    while k * f0 < min(top, rate / 2 - 100):
        out += np.sin(2 * np.pi * k * f0 * t + 0.3 * k) / k
        k += 1
    out *= amplitude / np.max(np.abs(out))
    return np.round(out).astype(np.int16)


def sine(freq: float, rate: int, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def best_lag(reference: np.ndarray, decoded: np.ndarray, max_lag: int) -> int:
    """Codec delay in samples: the lag maximising the cross-correlation."""
    ref = reference.astype(np.float64)
    out = decoded.astype(np.float64)
    n = min(len(ref), len(out)) - max_lag
    scores = [float(np.dot(ref[:n], out[lag : lag + n])) for lag in range(max_lag + 1)]
    return int(np.argmax(scores))


def aligned_snr_db(reference: np.ndarray, decoded: np.ndarray, max_lag: int = 200, warmup: int = 0) -> float:
    """SNR after removing the codec delay; ``warmup`` ignores the codec's start-up."""
    lag = best_lag(reference[warmup:], decoded[warmup:], max_lag)
    ref = reference[warmup:].astype(np.float64)
    out = decoded[warmup + lag :].astype(np.float64)
    n = min(len(ref), len(out))
    ref, out = ref[:n], out[:n]
    noise = np.sum((out - ref) ** 2)
    return float(10 * np.log10(np.sum(ref**2) / max(noise, 1e-9)))


def band_energies(signal: np.ndarray, rate: int, top: float, band: float = 100.0) -> np.ndarray:
    """Energy per ``band`` Hz up to ``top`` Hz, in dB (whole-signal spectrum)."""
    x = signal.astype(np.float64) * np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(signal), 1 / rate)
    edges = np.arange(0, top + band, band)
    energies = [spectrum[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])]
    return 10 * np.log10(np.asarray(energies) + 1e-3)


def spectral_similarity(reference: np.ndarray, decoded: np.ndarray, rate: int, top: float = 3400.0) -> float:
    """Correlation of the two band-energy profiles (1.0 = same spectral shape)."""
    a = band_energies(reference, rate, top)
    b = band_energies(decoded, rate, top)
    return float(np.corrcoef(a, b)[0, 1])


def rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(signal.astype(np.float64) ** 2)))


def dominant_frequency(signal: np.ndarray, rate: int) -> float:
    x = signal.astype(np.float64) * np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def write_frames(path: Path, frames: List[bytes]) -> None:
    """Reference vectors: each frame as a big-endian u16 length and its octets."""
    with open(path, "wb") as f:
        for frame in frames:
            f.write(struct.pack("!H", len(frame)) + frame)


def read_frames(path: Path) -> List[bytes]:
    data = path.read_bytes()
    frames, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from("!H", data, offset)
        frames.append(data[offset + 2 : offset + 2 + size])
        offset += 2 + size
    return frames


def chunks(signal: np.ndarray, size: int) -> List[np.ndarray]:
    return [signal[i : i + size] for i in range(0, len(signal) - size + 1, size)]


def with_silence(signal: np.ndarray, rate: int, silence_seconds: float) -> Tuple[np.ndarray, int]:
    """Signal followed by digital silence (to make encoders with VAD send SID frames)."""
    gap = np.zeros(int(rate * silence_seconds), dtype=np.int16)
    return np.concatenate([signal, gap]), len(signal)


def harmonic_levels(signal: np.ndarray, rate: int, f0: float, top: float) -> np.ndarray:
    """Level (dB) of each harmonic of ``f0`` below ``top`` (1 Hz bins from a 1 s window)."""
    x = signal[:rate].astype(np.float64)
    x = x * np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x, n=rate)) * rate / len(x)  # 1 Hz bins
    levels = []
    k = 1
    while k * f0 < top:
        centre = int(round(k * f0))
        levels.append(20 * np.log10(spectrum[centre - 3 : centre + 4].max() + 1e-9))
        k += 1
    return np.asarray(levels)


def harmonic_error_db(reference: np.ndarray, decoded: np.ndarray, rate: int, f0: float = 150.0, top: float = 3400.0) -> float:
    """Mean absolute level difference over the harmonics (0 = same spectrum)."""
    return float(np.mean(np.abs(harmonic_levels(reference, rate, f0, top) - harmonic_levels(decoded, rate, f0, top))))

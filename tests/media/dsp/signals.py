"""Synthetic test signals for the analysis-path DSP: speech-like bursts, noise, echo paths.

Speech-like signals are harmonics of a gliding pitch shaped by vowel
formants with a syllable envelope and short fricative noise, so they have
speech's spectral shape and rhythm while every speech segment is known
exactly. ``espeak`` adds real synthetic speech when espeak-ng is installed.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from siprec.media.dsp.mix import resample

# (F1, F2, F3) in Hz of a few vowels.
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))
BANDWIDTHS = (90.0, 110.0, 170.0)


@dataclass(frozen=True)
class Speech:
    """A clean signal and the sample ranges where it speaks."""

    samples: np.ndarray  # float64, full scale 1.0
    rate: int
    segments: Tuple[Tuple[int, int], ...]

    def mask(self) -> np.ndarray:
        m = np.zeros(len(self.samples), dtype=bool)
        for a, b in self.segments:
            m[a:b] = True
        return m


def _formant_envelope(freq: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Spectral envelope at ``freq`` (per sample) for per-sample formants (N, 3)."""
    env = np.zeros_like(freq)
    for i, bw in enumerate(BANDWIDTHS):
        env += (1.0 / (i + 1)) / (1.0 + ((freq - formants[:, i]) / bw) ** 2)
    return env


def utterance(rate: int, seconds: float, rng: np.random.Generator, f0: float = 120.0) -> np.ndarray:
    """One speech-like utterance: syllables of 120-260 ms, gliding pitch, fricatives."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    pitch = f0 * (1.0 + 0.15 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) - 0.1 * t / max(seconds, 1e-3))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    envelope = np.zeros(n)
    formants = np.zeros((n, 3))
    noise_env = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rate * rng.uniform(0.12, 0.26))
        end = min(n, pos + length)
        seg = end - pos
        envelope[pos:end] = np.sin(np.pi * (np.arange(seg) + 0.5) / seg) ** 0.6 * rng.uniform(0.5, 1.0)
        formants[pos:end] = VOWELS[rng.integers(len(VOWELS))]
        if rng.random() < 0.4:  # a fricative onset
            f = min(seg, int(rate * 0.04))
            noise_env[pos : pos + f] = 0.25
        pos = end
    top = min(rate / 2 - 200, 4500.0)
    voiced = np.zeros(n)
    k = 1
    while k * f0 * 0.8 < top:
        freq = k * pitch
        amp = _formant_envelope(freq, formants) / k**0.5 * (freq < top)
        voiced += amp * np.sin(k * phase)
        k += 1
    hiss = rng.standard_normal(n)
    hiss = np.diff(np.concatenate([[0.0], hiss]))  # tilt upwards: fricative-like
    out = voiced * envelope + 0.3 * hiss * noise_env
    return out / np.max(np.abs(out))


def conversation(
    rate: int,
    pattern: Sequence[Tuple[float, float]],
    seed: int = 1,
    level: float = 0.3,
    f0: float = 120.0,
    total: Optional[float] = None,
) -> Speech:
    """Utterances at ``(start s, duration s)``; peak ``level``; silence elsewhere."""
    rng = np.random.default_rng(seed)
    end = total if total is not None else max(s + d for s, d in pattern) + 0.5
    out = np.zeros(int(rate * end))
    segments = []
    for start, duration in pattern:
        u = utterance(rate, duration, rng, f0) * level
        a = int(rate * start)
        u = u[: max(0, len(out) - a)]  # a turn running past ``total`` is cut there
        if len(u):
            out[a : a + len(u)] += u
            segments.append((a, a + len(u)))
    return Speech(out, rate, tuple(segments))


def white(rate: int, n: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def pink(rate: int, n: int, seed: int = 7) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain, unit variance."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return x / np.std(x)


def at_snr(speech: Speech, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Speech plus noise scaled so active speech power over noise power is ``snr_db``."""
    active = speech.samples[speech.mask()]
    p_speech = float(np.mean(active**2))
    p_noise = float(np.mean(noise**2))
    scale = np.sqrt(p_speech / p_noise / 10 ** (snr_db / 10))
    return speech.samples + scale * noise[: len(speech.samples)]


def frame_truth(mask: np.ndarray, frame: int) -> np.ndarray:
    """A frame is speech when at least half of it is."""
    n = len(mask) // frame
    return mask[: n * frame].reshape(n, frame).mean(axis=1) >= 0.5


def precision_recall(
    decisions: np.ndarray, truth: np.ndarray, after: int = 0, before: int = 0
) -> Tuple[float, float]:
    """Frame precision and recall; ``after``/``before`` frames around each true segment are not scored.

    The margins let a hangover (after) and the smoothing at an onset
    (before) go unscored, as speech annotation tolerances do.
    """
    n = min(len(decisions), len(truth))
    d, t = np.asarray(decisions[:n], bool), np.asarray(truth[:n], bool)
    care = np.ones(n, dtype=bool)
    if after or before:
        edges = np.diff(np.concatenate([[0], t.astype(np.int8), [0]]))
        for s in np.flatnonzero(edges == 1):
            care[max(0, s - before) : s] = False
        for e in np.flatnonzero(edges == -1):
            care[e : e + after] = False
        care |= t
    tp = np.sum(d & t & care)
    fp = np.sum(d & ~t & care)
    fn = np.sum(~d & t & care)
    precision = tp / max(1, tp + fp)
    recall = tp / max(1, tp + fn)
    return float(precision), float(recall)


def has_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak(text: str, rate: int, voice: str = "en") -> np.ndarray:
    """espeak-ng's rendering of ``text`` at ``rate`` (float64, full scale 1.0)."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True, timeout=60
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        native = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    x = pcm.astype(np.float64) / 32768.0
    if native != rate:
        if native not in (8000, 12000, 16000, 24000, 32000, 44100, 48000):
            # espeak-ng speaks at 22050 Hz: go through 44100 by repeating samples'
            # linear midpoints, then to the wanted rate.
            up = np.empty(2 * len(x))
            up[0::2] = x
            up[1::2] = np.concatenate([(x[:-1] + x[1:]) / 2, x[-1:]])
            x, native = up, 2 * native
        x = resample(x.astype(np.float32), native, rate).astype(np.float64)
    return x


def spoken(rate: int, texts: Sequence[str], gap: float = 0.8, lead: float = 0.6, threshold_db: float = -40.0) -> Speech:
    """espeak-ng sentences separated by ``gap`` s; segments where the clean level is within
    ``threshold_db`` of its peak (20 ms frames), pauses under 150 ms bridged."""
    parts: List[np.ndarray] = [np.zeros(int(rate * lead))]
    for text in texts:
        parts.append(espeak(text, rate) * 0.5)
        parts.append(np.zeros(int(rate * gap)))
    x = np.concatenate(parts)
    frame = rate // 50
    n = len(x) // frame
    levels = 10 * np.log10(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    active = levels > levels.max() + threshold_db
    segments: List[Tuple[int, int]] = []
    for i in np.flatnonzero(active):
        a, b = i * frame, (i + 1) * frame
        if segments and a - segments[-1][1] <= int(rate * 0.15):
            segments[-1] = (segments[-1][0], b)
        else:
            segments.append((a, b))
    return Speech(x, rate, tuple(segments))


def echo_path(rate: int, delay_ms: float, attenuation_db: float, length_ms: float = 8.0, seed: int = 3) -> np.ndarray:
    """A delayed, attenuated, short decaying random impulse response."""
    rng = np.random.default_rng(seed)
    delay = int(rate * delay_ms / 1000)
    n = max(1, int(rate * length_ms / 1000))
    tail = rng.standard_normal(n) * np.exp(-np.arange(n) / (n / 4))
    tail /= np.sqrt(np.sum(tail**2))
    h = np.zeros(delay + n)
    h[delay:] = tail * 10 ** (-attenuation_db / 20)
    return h


def chunked(x: np.ndarray, rng: np.random.Generator, low: int = 1, high: int = 700) -> List[np.ndarray]:
    """``x`` in random-sized pieces."""
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(low, high))
        out.append(x[i : i + n])
        i += n
    return out

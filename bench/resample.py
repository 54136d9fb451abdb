"""Resampler candidates: quality and CPU per second of audio, side by side.

    python bench/resample.py [--seconds 10] [--repeat 5]

Candidates, all run here in one process so their figures compare:

- ``linear``: linear interpolation (what combine.py used to do);
- ``sinc-numpy``: the windowed-sinc polyphase filter siprec had in numpy
  (16 zero crossings a side, Kaiser beta 8; stt/audio.py and dsp/mix.py
  each had one), reproduced here as it was: the baseline;
- ``swr-default``: libswresample through PyAV with FFmpeg's defaults
  (32 taps, cut-off 0.97);
- ``swr-32-0.91``: the default's 32 taps with the cut-off lowered to 0.91;
- ``swr-product``: siprec.media.resample as shipped (64 taps, cut-off 0.95).

Quality, per rate pair (dB, higher is better except where noted):

- ``snr``: a 1 kHz sine against the exact sine at the new rate;
- ``edge``: gain at the top of the speech band (3.4 kHz, or 7 kHz when
  both rates are 16 kHz or more), 0 is flat;
- ``alias``: going down, what is left of a tone just above the new
  Nyquist frequency (1.05x) and of one well above it (1.5x) - lower is
  better; going up, the images above the old Nyquist frequency of a
  tone near its top.

CPU: process time per second of audio resampled, for one whole signal
(``bulk``) and for 20 ms packets fed one by one (``packets``), as a ratio
to the baseline in this same run (below 1 is faster), best of --repeat
rounds in which the candidates take turns.
Run on purpose; not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import lru_cache
from math import gcd
from typing import Callable, Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import av  # noqa: E402
import numpy as np  # noqa: E402

from siprec.media import resample as product  # noqa: E402

PAIRS = ((8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000))
BASELINE = "sinc-numpy"


# -- candidates: each makes a streaming object with feed(x) -> y and flush() -> y --


class Linear:
    """Linear interpolation, output j at input time j * src / dst."""

    def __init__(self, src: int, dst: int) -> None:
        self.step = src / dst
        self.buf = np.zeros(0)
        self.buf_start = 0
        self.next = 0

    def feed(self, x: np.ndarray) -> np.ndarray:
        self.buf = np.concatenate([self.buf, np.asarray(x, dtype=np.float64)])
        end = self.buf_start + len(self.buf) - 1  # last index we can interpolate up to
        last = int(np.floor(end / self.step))
        if last < self.next:
            return np.zeros(0)
        t = np.arange(self.next, last + 1) * self.step - self.buf_start
        y = np.interp(t, np.arange(len(self.buf)), self.buf)
        self.next = last + 1
        keep = int(np.floor(self.next * self.step)) - self.buf_start
        if keep > 0:
            self.buf = self.buf[keep:]
            self.buf_start += keep
        return y

    def flush(self) -> np.ndarray:
        return np.zeros(0)


@lru_cache(maxsize=None)
def _sinc_bank(src: int, dst: int) -> Tuple[int, int, int, np.ndarray]:
    g = gcd(src, dst)
    up, down = dst // g, src // g
    scale = min(1.0, dst / src)
    half = int(np.ceil(16 / scale))
    cutoff = 0.5 * scale * 0.92
    i = np.arange(2 * half)
    taps = np.empty((up, 2 * half))
    for p in range(up):
        tau = p / up + half - 1 - i
        w = np.i0(8.0 * np.sqrt(np.clip(1.0 - (tau / half) ** 2, 0.0, None))) / np.i0(8.0)
        h = 2 * cutoff * np.sinc(2 * cutoff * tau) * w
        taps[p] = h / h.sum()
    return up, down, half, taps


class SincNumpy:
    """The numpy windowed-sinc resampler siprec used to have (dsp/mix.py's)."""

    def __init__(self, src: int, dst: int) -> None:
        self.up, self.down, self.half, self.taps = _sinc_bank(src, dst)
        self.buf = np.zeros(self.half)
        self.buf_start = -self.half
        self.next = 0

    def feed(self, x: np.ndarray) -> np.ndarray:
        self.buf = np.concatenate([self.buf, np.asarray(x, dtype=np.float64)])
        return self._produce(self.buf_start + len(self.buf))

    def flush(self) -> np.ndarray:
        end = self.buf_start + len(self.buf)
        self.buf = np.concatenate([self.buf, np.zeros(self.half + 1)])
        last = -(-end * self.up // self.down)
        first = self.next
        return self._produce(self.buf_start + len(self.buf))[: max(0, last - first)]

    def _produce(self, available: int) -> np.ndarray:
        up, down, half = self.up, self.down, self.half
        last = ((available - half) * up - 1) // down
        count = last - self.next + 1
        if count <= 0:
            return np.zeros(0)
        j = np.arange(self.next, self.next + count, dtype=np.int64)
        base = (j * down) // up - half + 1 - self.buf_start
        windows = self.buf[base[:, None] + np.arange(2 * half)]
        out = np.einsum("ij,ij->i", windows, self.taps[(j * down) % up])
        self.next += count
        keep = (self.next * down) // up - half + 1 - self.buf_start
        if keep > 0:
            self.buf = self.buf[keep:]
            self.buf_start += keep
        return out


class Swr:
    """libswresample through PyAV with the given options (float64 in and out)."""

    def __init__(self, src: int, dst: int, options: Dict[str, str]) -> None:
        self.src = src
        self.r = av.AudioResampler(format="dbl", layout="mono", rate=dst, options=options or None)

    def feed(self, x: np.ndarray) -> np.ndarray:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x, dtype=np.float64).reshape(1, -1),
                                           format="dbl", layout="mono")
        frame.sample_rate = self.src
        return _joined(self.r.resample(frame))

    def flush(self) -> np.ndarray:
        return _joined(self.r.resample(None))


def _joined(frames: list) -> np.ndarray:
    parts = [f.to_ndarray().reshape(-1) for f in frames]
    return np.concatenate(parts) if parts else np.zeros(0)


class Product:
    """siprec.media.resample.StreamResampler, the one the product uses."""

    def __init__(self, src: int, dst: int) -> None:
        self.r = product.StreamResampler(src, dst)

    def feed(self, x: np.ndarray) -> np.ndarray:
        return self.r.process(np.asarray(x, dtype=np.float64))

    def flush(self) -> np.ndarray:
        return self.r.flush()


CANDIDATES: Dict[str, Callable[[int, int], object]] = {
    "linear": Linear,
    "sinc-numpy": SincNumpy,
    "swr-default": lambda s, d: Swr(s, d, {}),
    "swr-32-0.91": lambda s, d: Swr(s, d, {"filter_size": "32", "cutoff": "0.91"}),
    "swr-product": Product,
}


# -- measurements ---------------------------------------------------------------


def run(make: Callable[[int, int], object], x: np.ndarray, src: int, dst: int, chunk: int = 0) -> np.ndarray:
    r = make(src, dst)
    if chunk:
        parts = [r.feed(x[i : i + chunk]) for i in range(0, len(x), chunk)]  # type: ignore[attr-defined]
    else:
        parts = [r.feed(x)]  # type: ignore[attr-defined]
    parts.append(r.flush())  # type: ignore[attr-defined]
    return np.concatenate(parts)


def tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


def db(x: float) -> float:
    return float(20 * np.log10(max(x, 1e-12)))


def middle(y: np.ndarray) -> np.ndarray:
    return y[len(y) // 10 : -len(y) // 10]


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y))))


def quality(make: Callable[[int, int], object], src: int, dst: int) -> Tuple[float, float, str]:
    """(snr, edge gain, alias text) for one candidate and rate pair."""
    y = run(make, tone(1000, src, 1.0), src, dst)
    ideal = tone(1000, dst, len(y) / dst)[: len(y)]
    snr = db(rms(middle(ideal)) / max(rms(middle(y - ideal)), 1e-12))
    edge_f = 7000.0 if min(src, dst) >= 16000 else 3400.0
    edge = db(rms(middle(run(make, tone(edge_f, src, 1.0), src, dst))) / rms(middle(tone(edge_f, src, 1.0))))
    nyq_out, nyq_in = dst / 2, src / 2
    if dst < src:
        near = db(rms(middle(run(make, tone(1.05 * nyq_out, src, 1.0), src, dst))) / (0.5 / np.sqrt(2)))
        far = db(rms(middle(run(make, tone(1.5 * nyq_out, src, 1.0), src, dst))) / (0.5 / np.sqrt(2)))
        alias = f"{near:6.1f} / {far:6.1f}"
    else:
        f = 0.85 * nyq_in
        y = middle(run(make, tone(f, src, 1.0), src, dst))
        spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
        freqs = np.fft.rfftfreq(len(y), 1 / dst)
        images = spectrum[freqs > nyq_in * 1.02].sum()
        alias = f"{10 * np.log10(max(images / spectrum.sum(), 1e-24)):6.1f} (images)"
    return snr, edge, alias


def cpu(src: int, dst: int, seconds: float, repeat: int) -> Dict[str, Tuple[float, float]]:
    """Per candidate: (bulk, packets) process seconds per second of audio.

    Candidates take turns within each round, so load from elsewhere on
    the machine falls on all of them alike; the best round counts.
    """
    rng = np.random.default_rng(1)
    x = rng.standard_normal(int(src * seconds)) * 0.1
    best = {name: [float("inf"), float("inf")] for name in CANDIDATES}
    for _ in range(repeat):
        for name, make in CANDIDATES.items():
            for slot, chunk in enumerate((0, src // 50)):
                start = time.process_time()
                run(make, x, src, dst, chunk)
                best[name][slot] = min(best[name][slot], (time.process_time() - start) / seconds)
    return {name: (bulk, packets) for name, (bulk, packets) in best.items()}


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(list(argv) or None)
    for make in CANDIDATES.values():  # warm up: imports, FFmpeg's first graph, filter banks
        for src, dst in PAIRS:
            run(make, np.zeros(src // 10), src, dst, chunk=src // 50)

    print(f"quality (dB); CPU as a ratio to {BASELINE}, best of {args.repeat}, {args.seconds:g} s per pair\n")
    header = f"{'pair':>12} {'candidate':>12} {'snr':>7} {'edge':>7} {'alias (down: 1.05x / 1.5x)':>27}" \
             f" {'bulk':>7} {'packets':>8} {'us/s bulk':>10} {'us/s pkts':>10}"
    print(header)
    print("-" * len(header))
    totals: Dict[str, List[float]] = {name: [0.0, 0.0] for name in CANDIDATES}
    for src, dst in PAIRS:
        figures = cpu(src, dst, args.seconds, args.repeat)
        base_bulk, base_packets = figures[BASELINE]
        for name, make in CANDIDATES.items():
            snr, edge, alias = quality(make, src, dst)
            bulk, packets = figures[name]
            totals[name][0] += bulk
            totals[name][1] += packets
            print(f"{src // 1000:>4}->{dst // 1000:<2} kHz {name:>12} {snr:7.1f} {edge:7.2f} {alias:>27}"
                  f" {bulk / base_bulk:7.3f} {packets / base_packets:8.3f}"
                  f" {bulk * 1e6:10.0f} {packets * 1e6:10.0f}")
        print()
    base = totals[BASELINE]
    print("all pairs together (CPU ratio to the baseline):")
    for name, (bulk, packets) in totals.items():
        print(f"  {name:>12}: bulk {bulk / base[0]:.3f}  packets {packets / base[1]:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])

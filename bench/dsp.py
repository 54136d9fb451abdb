"""Analysis-path DSP: CPU cost per second of audio for each stage, and quality figures.

    python bench/dsp.py [--rate 8000] [--seconds 60] [--span-ms 200] [--repeat 3] [--quality]

Feeds synthetic speech in noise through each stage in spans of --span-ms
(the media layer's flush interval) and prints, per stage, CPU milliseconds
per second of audio, the share of one core per leg (or pair), how many
legs one core could carry, and the longest single feed (how long one call
would hold the reactor); each stage runs --repeat times and the fastest
run counts, since other work on the machine only ever adds time.
--quality adds the accuracy figures the tests
check: VAD precision/recall per SNR, noise-reduction SNR gain, echo ERLE.
Run on purpose; not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from siprec.media.dsp import (  # noqa: E402
    EchoCanceller,
    LegProcessor,
    Mixer,
    NoiseReducer,
    PairProcessor,
    StreamResampler,
    VoiceActivityDetector,
)
from siprec.media.dsp.pipeline import LegConfig, PairConfig  # noqa: E402
from tests.media.dsp import signals as S  # noqa: E402


def test_audio(rate: int, seconds: float) -> Tuple[np.ndarray, np.ndarray]:
    """Two legs of int16 speech-like turns in noise; the near one hears the far one."""
    turns = [(t, 1.5) for t in np.arange(0.3, seconds - 2.0, 4.0)]
    far = S.conversation(rate, turns, seed=4, total=seconds, f0=180).samples
    near_talk = S.conversation(rate, [(t + 2.0, 1.5) for t, _ in turns], seed=8, total=seconds, f0=110).samples
    echo = np.convolve(far, S.echo_path(rate, 60, 10))[: len(far)]
    noise = S.white(rate, len(far), seed=11) * 10 ** (-45 / 20)

    def pcm(x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)

    return pcm(near_talk + echo + noise), pcm(far + noise)


def measure(feeds: List[Callable[[], object]], finish: Callable[[], object]) -> Tuple[float, float]:
    """(total CPU seconds, longest single feed in CPU seconds)."""
    longest = 0.0
    start = time.process_time()
    for feed in feeds:
        t = time.process_time()
        feed()
        longest = max(longest, time.process_time() - t)
    finish()
    return time.process_time() - start, longest


def cpu_table(rate: int, seconds: float, span_ms: float, repeat: int) -> None:
    near, far = test_audio(rate, seconds)
    span = int(rate * span_ms / 1000)
    offsets = range(0, len(near), span)
    nearf = near.astype(np.float32) / 32768
    farf = far.astype(np.float32) / 32768

    def stage_vad() -> Tuple[float, float]:
        v = VoiceActivityDetector(rate)
        return measure([lambda o=o: v.process(near[o : o + span]) for o in offsets], v.flush)

    def stage_noise() -> Tuple[float, float]:
        n = NoiseReducer(rate)
        return measure([lambda o=o: n.process(near[o : o + span]) for o in offsets], n.flush)

    def stage_echo() -> Tuple[float, float]:
        e = EchoCanceller(rate)
        return measure([lambda o=o: e.process(near[o : o + span], far[o : o + span]) for o in offsets], e.flush)

    def stage_mix() -> Tuple[float, float]:
        m = Mixer(("a", "b"))
        feeds: List[Callable[[], object]] = []
        for o in offsets:
            feeds.append(lambda o=o: m.feed("a", near[o : o + span], rate, o))
            feeds.append(lambda o=o: m.feed("b", far[o : o + span], rate, o))
        return measure(feeds, m.flush)

    def stage_resample() -> Tuple[float, float]:
        r = StreamResampler(rate, 2 * rate if rate <= 24000 else rate // 2)
        return measure([lambda o=o: r.process(nearf[o : o + span]) for o in offsets], r.flush)

    def leg_pipeline() -> Tuple[float, float]:
        p = LegProcessor(LegConfig())
        return measure([lambda o=o: p.feed(near[o : o + span], rate, o) for o in offsets], p.flush)

    def pair_pipeline() -> Tuple[float, float]:
        p = PairProcessor("near", "far", PairConfig())
        feeds: List[Callable[[], object]] = []
        for o in offsets:
            feeds.append(lambda o=o: p.feed("near", near[o : o + span], rate, o))
            feeds.append(lambda o=o: p.feed("far", far[o : o + span], rate, o))
        return measure(feeds, p.flush)

    del farf
    rows = [
        ("vad.VoiceActivityDetector (20 ms)", "leg", stage_vad),
        ("noise.NoiseReducer", "leg", stage_noise),
        ("echo.EchoCanceller (200 ms tail)", "pair", stage_echo),
        ("mix.Mixer (2 legs, same rate)", "pair", stage_mix),
        (f"mix.StreamResampler -> {2 * rate if rate <= 24000 else rate // 2} Hz", "leg", stage_resample),
        ("pipeline.LegProcessor (NR + VAD)", "leg", leg_pipeline),
        ("pipeline.PairProcessor (AEC+2xNR/VAD+mix)", "pair", pair_pipeline),
    ]
    print(
        f"CPU per second of audio at {rate} Hz ({seconds:.0f} s of audio, {span_ms:.0f} ms spans, "
        f"one core, best of {max(1, repeat)})"
    )
    print(f"{'stage':44} {'per':5} {'ms/s':>7} {'% core':>7} {'per core':>9} {'max feed':>9}")
    for name, unit, run in rows:
        total, longest = min(run() for _ in range(max(1, repeat)))
        per_second = total / seconds
        print(
            f"{name:44} {unit:5} {per_second * 1000:7.2f} {per_second * 100:6.2f}% "
            f"{int(1 / per_second) if per_second else 0:9d} {longest * 1000:7.2f}ms"
        )


def quality_table(rate: int) -> None:
    pattern = [(0.5, 1.2), (2.3, 0.8), (3.6, 2.0), (6.2, 0.5), (7.3, 1.5), (9.5, 1.0)]
    speech = S.conversation(rate, pattern, seed=2, total=11.5)
    frame = rate // 50
    truth = S.frame_truth(speech.mask(), frame)
    print(f"\nVAD at {rate} Hz, 20 ms frames: precision/recall (scored = hangover and onset margins unscored)")
    for colour in ("white", "pink"):
        noise = getattr(S, colour)(rate, len(speech.samples))
        row = []
        for snr in (20, 10, 5, 0, -3):
            x = S.at_snr(speech, noise, snr)
            v = VoiceActivityDetector(rate)
            d = np.concatenate([v.process(x), v.flush()])
            leg = LegProcessor(LegConfig())
            outs = [leg.feed(x[o : o + frame * 10].astype(np.float32), rate, o) for o in range(0, len(x), frame * 10)]
            outs.append(leg.flush())
            dd = np.zeros(len(truth), dtype=bool)
            for o in outs:
                for s in o.segments:
                    dd[s.start // frame : s.end // frame] = True
            raw = S.precision_recall(d, truth, after=11, before=2)
            den = S.precision_recall(dd, truth, after=11, before=2)
            row.append(f"{snr:>3} dB raw {raw[0]:.2f}/{raw[1]:.2f} den {den[0]:.2f}/{den[1]:.2f}")
        print(f"  {colour:5} " + " | ".join(row))

    print(f"\nNoise reduction at {rate} Hz: SNR gain in dB (after the first 2 s)")
    for colour in ("white", "pink"):
        noise = getattr(S, colour)(rate, len(speech.samples))
        row = []
        for snr in (0, 5, 10):
            noisy = S.at_snr(speech, noise, snr)
            n = NoiseReducer(rate)
            y = np.concatenate([n.process(noisy), n.flush()]).astype(np.float64)
            skip = 2 * rate
            clean = speech.samples[skip:]
            before = 10 * np.log10(np.sum(clean**2) / np.sum((noisy[skip:] - clean) ** 2))
            after = 10 * np.log10(np.sum(clean**2) / np.sum((y[skip:] - clean) ** 2))
            row.append(f"{snr:>3} dB in: +{after - before:.1f}")
        print(f"  {colour:5} " + " | ".join(row))

    print(f"\nEcho cancellation at {rate} Hz: ERLE over seconds 6-12 (speech-like far leg)")
    far = S.conversation(rate, [(0.2, 2.5), (3.0, 3.0), (6.5, 2.0), (9.0, 2.5)], seed=4, total=12, f0=180).samples
    far = far + S.white(rate, len(far), seed=9) * 1e-4
    noise = S.white(rate, len(far), seed=11) * 10 ** (-65 / 20)
    row = []
    for delay, attenuation in ((10, 6), (60, 10), (120, 20)):
        echo = np.convolve(far, S.echo_path(rate, delay, attenuation))[: len(far)]
        e = EchoCanceller(rate)
        out = np.concatenate([e.process(echo + noise, far), e.flush()]).astype(np.float64)
        late = slice(6 * rate, None)
        erle = 10 * np.log10(np.sum(echo[late] ** 2) / np.sum((out[late] - noise[late]) ** 2))
        row.append(f"{delay} ms / {attenuation} dB: {erle:.1f} dB")
    print("  " + " | ".join(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--span-ms", type=float, default=200.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quality", action="store_true")
    args = parser.parse_args()
    cpu_table(args.rate, args.seconds, args.span_ms, args.repeat)
    if args.quality:
        quality_table(args.rate)


if __name__ == "__main__":
    main()

"""Voice activity: the STT segmenter's classifiers against the analysis path's detector.

    python bench/vad.py [--quick] [--repeat 3]

Builds labelled telephone-band audio (espeak-ng voices rendered at 8 kHz
through G.711 µ-law, and through A-law then upsampled to 16 kHz; sentences
at different levels with known pauses; clean, in pink and white noise at
10 and 0 dB SNR; music-on-hold-like tones, digital silence, comfort noise
with level steps; a hold-then-talk call; a near leg with the far leg's
echo after the echo canceller) and prints, per detector:

* the analysis job (talk time, silence ratio, overtalk): frame accuracy,
  missed speech, false speech and talk-time ratio on a 10 ms grid, and
  segment boundary error against the labelled segments, both on the leg
  as received and on the noise-reduced copy the pipeline judges; and how
  much of stationary noise alone each calls speech, by noise level;
* the STT job (utterances for a recognizer): ``Segmenter`` driven by each
  frame classifier: speech lost to the recognizer, non-speech sent to it,
  clipped onsets, cuts inside speech, and how long after a sentence ends
  its utterance is closed;
* CPU per second of audio, as a ratio against the WebRTC classifier
  measured in the same run (best of --repeat).

Labels come from the clean rendering before noise and coding: 10 ms frames
within 35 dB of the sentence's loudest frame, pauses under 200 ms bridged
(the talk-spurt convention of ITU-T P.56). Run on purpose; not part of the
test suite. Needs espeak-ng.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from siprec.media.codecs.g711 import ALAW_TO_PCM, ULAW_TO_PCM, encode_alaw, encode_ulaw  # noqa: E402
from siprec.media.dsp.base import to_int16  # noqa: E402
from siprec.media.dsp.echo import EchoCanceller  # noqa: E402
from siprec.media.dsp.mix import resample  # noqa: E402
from siprec.media.dsp.noise import NoiseReducer  # noqa: E402
from siprec.media.dsp.vad import Hangover, VadConfig, VoiceActivityDetector  # noqa: E402
from siprec.stt.vad import Segmenter, energy_classifier, webrtc_classifier  # noqa: E402
from tests.media.dsp import signals as S  # noqa: E402
from tests.stt.speech import SENTENCES  # noqa: E402

RATES = (8000, 16000)
VOICES = ("en-us", "en-us+f3", "en-gb-scotland", "en-029")
PAUSES = (0.3, 0.6, 1.2, 2.5)  # seconds after each sentence, in turn
LEVELS_DBFS = (-20.0, -26.0, -32.0)  # active level of each sentence, in turn
NOISES = (("pink", 10.0), ("pink", 0.0), ("white", 10.0), ("white", 0.0))
GRID_MS = 10
BRIDGE_MS = 200
PACKET_MS = 20  # the segmenter is fed as RTP arrives


# -- corpus ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One labelled leg: int16 samples, truth per sample, sentence ends, optional echo veto."""

    group: str
    name: str
    rate: int
    samples: np.ndarray
    truth: np.ndarray
    sentence_ends: Tuple[int, ...] = ()
    veto: Optional[np.ndarray] = None


def level_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x**2) + 1e-20))


def frame_levels(x: np.ndarray, frame: int) -> np.ndarray:
    n = len(x) // frame
    return 10 * np.log10(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)


def bridge(mask: np.ndarray, gap: int) -> np.ndarray:
    """``mask`` with false runs shorter than ``gap`` between true ones filled."""
    out = mask.copy()
    idx = np.flatnonzero(mask)
    if len(idx) < 2:
        return out
    holes = np.flatnonzero(np.diff(idx) > 1)
    for h in holes:
        a, b = idx[h] + 1, idx[h + 1]
        if b - a < gap:
            out[a:b] = True
    return out


def g711(x: np.ndarray, law: str) -> np.ndarray:
    """Float 8 kHz audio through a G.711 encoder and decoder (float out)."""
    pcm = to_int16(x)
    if law == "ulaw":
        decoded = ULAW_TO_PCM[np.frombuffer(encode_ulaw(pcm), dtype=np.uint8)]
    else:
        decoded = ALAW_TO_PCM[np.frombuffer(encode_alaw(pcm), dtype=np.uint8)]
    return decoded.astype(np.float64) / 32768.0


def telephone(x8k: np.ndarray, rate: int) -> np.ndarray:
    """8 kHz float audio as a leg at ``rate``: µ-law at 8 kHz, A-law then upsampled at 16 kHz."""
    if rate == 8000:
        return g711(x8k, "ulaw")
    return resample(g711(x8k, "alaw").astype(np.float32), 8000, rate).astype(np.float64)


class Speaker:
    """espeak-ng sentences at 8 kHz, rendered once per voice and sentence."""

    def __init__(self) -> None:
        self._cache: Dict[Tuple[str, str], np.ndarray] = {}

    def say(self, text: str, voice: str) -> np.ndarray:
        key = (text, voice)
        if key not in self._cache:
            self._cache[key] = S.espeak(text, 8000, voice)
        return self._cache[key]


def active(clean: np.ndarray) -> np.ndarray:
    """Label per sample at 8 kHz: 10 ms frames within 35 dB of the loudest, short pauses bridged."""
    frame = 8000 * GRID_MS // 1000
    levels = frame_levels(clean, frame)
    on = levels > levels.max() - 35.0
    on = bridge(on, BRIDGE_MS // GRID_MS)
    mask = np.zeros(len(clean), dtype=bool)
    mask[: len(on) * frame] = np.repeat(on, frame)
    return mask


def talk(speaker: Speaker, voice: str, sentences: Sequence[str], lead: float, seed: int,
         pauses: Sequence[float] = PAUSES) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """Sentences with known pauses at 8 kHz: (clean float, truth, sentence end samples)."""
    parts = [np.zeros(int(8000 * lead))]
    truth = [np.zeros(len(parts[0]), dtype=bool)]
    ends: List[int] = []
    position = len(parts[0])
    for i, text in enumerate(sentences):
        x = speaker.say(text, voice)
        mask = active(x)
        gain = 10 ** ((LEVELS_DBFS[(i + seed) % len(LEVELS_DBFS)] - level_db(x[mask])) / 20)
        pause = np.zeros(int(8000 * pauses[(i + seed) % len(pauses)]))
        parts += [x * gain, pause]
        truth += [mask, np.zeros(len(pause), dtype=bool)]
        ends.append(position + int(np.flatnonzero(mask)[-1]) + 1)
        position += len(x) + len(pause)
    return np.concatenate(parts), np.concatenate(truth), ends


def noise(colour: str, n: int, seed: int) -> np.ndarray:
    return getattr(S, colour)(8000, n, seed=seed)


def add_noise(clean: np.ndarray, truth: np.ndarray, colour: str, snr: float, seed: int) -> np.ndarray:
    """Noise at ``snr`` dB under the active speech level (all sentences together)."""
    n = noise(colour, len(clean), seed)
    gain = 10 ** ((level_db(clean[truth]) - snr - level_db(n)) / 20)
    return clean + n * gain


def music(seconds: float, seed: int) -> np.ndarray:
    """Music-on-hold-like: a melody of three-note chords with harmonics, then a ringback cadence."""
    rng = np.random.default_rng(seed)
    out = []
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12]) / 12)
    t_note = np.arange(int(8000 * 0.3)) / 8000
    env = np.minimum(1.0, np.minimum(t_note / 0.02, (t_note[-1] - t_note) / 0.08 + 0.05))
    while sum(map(len, out)) < 8000 * seconds * 0.6:
        root = rng.integers(0, 5)
        chord = np.zeros(len(t_note))
        for step in (0, 2, 4):
            f = scale[(root + step) % len(scale)] * (2 if rng.random() < 0.3 else 1)
            for k, a in ((1, 1.0), (2, 0.4), (3, 0.2)):
                chord += a * np.sin(2 * np.pi * f * k * t_note)
        out.append(chord * env)
    melody = np.concatenate(out)
    melody *= 10 ** (-20 / 20) / np.sqrt(np.mean(melody**2))
    t = np.arange(int(8000 * seconds * 0.4)) / 8000
    ring = (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)) * ((t % 6.0) < 2.0)
    ring *= 10 ** (-22 / 20) / np.sqrt(np.mean(ring[ring != 0] ** 2))
    return np.concatenate([melody, ring])


def comfort_noise(seconds: float, seed: int) -> np.ndarray:
    """Comfort noise as an SBC generates it: low-level noise whose level steps every 5 s."""
    n = int(8000 * seconds)
    x = S.white(8000, n, seed=seed)
    levels = (-70.0, -55.0, -45.0, -60.0)
    step = 8000 * 5
    for i in range(0, n, step):
        x[i : i + step] *= 10 ** (levels[(i // step) % len(levels)] / 20)
    return x


def build_corpus(quick: bool) -> List[Case]:
    speaker = Speaker()
    voices = VOICES[:2] if quick else VOICES
    count = 4 if quick else 6
    cases: List[Case] = []

    def add(group: str, name: str, x8k: np.ndarray, truth8k: np.ndarray, ends8k: Sequence[int] = (),
            veto8k: Optional[np.ndarray] = None) -> None:
        for rate in RATES:
            k = rate // 8000
            leg = to_int16(telephone(x8k, rate))
            truth = np.repeat(truth8k, k)[: len(leg)]
            veto = None if veto8k is None else np.repeat(veto8k, k)[: len(leg)]
            cases.append(Case(group, f"{name} {rate // 1000}k", rate, leg, truth,
                              tuple(e * k for e in ends8k), veto))

    for v, voice in enumerate(voices):
        sentences = [SENTENCES[(v * 3 + i) % len(SENTENCES)] for i in range(count)]
        clean, truth, ends = talk(speaker, voice, sentences, lead=0.5, seed=v)
        add("clean", voice, clean, truth, ends)
        for colour, snr in NOISES:
            x = add_noise(clean, truth, colour, snr, seed=10 + v)
            add(f"{colour} {snr:g} dB", voice, x, truth, ends)

    # Hold, then the agent: music, a second of digital silence, then speech
    # with comfort noise in the pauses.
    hold = music(8.0, seed=1)
    clean, truth, ends = talk(speaker, voices[0], SENTENCES[:3], lead=0.0, seed=1)
    x = np.concatenate([hold, np.zeros(8000), clean + comfort_noise(len(clean) / 8000, seed=3) * 0.3])
    truth = np.concatenate([np.zeros(len(hold) + 8000, dtype=bool), truth])
    add("hold, then talk", voices[0], x, truth, [e + len(hold) + 8000 for e in ends])

    # The near leg hears the far one (60 ms, 10 dB down) and talks in its pauses;
    # judged after the echo canceller, with its residual-echo mask as the veto.
    far, _, _ = talk(speaker, voices[0], SENTENCES[3:6], lead=0.3, seed=0, pauses=(2.8,))
    near_clean, near_truth, near_ends = talk(speaker, voices[1], SENTENCES[6:8], lead=2.6, seed=2,
                                             pauses=(3.5,))
    n = max(len(far), len(near_clean))
    far, near_clean = np.pad(far, (0, n - len(far))), np.pad(near_clean, (0, n - len(near_clean)))
    near_truth = np.pad(near_truth, (0, n - len(near_truth)))
    echo = np.convolve(far, S.echo_path(8000, 60, 10))[:n]
    for rate in RATES:
        k = rate // 8000
        near_leg = telephone(near_clean + echo + noise("pink", n, 5) * 10 ** (-50 / 20), rate)
        far_leg = telephone(far, rate)
        canceller = EchoCanceller(rate)
        cleaned, mask = [], []
        block = rate // 5  # 200 ms, as the media layer flushes
        for i in range(0, len(near_leg), block):
            cleaned.append(canceller.process(near_leg[i : i + block], far_leg[i : i + block]))
            mask.append(canceller.last_echo_mask)
        cleaned.append(canceller.flush())
        mask.append(canceller.last_echo_mask)
        cases.append(Case("echo (cancelled, vetoed)", f"{voices[1]} over {voices[0]} {rate // 1000}k", rate,
                          to_int16(np.concatenate(cleaned)), np.repeat(near_truth, k),
                          tuple(e * k for e in near_ends), np.concatenate(mask)))

    add("music on hold", "chords + ringback", music(20.0, seed=2), np.zeros(8000 * 20, dtype=bool))
    add("digital silence", "zeros", np.zeros(8000 * 20), np.zeros(8000 * 20, dtype=bool))
    add("comfort noise", "level steps", comfort_noise(20.0, seed=4), np.zeros(8000 * 20, dtype=bool))
    return cases


# -- detectors for the analysis job --------------------------------------------


Detector = Callable[[Case, np.ndarray], np.ndarray]  # (case, samples) -> speech per sample


def expand(decisions: np.ndarray, frame: int, n: int) -> np.ndarray:
    mask = np.repeat(np.asarray(decisions, dtype=bool), frame)[:n]
    return np.pad(mask, (0, n - len(mask)))


def vetoed(case: Case, frame: int, count: int) -> np.ndarray:
    """Frames mostly covered by the case's echo veto (as the analysis VAD judges them)."""
    out = np.zeros(count, dtype=bool)
    if case.veto is not None:
        v = np.pad(case.veto, (0, max(0, count * frame - len(case.veto))))[: count * frame]
        out = 2 * v.reshape(count, frame).sum(axis=1) > frame
    return out


def hold(decisions: np.ndarray, frame_ms: int) -> np.ndarray:
    """The analysis VAD's hangover (its default 200 ms after 60 ms bursts) on another detector's decisions."""
    config = VadConfig()
    hangover = Hangover(round(config.hangover_ms / frame_ms), round(config.min_burst_ms / frame_ms))
    return np.array([hangover(bool(d)) for d in decisions], dtype=bool)


def classifier_detector(make: Callable[[], Callable[[np.ndarray, int], bool]], frame_ms: int = 30,
                        hangover: bool = False) -> Detector:
    def detect(case: Case, x: np.ndarray) -> np.ndarray:
        classify = make()
        frame = case.rate * frame_ms // 1000
        count = len(x) // frame
        d = np.array([classify(x[i * frame : (i + 1) * frame], case.rate) for i in range(count)], dtype=bool)
        d &= ~vetoed(case, frame, count)
        if hangover:
            d = hold(d, frame_ms)
        return expand(d, frame, len(x))

    return detect


def dsp_detector(config: VadConfig = VadConfig()) -> Detector:
    def detect(case: Case, x: np.ndarray) -> np.ndarray:
        vad = VoiceActivityDetector(case.rate, config)
        d = np.concatenate([vad.process(x, case.veto), vad.flush()])
        return expand(d, vad.frame, len(x))

    return detect


def denoised(x: np.ndarray, rate: int) -> np.ndarray:
    """The noise-reduced copy the analysis pipeline judges (sample-aligned)."""
    nr = NoiseReducer(rate)
    return to_int16(np.concatenate([nr.process(x), nr.flush()]))


FRAME_DETECTORS: List[Tuple[str, Detector]] = [
    ("webrtc 2 (stt default)", classifier_detector(lambda: webrtc_classifier(2))),
    ("webrtc 3", classifier_detector(lambda: webrtc_classifier(3))),
    ("webrtc 2 + 200 ms hangover", classifier_detector(lambda: webrtc_classifier(2), hangover=True)),
    ("energy -40 dBFS", classifier_detector(energy_classifier)),
    ("dsp VAD (analysis)", dsp_detector()),
    ("dsp VAD, no hangover", dsp_detector(VadConfig(hangover_ms=0))),
]


# -- scoring -----------------------------------------------------------------


def grid(mask: np.ndarray, rate: int) -> np.ndarray:
    """A per-sample mask on the 10 ms grid (a cell is speech when half of it is)."""
    frame = rate * GRID_MS // 1000
    n = len(mask) // frame
    return mask[: n * frame].reshape(n, frame).mean(axis=1) >= 0.5


def runs(mask: np.ndarray) -> List[Tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


@dataclass
class FrameScore:
    frames: int = 0
    correct: int = 0
    speech: int = 0
    missed: int = 0
    silence: int = 0
    false: int = 0
    detected: int = 0
    segments: int = 0
    found: int = 0
    pieces: int = 0
    onset: Tuple[float, ...] = ()
    offset: Tuple[float, ...] = ()

    def add(self, got: np.ndarray, case: Case) -> None:
        g, t = grid(got, case.rate), grid(case.truth, case.rate)
        n = min(len(g), len(t))
        g, t = g[:n], t[:n]
        self.frames += n
        self.correct += int(np.sum(g == t))
        self.speech += int(t.sum())
        self.missed += int(np.sum(t & ~g))
        self.silence += int(np.sum(~t))
        self.false += int(np.sum(g & ~t))
        self.detected += int(g.sum())
        mine = runs(g)
        onsets, offsets = list(self.onset), list(self.offset)
        for a, b in runs(t):
            self.segments += 1
            hits = [(c, d) for c, d in mine if c < b and d > a]
            if hits:
                self.found += 1
                self.pieces += len(hits)
                onsets.append((hits[0][0] - a) * GRID_MS)
                offsets.append((hits[-1][1] - b) * GRID_MS)
        self.onset, self.offset = tuple(onsets), tuple(offsets)


def pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:5.1f}" if b else "    -"


def median_abs(values: Sequence[float]) -> str:
    return f"{np.median(np.abs(values)):4.0f}" if values else "   -"


def table(title: str, columns: Sequence[str], rows: Sequence[Tuple[str, Sequence[str]]], width: int = 30) -> None:
    print(f"\n{title}")
    cw = max(9, max(len(c) for c in columns) + 1)
    print(" " * width + "".join(c.rjust(cw) for c in columns))
    for name, cells in rows:
        print(name.ljust(width) + "".join(c.rjust(cw) for c in cells))


# -- the analysis job ---------------------------------------------------------


def analysis_job(cases: Sequence[Case]) -> None:
    groups = list(dict.fromkeys(c.group for c in cases))
    speech_groups = [g for g in groups if any(c.truth.any() for c in cases if c.group == g)]
    silent_groups = [g for g in groups if g not in speech_groups]
    copies = {id(c): denoised(c.samples, c.rate) for c in cases}
    for source, pick in (("as received", lambda c: c.samples), ("noise-reduced copy (the pipeline's input)",
                                                                 lambda c: copies[id(c)])):
        scores: Dict[Tuple[str, str], FrameScore] = {}
        by_rate: Dict[Tuple[str, int], FrameScore] = {}
        for name, detect in FRAME_DETECTORS:
            for case in cases:
                got = detect(case, pick(case))
                scores.setdefault((name, case.group), FrameScore()).add(got, case)
                if case.truth.any():
                    by_rate.setdefault((name, case.rate), FrameScore()).add(got, case)
        short = [g.replace(" (cancelled, vetoed)", "").replace("hold, then talk", "hold+talk") for g in speech_groups]
        table(f"Analysis job, {source}: frame accuracy % (10 ms grid)", short,
              [(n, [pct(scores[n, g].correct, scores[n, g].frames) for g in speech_groups]) for n, _ in FRAME_DETECTORS])
        table(f"Analysis job, {source}: missed speech % of speech frames", short,
              [(n, [pct(scores[n, g].missed, scores[n, g].speech) for g in speech_groups]) for n, _ in FRAME_DETECTORS])
        table(f"Analysis job, {source}: false speech % of non-speech frames", short + silent_groups,
              [(n, [pct(scores[n, g].false, scores[n, g].silence) for g in speech_groups + silent_groups])
               for n, _ in FRAME_DETECTORS])
        table(f"Analysis job, {source}: talk time found / true talk time (%)", short,
              [(n, [pct(scores[n, g].detected, scores[n, g].speech) for g in speech_groups]) for n, _ in FRAME_DETECTORS])
        table(f"Analysis job, {source}: all speech cases by rate: accuracy / missed / false %",
              [f"{r // 1000} kHz {m}" for r in RATES for m in ("acc", "miss", "false")],
              [(n, [cell for r in RATES for cell in (
                  pct(by_rate[n, r].correct, by_rate[n, r].frames),
                  pct(by_rate[n, r].missed, by_rate[n, r].speech),
                  pct(by_rate[n, r].false, by_rate[n, r].silence))]) for n, _ in FRAME_DETECTORS])
        table(f"Analysis job, {source}: segment boundaries, all speech cases", [
            "segments", "found %", "pieces/seg", "|onset| ms", "|offset| ms"], [
            (n, _boundaries([scores[n, g] for g in speech_groups])) for n, _ in FRAME_DETECTORS])


def noise_sweep() -> None:
    """Why a detector fails in loud noise: stationary noise alone, by level, through G.711."""
    levels = (-50, -40, -35, -30, -25, -20)
    rows = []
    for name, detect in FRAME_DETECTORS:
        cells = []
        for colour in ("pink", "white"):
            for db in levels:
                x = noise(colour, 8000 * 10, seed=21)
                x *= 10 ** ((db - level_db(x)) / 20)
                case = Case("noise", f"{colour} {db}", 8000, to_int16(telephone(x, 8000)), np.zeros(80000, dtype=bool))
                got = detect(case, case.samples)[8000:]  # after the first second
                cells.append(f"{100.0 * got.mean():5.1f}")
        rows.append((name, cells))
    table("Stationary noise alone at 8 kHz: % of time called speech, by noise level (dBFS)",
          [f"{c[0]} {db}" for c in ("pink", "white") for db in levels], rows)


def _boundaries(parts: Sequence[FrameScore]) -> List[str]:
    segments = sum(p.segments for p in parts)
    found = sum(p.found for p in parts)
    pieces = sum(p.pieces for p in parts)
    onset = [v for p in parts for v in p.onset]
    offset = [v for p in parts for v in p.offset]
    return [str(segments), pct(found, segments), f"{pieces / max(1, found):5.2f}", median_abs(onset), median_abs(offset)]


# -- the STT job ----------------------------------------------------------------


@dataclass(frozen=True)
class Cut:
    start: int
    end: int
    closed_at: int  # input position when the segmenter returned it


def segment(case: Case, classifier: Callable[[np.ndarray, int], bool]) -> List[Cut]:
    seg = Segmenter(case.rate, classifier)
    step = case.rate * PACKET_MS // 1000
    cuts: List[Cut] = []
    for i in range(0, len(case.samples), step):
        for u in seg.feed(case.samples[i : i + step], i):
            cuts.append(Cut(u.start, u.end, min(i + step, len(case.samples))))
    for u in seg.flush():
        cuts.append(Cut(u.start, u.end, len(case.samples)))
    return cuts


def dsp_classifier(config: VadConfig) -> Callable[[], Callable[[np.ndarray, int], bool]]:
    def make() -> Callable[[np.ndarray, int], bool]:
        vads: Dict[int, VoiceActivityDetector] = {}

        def classify(frame: np.ndarray, rate: int) -> bool:
            if rate not in vads:
                vads[rate] = VoiceActivityDetector(rate, config)
            return bool(vads[rate].process(frame)[0])

        return classify

    return make


def denoised_dsp_classifier(config: VadConfig) -> Callable[[], Callable[[np.ndarray, int], bool]]:
    """The analysis path's chain (noise reduction, then its VAD) as a frame classifier.

    The reducer hands samples back about 16 ms late; a frame gets the latest
    decision, which is close enough to judge segmentation.
    """

    def make() -> Callable[[np.ndarray, int], bool]:
        chains: Dict[int, Tuple[NoiseReducer, VoiceActivityDetector, List[bool]]] = {}

        def classify(frame: np.ndarray, rate: int) -> bool:
            if rate not in chains:
                chains[rate] = (NoiseReducer(rate), VoiceActivityDetector(rate, config), [False])
            nr, vad, last = chains[rate]
            decisions = vad.process(nr.process(frame))
            if len(decisions):
                last[0] = bool(decisions[-1])
            return last[0]

        return classify

    return make


SEGMENTER_CLASSIFIERS: List[Tuple[str, Callable[[], Callable[[np.ndarray, int], bool]]]] = [
    ("webrtc 2 (stt default)", lambda: webrtc_classifier(2)),
    ("webrtc 3", lambda: webrtc_classifier(3)),
    ("energy -40 dBFS", energy_classifier),
    ("dsp VAD, no hangover", dsp_classifier(VadConfig(frame_ms=30, hangover_ms=0))),
    ("dsp VAD, 200 ms hangover", dsp_classifier(VadConfig(frame_ms=30))),
    ("dsp VAD, 2/1 dB (for recall)", dsp_classifier(VadConfig(frame_ms=30, threshold_db=2.0, spread_db=1.0))),
    ("noise reduction + dsp VAD", denoised_dsp_classifier(VadConfig(frame_ms=30))),
]


@dataclass
class CutScore:
    speech: int = 0
    kept: int = 0
    audio: int = 0
    junk: int = 0
    utterances: int = 0
    sentences: int = 0
    onsets: int = 0
    clipped: int = 0
    inside: int = 0
    latency: Tuple[float, ...] = ()

    def add(self, cuts: Sequence[Cut], case: Case) -> None:
        n, rate = len(case.samples), case.rate
        sent = np.zeros(n, dtype=bool)
        for c in cuts:
            sent[c.start : c.end] = True
        truth = case.truth[:n]
        # Pre-roll and tail are wanted: non-speech within 300 ms of speech is not junk.
        near = np.convolve(truth, np.ones(2 * int(0.3 * rate) + 1), mode="same") > 0
        self.audio += n
        self.speech += int(truth.sum())
        self.kept += int(np.sum(sent & truth))
        self.junk += int(np.sum(sent & ~near))
        self.utterances += len(cuts)
        self.sentences += len(case.sentence_ends)
        for a, b in runs(truth):
            self.onsets += 1
            hits = [c for c in cuts if c.start < b and c.end > a]
            if hits and hits[0].start > a + rate // 100:
                self.clipped += 1
        for c in cuts:
            if c.end < n and truth[c.end - 1] and truth[c.end]:
                self.inside += 1  # closed (or cut at max_utterance) in the middle of speech
        latencies = list(self.latency)
        for end in case.sentence_ends:
            # Only sentences followed by a pause the segmenter is meant to close on.
            if end + rate <= n and truth[end : end + rate].any():
                continue
            closing = [c for c in cuts if c.start < end <= c.end]
            if closing:
                latencies.append((closing[0].closed_at - end) * 1000.0 / rate)
        self.latency = tuple(latencies)


def stt_job(cases: Sequence[Case]) -> None:
    groups = list(dict.fromkeys(c.group for c in cases))
    speech_groups = [g for g in groups if any(c.truth.any() for c in cases if c.group == g)]
    scores: Dict[Tuple[str, str], CutScore] = {}
    for name, make in SEGMENTER_CLASSIFIERS:
        for case in cases:
            scores.setdefault((name, case.group), CutScore()).add(segment(case, make()), case)
    short = [g.replace(" (cancelled, vetoed)", "").replace("hold, then talk", "hold+talk") for g in groups]
    names = [n for n, _ in SEGMENTER_CLASSIFIERS]
    table("STT job (Segmenter, default settings): speech lost to the recognizer, % of speech",
          short[: len(speech_groups)],
          [(n, [pct(scores[n, g].speech - scores[n, g].kept, scores[n, g].speech) for g in speech_groups])
           for n in names])
    table("STT job: non-speech sent to the recognizer (beyond 300 ms of speech), seconds per minute", short,
          [(n, [f"{60.0 * scores[n, g].junk / max(1, scores[n, g].audio):5.1f}" for g in groups]) for n in names])
    rows = []
    for n in names:
        parts = [scores[n, g] for g in speech_groups]
        onsets = sum(p.onsets for p in parts)
        lat = [v for p in parts for v in p.latency]
        rows.append((n, [
            str(sum(p.utterances for p in parts)),
            f"{sum(p.utterances for p in parts) / max(1, sum(p.sentences for p in parts)):5.2f}",
            pct(sum(p.clipped for p in parts), onsets),
            str(sum(p.inside for p in parts)),
            f"{np.median(lat):5.0f}" if lat else "-",
            f"{np.percentile(lat, 90):5.0f}" if lat else "-",
        ]))
    table("STT job, all speech cases: utterances, clipped onsets, cuts inside speech, latency after "
          "sentences followed by 1 s or more of pause",
          ["utts", "utts/sent", "clipped %", "cuts in sp", "lat p50 ms", "lat p90 ms"], rows)


# -- CPU ------------------------------------------------------------------------


def cpu(cases: Sequence[Case], repeat: int) -> None:
    picked = [c for c in cases if c.group == "pink 10 dB"][:2] or list(cases[:2])
    work: List[Tuple[str, Callable[[Case], object]]] = [
        ("webrtc 2 frames (baseline)", lambda c: classifier_detector(lambda: webrtc_classifier(2))(c, c.samples)),
        ("energy frames", lambda c: classifier_detector(energy_classifier)(c, c.samples)),
        ("dsp VAD, 20 ms frames", lambda c: dsp_detector()(c, c.samples)),
        ("dsp VAD, 30 ms frames", lambda c: dsp_detector(VadConfig(frame_ms=30))(c, c.samples)),
        ("Segmenter + webrtc 2", lambda c: segment(c, webrtc_classifier(2))),
        ("Segmenter + dsp VAD", lambda c: segment(c, dsp_classifier(VadConfig(frame_ms=30))())),
        ("Segmenter + NR + dsp VAD", lambda c: segment(c, denoised_dsp_classifier(VadConfig(frame_ms=30))())),
        ("noise reduction (NR) alone", lambda c: denoised(c.samples, c.rate)),
    ]
    for rate in RATES:
        legs = [c for c in picked if c.rate == rate] or [c for c in cases if c.rate == rate][:1]
        seconds = sum(len(c.samples) for c in legs) / rate
        figures = []
        for name, run in work:
            best = float("inf")
            for _ in range(repeat):
                t = time.process_time()
                for c in legs:
                    run(c)
                best = min(best, time.process_time() - t)
            figures.append((name, 1000.0 * best / seconds))
        base = figures[0][1]
        table(f"CPU at {rate // 1000} kHz ({seconds:.0f} s of audio, best of {repeat})", ["ms/s", "x baseline"],
              [(n, [f"{ms:6.2f}", f"{ms / base:6.2f}"]) for n, ms in figures])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two voices, four sentences each")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("bench/vad.py needs espeak-ng")
    cases = build_corpus(args.quick)
    total = sum(len(c.samples) / c.rate for c in cases)
    speech = sum(c.truth.sum() / c.rate for c in cases)
    print(f"corpus: {len(cases)} legs, {total:.0f} s of audio, {speech:.0f} s labelled speech, "
          f"rates {', '.join(str(r) for r in RATES)} Hz")
    analysis_job(cases)
    noise_sweep()
    stt_job(cases)
    cpu(cases, args.repeat)


if __name__ == "__main__":
    main()

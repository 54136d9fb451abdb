"""Leg and pair pipelines fed like the media layer's audio_sink: spans with offsets."""

from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.dsp.base import DspError
from siprec.media.dsp.echo import EchoConfig
from siprec.media.dsp.mix import mix_down, resample
from siprec.media.dsp.noise import NoiseConfig, NoiseReducer
from siprec.media.dsp.pipeline import LegConfig, LegOutput, LegProcessor, PairConfig, PairOutput, PairProcessor
from siprec.media.dsp.vad import VadConfig, VoiceActivityDetector, overlap_samples, segments_from_decisions
from tests.media.dsp import signals as S

PATTERN = [(0.5, 1.2), (2.3, 0.8), (3.6, 2.0)]


def pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def spans(x: np.ndarray, sizes: Iterable[int], start: int = 0) -> List[Tuple[np.ndarray, int]]:
    out, i = [], 0
    for n in sizes:
        if i >= len(x):
            break
        out.append((x[i : i + n], start + i))
        i += n
    return out


def timeline(chunks: Sequence) -> Tuple[int, np.ndarray]:
    """Contiguous chunks as (first offset, samples); fails on holes or overlaps."""
    assert chunks, "no output"
    for a, b in zip(chunks, chunks[1:]):
        assert b.offset == a.end, (a.offset, a.end, b.offset)
    return chunks[0].offset, np.concatenate([c.pcm for c in chunks])


def run_leg(proc: LegProcessor, feeds: Sequence[Tuple[np.ndarray, int]], rate: int) -> LegOutput:
    outputs = [proc.feed(pcm, rate, offset) for pcm, offset in feeds]
    outputs.append(proc.flush())
    return LegOutput(
        tuple(c for o in outputs for c in o.chunks), tuple(s for o in outputs for s in o.segments)
    )


def noisy_speech(rate: int = 8000, snr: float = 10.0) -> Tuple[S.Speech, np.ndarray]:
    speech = S.conversation(rate, PATTERN, seed=2, total=6.0)
    return speech, pcm16(S.at_snr(speech, S.white(rate, len(speech.samples)), snr))


class LegProcessorTests(SynchronousTestCase):
    def test_matches_the_stages_run_alone(self) -> None:
        """Spans of 200 ms give the noise reducer's output and the VAD's segments (on the
        denoised leg by default, on the input if asked), on the timeline."""
        _, x = noisy_speech()
        nr = NoiseReducer(8000)
        expected = np.concatenate([nr.process(x), nr.flush()])
        for source, judged in (("denoised", expected), ("input", x)):
            out = run_leg(LegProcessor(LegConfig(vad_source=source)), spans(x, [1600] * 100), 8000)
            start, y = timeline(out.chunks)
            self.assertEqual(start, 0)
            self.assertTrue(np.array_equal(y, expected))
            vad = VoiceActivityDetector(8000)
            decisions = np.concatenate([vad.process(judged), vad.flush()])
            self.assertEqual(list(out.segments), segments_from_decisions(decisions, 160, 0, 8000), source)

    def test_chunking_does_not_change_anything(self) -> None:
        _, x = noisy_speech(16000)
        whole = run_leg(LegProcessor(), [(x, 0)], 16000)
        rng = np.random.default_rng(3)
        pieces = run_leg(LegProcessor(), spans(x, rng.integers(1, 2000, size=10000)), 16000)
        self.assertTrue(np.array_equal(timeline(whole.chunks)[1], timeline(pieces.chunks)[1]))
        self.assertEqual(whole.segments, pieces.segments)

    def test_segments_find_the_speech(self) -> None:
        """At 10 dB SNR talk time is the truth plus at most the hangover (200 ms) per segment."""
        speech, x = noisy_speech()
        proc = LegProcessor()
        out = run_leg(proc, spans(x, [1600] * 100), 8000)
        self.assertEqual(len(out.segments), 3)
        truth = sum(b - a for a, b in speech.segments)
        stats = proc.stats()
        self.assertEqual(stats.speech_samples, sum(s.end - s.start for s in out.segments))
        self.assertGreater(stats.speech_samples, truth - 800)
        self.assertLess(stats.speech_samples, truth + 3 * 1600 + 800)
        self.assertEqual(stats.processed_samples, len(x))
        self.assertAlmostEqual(stats.silence_ratio, 1 - stats.speech_samples / len(x))
        assert stats.noise_level_dbfs is not None
        self.assertTrue(-60 < stats.noise_level_dbfs < -20)

    def test_leg_starting_late_keeps_its_offsets(self) -> None:
        """A leg whose audio starts 2 s into the call: everything shifts by exactly 16000 samples."""
        _, x = noisy_speech()
        at_zero = run_leg(LegProcessor(), spans(x, [1600] * 100), 8000)
        later = run_leg(LegProcessor(), spans(x, [1600] * 100, start=16000), 8000)
        self.assertEqual(timeline(later.chunks)[0], 16000)
        self.assertTrue(np.array_equal(timeline(later.chunks)[1], timeline(at_zero.chunks)[1]))
        self.assertEqual([(s.start - 16000, s.end - 16000) for s in later.segments], [(s.start, s.end) for s in at_zero.segments])

    def test_lost_packets_are_filled(self) -> None:
        """A 60 ms hole between spans reads as silence; the output stays continuous."""
        _, x = noisy_speech()
        feeds = [(x[:8000], 0), (x[8480:], 8480)]
        out = run_leg(LegProcessor(LegConfig(noise=None, vad=None)), feeds, 8000)
        start, y = timeline(out.chunks)
        self.assertEqual((start, len(y)), (0, len(x)))
        self.assertFalse(y[8000:8480].any())

    def test_long_gap_restarts(self) -> None:
        """Five seconds without audio: output resumes at the new offset, segments do not span the gap."""
        _, x = noisy_speech()
        proc = LegProcessor()
        first = run_leg(proc, [(x[: 3 * 8000], 0)], 8000)
        feeds = [(x[: 3 * 8000], 0), (x[3 * 8000 :], 8 * 8000)]
        out = run_leg(LegProcessor(), feeds, 8000)
        offsets = [c.offset for c in out.chunks]
        self.assertIn(8 * 8000, offsets)
        before = [c for c in out.chunks if c.offset < 8 * 8000]
        self.assertEqual(timeline(before)[1].tolist(), timeline(first.chunks)[1].tolist())
        self.assertEqual(sum(len(c.pcm) for c in out.chunks), len(x))
        for s in out.segments:
            self.assertFalse(s.start < 3 * 8000 < s.end or s.start < 8 * 8000 < s.end, s)

    def test_overlap_is_dropped_and_counted(self) -> None:
        x = np.arange(1000, dtype=np.int16)
        proc = LegProcessor(LegConfig(noise=None, vad=None, output="int16"))
        out = run_leg(proc, [(x[:600], 0), (x[500:], 500)], 8000)
        self.assertTrue(np.array_equal(timeline(out.chunks)[1], x))
        self.assertEqual(proc.stats().overlapped_samples, 100)

    def test_pass_through_is_exact(self) -> None:
        """With both stages off the output is the input (int16 out: bit-exact)."""
        _, x = noisy_speech()
        out = run_leg(LegProcessor(LegConfig(noise=None, vad=None, output="int16")), spans(x, [333] * 200), 8000)
        self.assertTrue(np.array_equal(timeline(out.chunks)[1], x))
        self.assertEqual(out.chunks[0].pcm.dtype, np.int16)

    def test_input_is_not_modified(self) -> None:
        """The processor works on copies: the caller's (archived) samples stay as they were."""
        _, x = noisy_speech()
        before = x.copy()
        proc = LegProcessor()
        outputs = [proc.feed(x[i : i + 1600], 8000, i) for i in range(0, len(x), 1600)]
        outputs.append(proc.flush())
        for o in outputs:
            for c in o.chunks:
                c.pcm[:] = 0  # a consumer scribbling on its output
        self.assertTrue(np.array_equal(x, before))

    def test_stereo_leg(self) -> None:
        """A stereo span is analysed as the mean of its channels."""
        _, x = noisy_speech()
        stereo = np.stack([x, x], axis=1)
        a = run_leg(LegProcessor(), spans(stereo, [1600] * 100), 8000)
        b = run_leg(LegProcessor(), spans(x, [1600] * 100), 8000)
        self.assertTrue(np.array_equal(timeline(a.chunks)[1], timeline(b.chunks)[1]))

    def test_resampled_processing(self) -> None:
        """An 8 kHz leg processed at 16 kHz: offsets and lengths double, segments still found."""
        _, x = noisy_speech()
        out = run_leg(LegProcessor(LegConfig(sample_rate=16000)), spans(x, [1600] * 100, start=800), 8000)
        start, y = timeline(out.chunks)
        self.assertEqual((start, len(y)), (1600, 2 * len(x)))
        self.assertEqual({c.sample_rate for c in out.chunks}, {16000})
        self.assertEqual(len(out.segments), 3)

    def test_denoised_vad_holds_up_at_low_snr(self) -> None:
        """At 0 dB SNR the default finds each utterance whole; judging the raw leg misses much of it."""
        speech, x = noisy_speech(snr=0.0)
        truth = sum(b - a for a, b in speech.segments)
        denoised = run_leg(LegProcessor(), spans(x, [1600] * 100), 8000)
        raw = run_leg(LegProcessor(LegConfig(vad_source="input")), spans(x, [1600] * 100), 8000)
        self.assertLessEqual(len(denoised.segments), 4)
        found = sum(s.end - s.start for s in denoised.segments)
        self.assertGreater(found, truth - 800)
        self.assertLess(found, truth + 3 * 1600 + 800)
        self.assertLess(sum(s.end - s.start for s in raw.segments), 0.8 * truth)

    def test_flush_twice(self) -> None:
        proc = LegProcessor()
        self.assertEqual(proc.flush(), LegOutput())
        proc.feed(np.zeros(100, dtype=np.int16), 8000, 0)
        self.assertEqual(sum(len(c.pcm) for c in proc.flush().chunks), 100)
        self.assertEqual(proc.flush(), LegOutput())

    def test_bad_feeds(self) -> None:
        proc = LegProcessor()
        proc.feed(np.zeros(160, dtype=np.int16), 8000, 0)
        with self.assertRaises(DspError):
            proc.feed(np.zeros(320, dtype=np.int16), 16000, 160)
        for pcm, rate, offset in (
            (np.zeros(160, dtype=np.int32), 8000, 160),
            (np.zeros(160, dtype=np.int16), 8000, -160),
            (b"\x00" * 320, 8000, 160),
            (np.zeros(160, dtype=np.int16), "8000", 160),
        ):
            with self.assertRaises(DspError):
                proc.feed(pcm, rate, offset)
        with self.assertRaises(DspError):
            LegProcessor({"noise": None})  # type: ignore[arg-type]


class ConfigTests(SynchronousTestCase):
    def test_leg_round_trip(self) -> None:
        config = LegConfig(sample_rate=16000, noise=NoiseConfig(max_attenuation_db=9.0), vad=None, output="int16")
        self.assertEqual(LegConfig.from_dict(config.to_dict()), config)
        self.assertEqual(LegConfig.from_dict({}), LegConfig())
        self.assertEqual(LegConfig.from_dict({"vad": {"frame_ms": 30}}).vad, VadConfig(frame_ms=30))

    def test_pair_round_trip(self) -> None:
        config = PairConfig(sample_rate=8000, echo=EchoConfig(tail_ms=300.0), near=LegConfig(vad=None), mix=None)
        self.assertEqual(PairConfig.from_dict(config.to_dict()), config)
        self.assertEqual(PairConfig.from_dict({"far": {"noise": None}}).far.noise, None)

    def test_bad_plain_data(self) -> None:
        """Unknown keys, wrong types and bad values all come back as DspError naming the setting."""
        cases = [
            (LegConfig.from_dict, {"loudness": 3}, "loudness"),
            (LegConfig.from_dict, {"vad": {"frame_ms": 15}}, "frame_ms"),
            (LegConfig.from_dict, {"vad": {"colour": 1}}, "leg.vad"),
            (LegConfig.from_dict, {"vad": 5}, "leg.vad"),
            (LegConfig.from_dict, {"output": "int8"}, "output"),
            (LegConfig.from_dict, {"vad_source": "echo"}, "vad_source"),
            (LegConfig.from_dict, {"sample_rate": 11025}, "sample rate"),
            (LegConfig.from_dict, {"gap_fill_ms": "long"}, "gap_fill_ms"),
            (LegConfig.from_dict, [1, 2], "mapping"),
            (PairConfig.from_dict, {"near": {"sample_rate": 8000}}, "pair's sample_rate"),
            (PairConfig.from_dict, {"mix": {"sample_rate": 8000}}, "mix"),
            (PairConfig.from_dict, {"echo": {"step": 2.0}}, "step"),
            (PairConfig.from_dict, {"max_lag_ms": 0}, "max_lag_ms"),
            (PairConfig.from_dict, {"near": "x"}, "near"),
            (PairConfig.from_dict, {"echo_gate": "yes"}, "echo_gate"),
            (PairConfig.from_dict, {"echo": {"enabled": 1}}, "enabled"),
            (LegConfig.from_dict, {"vad": {"threshold_db": "3"}}, "threshold_db"),
            (LegConfig.from_dict, {"noise": {"dd": None}}, "dd"),
            (LegConfig.from_dict, {"noise": {"frame_ms": float("nan")}}, "frame_ms"),
            (PairConfig.from_dict, {"mix": {"knee": True}}, "knee"),
        ]
        for build, data, message in cases:
            with self.assertRaises(DspError) as ctx:
                build(data)  # type: ignore[operator]
            self.assertIn(message, str(ctx.exception), data)


def pair_call(rate: int = 8000, seconds: int = 14) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Far party talks in four turns; its echo (60 ms, 10 dB down) leaks into the near leg,
    where the near party talks from 6 to 9.5 s. Returns near, far (int16), near talk, far talk."""
    far = S.conversation(rate, [(0.2, 3.0), (3.5, 2.0), (10.5, 3.0)], seed=4, total=seconds, f0=180).samples
    echo = np.convolve(far, S.echo_path(rate, 60, 10))[: len(far)]
    talk = S.conversation(rate, [(6.0, 3.5)], seed=8, total=seconds, f0=110, level=0.3).samples
    noise = S.white(rate, len(far), seed=11) * 10 ** (-55 / 20)
    return pcm16(echo + talk + noise), pcm16(far + S.white(rate, len(far), seed=12) * 10 ** (-55 / 20)), talk, far


def run_pair(proc: PairProcessor, feeds: Sequence[Tuple[str, np.ndarray, int, int]]) -> PairOutput:
    outputs = [proc.feed(label, pcm, rate, offset) for label, pcm, rate, offset in feeds]
    outputs.append(proc.flush())
    return PairOutput(
        LegOutput(tuple(c for o in outputs for c in o.near.chunks), tuple(s for o in outputs for s in o.near.segments)),
        LegOutput(tuple(c for o in outputs for c in o.far.chunks), tuple(s for o in outputs for s in o.far.segments)),
        tuple(c for o in outputs for c in o.mix),
    )


def interleaved(near: np.ndarray, far: np.ndarray, size: int, far_first: bool = False, rate: int = 8000) -> list:
    feeds = []
    for i in range(0, max(len(near), len(far)), size):
        pair = [("caller", near[i : i + size], rate, i), ("callee", far[i : i + size], rate, i)]
        feeds.extend(reversed(pair) if far_first else pair)
    return [f for f in feeds if len(f[1])]


class PairProcessorTests(SynchronousTestCase):
    def test_echo_is_not_taken_for_the_near_party(self) -> None:
        """After convergence, the far party's last turn (10.5-13.5 s) barely registers in the near leg's VAD;
        without echo cancellation it is counted as near speech and as overtalk."""
        near, far, _, _ = pair_call()
        feeds = interleaved(near, far, 1600)
        cancelled_proc = PairProcessor("caller", "callee")
        cancelled = run_pair(cancelled_proc, feeds)
        plain_proc = PairProcessor("caller", "callee", PairConfig(echo=None))
        plain = run_pair(plain_proc, feeds)

        def near_speech_in(out: PairOutput, lo: float, hi: float) -> int:
            return sum(max(0, min(s.end, int(hi * 8000)) - max(s.start, int(lo * 8000))) for s in out.near.segments)

        ungated = run_pair(PairProcessor("caller", "callee", PairConfig(echo_gate=False)), feeds)
        self.assertGreater(near_speech_in(plain, 10.5, 13.5), 2.5 * 8000)
        self.assertGreater(near_speech_in(ungated, 10.5, 13.5), 0.3 * 8000)  # residual echo
        self.assertLess(near_speech_in(cancelled, 10.5, 13.5), 0.1 * 8000)
        # The near party's own turn is still found whole.
        self.assertGreater(near_speech_in(cancelled, 6.0, 9.5), 3.4 * 8000)
        # What overtalk is left comes from the first seconds, before the filter has converged.
        self.assertLess(cancelled_proc.stats().overtalk_samples, plain_proc.stats().overtalk_samples / 2)

    def test_echo_energy_removed(self) -> None:
        """In the far party's last turn the near leg's output is at least 15 dB quieter than its input."""
        near, far, _, _ = pair_call()
        out = run_pair(PairProcessor("caller", "callee", PairConfig(near=LegConfig(noise=None))), interleaved(near, far, 1600))
        start, y = timeline(out.near.chunks)
        self.assertEqual((start, len(y)), (0, len(near)))
        turn = slice(int(10.6 * 8000), int(13.4 * 8000))
        x = near.astype(np.float64) / 32768
        drop = 10 * np.log10(np.sum(x[turn] ** 2) / np.sum(y[turn].astype(np.float64) ** 2))
        self.assertGreater(drop, 15.0)

    def test_feed_order_and_span_sizes_do_not_matter(self) -> None:
        near, far, _, _ = pair_call(seconds=6)
        expected = run_pair(PairProcessor("caller", "callee"), interleaved(near, far, 1600))
        for size, far_first in ((160, True), (1000, False), (4000, True)):
            got = run_pair(PairProcessor("caller", "callee"), interleaved(near, far, size, far_first))
            for leg in ("near", "far"):
                a, b = getattr(expected, leg), getattr(got, leg)
                self.assertTrue(np.array_equal(timeline(a.chunks)[1], timeline(b.chunks)[1]), (size, leg))
                self.assertEqual(a.segments, b.segments)
            self.assertTrue(np.array_equal(timeline(expected.mix)[1], timeline(got.mix)[1]), size)

    def test_mix_is_the_limited_sum_of_the_processed_legs(self) -> None:
        near, far, _, _ = pair_call(seconds=6)
        out = run_pair(PairProcessor("caller", "callee"), interleaved(near, far, 1600))
        start, mixed = timeline(out.mix)
        self.assertEqual((start, len(mixed)), (0, len(near)))
        _, expected = mix_down([timeline(out.near.chunks)[1], timeline(out.far.chunks)[1]], headroom="limit", knee=0.7)
        self.assertTrue(np.array_equal(mixed, expected))
        self.assertLess(np.max(np.abs(mixed)), 1.0)

    def test_overtalk_matches_the_segments(self) -> None:
        near, far, _, _ = pair_call()
        proc = PairProcessor("caller", "callee")
        out = run_pair(proc, interleaved(near, far, 1600))
        self.assertEqual(proc.stats().overtalk_samples, overlap_samples(out.near.segments, out.far.segments))
        legs = proc.stats().legs
        self.assertEqual(legs["caller"].speech_samples, sum(s.end - s.start for s in out.near.segments))

    def test_legs_at_different_rates(self) -> None:
        """A 16 kHz near leg and an 8 kHz far leg processed together at 16 kHz."""
        near, far, _, _ = pair_call(seconds=6)
        near16 = pcm16(resample(near, 8000, 16000).astype(np.float64))
        feeds = []
        for i in range(0, len(far), 1600):
            feeds.append(("caller", near16[2 * i : 2 * i + 3200], 16000, 2 * i))
            feeds.append(("callee", far[i : i + 1600], 8000, i))
        proc = PairProcessor("caller", "callee", PairConfig(sample_rate=16000))
        out = run_pair(proc, feeds)
        for chunks in (out.near.chunks, out.far.chunks, out.mix):
            start, y = timeline(chunks)
            self.assertEqual((start, len(y)), (0, 2 * len(far)))
            self.assertEqual({c.sample_rate for c in chunks}, {16000})

    def test_closed_leg_is_not_waited_for(self) -> None:
        """The far leg stops after 0.5 s: the near leg runs at most max_lag (1 s) ahead of it
        until it is closed, then is processed without it."""
        near, far, _, _ = pair_call(seconds=6)
        proc = PairProcessor("caller", "callee")
        outputs = [proc.feed("callee", far[:4000], 8000, 0), proc.feed("caller", near[:4000], 8000, 0)]
        outputs.append(proc.feed("caller", near[4000:], 8000, 4000))
        # Processed up to 1 s behind the near leg's end, less the stages' latency.
        ahead = sum(len(c.pcm) for o in outputs for c in o.near.chunks)
        self.assertLessEqual(ahead, len(near) - 8000)
        self.assertGreater(ahead, len(near) - 8000 - 400)
        released = proc.close("callee")
        done = ahead + sum(len(c.pcm) for c in released.near.chunks)
        self.assertGreater(done, len(near) - 400)

    def test_feeding_after_flush(self) -> None:
        """A flush (say before a known pause) does not end the pair: later audio is processed too."""
        near, far, _, _ = pair_call(seconds=4)
        proc = PairProcessor("caller", "callee")
        first = run_pair(proc, interleaved(near[:16000], far[:16000], 1600))
        feeds = [(label, pcm, rate, offset + 16000) for label, pcm, rate, offset in interleaved(near[16000:], far[16000:], 1600)]
        second = run_pair(proc, feeds)
        for out in (first, second):
            self.assertEqual(sum(len(c.pcm) for c in out.near.chunks), 16000)
            self.assertEqual(sum(len(c.pcm) for c in out.mix), 16000)
        self.assertEqual(second.near.chunks[0].offset, 16000)

    def test_int16_output(self) -> None:
        near, far, _, _ = pair_call(seconds=3)
        out = run_pair(
            PairProcessor("caller", "callee", PairConfig(output="int16", near=LegConfig(output="int16"))),
            interleaved(near, far, 1600),
        )
        self.assertEqual({c.pcm.dtype for c in out.mix}, {np.dtype(np.int16)})
        self.assertEqual({c.pcm.dtype for c in out.near.chunks}, {np.dtype(np.int16)})

    def test_bad_use(self) -> None:
        with self.assertRaises(DspError):
            PairProcessor("a", "a")
        proc = PairProcessor("a", "b")
        with self.assertRaises(DspError) as ctx:
            proc.feed("c", np.zeros(10, dtype=np.int16), 8000, 0)
        self.assertIn("unknown leg 'c'", str(ctx.exception))
        with self.assertRaises(DspError):
            proc.close("c")
        with self.assertRaises(DspError):
            proc.feed("a", np.zeros(10, dtype=np.int16), 12345, 0)
        self.assertEqual(proc.flush(), PairOutput())


class HostileInputTests(SynchronousTestCase):
    """Whatever a caller passes, the pipelines answer with a result or a DspError, never another exception."""

    def _garbage(self) -> list:
        rng = np.random.default_rng(13)
        return [
            np.zeros(0, dtype=np.int16),
            rng.integers(-32768, 32767, size=7, dtype=np.int16),
            rng.integers(-32768, 32767, size=(9, 2), dtype=np.int16),
            np.zeros((4, 0), dtype=np.int16),
            np.zeros((2, 2, 2), dtype=np.int16),
            rng.standard_normal(33).astype(np.float32),
            np.array([np.nan, 0.0], dtype=np.float32),
            np.array([1e30], dtype=np.float64),
            np.zeros(5, dtype=np.uint16),
            np.zeros(5, dtype=np.complex128),
            np.array(["x"] * 5),
            b"\x00\x01" * 40,
            None,
            [0, 1, 2],
        ]

    def test_leg_and_pair_take_garbage(self) -> None:
        rates = [8000, 16000, 0, -1, 11025, 8000.5, "8000", None]
        offsets = [0, 160, 10**12, -5, 1.5, None, "0"]
        rng = np.random.default_rng(17)
        garbage = self._garbage()
        leg = LegProcessor()
        pair = PairProcessor("a", "b")
        for _ in range(400):
            pcm = garbage[int(rng.integers(len(garbage)))]
            rate = rates[int(rng.integers(len(rates)))]
            offset = offsets[int(rng.integers(len(offsets)))]
            label = ["a", "b", "c"][int(rng.integers(3))]
            for call in (lambda: leg.feed(pcm, rate, offset), lambda: pair.feed(label, pcm, rate, offset)):
                try:
                    call()
                except DspError:
                    pass
        # Still usable afterwards.
        leg.flush()
        pair.flush()
        out = leg.feed(np.zeros(1600, dtype=np.int16), 8000, 10**12 + 10**6)
        self.assertIsInstance(out, LegOutput)

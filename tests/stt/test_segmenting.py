"""VAD segmentation, utterance streams (partials, finals, overload), resampling, WER."""

from __future__ import annotations

import numpy as np
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from siprec.stt.audio import (
    AudioError, StreamResampler, TimeMap, read_wav, resample, wav_bytes,
)
from siprec.stt.base import LegSpec, SttError
from siprec.stt.utterance import Recognition, UtteranceStream, primary_language
from siprec.stt.vad import Segmenter, SegmenterSettings, energy_classifier
from siprec.stt.wer import normalize, word_error_rate
from siprec.stt.base import Word

RATE = 8000


def speech(seconds: float) -> np.ndarray:
    n = int(seconds * RATE)
    return (4000 * np.sin(np.arange(n) * 2 * np.pi * 300 / RATE)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def segmenter(**settings) -> Segmenter:
    return Segmenter(RATE, energy_classifier(), SegmenterSettings(**settings))


def feed_packets(target, audio: np.ndarray, start: int = 0, step: int = 160) -> list:
    out = []
    for position in range(0, len(audio), step):
        result = target.feed(audio[position:position + step], start + position)
        if result:
            out.extend(result)
    return out


class SegmenterTests(SynchronousTestCase):
    def assertNear(self, value: float, expected: float, delta: float) -> None:
        self.assertLessEqual(abs(value - expected), delta, f"{value} is not {expected}±{delta}")
    def test_two_utterances_with_pre_roll_and_trimmed_tail(self) -> None:
        audio = np.concatenate([silence(1), speech(1.5), silence(1), speech(0.9), silence(1)])
        utterances = feed_packets(segmenter(), audio, start=RATE * 5)
        self.assertEqual([u.seq for u in utterances], [1, 2])
        first, second = utterances
        # starts just before the speech (half the start window is pre-roll),
        # on the call timeline, and keeps a short tail of the closing silence
        self.assertNear(first.start_seconds, 6.0 - 0.15, 0.03)
        self.assertNear(first.end_seconds, 7.5 + 0.24, 0.05)
        self.assertNear(second.start_seconds, 8.5 - 0.15, 0.03)

    def test_unbroken_speech_is_cut_at_max_utterance(self) -> None:
        utterances = feed_packets(segmenter(max_utterance=2.0), speech(5))
        # 2 s in whole 30 ms frames
        self.assertEqual([round(u.duration, 2) for u in utterances], [1.98, 1.98])
        self.assertEqual(utterances[1].start, utterances[0].end)

    def test_short_blips_are_dropped(self) -> None:
        audio = np.concatenate([silence(0.5), speech(0.06), silence(1)])
        self.assertEqual(feed_packets(segmenter(), audio), [])

    def test_flush_closes_open_speech(self) -> None:
        seg = segmenter()
        self.assertEqual(feed_packets(seg, speech(1.0) ), [])
        self.assertTrue(seg.in_speech)
        self.assertEqual(seg.open_utterance().seq, 1)
        [utterance] = seg.flush()
        self.assertNear(utterance.duration, 1.0, 0.03)
        self.assertEqual(seg.flush(), [])

    def test_gaps(self) -> None:
        """A short hole inside speech is filled; a long one ends the utterance."""
        seg = segmenter()
        seg.feed(speech(1), 0)
        self.assertEqual(seg.feed(speech(1), RATE + 800), [])  # 100 ms hole
        [closed] = seg.feed(speech(1), 4 * RATE)  # 2 s hole
        self.assertEqual(closed.start, 0)
        self.assertGreaterEqual(len(closed.samples), 2 * RATE + 800)
        self.assertEqual(seg.position, 5 * RATE)

    def test_overlapping_audio_is_dropped(self) -> None:
        seg = segmenter()
        seg.feed(speech(1), 0)
        seg.feed(speech(1), 0)  # a duplicate
        seg.feed(speech(1), RATE // 2)  # half new
        self.assertEqual(seg.position, RATE + RATE // 2)

    def test_packet_size_does_not_change_utterances(self) -> None:
        """Frames fall on the same grid whether the leg comes whole or in odd packets."""
        audio = np.concatenate([silence(0.7), speech(1.3), silence(0.9), speech(0.8), silence(1)])
        whole = segmenter()
        expected = whole.feed(audio, 0) + whole.flush()
        for step in (7, 160, 333):
            seg = segmenter()
            got = feed_packets(seg, audio, step=step) + seg.flush()
            self.assertEqual([(u.start, u.end, u.voiced_frames) for u in got],
                             [(u.start, u.end, u.voiced_frames) for u in expected], step)
            self.assertEqual(seg.frames_seen, whole.frames_seen)

    def test_energy_threshold_in_dbfs(self) -> None:
        """The energy classifier's threshold is the level of the frame in dBFS."""
        classify = energy_classifier(-40.0)
        tone = np.sin(np.arange(240) * 2 * np.pi * 300 / RATE)
        for dbfs, expected in ((-37.0, True), (-43.0, False)):
            level = np.sqrt(2) * 32768 * 10 ** (dbfs / 20)  # sine peak for that RMS
            self.assertEqual(classify(np.round(tone * level).astype(np.int16), RATE), expected, dbfs)
        self.assertFalse(classify(np.zeros(0, dtype=np.int16), RATE))

    def test_hostile_input(self) -> None:
        seg = segmenter()
        self.assertRaises(AudioError, seg.feed, np.zeros(10), 0)
        self.assertRaises(AudioError, seg.feed, np.zeros(10, dtype=np.int16), -5)
        self.assertRaises(AudioError, Segmenter, 11025)
        self.assertRaises(ValueError, SegmenterSettings, frame_ms=25)

    def test_webrtc_classifier_on_silence_and_noise(self) -> None:
        """The default classifier loads and hears nothing in silence."""
        seg = Segmenter(RATE)
        self.assertEqual(feed_packets(seg, silence(2)), [])
        self.assertEqual(seg.frames_seen, 2 * 1000 // 30)


class Recognizer:
    def __init__(self) -> None:
        self.calls = []
        self.pending: list[Deferred] = []
        self.hold = False
        self.error = None

    def recognize(self, utterance, language, final):
        self.calls.append((utterance.seq, round(utterance.duration, 2), final))
        if self.error is not None:
            return fail(self.error)
        if self.hold and final:
            d = Deferred()
            self.pending.append(d)
            return d
        words = (Word("hi", 0.1, 0.3, 0.9),)
        return succeed(Recognition(f"u{utterance.seq}{'' if final else '?'}", 0.9, None, words))


class Listener:
    def __init__(self) -> None:
        self.hyps, self.failures, self.overloads = [], [], []

    def hypothesis(self, hyp):
        self.hyps.append(hyp)

    def failed(self, error):
        self.failures.append(error)

    def overloaded(self, reason):
        self.overloads.append(reason)


class UtteranceStreamTests(SynchronousTestCase):
    def stream(self, recognizer, live=True, **options):
        self.listener = Listener()
        return UtteranceStream("offline", LegSpec("c", "l", RATE, live=live), self.listener,
                               recognizer, classifier=energy_classifier(), **options)

    def test_partials_about_once_a_second_then_a_final(self) -> None:
        recognizer = Recognizer()
        stream = self.stream(recognizer, partial_interval=1.0)
        feed_packets(stream, np.concatenate([speech(4.2), silence(1)]), start=RATE * 10)
        self.successResultOf(stream.finish())
        kinds = [(h.text, h.is_final) for h in self.listener.hyps]
        self.assertEqual(kinds, [("u1?", False)] * 4 + [("u1", True)])
        final = self.listener.hyps[-1]
        self.assertEqual(final.start, 10.0)
        self.assertEqual(final.words[0].start, round(final.start + 0.1, 3))
        self.assertEqual(final.language, "en-US")

    def test_post_call_legs_have_no_partials(self) -> None:
        stream = self.stream(Recognizer(), live=False, partial_interval=1.0)
        feed_packets(stream, speech(3))
        self.successResultOf(stream.finish())
        self.assertEqual([h.is_final for h in self.listener.hyps], [True])

    def test_finals_in_order_one_at_a_time_and_late_partials_dropped(self) -> None:
        recognizer = Recognizer()
        recognizer.hold = True
        stream = self.stream(recognizer, partial_interval=None)
        feed_packets(stream, np.concatenate([speech(1), silence(1), speech(1), silence(1)]))
        self.assertEqual([c[0] for c in recognizer.calls if c[2]], [1])
        done = stream.finish()
        self.assertNoResult(done)
        recognizer.pending[0].callback(Recognition("first"))
        self.assertEqual(len(recognizer.pending), 2)
        recognizer.pending[1].callback(Recognition("second"))
        self.successResultOf(done)
        self.assertEqual([h.text for h in self.listener.hyps], ["first", "second"])

    def test_lag_beyond_max_reports_overload_once(self) -> None:
        recognizer = Recognizer()
        recognizer.hold = True
        stream = self.stream(recognizer, max_lag=2.0)
        pattern = np.concatenate([speech(1.2), silence(0.8)])
        feed_packets(stream, np.tile(pattern, 5))
        self.assertEqual(len(self.listener.overloads), 1)
        self.assertIn("STT_MAX_LAG 2s", self.listener.overloads[0])
        recognizer.pending[0].callback(Recognition("late"))
        self.assertEqual(self.listener.hyps, [])
        self.successResultOf(stream.finish())

    def test_recognizer_failure_reported_once(self) -> None:
        recognizer = Recognizer()
        recognizer.error = SttError("openai", "HTTP 500")
        stream = self.stream(recognizer)
        feed_packets(stream, np.tile(np.concatenate([speech(1), silence(1)]), 3))
        self.assertEqual([str(e) for e in self.listener.failures], ["openai: HTTP 500"])
        self.successResultOf(stream.finish())

    def test_recognizer_bug_becomes_stt_error(self) -> None:
        class Broken:
            def recognize(self, *args):
                raise KeyError("oops")

        stream = self.stream(Broken())
        feed_packets(stream, np.concatenate([speech(1), silence(1)]))
        self.assertIsInstance(self.listener.failures[0], SttError)
        self.flushLoggedErrors(KeyError)

    def test_abort_releases(self) -> None:
        released = []
        stream = self.stream(Recognizer(), on_done=lambda: released.append(1))
        stream.abort()
        stream.abort()
        self.assertEqual(released, [1])

    def test_primary_language(self) -> None:
        self.assertEqual(primary_language("en-US"), "en")
        self.assertEqual(primary_language("pt_BR"), "pt")
        self.assertIsNone(primary_language(""))


class AudioTests(SynchronousTestCase):
    def test_resample_keeps_a_tone(self) -> None:
        t = np.arange(8000) / 8000
        out = resample(np.sin(2 * np.pi * 1000 * t), 8000, 16000)
        expected = np.sin(2 * np.pi * 1000 * np.arange(len(out)) / 16000)
        self.assertEqual(len(out), 16000)
        self.assertLess(np.abs(out[200:-200] - expected[200:-200]).max(), 1e-3)

    def test_resample_removes_what_the_target_cannot_carry(self) -> None:
        x = np.sin(2 * np.pi * 6000 * np.arange(22050) / 22050)
        self.assertLess(np.abs(resample(x, 22050, 8000)[200:-200]).max(), 1e-3)

    def test_streaming_equals_whole(self) -> None:
        rng = np.random.default_rng(7)
        x = rng.standard_normal(5003)
        for src, dst in ((8000, 16000), (48000, 16000), (22050, 16000), (16000, 16000)):
            whole = resample(x, src, dst)
            stream = StreamResampler(src, dst)
            parts, i = [], 0
            while i < len(x):
                n = int(rng.integers(1, 400))
                parts.append(stream.feed(x[i:i + n]))
                i += n
            parts.append(stream.flush())
            np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)

    def test_bad_rates(self) -> None:
        self.assertRaises(AudioError, resample, np.zeros(3), 0, 8000)
        self.assertRaises(AudioError, StreamResampler, 8000, -1)
        self.assertRaises(AudioError, resample, np.zeros((2, 2)), 8000, 16000)

    def test_wav_round_trip_and_garbage(self) -> None:
        pcm = (np.arange(100) * 100).astype(np.int16)
        samples, rate = read_wav(wav_bytes(pcm, 16000))
        self.assertEqual(rate, 16000)
        np.testing.assert_array_equal(samples, pcm)
        data = wav_bytes(pcm, 8000)
        for cut in (0, 4, 12, 30, 43):
            self.assertRaises(AudioError, read_wav, data[:cut])
        self.assertRaises(AudioError, read_wav, b"garbage" * 10)

    def test_time_map_across_gaps(self) -> None:
        timeline = TimeMap(8000)
        timeline.add(80000, 8000)  # stream 0-1 s is call 10-11 s
        timeline.add(88000, 8000)  # contiguous
        timeline.add(160000, 8000)  # after a hole: stream 2-3 s is call 20-21 s
        self.assertEqual(timeline.to_call(0.5), 10.5)
        self.assertEqual(timeline.to_call(1.5), 11.5)
        self.assertEqual(timeline.to_call(2.25), 20.25)


class WerTests(SynchronousTestCase):
    def test_normalisation_and_rate(self) -> None:
        self.assertEqual(normalize("We're open 9-5, OK?"), ["we're", "open", "nine", "five", "ok"])
        self.assertEqual(normalize("21 and 100"), ["twenty one", "and", "one zero zero"][0].split()
                         + ["and", "one", "zero", "zero"])
        self.assertEqual(word_error_rate(["a b c d"], ["a x c"]), 0.5)
        self.assertEqual(word_error_rate(["nine to five"], ["9 to 5"]), 0.0)
        self.assertRaises(ValueError, word_error_rate, [""], ["x"])

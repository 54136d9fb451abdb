"""A leg offered again continues its WAV: same file, same call timeline, the gap silent."""

from __future__ import annotations

import os
from typing import Any, List, Optional

import numpy as np
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.codecs.g711 import ULAW_TO_PCM
from siprec.media.combine import combine_legs
from siprec.media.spec import LegContinuation, PayloadFormat, StreamSpec
from siprec.media.stream import MediaStream
from siprec.media.wav import WavWriter, read_wav
from tests.media.av_encode import encode
from tests.media.signals import dominant_frequency, sine
from tests.media.test_stream import FRAME, PCMU, SRC, FakeUdpPort, Listener, rtp, ulaw_frames

G722 = PayloadFormat(9, "G722", 8000)


class ContinueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "call_leg.wav")
        self.clock = Clock()
        self.clock.advance(500.0)
        self.call_start = self.clock.seconds()
        self.events: List[dict] = []

    def stream(self, *formats: PayloadFormat, continue_from: Optional[LegContinuation] = None,
               port: int = 30000, **kwargs: Any) -> MediaStream:
        spec = StreamSpec(call_id="c", label="leg", index=0, formats=formats or (PCMU,),
                          wav_path=self.path, continue_from=continue_from)
        stream = MediaStream(spec, self.clock, Listener(), self.call_start, **kwargs)
        stream.log = Logger(observer=self.events.append)
        FakeUdpPort(stream, port)
        return stream

    def at(self, seconds: float) -> None:
        """Move the clock to ``seconds`` after the call start."""
        self.clock.advance(self.call_start + seconds - self.clock.seconds())

    def play(self, stream: MediaStream, payloads: List[bytes], pt: int = 0, ssrc: int = 1,
             first_seq: int = 0, ts: int = 0) -> None:
        for i, payload in enumerate(payloads):
            stream.datagramReceived(rtp(first_seq + i, payload, pt=pt, ssrc=ssrc, ts=ts + i * FRAME), SRC)
            self.clock.advance(0.02)

    def first_piece(self) -> dict:
        """1 s of PCMU from 0.5 s into the call, then the SRC removes the stream."""
        self.at(0.5)
        self.frames1 = ulaw_frames(50, freq=440)
        first = self.stream()
        self.play(first, self.frames1)
        return self.successResultOf(first.close())

    def continuation(self, stats: dict) -> LegContinuation:
        return LegContinuation(stats["sample_rate"], stats["channels"], stats["start_offset_samples"])

    def test_same_file_same_timeline(self) -> None:
        """Offered again, the leg continues its file: the gap is silence, the start offset stays."""
        stats1 = self.first_piece()
        self.assertEqual((stats1["start_offset_samples"], stats1["recorded_frames"]), (4000, 8000))
        self.at(3.5)
        second = self.stream(continue_from=self.continuation(stats1), port=30002)
        self.at(4.0)
        frames2 = ulaw_frames(25, freq=1000)
        self.play(second, frames2, ssrc=2, first_seq=9000, ts=123456)  # a new source
        stats2 = self.successResultOf(second.close())

        rate, channels, data = read_wav(self.path)
        self.assertEqual((rate, channels, len(data)), (8000, 1, 8000 + 20000 + 25 * FRAME))
        np.testing.assert_array_equal(data[:8000], ULAW_TO_PCM[np.frombuffer(b"".join(self.frames1), np.uint8)])
        self.assertFalse(data[8000:28000].any())  # 1.5 s .. 4.0 s of the call: the stream was removed
        np.testing.assert_array_equal(data[28000:], ULAW_TO_PCM[np.frombuffer(b"".join(frames2), np.uint8)])
        self.assertEqual(stats2["start_offset_samples"], 4000)
        self.assertEqual((stats2["continued"], stats2["continued_from_frames"]), (True, 8000))
        self.assertEqual((stats2["written_frames"], stats2["recorded_frames"]), (20000 + 25 * FRAME, len(data)))
        self.assertEqual((stats2["resume_gap_samples"], stats2["gaps_filled_samples"]), (20000, 0))
        self.assertEqual(stats2["tolerances"], [])

        # In the combined file the leg's second piece sits at 4.0 s of the call.
        other = os.path.join(self.dir, "other.wav")
        writer = WavWriter(other, 8000)
        writer.write(np.full(100, 1, dtype=np.int16))
        writer.close()
        out = os.path.join(self.dir, "call.wav")
        combine_legs([(other, 0), (self.path, stats2["start_offset_samples"])], out, 8000)
        combined = read_wav(out)[2].reshape(-1, 2)
        self.assertEqual(len(combined), 4000 + len(data))
        np.testing.assert_array_equal(combined[4000:12000, 1], data[:8000])
        self.assertFalse(combined[12000:32000, 1].any())
        np.testing.assert_array_equal(combined[32000:, 1], data[28000:])

    def test_new_codec_keeps_the_file_format(self) -> None:
        """A G.722 (16 kHz) leg offered again with PCMU stays a 16 kHz file; PCMU is resampled into it."""
        self.at(0.0)
        first = self.stream(G722)
        self.play(first, encode("g722", sine(300, 16000, 0.5), 16000), pt=9)
        stats1 = self.successResultOf(first.close())
        self.assertEqual(stats1["sample_rate"], 16000)
        self.at(1.0)
        second = self.stream(PCMU, continue_from=self.continuation(stats1), port=30002)
        self.play(second, ulaw_frames(50, freq=1000), first_seq=100, ts=0)
        stats2 = self.successResultOf(second.close())
        rate, _, data = read_wav(self.path)
        self.assertEqual((rate, stats2["sample_rate"], stats2["codec"]), (16000, 16000, "PCMU"))
        self.assertEqual(len(data), stats1["recorded_frames"] + stats2["resume_gap_samples"] + 50 * 320)
        self.assertEqual(stats2["resampled_packets"], 50)
        self.assertLess(abs(dominant_frequency(data[-16000:], 16000) - 1000), 3)
        self.assertEqual(stats2["start_offset_samples"], stats1["start_offset_samples"])

    def test_early_first_packet_never_overlaps(self) -> None:
        """A first packet that seems to belong before the file's end goes right after it."""
        stats1 = self.first_piece()  # ends at 1.5 s
        self.at(1.0)  # the clock says the new stream starts inside the old audio
        late_start = LegContinuation(8000, 1, 4000 + 8000)  # the file "ends" at 2.5 s
        second = self.stream(continue_from=late_start, port=30002)
        self.play(second, ulaw_frames(10), ssrc=2)
        stats2 = self.successResultOf(second.close())
        data = read_wav(self.path)[2]
        self.assertEqual(len(data), 8000 + 10 * FRAME)
        self.assertEqual((stats2["resume_gap_samples"], stats2["late_dropped"]), (0, 0))
        self.assertEqual(stats1["recorded_frames"], 8000)

    def test_no_packets_leave_the_file_as_it_was(self) -> None:
        """A continued stream that hears nothing adds nothing and keeps the leg's start offset."""
        stats1 = self.first_piece()
        before = open(self.path, "rb").read()
        second = self.stream(continue_from=self.continuation(stats1), port=30002)
        self.clock.advance(5.0)
        stats2 = self.successResultOf(second.close())
        self.assertEqual(open(self.path, "rb").read(), before)
        self.assertEqual((stats2["start_offset_samples"], stats2["recorded_frames"], stats2["written_frames"]),
                         (4000, 8000, 0))

    def test_a_file_of_another_format_is_left_alone(self) -> None:
        """A continuation that does not match the file's header records nothing and overwrites nothing."""
        self.first_piece()
        before = open(self.path, "rb").read()
        second = self.stream(continue_from=LegContinuation(16000, 1, 4000), port=30002)
        self.play(second, ulaw_frames(10), ssrc=2)
        stats2 = self.successResultOf(second.close())
        self.assertEqual(open(self.path, "rb").read(), before)
        self.assertIn("8000 Hz 1-channel", stats2["wav_error"])
        self.assertEqual((stats2["wav_path"], stats2["continued"], stats2["packets"]), (None, False, 10))
        self.assertEqual(len([e for e in self.events if e.get("log_level").name == "error"]), 1)

    def test_a_missing_file_is_started_afresh(self) -> None:
        """The file to continue is gone: a new one starts, placed by its own first packet."""
        self.at(2.0)
        second = self.stream(continue_from=LegContinuation(8000, 1, 4000))
        self.play(second, ulaw_frames(10))
        stats = self.successResultOf(second.close())
        self.assertEqual((stats["continued"], stats["start_offset_samples"], stats["recorded_frames"]),
                         (False, 16000, 10 * FRAME))
        self.assertTrue(any("is gone" in e.get("log_format", "") for e in self.events))

    def test_bad_continuation_values(self) -> None:
        for args in ((0, 1, 0), (8000, 0, 0), (8000, 1, -1), (8000.0, 1, 0), (8000, 1, None)):
            self.assertRaises(ValueError, LegContinuation, *args)

    def test_from_stats(self) -> None:
        """Built from the earlier stream's final stats; None when it recorded nothing."""
        stats = self.first_piece()
        self.assertEqual(LegContinuation.from_stats(stats), LegContinuation(8000, 1, 4000))
        silent = self.stream(port=30004)
        self.assertIsNone(LegContinuation.from_stats(self.successResultOf(silent.close())))
        self.assertIsNone(LegContinuation.from_stats({}))

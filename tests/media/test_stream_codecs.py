"""MediaStream decoding what actually arrives: each packet by its own payload type,
brought to the leg's one rate and channel count."""

from __future__ import annotations

from typing import Any, List

import av
import numpy as np
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.codecs.g711 import encode_alaw
from siprec.media.spec import PayloadFormat
from siprec.media.wav import read_wav
from tests.e2e.test_sipp import ulaw_decode, ulaw_encode
from tests.media.av_encode import encode
from tests.media.signals import aligned_snr_db, dominant_frequency, rms, sine
from tests.media.test_stream import EVENT, FRAME, PCMU, SRC, FakeUdpPort, StreamTestsMixin, rtp

OPUS = PayloadFormat(111, "OPUS", 48000, 2)
OPUS_STEREO = PayloadFormat(111, "OPUS", 48000, 2, "sprop-stereo=1")


def independent_alaw_decode(octets: bytes) -> np.ndarray:
    """FFmpeg's A-law decoder, so ours is not checked against itself."""
    ctx = av.CodecContext.create("pcm_alaw", "r")
    ctx.sample_rate, ctx.layout = 8000, "mono"
    ctx.open()
    return np.concatenate([f.to_ndarray().reshape(-1) for f in ctx.decode(av.Packet(octets))])


def frames_of(octets: np.ndarray, size: int = FRAME) -> List[bytes]:
    return [octets[i : i + size].tobytes() for i in range(0, len(octets) - size + 1, size)]


class DecodeWhatArrivesTests(StreamTestsMixin, SynchronousTestCase):
    def open(self, *formats: PayloadFormat, **kwargs: Any):
        stream = self.make_stream(*formats, **kwargs)
        self.events: List[dict] = []
        stream.log = Logger(observer=self.events.append)
        FakeUdpPort(stream, 30000)
        return stream

    def send_all(self, stream, packets, step: float = 0.02) -> None:
        for data in packets:
            stream.datagramReceived(data, SRC)
            self.clock.advance(step)

    def tolerance_logs(self) -> List[dict]:
        return [e for e in self.events if "tolerance" in e]

    def test_pcma_on_a_pcmu_answer(self) -> None:
        """PCMA that was never offered is decoded as PCMA, sample for sample, on the fast path."""
        stream = self.open(PCMU, EVENT)
        audio = sine(300, 8000, 1.0)
        octets = encode_alaw(audio)
        payloads = [octets[i : i + FRAME] for i in range(0, len(octets), FRAME)]
        self.send_all(stream, [rtp(seq, p, pt=8) for seq, p in enumerate(payloads)])
        stats = self.successResultOf(stream.close())
        rate, channels, data = read_wav(self.spec.wav_path)
        self.assertEqual((rate, channels), (8000, 1))
        np.testing.assert_array_equal(data, independent_alaw_decode(octets))
        self.assertEqual((stats["codec"], stats["payload_type"]), ("PCMU", 0))
        self.assertEqual(stats["packets_by_codec"], {"PCMA/8000": 50})
        self.assertEqual((stats["other_codec_packets"], stats["resampled_packets"]), (50, 0))
        self.assertEqual(stats["tolerances"], [
            "SRC sent PCMA/8000 (PT 8) on a stream answered PCMU/8000; decoded by its own payload type"])
        self.assertEqual(len(self.tolerance_logs()), 1)
        self.assertGreater(stream.fast_packets, 30)
        self.assertEqual(stats["quality"]["codec"], "PCMA")

    def test_pcmu_on_an_opus_answer(self) -> None:
        """PCMU on a 48 kHz Opus leg: resampled, every 6th sample is the G.711 sample, placed in time."""
        stream = self.open(OPUS, PCMU, EVENT, started_before=0.25)
        octets = ulaw_encode(8000 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000))
        packets = [rtp(seq, p) for seq, p in enumerate(frames_of(octets))]
        del packets[20:23]  # three lost: their span stays silent, the rest stays in place
        self.send_all(stream, packets)
        stats = self.successResultOf(stream.close())
        rate, channels, data = read_wav(self.spec.wav_path)
        self.assertEqual((rate, channels, stats["sample_rate"]), (48000, 1, 48000))
        self.assertEqual(len(data), 50 * 960)
        self.assertEqual(stats["start_offset_samples"], 12000)  # 250 ms at 48 kHz
        reference = ulaw_decode(octets).astype(np.int32)
        kept = np.r_[400 : 20 * FRAME - 100, 23 * FRAME + 400 : 8000 - 100]  # away from the edges of the loss

        def error(delay: int) -> int:
            return int(np.abs(data[delay + 6 * kept].astype(np.int32) - reference[kept]).max())

        delay = min(range(480), key=error)  # under 10 ms late: the resampler's latency
        self.assertLess(error(delay), 80)  # of 8000: the G.711 samples come through
        self.assertFalse(data[21 * 960 : 23 * 960].any())
        self.assertLess(abs(dominant_frequency(data[:20 * 960], 48000) - 1000), 3)
        self.assertEqual((stats["packets_by_codec"], stats["resampled_packets"]), ({"PCMU/8000": 47}, 47))
        self.assertIn("resampled from 8000 to 48000 Hz", stats["tolerances"][0])
        self.assertEqual((stats["lost"], stats["quality"]["codec"], stats["quality"]["lost"]), (3, "PCMU", 3))

    def test_pcma_on_a_stereo_opus_answer(self) -> None:
        """Unoffered PCMA on a stereo 48 kHz leg reaches both channels at the right length."""
        stream = self.open(OPUS_STEREO)
        octets = encode_alaw(sine(440, 8000, 0.5))
        self.send_all(stream, [rtp(seq, p, pt=8) for seq, p in enumerate(frames_of(np.frombuffer(octets, np.uint8)))])
        stats = self.successResultOf(stream.close())
        rate, channels, data = read_wav(self.spec.wav_path)
        self.assertEqual((rate, channels), (48000, 2))
        frames = data.reshape(-1, 2)
        self.assertEqual(len(frames), 25 * 960)
        np.testing.assert_array_equal(frames[:, 0], frames[:, 1])
        self.assertLess(abs(dominant_frequency(frames[:, 0], 48000) - 440), 3)
        self.assertIn("copied to all 2 channels", stats["tolerances"][0])

    def test_g722_on_a_pcmu_leg(self) -> None:
        """G.722 (16 kHz audio, 8000 Hz RTP clock) on a PCMU leg becomes the same tone at 8 kHz."""
        stream = self.open(PCMU)
        payloads = encode("g722", sine(1000, 16000, 1.0), 16000)
        self.send_all(stream, [rtp(seq, p, pt=9) for seq, p in enumerate(payloads)])
        stats = self.successResultOf(stream.close())
        rate, _, data = read_wav(self.spec.wav_path)
        self.assertEqual((rate, len(data)), (8000, len(payloads) * FRAME))
        self.assertGreater(aligned_snr_db(sine(1000, 8000, 1.0), data, warmup=400), 20.0)
        self.assertLess(abs(rms(data[800:]) - rms(sine(1000, 8000, 1.0))) / rms(sine(1000, 8000, 1.0)), 0.1)
        self.assertEqual(stats["packets_by_codec"], {"G722/8000": len(payloads)})
        self.assertIn("resampled from 16000 to 8000 Hz", stats["tolerances"][0])

    def test_switching_back_and_forth(self) -> None:
        """PCMU, PCMA, G.722, PCMU on one SSRC: one continuous tone, no gap, no overlap."""
        stream = self.open(PCMU, EVENT)
        tone8 = sine(500, 8000, 0.8)
        tone16 = sine(500, 16000, 0.8)
        packets = []
        for seq in range(40):
            block = seq // 10
            part = tone8[seq * FRAME : (seq + 1) * FRAME]
            if block in (0, 3):
                packets.append(rtp(seq, ulaw_encode(part).tobytes()))
            elif block == 1:
                packets.append(rtp(seq, encode_alaw(part), pt=8))
            else:
                packets.append(None)
        g722 = encode("g722", tone16[20 * 320 : 30 * 320], 16000)
        for i, payload in enumerate(g722[:10]):
            packets[20 + i] = rtp(20 + i, payload, pt=9)
        self.send_all(stream, packets)
        stats = self.successResultOf(stream.close())
        data = read_wav(self.spec.wav_path)[2]
        self.assertEqual(len(data), 40 * FRAME)
        levels = [rms(data[i * FRAME : (i + 1) * FRAME]) for i in range(40)]
        self.assertGreater(min(levels[:20] + levels[21:]), 0.5 * rms(tone8))  # the first G.722 frame starts late
        self.assertEqual(stats["packets_by_codec"], {"PCMU/8000": 20, "PCMA/8000": 10, "G722/8000": 10})
        self.assertEqual((stats["other_codec_packets"], stats["resampled_packets"]), (20, 10))
        self.assertEqual((stats["lost"], stats["clock_switches"], stats["gaps_filled_samples"]), (0, 0, 0))
        self.assertEqual(len(stats["tolerances"]), 2)
        self.assertEqual(len(self.tolerance_logs()), 2)

    def test_other_clock_on_the_same_ssrc(self) -> None:
        """Opus (48 kHz clock) then PCMA (8000 Hz clock) on one SSRC: PCMA continues where Opus ended."""
        stream = self.open(OPUS, EVENT)
        opus = encode("libopus", sine(1000, 48000, 0.5), 48000, bit_rate=64000)[:25]
        packets = [rtp(seq, p, pt=111, ts=5000 + seq * 960) for seq, p in enumerate(opus)]
        alaw = np.frombuffer(encode_alaw(sine(400, 8000, 0.5)), np.uint8)
        packets += [rtp(25 + i, p, pt=8, ts=777 + i * FRAME) for i, p in enumerate(frames_of(alaw))]
        self.send_all(stream, packets)
        stats = self.successResultOf(stream.close())
        data = read_wav(self.spec.wav_path)[2]
        self.assertEqual(len(data), 50 * 960)
        self.assertEqual((stats["clock_switches"], stats["resyncs"], stats["gaps_filled_samples"]), (1, 0, 0))
        self.assertLess(abs(dominant_frequency(data[2000 : 24000], 48000) - 1000), 3)
        self.assertLess(abs(dominant_frequency(data[26000:], 48000) - 400), 3)

    def test_unoffered_dynamic_type(self) -> None:
        """A dynamic type nobody offered is counted, not decoded, and said once."""
        stream = self.open(PCMU, EVENT)
        packets = [rtp(seq, b"\xff" * FRAME) for seq in range(5)]
        packets += [rtp(seq, b"\x10" * FRAME, pt=110) for seq in range(5, 10)]
        self.send_all(stream, packets)
        stats = self.successResultOf(stream.close())
        data = read_wav(self.spec.wav_path)[2]
        self.assertEqual(stats["unknown_payload_type"], 5)
        self.assertEqual(stats["packets_by_codec"], {"PCMU/8000": 5})
        self.assertFalse(data.any())
        self.assertEqual(stats["tolerances"], ["SRC sent payload type 110, which was neither offered nor "
                                               "static; its packets are counted, not recorded"])
        self.assertEqual(len(self.tolerance_logs()), 1)

    def test_offered_dynamic_type(self) -> None:
        """An offered dynamic type is decoded by its rtpmap."""
        stream = self.open(PCMU, PayloadFormat(97, "PCMA", 8000))
        octets = encode_alaw(sine(300, 8000, 0.2))
        self.send_all(stream, [rtp(seq, octets[seq * FRAME : (seq + 1) * FRAME], pt=97) for seq in range(10)])
        stats = self.successResultOf(stream.close())
        np.testing.assert_array_equal(read_wav(self.spec.wav_path)[2], independent_alaw_decode(octets))
        self.assertEqual(stats["packets_by_codec"], {"PCMA/8000": 10})

    def test_resampled_fast_path_agrees_with_the_careful_one(self) -> None:
        """G.711 on a 48 kHz leg: whole runs resampled at once give the WAV packet-by-packet decoding gives."""
        octets = ulaw_encode(8000 * np.sin(2 * np.pi * 700 * np.arange(16000) / 8000))
        packets = [rtp(seq, p) for seq, p in enumerate(frames_of(octets))]
        packets[40], packets[41] = packets[41], packets[40]
        del packets[70:72]
        wavs = []
        for fast in (True, False):
            stream = self.open(OPUS, PCMU, scheduled=fast)
            for data in packets:
                stream.datagramReceived(data, SRC)
                if not fast:  # a batch of one never takes the vectorised path
                    stream.flush()
                self.clock.advance(0.02)
            stats = self.successResultOf(stream.close())
            wavs.append(read_wav(self.spec.wav_path)[2])
            if fast:
                self.assertGreater(stream.fast_packets, 40)
            else:
                self.assertEqual(stream.fast_packets, 0)
            self.assertEqual((stats["resampled_packets"], stats["lost"]), (len(packets), 2))
        self.assertEqual(len(wavs[0]), 100 * 960)
        np.testing.assert_array_equal(wavs[0], wavs[1])

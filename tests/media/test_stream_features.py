"""MediaStream features on top of recording: fast path, audio sink, DTMF,
SRTP, RTCP, raw capture, other codecs."""

from __future__ import annotations

import base64
import os
from typing import Any, List, Tuple

import numpy as np
from pylibsrtp import Policy, Session
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.codecs.g711 import ULAW_TO_PCM
from siprec.media.dtmf import build_event
from siprec.media.pcap import iter_rtp
from siprec.media.rtcp import Bye, ReceiverReport, SdesChunk, SourceDescription, serialize_compound
from siprec.media.spec import PayloadFormat
from siprec.media.srtp import SUITES, SrtpKeys, parse_crypto
from siprec.media.wav import read_wav
from tests.media.av_encode import encode
from tests.media.signals import aligned_snr_db, voiced
from tests.media.test_stream import EVENT, FRAME, PCMU, SRC, FakeUdpPort, StreamTestsMixin, rtp, ulaw_frames


class Recorder:
    """Listener and audio sink in one."""

    def __init__(self) -> None:
        self.first: List[Any] = []
        self.dtmf: List[Any] = []
        self.byes: List[Any] = []
        self.audio: List[Tuple[str, np.ndarray, int, int]] = []

    def stream_first_packet(self, stream: Any) -> None:
        self.first.append(stream)

    def stream_dtmf(self, stream: Any, event: Any) -> None:
        self.dtmf.append(event)

    def stream_rtcp_bye(self, stream: Any, bye: Any) -> None:
        self.byes.append(bye)

    def sink(self, label: str, pcm: np.ndarray, rate: int, offset: int) -> None:
        self.audio.append((label, pcm.copy(), rate, offset))


class FeatureTests(StreamTestsMixin, SynchronousTestCase):
    def open(self, *formats: PayloadFormat, **kwargs: Any):
        recorder = Recorder()
        stream = self.make_stream(*formats, audio_sink=recorder.sink, **kwargs)
        stream.listener = recorder
        FakeUdpPort(stream, 30000)
        FakeUdpPort(stream.rtcp, 30001)
        return stream, recorder

    def send_all(self, stream, packets, step: float = 0.02) -> None:
        for data in packets:
            stream.datagramReceived(data, SRC)
            self.clock.advance(step)

    def test_fast_and_careful_paths_agree(self) -> None:
        """The same packets, clean or with reordering and loss, give the same WAV in batches
        (the vectorised path) and flushed one at a time (the per-packet path)."""
        frames = ulaw_frames(200)
        clean = [rtp(seq, frames[seq]) for seq in range(200)]
        messy = list(clean)
        messy[50], messy[51] = messy[51], messy[50]
        del messy[120:123]
        for packets in (clean, messy):
            expected = ULAW_TO_PCM[np.frombuffer(b"".join(frames), np.uint8)].copy()
            if packets is messy:
                expected[120 * FRAME : 123 * FRAME] = 0
            for fast_expected in (True, False):
                # Flushed by hand in the careful case: the timer would drain the reorder window.
                stream, _ = self.open(scheduled=fast_expected)
                if fast_expected:
                    self.send_all(stream, packets)
                else:  # a flush after every packet: a batch of one never takes the vectorised path
                    for data in packets:
                        stream.datagramReceived(data, SRC)
                        stream.flush()
                        self.clock.advance(0.02)
                stats = self.successResultOf(stream.close())
                np.testing.assert_array_equal(read_wav(self.spec.wav_path)[2], expected)
                if fast_expected:
                    self.assertGreater(stream.fast_packets, 100)
                else:
                    self.assertEqual(stream.fast_packets, 0)
                self.assertEqual(stats["quality"]["received"], len(packets))
                self.assertEqual(stats["packets_by_codec"], {"PCMU/8000": len(packets)})
                if packets is messy:
                    self.assertEqual((stats["lost"], stats["quality"]["lost"]), (3, 3))
                    self.assertEqual(stats["quality"]["out_of_order"], 1)

    def test_audio_sink_in_order_after_batches(self) -> None:
        """The sink gets each batch's audio once, in order, with its timeline offset; never per packet."""
        stream, recorder = self.open()
        frames = ulaw_frames(30)
        stream.datagramReceived(rtp(0, frames[0]), SRC)
        self.assertEqual(recorder.audio, [])  # nothing on the per-packet path
        self.send_all(stream, [rtp(seq, frames[seq]) for seq in range(1, 30)])
        self.successResultOf(stream.close())
        self.assertLess(len(recorder.audio), 30)
        offsets = [offset for _, _, _, offset in recorder.audio]
        self.assertEqual(offsets, sorted(offsets))
        joined = np.concatenate([pcm for _, pcm, _, _ in recorder.audio])
        np.testing.assert_array_equal(joined, read_wav(self.spec.wav_path)[2])
        self.assertEqual({(label, rate) for label, _, rate, _ in recorder.audio}, {("1", 8000)})
        self.assertEqual(recorder.audio[0][3], stream.start_offset_samples)

    def test_audio_sink_failure_contained(self) -> None:
        """A sink that raises is counted; recording goes on."""
        stream = self.make_stream(audio_sink=lambda *a: 1 / 0)
        FakeUdpPort(stream, 30000)
        self.send_all(stream, [rtp(seq, p) for seq, p in enumerate(ulaw_frames(20))])
        stats = self.successResultOf(stream.close())
        self.assertGreaterEqual(stats["sink_errors"], 1)
        self.assertEqual(stats["recorded_frames"], 20 * FRAME)
        self.flushLoggedErrors(ZeroDivisionError)

    def test_dtmf_events_not_tones(self) -> None:
        """Telephone-events become one DtmfEvent per key (retransmitted ends ignored); the WAV stays silent there."""
        stream, recorder = self.open(PCMU, EVENT)
        frames = ulaw_frames(10)
        packets = [rtp(seq, frames[seq]) for seq in range(5)]
        seq = 5
        for duration, end in ((160, False), (320, False), (480, True), (480, True), (480, True)):
            packets.append(rtp(seq, build_event(11, duration, end), pt=101, ts=5 * FRAME))
            seq += 1
        packets += [rtp(seq + i, frames[5 + i], ts=(8 + i) * FRAME) for i in range(5)]
        self.send_all(stream, packets)
        stats = self.successResultOf(stream.close())
        self.assertEqual([(e.digit, e.duration, e.end_seen) for e in recorder.dtmf], [("#", 0.06, True)])
        self.assertEqual((stats["dtmf_digits"], stats["telephone_events"], stats["lost"]), (1, 5, 0))
        self.assertEqual(stats["quality"]["lost"], 0)

    def test_srtp_end_to_end(self) -> None:
        """SRTP from an independent pylibsrtp sender records the same audio as plain RTP; garbage is counted."""
        key = os.urandom(30)
        line = f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(key).decode()}"
        stream, _ = self.open(spec={"srtp": SrtpKeys.from_crypto(parse_crypto(line))})
        sender = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                                srtp_profile=SUITES["AES_CM_128_HMAC_SHA1_80"].profile))
        frames = ulaw_frames(50)
        packets = [sender.protect(rtp(seq, frames[seq])) for seq in range(50)]
        forged = bytearray(packets[10])
        forged[20] ^= 0xFF
        packets.insert(11, bytes(forged))
        packets.append(sender.protect_rtcp(serialize_compound([ReceiverReport(0xABCD)])))
        self.send_all(stream, packets)
        stats = self.successResultOf(stream.close())
        expected = ULAW_TO_PCM[np.frombuffer(b"".join(frames), np.uint8)]
        np.testing.assert_array_equal(read_wav(self.spec.wav_path)[2], expected)
        self.assertTrue(stats["srtp"])
        self.assertEqual((stats["srtp_packets"], stats["srtcp_packets"]), (50, 1))
        self.assertEqual(stats["srtp_auth_failures"] + stats["srtp_replays"], 1)
        self.assertEqual((stats["packets"], stats["rtcp_reports"]), (50, 1))

    def test_rtcp_port_and_bye(self) -> None:
        """RTCP on port + 1 is parsed: CNAME kept, BYE reported to the listener."""
        stream, recorder = self.open()
        compound = serialize_compound([
            ReceiverReport(0xABCD),
            SourceDescription((SdesChunk(0xABCD, ((1, b"sbc@example"),)),)),
            Bye((0xABCD,), "call ended"),
        ])
        stream.rtcp.datagramReceived(compound, SRC)
        stream.rtcp.datagramReceived(b"\x80\xc9\x00", SRC)  # garbage: counted
        stats = stream.stats()
        self.assertEqual((stats["rtcp_cname"], stats["rtcp_bye"], stats["rtcp_errors"]), ("sbc@example", True, 1))
        self.assertEqual([b.reason for b in recorder.byes], ["call ended"])
        self.successResultOf(stream.close())

    def test_raw_rtp_capture(self) -> None:
        """record_raw_rtp keeps every datagram, even undecodable ones, in <wav stem>.pcap."""
        stream, _ = self.open(PCMU, record_raw_rtp=True)
        packets = [rtp(seq, p) for seq, p in enumerate(ulaw_frames(5))] + [rtp(5, b"\x00" * 20, pt=99)]
        self.send_all(stream, packets)
        stats = self.successResultOf(stream.close())
        self.assertEqual(stats["pcap_path"], self.spec.wav_path[:-4] + ".pcap")
        captured = list(iter_rtp(stats["pcap_path"]))
        self.assertEqual([c[3] for c in captured], packets)
        self.assertEqual({(c[1], c[2][1]) for c in captured}, {(SRC, 30000)})

    def test_opus_stream_at_configured_rate(self) -> None:
        """An Opus leg is recorded at opus_sample_rate (16 kHz here), stereo when sprop-stereo=1."""
        fmt = PayloadFormat(111, "OPUS", 48000, 2, "sprop-stereo=1")
        stream, _ = self.open(fmt, opus_sample_rate=16000)
        left = voiced(48000, 1.0, top=6000)
        stereo = np.stack([left, left // 2], axis=1).reshape(-1)
        payloads = encode("libopus", stereo, 48000, channels=2, bit_rate=96000)
        packets = [rtp(seq, p, pt=111, ts=seq * 960) for seq, p in enumerate(payloads)]
        self.send_all(stream, packets)
        stats = self.successResultOf(stream.close())
        rate, channels, data = read_wav(self.spec.wav_path)
        self.assertEqual((rate, channels, stats["codec"]), (16000, 2, "OPUS"))
        self.assertEqual(len(data) // 2, 320 * len(payloads))
        frames = data.reshape(-1, 2)
        self.assertGreater(np.abs(frames[3200:, 0]).mean(), 1.6 * np.abs(frames[3200:, 1]).mean())

    def test_g722_stream(self) -> None:
        """A G.722 leg becomes a 16 kHz WAV that matches the encoded signal."""
        stream, _ = self.open(PayloadFormat(9, "G722", 8000))
        reference = voiced(16000, 1.0, top=7000)
        payloads = encode("g722", reference, 16000)
        self.send_all(stream, [rtp(seq, p, pt=9) for seq, p in enumerate(payloads)])
        self.successResultOf(stream.close())
        rate, _, data = read_wav(self.spec.wav_path)
        self.assertEqual((rate, len(data)), (16000, len(reference)))
        self.assertGreater(aligned_snr_db(reference, data, warmup=320), 12.0)

"""Each FFmpeg-backed codec decodes frames encoded here (or reference vectors)
back into the signal that was encoded."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.codecs import DecodeError, DecoderOptions, get_decoder
from siprec.media.codecs.amr import (
    AMR_NB,
    AMR_WB,
    AmrDecoder,
    AmrFrame,
    AmrPayloadError,
    frame_from_storage,
    pack_payload,
    unpack_payload,
)
from siprec.media.codecs.g722 import G722Decoder
from siprec.media.codecs.g723 import G723Decoder
from siprec.media.codecs.g726 import G726Decoder, parse_g726_name
from siprec.media.codecs.g729 import G729Decoder
from siprec.media.codecs.gsm import GsmDecoder
from siprec.media.codecs.ilbc import IlbcDecoder
from siprec.media.codecs.opus import OpusDecoder, opus_channels
from siprec.media.spec import PayloadFormat
from tests.media.av_encode import encode
from tests.media.signals import (
    VECTORS,
    aligned_snr_db,
    dominant_frequency,
    harmonic_error_db,
    read_frames,
    rms,
    sine,
    voiced,
)

# A decoder that returned noise or silence is far from these; see signals.py.
SPEECH_CODEC_MAX_HARMONIC_ERROR_DB = 6.0


def _level_ratio_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    return 20 * np.log10(rms(decoded) / rms(reference))


class G722Tests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """16 kHz audio through FFmpeg's G.722 encoder comes back above 25 dB SNR, 2 samples per octet."""
        reference = voiced(16000, 1.0, top=7000)
        payloads = encode("g722", reference, 16000)
        decoder = get_decoder(PayloadFormat(9, "G722", 8000))
        self.assertIsInstance(decoder, G722Decoder)
        self.assertEqual((decoder.sample_rate, decoder.clock_rate, decoder.samples_per_tick), (16000, 8000, 2.0))
        decoded = np.concatenate([decoder.decode(p) for p in payloads])
        self.assertEqual(len(decoded), 2 * sum(len(p) for p in payloads))
        # The QMF delay is 22.5 samples: whole-sample alignment caps the SNR near 15 dB.
        self.assertGreater(aligned_snr_db(reference, decoded, warmup=320), 12.0)
        self.assertLess(harmonic_error_db(reference, decoded[22:], 16000, top=3400), 3.0)

    def test_wideband_content_survives(self) -> None:
        """A 6 kHz tone (beyond narrowband) is still there after decoding."""
        reference = sine(6000, 16000, 0.5)
        decoder = G722Decoder()
        decoded = np.concatenate([decoder.decode(p) for p in encode("g722", reference, 16000)])
        self.assertLess(abs(dominant_frequency(decoded[320:], 16000) - 6000), 10)

    def test_16000_clock_spelling(self) -> None:
        """G722/16000 (a common mistake) is taken at its word: one tick per sample."""
        decoder = get_decoder(PayloadFormat(9, "G722", 16000))
        self.assertEqual(decoder.samples_per_tick, 1.0)
        self.assertIsNone(get_decoder(PayloadFormat(9, "G722", 8000, channels=2)))


class OpusTests(SynchronousTestCase):
    def test_mono(self) -> None:
        """Opus at 64 kbit/s decodes to 48 kHz mono, 960 samples per 20 ms frame, close to the input."""
        reference = voiced(48000, 1.0, top=8000)
        payloads = encode("libopus", reference, 48000, bit_rate=64000)
        decoder = get_decoder(PayloadFormat(111, "opus", 48000, 2))
        self.assertEqual((decoder.sample_rate, decoder.channels), (48000, 1))
        pcms = [decoder.decode(p) for p in payloads]
        self.assertTrue(all(len(p) == 960 for p in pcms))
        decoded = np.concatenate(pcms)
        self.assertGreater(aligned_snr_db(reference, decoded, max_lag=800, warmup=4800), 15.0)

    def test_stereo_preserved(self) -> None:
        """With sprop-stereo=1 both channels are kept apart: 440 Hz left, 1 kHz right."""
        left, right = sine(440, 48000, 1.0), sine(1000, 48000, 1.0)
        stereo = np.stack([left, right], axis=1).reshape(-1)
        payloads = encode("libopus", stereo, 48000, channels=2, bit_rate=128000)
        fmt = PayloadFormat(111, "OPUS", 48000, 2, "minptime=10;useinbandfec=1;sprop-stereo=1")
        decoder = get_decoder(fmt)
        self.assertEqual(decoder.channels, 2)
        decoded = np.concatenate([decoder.decode(p) for p in payloads])
        self.assertEqual(len(decoded) % 2, 0)
        frames = decoded.reshape(-1, 2)
        self.assertLess(abs(dominant_frequency(frames[4800:, 0], 48000) - 440), 5)
        self.assertLess(abs(dominant_frequency(frames[4800:, 1], 48000) - 1000), 5)

    def test_resampled_output(self) -> None:
        """opus_sample_rate=16000 gives exactly 320 samples a frame and keeps the tone."""
        reference = sine(1000, 48000, 1.0)
        payloads = encode("libopus", reference, 48000, bit_rate=64000)
        decoder = get_decoder(PayloadFormat(111, "OPUS", 48000, 2), DecoderOptions(opus_sample_rate=16000))
        self.assertEqual((decoder.sample_rate, decoder.samples_per_tick), (16000, 1 / 3))
        pcms = [decoder.decode(p) for p in payloads]
        self.assertEqual({len(p) for p in pcms}, {320})
        decoded = np.concatenate(pcms)
        self.assertLess(abs(dominant_frequency(decoded[1600:], 16000) - 1000), 5)
        self.assertLess(abs(_level_ratio_db(reference[4800:], decoded[1600:])), 1.5)

    def test_channel_choice(self) -> None:
        """The fmtp, not the rtpmap's /2, decides stereo (RFC 7587 section 6.1)."""
        cases = [
            (PayloadFormat(111, "OPUS", 48000, 2), 1),
            (PayloadFormat(111, "OPUS", 48000, 2, "stereo=1"), 2),
            (PayloadFormat(111, "OPUS", 48000, 2, "sprop-stereo=1; stereo=0"), 2),
            (PayloadFormat(111, "OPUS", 48000, 2, "sprop-stereo=0"), 1),
            (PayloadFormat(111, "OPUS", 48000, 1, "stereo=1"), 1),
        ]
        for fmt, channels in cases:
            self.assertEqual(opus_channels(fmt), channels, fmt)

    def test_bad_options(self) -> None:
        """Only the rates libopus has are allowed for recordings."""
        self.assertRaises(ValueError, DecoderOptions, opus_sample_rate=44100)
        self.assertIsNone(get_decoder(PayloadFormat(111, "OPUS", 16000, 2)))

    def test_garbage(self) -> None:
        """A payload libopus rejects raises DecodeError, not an FFmpeg exception."""
        decoder = OpusDecoder()
        good = encode("libopus", sine(440, 48000, 0.04), 48000)
        self.assertRaises(DecodeError, decoder.decode, b"\xff\xff\xff")
        # An empty payload must not reach FFmpeg (it would read it as end of stream).
        self.assertRaises(DecodeError, decoder.decode, b"")
        self.assertEqual(len(decoder.decode(good[0])), 960)


class G729Tests(SynchronousTestCase):
    """Vectors encoded by bcg729 (tests/media/vectors/make_vectors.py)."""

    def test_reference_vector(self) -> None:
        """Two 10-octet frames per packet decode to 160 samples with the input's harmonics."""
        reference = voiced(8000, 1.0)
        frames = read_frames(VECTORS / "g729.bin")
        decoder = get_decoder(PayloadFormat(18, "G729", 8000))
        pcms = [decoder.decode(b"".join(frames[i : i + 2])) for i in range(0, len(frames), 2)]
        self.assertEqual({len(p) for p in pcms}, {160})
        decoded = np.concatenate(pcms)
        self.assertLess(harmonic_error_db(reference, decoded, 8000), SPEECH_CODEC_MAX_HARMONIC_ERROR_DB)
        self.assertLess(abs(_level_ratio_db(reference, decoded)), 3.0)

    def test_annex_b_sid(self) -> None:
        """With VAD, 2-octet SID frames each stand for 10 ms of silence; DTX gaps send nothing."""
        frames = read_frames(VECTORS / "g729_vad.bin")
        self.assertIn(2, {len(f) for f in frames})
        decoder = G729Decoder()
        speech = [f for f in frames[:50] if len(f) == 10]
        decoded = np.concatenate([decoder.decode(f) for f in speech])
        reference = voiced(8000, 0.5)
        self.assertGreater(aligned_snr_db(reference, decoded, warmup=800), -3.0)
        self.assertLess(abs(_level_ratio_db(reference[800:], decoded[800:])), 3.0)
        for frame in frames[50:]:
            if frame:
                pcm = decoder.decode(frame)
                self.assertEqual(len(pcm), 80)
        # one speech frame and a SID in one payload: 160 samples
        self.assertEqual(len(decoder.decode(frames[0] + b"\x00\x00")), 160)

    def test_bad_lengths(self) -> None:
        """Lengths that are neither frames nor frames plus a SID are refused."""
        decoder = G729Decoder()
        for size in (1, 3, 9, 11, 15):
            with self.assertRaises(DecodeError):
                decoder.decode(bytes(size))
        self.assertRaises(DecodeError, decoder.decode, b"")


class GsmTests(SynchronousTestCase):
    def test_reference_vector(self) -> None:
        """libgsm's 33-octet frames decode to 160 samples each, matching the input."""
        reference = voiced(8000, 1.0)
        frames = read_frames(VECTORS / "gsm.bin")
        decoder = get_decoder(PayloadFormat(3, "GSM", 8000))
        self.assertIsInstance(decoder, GsmDecoder)
        decoded = np.concatenate([decoder.decode(f) for f in frames])
        self.assertEqual(len(decoded), 160 * len(frames))
        self.assertGreater(aligned_snr_db(reference, decoded, warmup=800), 10.0)
        self.assertLess(harmonic_error_db(reference, decoded, 8000), SPEECH_CODEC_MAX_HARMONIC_ERROR_DB)

    def test_several_frames_per_packet(self) -> None:
        """Three frames in one payload equal the three decoded one by one."""
        frames = read_frames(VECTORS / "gsm.bin")[:3]
        together = GsmDecoder().decode(b"".join(frames))
        one = GsmDecoder()
        apart = np.concatenate([one.decode(f) for f in frames])
        np.testing.assert_array_equal(together, apart)

    def test_bad_length(self) -> None:
        """A payload that is not whole 33-octet frames is refused with its length."""
        with self.assertRaisesRegex(DecodeError, "34 octets"):
            GsmDecoder().decode(bytes(34))


class AmrPayloadTests(SynchronousTestCase):
    """RFC 4867 payload unpacking, sans-IO."""

    def _frames(self) -> list:
        reference = voiced(8000, 0.2)
        encoded = encode("libopencore_amrnb", reference, 8000, bit_rate=12200)
        return [frame_from_storage(p, AMR_NB) for p in encoded if p]

    def test_round_trip_both_modes(self) -> None:
        """Frames packed bandwidth-efficient or octet-aligned unpack to the same frames."""
        frames = self._frames()[:3]
        for octet_aligned in (False, True):
            payload = pack_payload(frames, AMR_NB, octet_aligned, cmr=7)
            cmr, back = unpack_payload(payload, AMR_NB, octet_aligned)
            self.assertEqual(cmr, 7)
            self.assertEqual(back, frames)

    def test_bandwidth_efficient_layout(self) -> None:
        """One 12.2 kbit/s frame: 4 + 6 + 244 bits = 254 bits, 32 octets (RFC 4867 4.3.5.1)."""
        frame = self._frames()[0]
        self.assertEqual(frame.frame_type, 7)
        payload = pack_payload([frame], AMR_NB)
        self.assertEqual(len(payload), 32)
        self.assertEqual(payload[0] >> 4, 15)  # CMR: no request
        self.assertEqual((payload[0] & 0x0F) << 2 | payload[1] >> 6, 0b001111)  # F=0 FT=7 Q=1

    def test_octet_aligned_with_crc(self) -> None:
        """crc=1 puts one CRC octet per frame after the ToC; they are skipped."""
        frames = self._frames()[:2]
        plain = pack_payload(frames, AMR_NB, octet_aligned=True)
        with_crc = plain[:3] + b"\xaa\xbb" + plain[3:]
        self.assertEqual(unpack_payload(with_crc, AMR_NB, True, crc=True)[1], frames)

    def test_no_data_and_sid(self) -> None:
        """NO_DATA and SID entries become one frame of silence each."""
        frames = self._frames()
        decoder = AmrDecoder(AMR_NB)
        payload = pack_payload([AmrFrame(15, True, b""), frames[0], AmrFrame(8, True, bytes(5))], AMR_NB)
        pcm = decoder.decode(payload)
        self.assertEqual(len(pcm), 480)
        self.assertFalse(pcm[:160].any())
        self.assertFalse(pcm[320:].any())

    def test_truncations(self) -> None:
        """Every truncation of a payload raises AmrPayloadError naming where."""
        frames = self._frames()[:2]
        for octet_aligned in (False, True):
            payload = pack_payload(frames, AMR_NB, octet_aligned)
            for cut in range(len(payload)):
                with self.assertRaises(AmrPayloadError):
                    unpack_payload(payload[:cut], AMR_NB, octet_aligned)

    def test_reserved_type_and_trailing_data(self) -> None:
        """Reserved frame types and left-over octets are refused."""
        self.assertRaisesRegex(AmrPayloadError, "reserved", unpack_payload, bytes([0xF0 | 0, 12 << 3]), AMR_NB, True)
        frame = self._frames()[0]
        payload = pack_payload([frame], AMR_NB, True)
        self.assertRaisesRegex(AmrPayloadError, "left after", unpack_payload, payload + b"\x00", AMR_NB, True)
        self.assertRaisesRegex(AmrPayloadError, "left after", unpack_payload, pack_payload([frame], AMR_NB) + b"\x00", AMR_NB)

    def test_fuzz(self) -> None:
        """Random payloads give frames or AmrPayloadError, never another exception."""
        rng = np.random.default_rng(4867)
        for _ in range(2000):
            data = rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
            for octet_aligned in (False, True):
                try:
                    unpack_payload(data, AMR_WB, octet_aligned)
                except AmrPayloadError:
                    pass


class AmrAudioTests(SynchronousTestCase):
    def test_amr_nb(self) -> None:
        """AMR 12.2 encoded by OpenCORE, sent bandwidth-efficient, decodes to the input."""
        reference = voiced(8000, 1.0)
        encoded = encode("libopencore_amrnb", reference, 8000, bit_rate=12200)
        frames = [frame_from_storage(p, AMR_NB) for p in encoded if p][:50]
        decoder = get_decoder(PayloadFormat(97, "AMR", 8000))
        decoded = np.concatenate([decoder.decode(pack_payload([f], AMR_NB)) for f in frames])
        self.assertEqual(len(decoded), 160 * len(frames))
        self.assertLess(harmonic_error_db(reference, decoded, 8000), SPEECH_CODEC_MAX_HARMONIC_ERROR_DB)
        self.assertLess(abs(_level_ratio_db(reference[:len(decoded)], decoded)), 3.0)

    def test_amr_nb_octet_aligned_two_frames(self) -> None:
        """octet-align=1 from the fmtp; two frames per packet make 320 samples."""
        encoded = encode("libopencore_amrnb", voiced(8000, 0.4), 8000, bit_rate=7950)
        frames = [frame_from_storage(p, AMR_NB) for p in encoded if p]
        decoder = get_decoder(PayloadFormat(97, "AMR", 8000, 1, "octet-align=1; mode-set=0,2,5,7"))
        self.assertTrue(decoder.octet_aligned)
        pcm = decoder.decode(pack_payload(frames[:2], AMR_NB, octet_aligned=True))
        self.assertEqual(len(pcm), 320)

    def test_amr_wb_reference_vector(self) -> None:
        """AMR-WB 23.85 kbit/s vectors from VisualOn's encoder decode to 16 kHz audio matching the input."""
        reference = voiced(16000, 1.0, top=7000)
        frames = [frame_from_storage(f, AMR_WB) for f in read_frames(VECTORS / "amrwb.bin")]
        decoder = get_decoder(PayloadFormat(98, "AMR-WB", 16000))
        self.assertEqual((decoder.sample_rate, decoder.samples_per_tick), (16000, 1.0))
        decoded = np.concatenate([decoder.decode(pack_payload([f], AMR_WB)) for f in frames])
        self.assertEqual(len(decoded), 320 * len(frames))
        self.assertLess(harmonic_error_db(reference, decoded, 16000, top=6400), SPEECH_CODEC_MAX_HARMONIC_ERROR_DB)

    def test_unsupported_fmtp(self) -> None:
        """Interleaving, robust sorting and multi-channel AMR are not offered."""
        for fmtp in ("interleaving=4", "robust-sorting=1"):
            self.assertIsNone(get_decoder(PayloadFormat(97, "AMR", 8000, 1, fmtp)), fmtp)
        self.assertIsNone(get_decoder(PayloadFormat(97, "AMR", 8000, 2)))
        self.assertIsNone(get_decoder(PayloadFormat(97, "AMR-WB", 8000)))


class G723Tests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """6.3 kbit/s frames from FFmpeg's encoder decode to 240 samples each, matching the input."""
        reference = voiced(8000, 1.2)
        payloads = encode("g723_1", reference, 8000, bit_rate=6300)
        decoder = get_decoder(PayloadFormat(4, "G723", 8000))
        decoded = np.concatenate([decoder.decode(p) for p in payloads])
        self.assertEqual(len(decoded), 240 * len(payloads))
        self.assertLess(harmonic_error_db(reference, decoded, 8000), SPEECH_CODEC_MAX_HARMONIC_ERROR_DB)

    def test_split_by_frame_type(self) -> None:
        """Frame sizes follow each first octet's low bits; a cut frame is refused."""
        decoder = G723Decoder()
        self.assertEqual([len(f) for f in decoder.split(bytes([0]) * 24 + bytes([2, 0, 0, 0]))], [24, 4])
        self.assertRaisesRegex(DecodeError, "needs 24 octets", decoder.split, bytes(23))
        self.assertRaisesRegex(DecodeError, "reserved", decoder.split, bytes([3]))


class G726Tests(SynchronousTestCase):
    def test_rates_and_packing(self) -> None:
        """G726-16..40 (RFC 3551 packing) and AAL2 packing each round-trip a voiced signal."""
        reference = voiced(8000, 1.0)
        for rate, min_snr in ((16, 3.0), (24, 8.0), (32, 14.0), (40, 15.0)):
            for aal2 in (False, True):
                bits = rate // 8
                stream = b"".join(encode("g726" if aal2 else "g726le", reference, 8000, bit_rate=rate * 1000))
                step = 160 * bits // 8
                name = f"{'AAL2-' if aal2 else ''}G726-{rate}"
                decoder = get_decoder(PayloadFormat(2, name, 8000))
                self.assertIsInstance(decoder, G726Decoder)
                pcms = [decoder.decode(stream[i : i + step]) for i in range(0, len(stream) - step + 1, step)]
                self.assertEqual({len(p) for p in pcms}, {160}, name)
                decoded = np.concatenate(pcms)
                self.assertGreater(aligned_snr_db(reference, decoded, warmup=400), min_snr, name)

    def test_wrong_packing_is_worse(self) -> None:
        """Decoding RFC 3551 packing as AAL2 ruins the audio: the packing matters."""
        reference = voiced(8000, 1.0)
        stream = b"".join(encode("g726le", reference, 8000, bit_rate=32000))
        right_decoder, wrong_decoder = G726Decoder(32), G726Decoder(32, aal2=True)
        chunks = [stream[i : i + 80] for i in range(0, len(stream) - 79, 80)]
        right = np.concatenate([right_decoder.decode(c) for c in chunks])
        wrong = np.concatenate([wrong_decoder.decode(c) for c in chunks])
        self.assertGreater(aligned_snr_db(reference, right, warmup=400), aligned_snr_db(reference, wrong, warmup=400) + 10)

    def test_names(self) -> None:
        self.assertEqual(parse_g726_name("g726-24"), (24, False))
        self.assertEqual(parse_g726_name("AAL2-G726-40"), (40, True))
        for bad in ("G726", "G726-33", "G726-x", "G729"):
            self.assertIsNone(parse_g726_name(bad), bad)


class IlbcTests(SynchronousTestCase):
    """No iLBC encoder installs here (see docs/codecs.md): framing and modes only."""

    def test_modes_from_fmtp(self) -> None:
        self.assertEqual(get_decoder(PayloadFormat(97, "iLBC", 8000, 1, "mode=20")).mode, 20)
        self.assertEqual(get_decoder(PayloadFormat(97, "iLBC", 8000, 1, "mode=30")).mode, 30)
        self.assertEqual(get_decoder(PayloadFormat(97, "iLBC", 8000)).mode, 30)

    def test_frame_lengths(self) -> None:
        """38-octet frames give 160 samples, 50-octet frames 240, whatever the fmtp said."""
        decoder = IlbcDecoder(30)
        self.assertEqual(len(decoder.decode(bytes(38))), 160)
        self.assertEqual(len(decoder.decode(bytes(76))), 320)
        self.assertEqual(len(decoder.decode(bytes(50))), 240)
        self.assertEqual(decoder.mode_for(950), 30)
        self.assertEqual(IlbcDecoder(20).mode_for(950), 20)
        for size in (0, 37, 51):
            self.assertRaises(DecodeError, decoder.decode, bytes(size))


class ComfortNoiseTests(SynchronousTestCase):
    def test_cn_is_silence_of_unknown_length(self) -> None:
        """CN decodes to no samples (the timeline fills the gap) and keeps the level."""
        decoder = get_decoder(PayloadFormat(13, "CN", 8000))
        self.assertEqual(len(decoder.decode(bytes([0x80 | 60, 1, 2]))), 0)
        self.assertEqual(decoder.last_level, 60)
        self.assertRaises(DecodeError, decoder.decode, b"")


class NotSupportedTests(SynchronousTestCase):
    def test_evs_never_offered(self) -> None:
        """EVS has no decoder here, whatever its spelling or rate."""
        from siprec.media.codecs import NOT_SUPPORTED, can_decode

        self.assertIn("EVS", NOT_SUPPORTED)
        for rate in (8000, 16000, 32000, 48000):
            self.assertFalse(can_decode(PayloadFormat(110, "EVS", rate)))
            self.assertFalse(can_decode(PayloadFormat(110, "evs", rate)))

"""Tests for siprec.media.srtp: SDES lines, answers, and unprotecting what
an independent pylibsrtp session protected."""

from __future__ import annotations

import base64
import os

import numpy as np
from pylibsrtp import Policy, Session
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.rtcp import ReceiverReport, parse_rtcp, serialize
from siprec.media.rtp import RtpPacket, parse_rtp
from siprec.media.rtp import serialize as rtp_bytes
from siprec.media.srtp import (
    SUITES,
    CryptoError,
    SrtpKeys,
    SrtpReceiver,
    answer_crypto,
    choose_crypto,
    parse_crypto,
)

KEY30 = bytes(range(30))
B64_30 = base64.b64encode(KEY30).decode()


def sender(suite: str, key: bytes) -> Session:
    """The SRC's side: a plain pylibsrtp session, not our code."""
    return Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=SUITES[suite].profile))


def rtp(seq: int, payload: bytes = b"\xd5" * 160) -> bytes:
    return rtp_bytes(RtpPacket(8, seq, seq * 160, 0xCAFE, payload))


class CryptoLineTests(SynchronousTestCase):
    def test_rfc4568_example(self) -> None:
        """The RFC 4568 section 4 example line, lifetime and MKI included."""
        line = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
        attribute = parse_crypto(line)
        self.assertEqual((attribute.tag, attribute.suite), (1, "AES_CM_128_HMAC_SHA1_80"))
        (key,) = attribute.keys
        self.assertEqual((key.lifetime, key.mki, key.mki_length, len(key.key)), (1 << 20, 1, 4, 30))
        self.assertTrue(attribute.supported)
        self.assertEqual(parse_crypto(attribute.value()), attribute)

    def test_session_params_and_unknown_suite(self) -> None:
        """Session parameters are kept; format-changing ones and unknown suites are not usable."""
        kept = parse_crypto(f"2 AES_CM_128_HMAC_SHA1_32 inline:{B64_30} KDR=0 WSH=128")
        self.assertEqual(kept.session_params, ("KDR=0", "WSH=128"))
        self.assertTrue(kept.supported)
        self.assertFalse(parse_crypto(f"3 AES_CM_128_HMAC_SHA1_80 inline:{B64_30} UNENCRYPTED_SRTP").supported)
        self.assertFalse(parse_crypto(f"4 F8_128_HMAC_SHA1_80 inline:{B64_30}").supported)

    def test_several_keys_need_mkis(self) -> None:
        b = base64.b64encode(bytes(30)).decode()
        two = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64_30}|1:1;inline:{b}|2:1")
        self.assertEqual([k.mki for k in two.keys], [1, 2])
        self.assertRaises(CryptoError, parse_crypto, f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64_30};inline:{b}")

    def test_bad_lines(self) -> None:
        """Each malformation raises CryptoError with its own message."""
        cases = [
            ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag"),
            ("x AES_CM_128_HMAC_SHA1_80 inline:" + B64_30, "tag"),
            ("1 AES_CM_128_HMAC_SHA1_80 key:" + B64_30, "inline"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", "base64"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(16)).decode(), "30-octet"),
            ("1 AEAD_AES_256_GCM inline:" + B64_30, "44-octet"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:" + B64_30 + "|2^x", "lifetime"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:" + B64_30 + "|300:1", "does not fit"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:" + B64_30 + "|1:0", "bad MKI"),
        ]
        for line, message in cases:
            with self.assertRaisesRegex(CryptoError, message):
                parse_crypto(line)

    def test_choose_and_answer(self) -> None:
        """The strongest usable suite wins; garbage lines are skipped; the answer has our own key."""
        gcm = base64.b64encode(bytes(44)).decode()
        offered = [
            "1 AES_CM_128_HMAC_SHA1_32 inline:" + B64_30,
            "2 AES_CM_128_HMAC_SHA1_80 inline:" + B64_30,
            "3 garbage",
            "4 AEAD_AES_256_GCM inline:" + gcm,
        ]
        chosen = choose_crypto(offered)
        self.assertEqual((chosen.tag, chosen.suite), (4, "AEAD_AES_256_GCM"))
        self.assertEqual(choose_crypto(offered[:3]).tag, 2)
        self.assertIsNone(choose_crypto(["3 garbage", "5 F8_128_HMAC_SHA1_80 inline:" + B64_30]))
        answer = answer_crypto(chosen)
        self.assertEqual((answer.tag, answer.suite, len(answer.keys[0].key)), (4, "AEAD_AES_256_GCM", 44))
        self.assertNotEqual(answer.keys[0].key, chosen.keys[0].key)
        self.assertNotEqual(answer_crypto(chosen).keys[0].key, answer.keys[0].key)
        self.assertTrue(answer.value().startswith("4 AEAD_AES_256_GCM inline:"))
        self.assertRaises(CryptoError, answer_crypto, parse_crypto("5 F8_128_HMAC_SHA1_80 inline:" + B64_30))


class ReceiverTests(SynchronousTestCase):
    def test_every_suite_end_to_end(self) -> None:
        """For each suite: 50 packets protected by pylibsrtp come back byte for byte, RTCP too."""
        for name, suite in SUITES.items():
            key = os.urandom(suite.inline_length)
            tx = sender(name, key)
            line = f"1 {name} inline:{base64.b64encode(key).decode()}"
            rx = SrtpReceiver(SrtpKeys.from_crypto(parse_crypto(line)))
            for seq in range(50):
                plain = rtp(seq, os.urandom(160))
                protected = tx.protect(plain)
                self.assertNotEqual(protected[12:172], plain[12:], name)
                self.assertEqual(rx.unprotect(protected), plain, name)
            report = serialize(ReceiverReport(0xCAFE))
            self.assertEqual(parse_rtcp(rx.unprotect_rtcp(tx.protect_rtcp(report))), [ReceiverReport(0xCAFE)])
            self.assertEqual((rx.rtp_packets, rx.rtcp_packets, rx.auth_failures), (50, 1, 0), name)

    def test_auth_failures_counted_not_raised(self) -> None:
        """A flipped bit, a wrong key or random bytes are dropped and counted; good packets still pass."""
        tx = sender("AES_CM_128_HMAC_SHA1_80", KEY30)
        rx = SrtpReceiver(SrtpKeys("AES_CM_128_HMAC_SHA1_80", ((None, KEY30),)))
        tampered = bytearray(tx.protect(rtp(1)))
        tampered[30] ^= 0x01
        self.assertIsNone(rx.unprotect(bytes(tampered)))
        other = sender("AES_CM_128_HMAC_SHA1_80", bytes(30)).protect(rtp(2))
        self.assertIsNone(rx.unprotect(other))
        rng = np.random.default_rng(3711)
        for _ in range(200):
            self.assertIsNone(rx.unprotect(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()))
            self.assertIsNone(rx.unprotect_rtcp(rng.integers(0, 256, int(rng.integers(0, 60)), dtype=np.uint8).tobytes()))
        self.assertEqual(rx.unprotect(tx.protect(rtp(3))), rtp(3))
        self.assertGreaterEqual(rx.auth_failures, 2)
        self.assertEqual(rx.rtp_packets, 1)

    def test_replays_counted_apart(self) -> None:
        """A packet received twice is a replay (a network duplicate), not an auth failure."""
        tx = sender("AES_CM_128_HMAC_SHA1_32", KEY30)
        rx = SrtpReceiver(SrtpKeys("AES_CM_128_HMAC_SHA1_32", ((None, KEY30),)))
        packet = tx.protect(rtp(7))
        self.assertEqual(rx.unprotect(packet), rtp(7))
        self.assertIsNone(rx.unprotect(packet))
        self.assertEqual((rx.replays, rx.auth_failures), (1, 0))

    def test_reordered_packets(self) -> None:
        """Packets arriving out of order within the replay window all decrypt."""
        tx = sender("AEAD_AES_128_GCM", bytes(28))
        rx = SrtpReceiver(SrtpKeys("AEAD_AES_128_GCM", ((None, bytes(28)),)))
        protected = [tx.protect(rtp(seq)) for seq in range(10)]
        order = [0, 2, 1, 3, 6, 4, 5, 9, 8, 7]
        self.assertEqual([parse_rtp(rx.unprotect(protected[i])).sequence for i in order], order)

    def test_mki_selects_key(self) -> None:
        """With MKIs, the MKI field before the tag picks the key and is removed."""
        key1, key2 = os.urandom(30), os.urandom(30)
        line = (
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(key1).decode()}|2^31|1:2;"
            f"inline:{base64.b64encode(key2).decode()}|2^31|2:2"
        )
        rx = SrtpReceiver(SrtpKeys.from_crypto(parse_crypto(line)))

        def with_mki(packet: bytes, mki: int, tag: int = 10) -> bytes:
            return packet[:-tag] + mki.to_bytes(2, "big") + packet[-tag:]

        self.assertEqual(rx.unprotect(with_mki(sender("AES_CM_128_HMAC_SHA1_80", key1).protect(rtp(1)), 1)), rtp(1))
        self.assertEqual(rx.unprotect(with_mki(sender("AES_CM_128_HMAC_SHA1_80", key2).protect(rtp(2)), 2)), rtp(2))
        self.assertIsNone(rx.unprotect(with_mki(sender("AES_CM_128_HMAC_SHA1_80", key2).protect(rtp(3)), 9)))
        self.assertEqual(rx.unknown_mki, 1)
        rtcp = sender("AES_CM_128_HMAC_SHA1_80", key1).protect_rtcp(serialize(ReceiverReport(1)))
        self.assertEqual(parse_rtcp(rx.unprotect_rtcp(with_mki(rtcp, 1))), [ReceiverReport(1)])
        self.assertIsNone(rx.unprotect(b"\x80"))

    def test_gcm_mki_at_the_end(self) -> None:
        """AEAD suites carry the MKI after the ciphertext (RFC 7714 section 8.1)."""
        key = os.urandom(28)
        rx = SrtpReceiver(SrtpKeys("AEAD_AES_128_GCM", ((5, key),), mki_length=1))
        self.assertEqual(rx.unprotect(sender("AEAD_AES_128_GCM", key).protect(rtp(1)) + b"\x05"), rtp(1))

    def test_bad_keys(self) -> None:
        self.assertRaises(CryptoError, SrtpReceiver, SrtpKeys("F8_128_HMAC_SHA1_80", ((None, KEY30),)))
        self.assertRaises(CryptoError, SrtpReceiver, SrtpKeys("AES_CM_128_HMAC_SHA1_80", ((None, bytes(10)),)))
        unusable = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64_30} UNENCRYPTED_SRTCP")
        self.assertRaises(CryptoError, SrtpKeys.from_crypto, unusable)

    def test_stats_plain_data(self) -> None:
        rx = SrtpReceiver(SrtpKeys("AES_CM_128_HMAC_SHA1_80", ((None, KEY30),)))
        self.assertEqual(rx.stats()["srtp_suite"], "AES_CM_128_HMAC_SHA1_80")


class NegotiateTests(SynchronousTestCase):
    def test_negotiate(self) -> None:
        """Keys for receiving come from the offer; the answer value carries the same tag and suite."""
        from siprec.media.srtp import negotiate_sdes

        keys, value = negotiate_sdes(["7 AES_CM_128_HMAC_SHA1_32 inline:" + B64_30])
        self.assertEqual(keys.keys, ((None, KEY30),))
        answer = parse_crypto(value)
        self.assertEqual((answer.tag, answer.suite), (7, "AES_CM_128_HMAC_SHA1_32"))
        self.assertIsNone(negotiate_sdes(["1 NULL_HMAC_SHA1_80 inline:" + B64_30]))

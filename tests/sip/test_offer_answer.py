"""Tests for siprec.sip.offer_answer: what a receive-only SRS answers, line by line."""

from __future__ import annotations

from typing import Dict, List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.spec import PayloadFormat
from siprec.sip.offer_answer import (
    OfferAnswerError,
    OfferStream,
    StreamPlan,
    acceptable,
    apply_answer,
    build_answer,
    build_offer,
    connection_for,
    make_origin,
    plan_answer,
    rejection_summary,
)
from siprec.sip.sdp import Origin, SdpParseError, SessionDescription, parse_sdp
from tests.sip.test_sdp import (
    ALL_INACTIVE,
    AVAYA_MULTI_CODEC,
    CISCO_TWO_SENDONLY,
    FIXTURES,
    HOLD_ZERO_ADDRESS,
    NO_DIRECTION,
    ORACLE_SINGLE,
    RFC7866_AUDIO_VIDEO,
    assert_strictly_valid,
    crlf,
    plausible_offer,
    plausible_sdp,
)

DECODABLE = {("PCMU", 8000), ("PCMA", 8000), ("G722", 8000), ("OPUS", 48000)}

PCMU = PayloadFormat(0, "PCMU", 8000)
PCMA = PayloadFormat(8, "PCMA", 8000)
G722 = PayloadFormat(9, "G722", 8000)
OUR_ADDRESS = "192.0.2.200"
ORIGIN = Origin("-", "8273", 1, "IN", "IP4", OUR_ADDRESS)
CRYPTO = "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"


def can_decode(fmt: PayloadFormat) -> bool:
    """The test decoder set: G.711 both laws, G.722 and Opus; not G.729."""
    return (fmt.encoding, fmt.clock_rate) in DECODABLE


def offer(media_lines: str, session_extra: str = "") -> SessionDescription:
    """An offer around some m= sections (LF text, CRLF on the wire)."""
    return parse_sdp(crlf("v=0\no=- 10 1 IN IP4 198.51.100.9\ns=-\nc=IN IP4 198.51.100.9\n"
                          "t=0 0\n" + session_extra + media_lines))


def answer_lines(sdp: SessionDescription, plans: List[StreamPlan],
                 ports: Dict[int, int], **kwargs) -> List[str]:
    """Build the answer, check it is strictly valid and round-trips, return its lines."""
    answer = build_answer(sdp, plans, ports, OUR_ADDRESS, ORIGIN, **kwargs)
    data = answer.to_bytes()
    return _checked_lines(data, answer)


def _checked_lines(data: bytes, value: SessionDescription) -> List[str]:
    assert parse_sdp(data) == value
    return data.decode().split("\r\n")[:-1]


class PlanTests(SynchronousTestCase):
    """plan_answer(): one decision per offered m= line."""

    def test_cisco_two_sendonly(self) -> None:
        """Both legs accepted with PCMU, telephone-event kept, answered recvonly."""
        sdp = parse_sdp(CISCO_TWO_SENDONLY)
        plans = plan_answer(sdp, can_decode)
        self.assertEqual(len(plans), 2)
        for index, (plan, port, label) in enumerate(zip(plans, (16384, 16386), "12")):
            self.assertEqual(plan.index, index)
            self.assertTrue(plan.accepted)
            self.assertIsNone(plan.reject_reason)
            self.assertEqual(plan.label, label)
            self.assertEqual(plan.codec, PCMU)
            self.assertEqual(plan.formats, (PCMU,))
            self.assertEqual(plan.telephone_event,
                             PayloadFormat(101, "TELEPHONE-EVENT", 8000, 1, "0-16"))
            self.assertEqual((plan.offered_direction, plan.answer_direction),
                             ("sendonly", "recvonly"))
            self.assertEqual(plan.remote_address, ("198.51.100.20", port))
            self.assertEqual((plan.proto, plan.ptime, plan.rtcp_mux, plan.crypto),
                             ("RTP/AVP", 20, False, ()))
            self.assertFalse(plan.on_hold)
            self.assertTrue(plan.receiving)
        self.assertTrue(acceptable(plans))

    def test_avaya_keeps_every_decodable_format(self) -> None:
        """Answered codec first, then the other decodable ones; G.729 left out."""
        (plan,) = plan_answer(parse_sdp(AVAYA_MULTI_CODEC), can_decode)
        self.assertEqual(plan.codec, PCMU)
        self.assertEqual(plan.formats, (PCMU, PCMA))
        self.assertEqual(plan.telephone_event.payload_type, 101)
        self.assertEqual(plan.telephone_event.fmtp, "0-15")
        self.assertEqual(plan.label, "10")

    def test_codec_is_first_decodable_in_offer_order(self) -> None:
        """The offerer's preference order decides among what we can decode."""
        cases = [("8 0 9", PCMA, (PCMA, PCMU, G722)),
                 ("18 9 0", G722, (G722, PCMU)),
                 ("0 8", PCMU, (PCMU, PCMA))]
        for formats, codec, decodable in cases:
            (plan,) = plan_answer(offer(f"m=audio 4000 RTP/AVP {formats}\na=sendonly\n"),
                                  can_decode)
            self.assertEqual(plan.codec, codec, formats)
            self.assertEqual(plan.formats, decodable, formats)

    def test_telephone_event_matching_clock_preferred(self) -> None:
        """Opus offers TE at 48 kHz and 8 kHz: the 48 kHz one goes with Opus."""
        sdp = offer("m=audio 4000 RTP/AVP 111 0 101 110\na=rtpmap:111 opus/48000/2\n"
                    "a=fmtp:111 useinbandfec=1\na=rtpmap:101 telephone-event/8000\n"
                    "a=rtpmap:110 telephone-event/48000\na=sendonly\n")
        (plan,) = plan_answer(sdp, can_decode)
        self.assertEqual(plan.codec, PayloadFormat(111, "OPUS", 48000, 2, "useinbandfec=1"))
        self.assertEqual(plan.telephone_event.payload_type, 110)
        (plan,) = plan_answer(sdp, lambda f: f.encoding == "PCMU")
        self.assertEqual(plan.telephone_event.payload_type, 101)

    def test_telephone_event_without_clock_match_falls_back(self) -> None:
        """With no TE at the codec's clock, the first offered one is kept."""
        sdp = offer("m=audio 4000 RTP/AVP 0 110\na=rtpmap:110 telephone-event/48000\n")
        (plan,) = plan_answer(sdp, can_decode)
        self.assertEqual(plan.telephone_event.payload_type, 110)

    def test_no_telephone_event_offered(self) -> None:
        (plan,) = plan_answer(parse_sdp(ORACLE_SINGLE), can_decode)
        self.assertIsNone(plan.telephone_event)

    def test_comfort_noise_is_never_the_codec(self) -> None:
        """CN is carried along when decodable, but never answered as the codec."""
        sdp = offer("m=audio 4000 RTP/AVP 13 0\na=sendonly\n")
        (plan,) = plan_answer(sdp, lambda f: f.encoding in ("CN", "PCMU"))
        self.assertEqual(plan.codec, PCMU)
        self.assertEqual([f.encoding for f in plan.formats], ["PCMU", "CN"])
        (plan,) = plan_answer(offer("m=audio 4000 RTP/AVP 13\n"), lambda f: True)
        self.assertFalse(plan.accepted)

    def test_every_stream_inactive_is_still_accepted(self) -> None:
        """An inactive offer is answered inactive but accepted, so it can resume."""
        plans = plan_answer(parse_sdp(ALL_INACTIVE), can_decode)
        self.assertEqual([(p.accepted, p.offered_direction, p.answer_direction)
                          for p in plans], [(True, "inactive", "inactive")] * 2)
        self.assertTrue(all(p.on_hold and not p.receiving for p in plans))
        self.assertEqual(plans[0].remote_address, ("10.20.30.2", 17000))
        self.assertTrue(acceptable(plans))

    def test_direction_mapping(self) -> None:
        """sendonly/sendrecv -> recvonly; recvonly/inactive -> inactive."""
        for offered, expected in (("sendonly", "recvonly"), ("sendrecv", "recvonly"),
                                  ("recvonly", "inactive"), ("inactive", "inactive")):
            (plan,) = plan_answer(offer(f"m=audio 4000 RTP/AVP 0\na={offered}\n"), can_decode)
            self.assertEqual((plan.offered_direction, plan.answer_direction),
                             (offered, expected))

    def test_no_direction_is_sendrecv(self) -> None:
        (plan,) = plan_answer(parse_sdp(NO_DIRECTION), can_decode)
        self.assertEqual((plan.offered_direction, plan.answer_direction),
                         ("sendrecv", "recvonly"))
        self.assertEqual(plan.codec, PCMA)

    def test_session_level_direction(self) -> None:
        """A session-level a=inactive applies to m-lines without their own."""
        plans = plan_answer(offer("m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\n"
                                  "a=sendonly\n", session_extra="a=inactive\n"), can_decode)
        self.assertEqual([p.answer_direction for p in plans], ["inactive", "recvonly"])

    def test_hold_with_zero_address(self) -> None:
        """c=0.0.0.0: accepted, no remote address, flagged on hold."""
        held, live = plan_answer(parse_sdp(HOLD_ZERO_ADDRESS), can_decode)
        self.assertTrue(held.accepted)
        self.assertIsNone(held.remote_address)
        self.assertTrue(held.on_hold)
        self.assertEqual(held.answer_direction, "recvonly")
        self.assertEqual(live.remote_address, ("192.0.2.9", 40002))
        self.assertFalse(live.on_hold)

    def test_video_rejected(self) -> None:
        """RFC 7866 example: audio accepted, video refused, order kept."""
        plans = plan_answer(parse_sdp(RFC7866_AUDIO_VIDEO), can_decode)
        self.assertEqual([(p.media, p.accepted, p.label) for p in plans], [
            ("audio", True, "96"), ("video", False, "97"),
            ("audio", True, "98"), ("video", False, "99")])
        self.assertIn("video", plans[1].reject_reason)
        self.assertIsNone(plans[1].codec)
        self.assertEqual(plans[1].formats, ())

    def test_other_media_rejected_without_asking_decoder(self) -> None:
        """application/image m-lines never reach can_decode."""
        asked: List[PayloadFormat] = []

        def recording_decoder(fmt: PayloadFormat) -> bool:
            asked.append(fmt)
            return True
        plans = plan_answer(offer("m=image 4000 udptl t38\nm=application 4002 RTP/AVP 0\n"
                                  "m=video 4004 RTP/AVP 31\n"), recording_decoder)
        self.assertEqual([p.accepted for p in plans], [False] * 3)
        self.assertEqual(asked, [])
        self.assertFalse(acceptable(plans))

    def test_port_zero_rejected(self) -> None:
        (plan,) = plan_answer(offer("m=audio 0 RTP/AVP 0\n"), can_decode)
        self.assertFalse(plan.accepted)
        self.assertIn("port 0", plan.reject_reason)
        self.assertIsNone(plan.remote_address)

    def test_srtp_rejected_when_disabled(self) -> None:
        """RTP/SAVP with SRTP off: refused, and the reason says why."""
        sdp = offer(f"m=audio 4000 RTP/SAVP 0\na=crypto:{CRYPTO}\na=sendonly\n"
                    f"m=audio 4002 RTP/SAVPF 0\na=crypto:{CRYPTO}\na=sendonly\n")
        plans = plan_answer(sdp, can_decode)
        self.assertEqual([p.accepted for p in plans], [False, False])
        for plan in plans:
            self.assertIn("SRTP is disabled", plan.reject_reason)
        self.assertFalse(acceptable(plans))

    def test_srtp_accepted_when_enabled(self) -> None:
        """With accept_savp the SDES keys are handed over raw."""
        sdp = offer(f"m=audio 4000 RTP/SAVP 0\na=crypto:{CRYPTO}\na=sendonly\n")
        (plan,) = plan_answer(sdp, can_decode, accept_savp=True)
        self.assertTrue(plan.accepted)
        self.assertEqual((plan.proto, plan.crypto), ("RTP/SAVP", (CRYPTO,)))

    def test_srtp_without_sdes_keys_rejected(self) -> None:
        (plan,) = plan_answer(offer("m=audio 4000 RTP/SAVP 0\n"), can_decode, accept_savp=True)
        self.assertFalse(plan.accepted)
        self.assertIn("a=crypto", plan.reject_reason)

    def test_dtls_and_unknown_transports_rejected(self) -> None:
        plans = plan_answer(offer("m=audio 4000 UDP/TLS/RTP/SAVPF 0\n"
                                  "m=audio 4002 TCP/RTP/AVP 0\n"), can_decode, accept_savp=True)
        self.assertIn("DTLS", plans[0].reject_reason)
        self.assertIn("TCP/RTP/AVP", plans[1].reject_reason)

    def test_no_decodable_codec_names_offered_codecs(self) -> None:
        """G.729 only: refused, 488, and the reason lists what was offered."""
        sdp = offer("m=audio 4000 RTP/AVP 18 101 97\na=rtpmap:101 telephone-event/8000\n"
                    "a=sendonly\n")
        plans = plan_answer(sdp, can_decode)
        self.assertFalse(plans[0].accepted)
        self.assertIn("G729/8000", plans[0].reject_reason)
        self.assertIn("TELEPHONE-EVENT/8000", plans[0].reject_reason)
        self.assertIn("unmapped payload types 97", plans[0].reject_reason)
        self.assertFalse(acceptable(plans))
        self.assertIn("m-line 0 (audio)", rejection_summary(plans))

    def test_one_good_stream_is_enough(self) -> None:
        """acceptable() is true as soon as one audio stream is accepted."""
        plans = plan_answer(offer("m=audio 4000 RTP/AVP 18\nm=audio 4002 RTP/AVP 8\n"),
                            can_decode)
        self.assertEqual([p.accepted for p in plans], [False, True])
        self.assertTrue(acceptable(plans))
        self.assertFalse(acceptable([]))

    def test_rtcp_mux_and_ptime(self) -> None:
        (plan,) = plan_answer(offer("m=audio 4000 RTP/AVP 0\na=rtcp-mux\na=ptime:30\n"),
                              can_decode)
        self.assertEqual((plan.rtcp_mux, plan.ptime), (True, 30))

    def test_max_streams(self) -> None:
        """Beyond max_streams accepted audio streams, the rest are refused."""
        sdp = offer("".join(f"m=audio {4000 + 2 * i} RTP/AVP 0\n" for i in range(4)))
        plans = plan_answer(sdp, can_decode, max_streams=2)
        self.assertEqual([p.accepted for p in plans], [True, True, False, False])
        self.assertIn("more than 2", plans[2].reject_reason)
        self.assertEqual(len(plan_answer(sdp, can_decode)), 4)


class BuildAnswerTests(SynchronousTestCase):
    """build_answer(): the answer SDP, compared line by line."""

    def test_cisco_answer(self) -> None:
        sdp = parse_sdp(CISCO_TWO_SENDONLY)
        lines = answer_lines(sdp, plan_answer(sdp, can_decode), {0: 30000, 1: 30002})
        self.assertEqual(lines, [
            "v=0",
            "o=- 8273 1 IN IP4 192.0.2.200",
            "s=siprec",
            "c=IN IP4 192.0.2.200",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=label:1",
            "a=recvonly",
            "a=ptime:20",
            "m=audio 30002 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=label:2",
            "a=recvonly",
            "a=ptime:20",
        ])

    def test_avaya_answer_picks_one_codec(self) -> None:
        """Only the answered codec and telephone-event go on the m= line."""
        sdp = parse_sdp(AVAYA_MULTI_CODEC)
        lines = answer_lines(sdp, plan_answer(sdp, can_decode), {0: 30010},
                             session_name="-")
        self.assertEqual(lines[2], "s=-")
        self.assertEqual(lines[5:], [
            "m=audio 30010 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=label:10",
            "a=recvonly",
        ])

    def test_rejected_streams_keep_place_and_formats(self) -> None:
        """RFC 7866 example: four m-lines back, video at port 0 with its formats."""
        sdp = parse_sdp(RFC7866_AUDIO_VIDEO)
        plans = plan_answer(sdp, can_decode)
        lines = answer_lines(sdp, plans, {0: 30020, 2: 30022})
        m_lines = [line for line in lines if line.startswith("m=")]
        self.assertEqual(m_lines, ["m=audio 30020 RTP/AVP 0", "m=video 0 RTP/AVPF 96",
                                   "m=audio 30022 RTP/AVP 0", "m=video 0 RTP/AVPF 96"])
        video = lines.index("m=video 0 RTP/AVPF 96")
        self.assertTrue(lines[video + 1].startswith("m=audio"), "rejected stream has no a=")
        self.assertEqual([line for line in lines if line.startswith("a=label")],
                         ["a=label:96", "a=label:98"])

    def test_inactive_answer(self) -> None:
        """Inactive offers get ports and a=inactive; CN is not answered."""
        sdp = parse_sdp(ALL_INACTIVE)
        lines = answer_lines(sdp, plan_answer(sdp, can_decode), {0: 30030, 1: 30032})
        self.assertIn("m=audio 30030 RTP/AVP 0 101", lines)
        self.assertIn("m=audio 30032 RTP/AVP 0 101", lines)
        self.assertEqual(lines.count("a=inactive"), 2)
        self.assertNotIn("a=recvonly", lines)
        self.assertFalse(any("CN" in line for line in lines))

    def test_static_type_gets_rtpmap(self) -> None:
        """Even without an offered rtpmap, the answer spells out the codec."""
        sdp = parse_sdp(NO_DIRECTION)
        lines = answer_lines(sdp, plan_answer(sdp, can_decode), {0: 30040})
        self.assertEqual(lines[5:], ["m=audio 30040 RTP/AVP 8", "a=rtpmap:8 PCMA/8000",
                                     "a=label:main", "a=recvonly"])

    def test_opus_spelling_and_fmtp_echoed(self) -> None:
        sdp = offer("m=audio 4000 RTP/AVP 111 101\na=rtpmap:111 opus/48000/2\n"
                    "a=fmtp:111 useinbandfec=1\na=rtpmap:101 telephone-event/48000\n"
                    "a=rtcp-mux\na=sendonly\n")
        lines = answer_lines(sdp, plan_answer(sdp, can_decode), {0: 30050})
        self.assertEqual(lines[5:], ["m=audio 30050 RTP/AVP 111 101",
                                     "a=rtpmap:111 opus/48000/2", "a=fmtp:111 useinbandfec=1",
                                     "a=rtpmap:101 telephone-event/48000",
                                     "a=recvonly", "a=rtcp-mux"])

    def test_srtp_disabled_never_answered_as_rtp(self) -> None:
        sdp = offer(f"m=audio 4000 RTP/SAVP 0 101\na=crypto:{CRYPTO}\na=sendonly\n"
                    "m=audio 4002 RTP/AVP 0\na=sendonly\n")
        lines = answer_lines(sdp, plan_answer(sdp, can_decode), {1: 30060})
        self.assertIn("m=audio 0 RTP/SAVP 0 101", lines)
        self.assertIn("m=audio 30060 RTP/AVP 0", lines)
        self.assertFalse(any(line.startswith("a=crypto") for line in lines))

    def test_srtp_answer_needs_crypto_from_caller(self) -> None:
        """Accepted SAVP needs our a=crypto (the SRTP layer's key) to be valid."""
        sdp = offer(f"m=audio 4000 RTP/SAVP 0\na=crypto:{CRYPTO}\na=sendonly\n")
        plans = plan_answer(sdp, can_decode, accept_savp=True)
        error = self.assertRaises(ValueError, build_answer, sdp, plans, {0: 30070},
                                  OUR_ADDRESS, ORIGIN)
        self.assertIn("a=crypto", str(error))
        ours = "1 AES_CM_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw"
        lines = answer_lines(sdp, plans, {0: 30070},
                             extra_attributes={0: [("crypto", ours)]})
        self.assertEqual(lines[5:], ["m=audio 30070 RTP/SAVP 0", "a=rtpmap:0 PCMU/8000",
                                     "a=recvonly", f"a=crypto:{ours}"])

    def test_ipv6_address(self) -> None:
        sdp = parse_sdp(ORACLE_SINGLE)
        origin = make_origin("2001:db8::5", 77, 3)
        answer = build_answer(sdp, plan_answer(sdp, can_decode), {0: 30080},
                              "[2001:db8::5]", origin)
        data = answer.to_bytes()
        assert_strictly_valid(self, data)
        self.assertIn(b"\r\no=- 77 3 IN IP6 2001:db8::5\r\n", data)
        self.assertIn(b"\r\nc=IN IP6 2001:db8::5\r\n", data)

    def test_address_kinds(self) -> None:
        self.assertEqual(connection_for("10.0.0.1").addrtype, "IP4")
        self.assertEqual(connection_for("::1").addrtype, "IP6")
        self.assertEqual(connection_for("srs.example.com").to_value(),
                         "IN IP4 srs.example.com")

    def test_every_answer_strictly_valid(self) -> None:
        """Answers to every fixture pass the strict RFC 4566 check."""
        for name, data in FIXTURES.items():
            sdp = parse_sdp(data)
            plans = plan_answer(sdp, can_decode)
            ports = {p.index: 31000 + 2 * p.index for p in plans if p.accepted}
            answer = build_answer(sdp, plans, ports, OUR_ADDRESS, ORIGIN)
            assert_strictly_valid(self, answer.to_bytes())
            self.assertEqual(len(answer.media), len(sdp.media), name)
            for plan, media in zip(plans, answer.media):
                self.assertEqual(media.port, ports.get(plan.index, 0), name)
                self.assertEqual(media.proto, sdp.media[plan.index].proto, name)

    def test_caller_mistakes(self) -> None:
        """Wrong plan count, missing or bad port, non-numeric origin: ValueError."""
        sdp = parse_sdp(CISCO_TWO_SENDONLY)
        plans = plan_answer(sdp, can_decode)
        ports = {0: 30000, 1: 30002}
        self.assertRaises(ValueError, build_answer, sdp, plans[:1], ports, OUR_ADDRESS, ORIGIN)
        self.assertRaises(ValueError, build_answer, sdp, plans[::-1], ports,
                          OUR_ADDRESS, ORIGIN)
        self.assertIn("m-line 1", str(self.assertRaises(
            ValueError, build_answer, sdp, plans, {0: 30000}, OUR_ADDRESS, ORIGIN)))
        self.assertRaises(ValueError, build_answer, sdp, plans, {0: 0, 1: 2},
                          OUR_ADDRESS, ORIGIN)
        self.assertRaises(ValueError, build_answer, sdp, plans, ports, OUR_ADDRESS,
                          Origin("-", "abc", 1, "IN", "IP4", OUR_ADDRESS))

    def test_new_version_per_answer(self) -> None:
        """The caller's bumped origin is what the answer carries."""
        sdp = parse_sdp(ORACLE_SINGLE)
        plans = plan_answer(sdp, can_decode)
        first = build_answer(sdp, plans, {0: 30000}, OUR_ADDRESS, ORIGIN)
        second = build_answer(sdp, plans, {0: 30000}, OUR_ADDRESS, ORIGIN.bumped())
        self.assertEqual(second.origin.session_version, first.origin.session_version + 1)
        self.assertEqual(second.origin.session_id, first.origin.session_id)


class OfferTests(SynchronousTestCase):
    """build_offer() for a re-INVITE without SDP, then apply_answer() on the ACK."""

    streams = [OfferStream("1", 30100, [PCMU, PCMA],
                           PayloadFormat(101, "TELEPHONE-EVENT", 8000, 1, "0-16")),
               OfferStream("2", 30102, [PCMU], None)]

    def our_offer(self) -> SessionDescription:
        return build_offer(self.streams, OUR_ADDRESS, ORIGIN)

    def test_offer_lines(self) -> None:
        lines = _checked_lines(self.our_offer().to_bytes(), self.our_offer())
        assert_strictly_valid(self, self.our_offer().to_bytes())
        self.assertEqual(lines[5:], [
            "m=audio 30100 RTP/AVP 0 8 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=label:1",
            "a=recvonly",
            "m=audio 30102 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
            "a=label:2",
            "a=recvonly",
        ])

    def test_plain_tuples_accepted(self) -> None:
        """streams may be plain (label, port, formats, telephone_event) tuples."""
        plain = [tuple(s) for s in self.streams]
        self.assertEqual(build_offer(plain, OUR_ADDRESS, ORIGIN), self.our_offer())

    def test_offer_mistakes(self) -> None:
        self.assertRaises(ValueError, build_offer, [(None, 30100, [], None)],
                          OUR_ADDRESS, ORIGIN)
        self.assertRaises(ValueError, build_offer, [(None, 0, [PCMU], None)],
                          OUR_ADDRESS, ORIGIN)
        self.assertRaises(ValueError, build_offer, [(None, 30100, [PCMU, PCMU], None)],
                          OUR_ADDRESS, ORIGIN)

    def src_answer(self, media: str) -> SessionDescription:
        return parse_sdp(crlf("v=0\no=SRC 5 6 IN IP4 198.51.100.30\ns=-\n"
                              "c=IN IP4 198.51.100.30\nt=0 0\n" + media))

    def test_apply_sendonly_answer(self) -> None:
        """The SRC sends: we receive, with the codec it chose first."""
        answer = self.src_answer("m=audio 42000 RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\n"
                                 "a=rtpmap:101 telephone-event/8000\na=sendonly\n"
                                 "m=audio 42002 RTP/AVP 0\na=sendonly\n")
        first, second = apply_answer(self.our_offer(), answer)
        self.assertTrue(first.accepted)
        self.assertEqual((first.codec, first.formats), (PCMA, (PCMA,)))
        self.assertEqual(first.telephone_event.payload_type, 101)
        self.assertEqual(first.telephone_event.fmtp, "0-16")  # from our offer
        self.assertEqual((first.offered_direction, first.answer_direction),
                         ("sendonly", "recvonly"))
        self.assertEqual(first.remote_address, ("198.51.100.30", 42000))
        self.assertEqual(first.label, "1")
        self.assertEqual((second.codec, second.label), (PCMU, "2"))

    def test_apply_inactive_and_rejected(self) -> None:
        """Inactive answers pause the stream; port 0 rejects it."""
        answer = self.src_answer("m=audio 42000 RTP/AVP 0\na=inactive\n"
                                 "m=audio 0 RTP/AVP 0\n")
        held, rejected = apply_answer(self.our_offer(), answer)
        self.assertEqual((held.accepted, held.answer_direction), (True, "inactive"))
        self.assertFalse(rejected.accepted)
        self.assertIn("port 0", rejected.reject_reason)

    def test_apply_answer_with_unoffered_codec(self) -> None:
        answer = self.src_answer("m=audio 42000 RTP/AVP 18\na=sendonly\n"
                                 "m=audio 42002 RTP/SAVP 0\na=sendonly\n")
        wrong_codec, wrong_proto = apply_answer(self.our_offer(), answer)
        self.assertFalse(wrong_codec.accepted)
        self.assertIn("no codec", wrong_codec.reject_reason)
        self.assertFalse(wrong_proto.accepted)
        self.assertIn("RTP/SAVP", wrong_proto.reject_reason)

    def test_apply_answer_shape_mismatch(self) -> None:
        """A different m-line count or media type is not an answer to our offer."""
        self.assertRaises(OfferAnswerError, apply_answer, self.our_offer(),
                          self.src_answer("m=audio 42000 RTP/AVP 0\n"))
        self.assertRaises(OfferAnswerError, apply_answer, self.our_offer(),
                          self.src_answer("m=audio 42000 RTP/AVP 0\nm=video 42002 RTP/AVP 31\n"))


class PropertyTests(SynchronousTestCase):
    """For any offer the parser accepts, planning and answering hold their promises."""

    @settings(max_examples=400, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(st.one_of(plausible_offer(), plausible_sdp()))
    def test_answer_to_any_offer(self, body: str) -> None:
        try:
            sdp = parse_sdp(body.encode("utf-8"))
        except SdpParseError:
            return
        for accept_savp in (False, True):
            plans = plan_answer(sdp, can_decode, accept_savp=accept_savp)
            self.assertEqual([p.index for p in plans], list(range(len(sdp.media))))
            ports = {p.index: 20000 + 2 * p.index for p in plans if p.accepted}
            extras = {p.index: [("crypto", "1 AES_CM_128_HMAC_SHA1_80 inline:QUJD")]
                      for p in plans if p.accepted and "SAVP" in p.proto}
            answer = build_answer(sdp, plans, ports, OUR_ADDRESS, ORIGIN,
                                  extra_attributes=extras)
            data = answer.to_bytes()
            assert_strictly_valid(self, data)
            self.assertEqual(parse_sdp(data), answer)
            self.assertEqual(len(answer.media), len(sdp.media))
            for plan, offered, answered in zip(plans, sdp.media, answer.media):
                self.assertEqual(answered.proto, offered.proto)
                self.assertEqual(answered.media, offered.media)
                if not plan.accepted:
                    self.assertEqual(answered.port, 0)
                    self.assertIsNotNone(plan.reject_reason)
                    continue
                self.assertEqual(plan.media.lower(), "audio")
                self.assertTrue(can_decode(plan.codec))
                self.assertEqual(plan.formats[0], plan.codec)
                self.assertEqual(answered.formats[0], str(plan.codec.payload_type))
                self.assertIn(answered.direction(answer), ("recvonly", "inactive"))
                self.assertEqual(answered.label, offered.label)
                if not accept_savp:
                    self.assertNotIn("SAVP", plan.proto)
            self.assertEqual(acceptable(plans), any(p.accepted for p in plans))

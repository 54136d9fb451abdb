"""Tests for siprec.sip.sdp: vendor-style offers, round trips, hostile input.

The SDP fixtures below are written for this project after the quirks seen in
captured SRC traffic (Cisco CUBE, Oracle/Acme, Avaya SBCE, Sonus/Ribbon and
the RFC 7866 example); addresses, ports and ids are our own.
"""

from __future__ import annotations

import re
from typing import List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from siprec.media.spec import PayloadFormat
from siprec.sip.sdp import (
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    SdpParseError,
    SessionDescription,
    Timing,
    parse_sdp,
    parse_sdp_with_tolerances,
)


def crlf(text: str) -> bytes:
    """Fixture text (LF, indented-free) to wire bytes with CRLF line ends."""
    return text.replace("\n", "\r\n").encode("utf-8")


# Cisco CUBE style: session and media c=, two sendonly streams, telephone-event.
CISCO_TWO_SENDONLY = crlf("""\
v=0
o=CiscoSystemsSIP-GW-UserAgent 4411 2093 IN IP4 198.51.100.20
s=SIP Call
c=IN IP4 198.51.100.20
t=0 0
m=audio 16384 RTP/AVP 0 101
c=IN IP4 198.51.100.20
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendonly
a=label:1
m=audio 16386 RTP/AVP 0 101
c=IN IP4 198.51.100.20
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendonly
a=label:2
""")

# Oracle/Acme style: s=-, session-level c= only, big numeric labels, maxptime.
ORACLE_SINGLE = crlf("""\
v=0
o=- 31337 700001 IN IP4 192.0.2.40
s=-
c=IN IP4 192.0.2.40
t=0 0
m=audio 20200 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:33554433
a=sendonly
""")

ORACLE_TWO = crlf("""\
v=0
o=- 31338 700002 IN IP4 192.0.2.40
s=-
c=IN IP4 192.0.2.40
t=0 0
m=audio 20202 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:33554435
a=sendonly
m=audio 20206 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=maxptime:150
a=label:33554436
a=sendonly
""")

# Avaya SBCE style: one stream offering PCMU, PCMA, G729 and telephone-event.
AVAYA_MULTI_CODEC = crlf("""\
v=0
o=- 5150 1 IN IP4 203.0.113.7
s=Session
c=IN IP4 203.0.113.7
t=0 0
m=audio 31000 RTP/AVP 0 8 18 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=label:10
a=sendonly
""")

# Cisco's initial offer with every stream inactive (and an old CN mapping on 19).
ALL_INACTIVE = crlf("""\
v=0
o=CiscoSystemsSIP-GW-UserAgent 8120 3301 IN IP4 10.20.30.2
s=SIP Call
c=IN IP4 10.20.30.2
t=0 0
m=audio 17000 RTP/AVP 0 101 19
c=IN IP4 10.20.30.2
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:19 CN/8000
a=ptime:20
a=inactive
a=label:1
m=audio 17002 RTP/AVP 0 101 19
c=IN IP4 10.20.30.2
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:19 CN/8000
a=ptime:20
a=inactive
a=label:2
""")

# RFC 7866 §12 style: two audio and two video streams from one SRC.
RFC7866_AUDIO_VIDEO = crlf("""\
v=0
o=SRC 2890844526 2890844526 IN IP4 src.example.com
s=-
c=IN IP4 198.51.100.1
t=0 0
m=audio 49170 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:96
a=sendonly
m=video 49174 RTP/AVPF 96
a=rtpmap:96 H264/90000
a=label:97
a=sendonly
m=audio 51372 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:98
a=sendonly
m=video 49176 RTP/AVPF 96
a=rtpmap:96 H264/90000
a=label:99
a=sendonly
""")

# Hold the RFC 2543 way: c=0.0.0.0 on the held leg.
HOLD_ZERO_ADDRESS = crlf("""\
v=0
o=- 77 3 IN IP4 192.0.2.9
s=-
c=IN IP4 192.0.2.9
t=0 0
m=audio 40000 RTP/AVP 8
c=IN IP4 0.0.0.0
a=rtpmap:8 PCMA/8000
a=label:a-leg
a=sendonly
m=audio 40002 RTP/AVP 8
a=rtpmap:8 PCMA/8000
a=label:b-leg
a=sendonly
""")

# No direction attribute anywhere: sendrecv by default.
NO_DIRECTION = crlf("""\
v=0
o=- 1 1 IN IP4 192.0.2.50
s=-
c=IN IP4 192.0.2.50
t=0 0
m=audio 22000 RTP/AVP 8 0
a=label:main
""")

# Sonus/Ribbon style, as an LF-only body: c= only per m-line, a=label first.
SONUS_LF_ONLY = b"""\
v=0
o=Sonus_UAC 440012 770013 IN IP4 172.16.5.10
s=SIP Media Capabilities
t=0 0
m=audio 48000 RTP/AVP 0
c=IN IP4 172.16.5.11
a=label:1
a=rtpmap:0 PCMU/8000
a=sendonly
a=maxptime:20
m=audio 48002 RTP/AVP 0
c=IN IP4 172.16.5.11
a=label:2
a=rtpmap:0 PCMU/8000
a=sendonly
a=maxptime:20
"""

FIXTURES = {
    "cisco": CISCO_TWO_SENDONLY,
    "oracle_single": ORACLE_SINGLE,
    "oracle_two": ORACLE_TWO,
    "avaya": AVAYA_MULTI_CODEC,
    "inactive": ALL_INACTIVE,
    "rfc7866": RFC7866_AUDIO_VIDEO,
    "hold": HOLD_ZERO_ADDRESS,
    "no_direction": NO_DIRECTION,
    "sonus_lf": SONUS_LF_ONLY,
}

PCMU = PayloadFormat(0, "PCMU", 8000)
PCMA = PayloadFormat(8, "PCMA", 8000)
G729 = PayloadFormat(18, "G729", 8000)


# ---------------------------------------------------------------- strict checker

_ORDER_SESSION = "vosiuepcbtrzka"
_ORDER_MEDIA = "micbka"
_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_STRICT = {
    "v": re.compile(r"0"),
    "o": re.compile(rf"\S+ [0-9]+ [0-9]+ IN IP[46] \S+"),
    "s": re.compile(r"[^\r\n\x00]+"),
    "c": re.compile(r"IN IP4 [0-9.]+|IN IP6 [0-9a-fA-F:.]+|IN IP4 [A-Za-z0-9.-]+"),
    "t": re.compile(r"[0-9]+ [0-9]+"),
    "m": re.compile(rf"{_TOKEN} [0-9]+(/[0-9]+)? {_TOKEN}(/{_TOKEN})*( {_TOKEN})+"),
    "a": re.compile(rf"{_TOKEN}(:[^\r\n\x00]*)?"),
    "b": re.compile(rf"{_TOKEN}:[0-9]+"),
}


def assert_strictly_valid(test: SynchronousTestCase, data: bytes) -> None:
    """RFC 4566 §5 grammar and order, as strictly as we promise for our output."""
    test.assertTrue(data.endswith(b"\r\n"), data)
    text = data.decode("utf-8")
    lines = text[:-2].split("\r\n")
    test.assertNotIn("\n", "".join(lines))
    kinds = [line[0] for line in lines]
    test.assertEqual(kinds[:3], ["v", "o", "s"], lines)
    test.assertIn("t", kinds)
    first_m = kinds.index("m") if "m" in kinds else len(kinds)
    session_kinds, rank = kinds[:first_m], -1
    for kind in session_kinds:
        test.assertIn(kind, _ORDER_SESSION)
        test.assertGreaterEqual(_ORDER_SESSION.index(kind), rank, lines)
        rank = _ORDER_SESSION.index(kind)
    session_c = "c" in session_kinds
    sections: List[List[str]] = []
    for line in lines[first_m:]:
        if line[0] == "m":
            sections.append([])
        sections[-1].append(line)
    for section in sections:
        rank = -1
        for line in section:
            test.assertIn(line[0], _ORDER_MEDIA)
            test.assertGreaterEqual(_ORDER_MEDIA.index(line[0]), rank, section)
            rank = _ORDER_MEDIA.index(line[0])
        test.assertTrue(session_c or any(line.startswith("c=") for line in section),
                        f"no c= for {section[0]}")
    for line in lines:
        test.assertEqual(line[1], "=", line)
        pattern = _STRICT.get(line[0])
        if pattern is not None:
            test.assertIsNotNone(pattern.fullmatch(line[2:]), f"not RFC 4566: {line!r}")


# ---------------------------------------------------------------- vendor fixtures


class VendorFixtureTests(SynchronousTestCase):
    """Each vendor-style offer parses into what the SDP says."""

    def test_cisco_two_sendonly_streams(self) -> None:
        """Two sendonly audio streams, each with PCMU and telephone-event."""
        sdp = parse_sdp(CISCO_TWO_SENDONLY)
        self.assertEqual(sdp.origin, Origin("CiscoSystemsSIP-GW-UserAgent", "4411", 2093,
                                            "IN", "IP4", "198.51.100.20"))
        self.assertEqual(sdp.session_name, "SIP Call")
        self.assertEqual([m.label for m in sdp.media], ["1", "2"])
        self.assertEqual([m.port for m in sdp.media], [16384, 16386])
        for media in sdp.media:
            self.assertEqual(media.direction(sdp), "sendonly")
            self.assertEqual(media.ptime, 20)
            self.assertEqual(media.rtpmaps(), {
                0: PCMU,
                101: PayloadFormat(101, "TELEPHONE-EVENT", 8000, 1, "0-16"),
            })
            self.assertTrue(media.rtpmaps()[101].is_telephone_event)
            self.assertEqual(media.connection, Connection("IN", "IP4", "198.51.100.20"))

    def test_oracle_single_stream_uses_session_connection(self) -> None:
        """Oracle puts c= at session level only; media falls back to it."""
        sdp = parse_sdp(ORACLE_SINGLE)
        (media,) = sdp.media
        self.assertIsNone(media.connection)
        self.assertEqual(media.effective_connection(sdp).host, "192.0.2.40")
        self.assertEqual(media.label, "33554433")
        self.assertEqual(sdp.session_name, "-")

    def test_oracle_two_streams(self) -> None:
        """Both streams and the maxptime on the second are kept."""
        sdp = parse_sdp(ORACLE_TWO)
        self.assertEqual([m.label for m in sdp.media], ["33554435", "33554436"])
        self.assertIsNone(sdp.media[0].attribute("maxptime"))
        self.assertEqual(sdp.media[1].attribute("maxptime"), "150")
        self.assertIsNone(sdp.media[1].ptime)

    def test_avaya_codec_list_in_offer_order(self) -> None:
        """rtpmaps() follows the m= order and attaches each fmtp to its type."""
        media = parse_sdp(AVAYA_MULTI_CODEC).media[0]
        maps = media.rtpmaps()
        self.assertEqual(list(maps), [0, 8, 18, 101])
        self.assertEqual(maps[18], PayloadFormat(18, "G729", 8000, 1, "annexb=no"))
        self.assertEqual(maps[101].fmtp, "0-15")
        self.assertEqual(media.label, "10")

    def test_every_stream_inactive(self) -> None:
        """Inactive streams read as inactive and as held."""
        sdp = parse_sdp(ALL_INACTIVE)
        self.assertEqual([m.direction(sdp) for m in sdp.media], ["inactive"] * 2)
        self.assertTrue(all(m.is_hold(sdp) for m in sdp.media))
        self.assertEqual(sdp.media[0].rtpmaps()[19], PayloadFormat(19, "CN", 8000))

    def test_rfc7866_audio_and_video(self) -> None:
        """Video m-lines are parsed like any other, in order."""
        sdp = parse_sdp(RFC7866_AUDIO_VIDEO)
        self.assertEqual([(m.media, m.proto, m.label) for m in sdp.media], [
            ("audio", "RTP/AVP", "96"), ("video", "RTP/AVPF", "97"),
            ("audio", "RTP/AVP", "98"), ("video", "RTP/AVPF", "99")])
        self.assertEqual(sdp.media[1].rtpmaps(), {96: PayloadFormat(96, "H264", 90000)})
        self.assertEqual(sdp.origin.address, "src.example.com")

    def test_hold_with_zero_address(self) -> None:
        """c=0.0.0.0 at media level holds that stream only."""
        sdp = parse_sdp(HOLD_ZERO_ADDRESS)
        held, live = sdp.media
        self.assertTrue(held.effective_connection(sdp).is_unspecified)
        self.assertTrue(held.is_hold(sdp))
        self.assertFalse(live.is_hold(sdp))
        self.assertEqual(held.direction(sdp), "sendonly")

    def test_no_direction_means_sendrecv(self) -> None:
        """Without any direction attribute the stream is sendrecv."""
        sdp = parse_sdp(NO_DIRECTION)
        self.assertIsNone(sdp.direction)
        self.assertIsNone(sdp.media[0].own_direction)
        self.assertEqual(sdp.media[0].direction(sdp), "sendrecv")
        self.assertEqual(sdp.media[0].direction(), "sendrecv")
        self.assertEqual(list(sdp.media[0].rtpmaps()), [8, 0])

    def test_lf_only_body(self) -> None:
        """Bare LF line ends parse the same as CRLF."""
        lf = parse_sdp(SONUS_LF_ONLY)
        self.assertEqual(lf, parse_sdp(SONUS_LF_ONLY.replace(b"\n", b"\r\n")))
        self.assertEqual([m.label for m in lf.media], ["1", "2"])
        self.assertEqual(lf.media[0].connection.host, "172.16.5.11")
        self.assertIsNone(lf.connection)

    def test_str_input(self) -> None:
        """A str body parses like its UTF-8 bytes."""
        self.assertEqual(parse_sdp(AVAYA_MULTI_CODEC.decode()), parse_sdp(AVAYA_MULTI_CODEC))

    def test_str_with_lone_surrogate(self) -> None:
        """A str that could never have come off the wire is refused, not crashed on."""
        self.assertRaises(SdpParseError, parse_sdp, "v=0\no=- 1 1 IN IP4 x\ns=\ud800\n")

    def test_wrong_input_type(self) -> None:
        """Anything but bytes or str is a programming error, not a parse error."""
        self.assertRaises(TypeError, parse_sdp, 42)


# ---------------------------------------------------------------- helpers


def media_with(*attributes, formats=("0",), connections=()) -> MediaDescription:
    return MediaDescription("audio", 5000, "RTP/AVP", tuple(formats),
                            connections=tuple(connections), attributes=tuple(attributes))


def session_with(*media, attributes=(), connection=None) -> SessionDescription:
    return SessionDescription(origin=Origin("-", "1", 1, "IN", "IP4", "192.0.2.1"),
                              connection=connection, attributes=tuple(attributes),
                              media=tuple(media))


class RtpmapTests(SynchronousTestCase):
    """MediaDescription.rtpmaps(): explicit maps, static fallback, fmtp."""

    def test_static_types_without_rtpmap(self) -> None:
        """RFC 3551 static types are known without a=rtpmap."""
        maps = media_with(formats=("0", "3", "4", "8", "9", "13", "18")).rtpmaps()
        self.assertEqual({pt: (f.encoding, f.clock_rate) for pt, f in maps.items()}, {
            0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 8: ("PCMA", 8000),
            9: ("G722", 8000), 13: ("CN", 8000), 18: ("G729", 8000)})

    def test_g722_clock_is_8000(self) -> None:
        """G.722's RTP clock is 8000 even when the offer spells it out."""
        explicit = media_with(("rtpmap", "9 G722/8000"), formats=("9",)).rtpmaps()[9]
        self.assertEqual(explicit, media_with(formats=("9",)).rtpmaps()[9])
        self.assertEqual(explicit.clock_rate, 8000)

    def test_explicit_rtpmap_wins_and_is_upper_cased(self) -> None:
        """Encodings are upper-cased; channels are read; static map is overridden."""
        media = media_with(("rtpmap", "0 pcmu/8000"), ("rtpmap", "111 opus/48000/2"),
                           ("fmtp", "111 minptime=10;useinbandfec=1"),
                           formats=("111", "0"))
        self.assertEqual(media.rtpmaps(), {
            111: PayloadFormat(111, "OPUS", 48000, 2, "minptime=10;useinbandfec=1"),
            0: PCMU})

    def test_dynamic_type_without_rtpmap_is_left_out(self) -> None:
        """A dynamic type nobody described cannot be decoded, so it is not listed."""
        self.assertEqual(list(media_with(formats=("97", "0")).rtpmaps()), [0])

    def test_rtpmap_for_unlisted_type_ignored(self) -> None:
        """Only formats on the m= line count."""
        media = media_with(("rtpmap", "96 opus/48000/2"), formats=("0",))
        self.assertEqual(list(media.rtpmaps()), [0])

    def test_malformed_rtpmap_ignored(self) -> None:
        """A broken rtpmap does not break the description; static fallback applies."""
        for bad in ("8", "8 PCMA", "8 PCMA/abc", "x PCMA/8000", "8 /8000", "8 PCMA/0",
                    "200 PCMA/8000", "8 PCMA/8000/x", None):
            media = media_with(("rtpmap", bad), formats=("8", "96"))
            self.assertEqual(media.rtpmaps(), {8: PCMA}, bad)

    def test_non_numeric_formats_skipped(self) -> None:
        """Non-RTP formats (t38, *) have no payload type."""
        self.assertEqual(media_with(formats=("t38", "*", "0")).rtpmaps(), {0: PCMU})

    def test_raw_spelling_kept(self) -> None:
        """raw_rtpmap/raw_fmtp return the offer's spelling for echoing."""
        media = parse_sdp(CISCO_TWO_SENDONLY).media[0]
        self.assertEqual(media.raw_rtpmap(101), "101 telephone-event/8000")
        self.assertEqual(media.raw_fmtp(101), "101 0-16")
        self.assertIsNone(media.raw_fmtp(0))
        self.assertIsNone(media.raw_rtpmap(8))


class AttributeHelperTests(SynchronousTestCase):
    """direction, label, ptime, crypto, rtcp_mux, effective_connection, is_hold."""

    def test_media_direction_overrides_session(self) -> None:
        """A media-level direction beats the session default."""
        media = media_with(("recvonly", None))
        session = session_with(media, attributes=[("sendonly", None)])
        self.assertEqual(media.direction(session), "recvonly")

    def test_session_direction_is_default(self) -> None:
        """Without a media-level direction, the session-level one applies."""
        media = media_with()
        session = session_with(media, attributes=[("inactive", None)])
        self.assertEqual(media.direction(session), "inactive")
        self.assertTrue(media.is_hold(session))
        self.assertEqual(media.direction(), "sendrecv")

    def test_direction_case_insensitive(self) -> None:
        """Some SRCs write a=SENDONLY."""
        self.assertEqual(media_with(("SENDONLY", None)).direction(), "sendonly")

    def test_direction_with_value_is_not_a_direction(self) -> None:
        """'a=sendonly:x' is not the sendonly flag."""
        self.assertEqual(media_with(("sendonly", "x")).direction(), "sendrecv")

    def test_label_absent(self) -> None:
        self.assertIsNone(media_with().label)

    def test_ptime_forms(self) -> None:
        """ptime reads integers and decimal forms; garbage is None."""
        for value, expected in (("20", 20), ("30.0", 30), (" 40", 40), ("x", None),
                                ("", None), (None, None), ("2e1", None)):
            self.assertEqual(media_with(("ptime", value)).ptime, expected, value)

    def test_crypto_values_in_order(self) -> None:
        """Every a=crypto value, raw, in offered order."""
        media = media_with(("crypto", "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA"),
                           ("crypto", "2 AES_CM_128_HMAC_SHA1_32 inline:BBBB"))
        self.assertEqual(media.crypto, ["1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
                                        "2 AES_CM_128_HMAC_SHA1_32 inline:BBBB"])

    def test_rtcp_mux(self) -> None:
        self.assertTrue(media_with(("rtcp-mux", None)).rtcp_mux)
        self.assertFalse(media_with().rtcp_mux)

    def test_effective_connection_prefers_media(self) -> None:
        """Media c= wins over session c=; neither gives None."""
        own = Connection("IN", "IP4", "192.0.2.7")
        session_conn = Connection("IN", "IP4", "192.0.2.8")
        self.assertEqual(media_with(connections=[own]).effective_connection(
            session_with(connection=session_conn)), own)
        self.assertEqual(media_with().effective_connection(
            session_with(connection=session_conn)), session_conn)
        self.assertIsNone(media_with().effective_connection(session_with()))

    def test_hold_by_unspecified_ipv6(self) -> None:
        """c=IN IP6 :: holds like 0.0.0.0."""
        media = media_with(connections=[Connection("IN", "IP6", "::")])
        self.assertTrue(media.is_hold())

    def test_connection_host_drops_ttl(self) -> None:
        """Multicast /ttl stays in address but not in host."""
        conn = Connection("IN", "IP4", "233.252.0.1/127")
        self.assertEqual(conn.host, "233.252.0.1")
        self.assertEqual(conn.to_value(), "IN IP4 233.252.0.1/127")


# ---------------------------------------------------------------- tolerance


class ToleranceTests(SynchronousTestCase):
    """What real SRCs get wrong is accepted."""

    def test_missing_s_and_t(self) -> None:
        """No s= reads as '-', no t= as 0 0; the output has both."""
        sdp = parse_sdp(b"v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\n"
                        b"m=audio 4000 RTP/AVP 0\n")
        self.assertEqual(sdp.session_name, "-")
        self.assertEqual(sdp.timing, (Timing(0, 0),))
        self.assertIn(b"\r\ns=-\r\n", sdp.to_bytes())
        self.assertIn(b"\r\nt=0 0\r\n", sdp.to_bytes())

    def test_whitespace_and_blank_lines(self) -> None:
        """Trailing blanks, indentation and empty lines are ignored."""
        messy = (b"\r\n  v=0  \r\no=- 1 1 IN IP4 192.0.2.1\t\r\n\r\ns=x \r\n"
                 b"c=IN IP4 192.0.2.1\r\nt=0 0\r\n\r\nm=audio 4000  RTP/AVP  0  8 \r\n"
                 b"a=sendonly \r\n\r\n\r\n")
        sdp = parse_sdp(messy)
        self.assertEqual(sdp.media[0].formats, ("0", "8"))
        self.assertEqual(sdp.media[0].direction(sdp), "sendonly")
        self.assertEqual(sdp.session_name, "x")

    def test_unknown_lines_kept(self) -> None:
        """Unknown line types survive at session and media level."""
        sdp = parse_sdp(b"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nx=vendor thing\nt=0 0\n"
                        b"m=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.1\ny=other\n"
                        b"t=1 2\n")
        self.assertEqual(sdp.other_lines, (("x", "vendor thing"),))
        self.assertEqual(sdp.media[0].other_lines, (("y", "other"), ("t", "1 2")))
        self.assertEqual(parse_sdp(sdp.to_bytes()), sdp)

    def test_attributes_in_any_order(self) -> None:
        """Direction before rtpmap, label first: nothing depends on order."""
        a = parse_sdp(b"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
                      b"m=audio 4000 RTP/AVP 96\na=sendonly\na=fmtp:96 mode=30\n"
                      b"a=label:7\na=rtpmap:96 iLBC/8000\n")
        media = a.media[0]
        self.assertEqual(media.rtpmaps(), {96: PayloadFormat(96, "ILBC", 8000, 1, "mode=30")})
        self.assertEqual((media.label, media.direction(a)), ("7", "sendonly"))

    def test_lines_out_of_rfc_order(self) -> None:
        """c= after t=, a= before c=: accepted and written back in RFC order."""
        sdp = parse_sdp(b"v=0\no=- 1 1 IN IP4 192.0.2.1\nt=0 0\na=tool:x\ns=-\n"
                        b"c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=sendonly\n"
                        b"c=IN IP4 192.0.2.2\n")
        self.assertEqual(sdp.to_bytes(), crlf(
            "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\na=tool:x\n"
            "m=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.2\na=sendonly\n"))

    def test_non_utf8_text_round_trips(self) -> None:
        """Latin-1 in s= (a=charset) survives parse and serialise byte for byte."""
        data = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=x\nc=IN IP4 192.0.2.1\n"
                    "t=0 0\na=charset:ISO-8859-1\nm=audio 4000 RTP/AVP 0\n"
                    ).replace(b"s=x", b"s=Caf\xe9")
        self.assertEqual(parse_sdp(data).to_bytes(), data)

    def test_port_count_and_bandwidth(self) -> None:
        """m= port/count and b= lines are read and written back."""
        data = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nb=AS:128\n"
                    "t=0 0\nm=audio 4000/2 RTP/AVP 0\nb=TIAS:64000\n")
        sdp = parse_sdp(data)
        self.assertEqual(sdp.bandwidths, (Bandwidth("AS", 128),))
        self.assertEqual(sdp.media[0].port_count, 2)
        self.assertEqual(sdp.media[0].bandwidths, (Bandwidth("TIAS", 64000),))
        self.assertEqual(sdp.to_bytes(), data)

    def test_full_session_section_round_trips(self) -> None:
        """Every session-level line type is kept and written in RFC order."""
        data = crlf("v=0\no=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\ns=SDP Seminar\n"
                    "i=A Seminar\nu=http://www.example.com/seminars/sdp.pdf\n"
                    "e=j.doe@example.com (Jane Doe)\np=+1 617 555-6011\n"
                    "c=IN IP4 224.2.17.12/127\nt=2873397496 2873404696\nr=7d 1h 0 25h\n"
                    "z=2882844526 -1h\nk=prompt\na=recvonly\n"
                    "m=audio 49170 RTP/AVP 0\ni=voice\nk=prompt\n"
                    "m=video 51372 RTP/AVP 99\na=rtpmap:99 h263-1998/90000\n")
        sdp = parse_sdp(data)
        self.assertEqual(sdp.timing, (Timing(2873397496, 2873404696, ("7d 1h 0 25h",)),))
        self.assertEqual(sdp.media[0].information, "voice")
        self.assertEqual(sdp.to_bytes(), data)


# ---------------------------------------------------------------- strictness


class FirstDescriptionTests(SynchronousTestCase):
    """The first complete description is the SDP; what follows it is ignored and said."""

    first = ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
             "m=audio 4000 RTP/AVP 0\na=label:1\n")

    def test_blank_line_then_second_block(self) -> None:
        """Oracle SBC style: a blank line and another, differently bounded SDP block."""
        data = (self.first + "\n--other-boundary\nContent-Type: application/sdp\n\n"
                "v=0\no=- 9 9 IN IP4 198.51.100.7\nm=audio 5004 RTP/AVP 8\n").encode()
        sdp, notes = parse_sdp_with_tolerances(data)
        self.assertEqual(sdp, parse_sdp(self.first))
        self.assertEqual(notes, ("SDP ended before line 9 (stray text '--other-boundary', after a "
                                 "blank line); the rest of the body was ignored",))
        self.assertEqual(parse_sdp(data), sdp)

    def test_second_v_line_ends_the_first(self) -> None:
        for glue in ("", "\r\n\r\n"):
            data = (self.first + glue + "v=0\no=- 9 9 IN IP4 198.51.100.7\n").encode()
            sdp, notes = parse_sdp_with_tolerances(data)
            self.assertEqual([m.port for m in sdp.media], [4000])
            self.assertIn("a second v= line", notes[0])

    def test_stray_text_without_blank_line(self) -> None:
        sdp, notes = parse_sdp_with_tolerances((self.first + "Content-Type: x\n").encode())
        self.assertEqual(len(sdp.media), 1)
        self.assertEqual(notes, ("SDP ended before line 8 (stray text 'Content-Type: x'); the rest "
                                 "of the body was ignored",))

    def test_blank_lines_between_sections_are_no_end(self) -> None:
        """Blank lines followed by more <type>=<value> lines are skipped, as before, silently."""
        data = (self.first + "\n\nm=audio 4002 RTP/AVP 0\n\na=label:2\n").encode()
        sdp, notes = parse_sdp_with_tolerances(data)
        self.assertEqual(([m.label for m in sdp.media], notes), (["1", "2"], ()))

    def test_clean_sdp_has_no_notes(self) -> None:
        self.assertEqual(parse_sdp_with_tolerances(self.first.encode())[1], ())

    def test_the_kept_part_round_trips(self) -> None:
        sdp, _ = parse_sdp_with_tolerances((self.first + "\ngarbage\n").encode())
        self.assertEqual(parse_sdp_with_tolerances(sdp.to_bytes()), (sdp, ()))


class RejectionTests(SynchronousTestCase):
    """Garbage is refused with SdpParseError naming the line."""

    base = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"

    def assertRejects(self, data, *fragments: str) -> SdpParseError:
        error = self.assertRaises(SdpParseError, parse_sdp, data)
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return error

    def test_empty(self) -> None:
        self.assertRejects(b"", "no v= line")
        self.assertRejects(b"\r\n\r\n  \n", "no v= line")

    def test_no_v_line(self) -> None:
        """The first line must be v=."""
        error = self.assertRejects(b"o=- 1 1 IN IP4 192.0.2.1\ns=-\n", "start with a v= line",
                                   "'o=- 1 1 IN IP4 192.0.2.1'")
        self.assertEqual(error.line_number, 1)

    def test_non_numeric_version(self) -> None:
        self.assertRejects(b"v=zero\n", "v= is not a number")

    def test_no_origin(self) -> None:
        self.assertRejects(b"v=0\ns=-\nt=0 0\n", "no o= line")

    def test_bad_origin(self) -> None:
        self.assertRejects(b"v=0\no=- 1 IN IP4 192.0.2.1\n", "o= needs", "line 2")
        self.assertRejects(b"v=0\no=- 1 x IN IP4 192.0.2.1\n", "session version")

    def test_non_numeric_port(self) -> None:
        """The line number and text point at the m= line."""
        error = self.assertRejects((self.base + "m=audio abc RTP/AVP 0\n").encode(),
                                   "port is not a number", "'m=audio abc RTP/AVP 0'")
        self.assertEqual(error.line_number, 6)
        self.assertEqual(error.line, "m=audio abc RTP/AVP 0")

    def test_unicode_digit_port(self) -> None:
        """int() would accept Arabic-Indic digits; SDP does not."""
        self.assertRejects((self.base + "m=audio \u0664\u0660\u0660\u0660 RTP/AVP 0\n")
                           .encode(), "port is not a number")

    def test_port_out_of_range(self) -> None:
        self.assertRejects((self.base + "m=audio 70000 RTP/AVP 0\n").encode(), "out of range")

    def test_bad_port_count(self) -> None:
        self.assertRejects((self.base + "m=audio 4000/0 RTP/AVP 0\n").encode(), "port count")

    def test_m_line_without_formats(self) -> None:
        self.assertRejects((self.base + "m=audio 4000 RTP/AVP\n").encode(), "no formats")
        self.assertRejects((self.base + "m=audio 4000\n").encode(), "too few fields")

    def test_bad_connection(self) -> None:
        self.assertRejects((self.base + "m=audio 4000 RTP/AVP 0\nc=IN IP4\n").encode(),
                           "c= needs")

    def test_bad_bandwidth(self) -> None:
        self.assertRejects((self.base + "b=AS\n").encode(), "b= needs")
        self.assertRejects((self.base + "b=AS:x\n").encode(), "b= needs")

    def test_bad_timing(self) -> None:
        self.assertRejects(b"v=0\no=- 1 1 IN IP4 192.0.2.1\nt=now\n", "t= needs")

    def test_repeat_without_timing(self) -> None:
        self.assertRejects(b"v=0\no=- 1 1 IN IP4 192.0.2.1\nr=7d 1h 0\n", "r= line")

    def test_duplicate_lines(self) -> None:
        """Two o= or two session c= lines in one description are refused."""
        self.assertRejects((self.base + "o=- 2 2 IN IP4 192.0.2.1\n").encode(), "duplicate o=")
        self.assertRejects(b"v=0\nv=0\no=- 1 1 IN IP4 192.0.2.1\n", "duplicate v=")
        self.assertRejects((self.base + "c=IN IP4 192.0.2.2\n").encode(), "duplicate c=")
        self.assertRejects((self.base + "m=audio 4000 RTP/AVP 0\ni=a\ni=b\n").encode(),
                           "duplicate i=")

    def test_not_a_type_value_line(self) -> None:
        """Before the description is complete (v= and o=), a stray line is an error."""
        for junk in ("hello", "=x", "ab=c", "1=2", "--boundary"):
            error = self.assertRejects(f"v=0\n{junk}\no=- 1 1 IN IP4 192.0.2.1\n".encode(),
                                       "<type>=<value>")
            self.assertEqual(error.line_number, 2)

    def test_empty_attribute(self) -> None:
        self.assertRejects((self.base + "a=\n").encode(), "no attribute name")
        self.assertRejects((self.base + "a=:x\n").encode(), "no attribute name")

    def test_stray_cr_and_nul(self) -> None:
        """CR-only line ends and NUL bytes are not SDP."""
        self.assertRejects(b"v=0\ro=- 1 1 IN IP4 192.0.2.1\r", "stray CR")
        self.assertRejects((self.base + "a=x\x00y\n").encode(), "NUL")

    def test_long_line_shortened_in_message(self) -> None:
        """The message quotes at most 80 characters of the bad line."""
        error = self.assertRejects((self.base + "m=audio " + "9" * 500 + " RTP/AVP 0\n")
                                   .encode(), "out of range")
        self.assertLess(len(str(error)), 200)

    def test_error_is_a_value_error(self) -> None:
        self.assertTrue(issubclass(SdpParseError, ValueError))


# ---------------------------------------------------------------- round trips


class RoundTripTests(SynchronousTestCase):
    """to_bytes() is canonical and parse(to_bytes(x)) == x."""

    def test_canonical_fixtures_byte_identical(self) -> None:
        """CRLF fixtures already in RFC order come back byte for byte."""
        for name in ("oracle_single", "oracle_two", "avaya", "rfc7866", "hold",
                     "no_direction", "inactive", "cisco"):
            data = FIXTURES[name]
            self.assertEqual(parse_sdp(data).to_bytes(), data, name)

    def test_lf_fixture_becomes_crlf(self) -> None:
        out = parse_sdp(SONUS_LF_ONLY).to_bytes()
        self.assertEqual(out, SONUS_LF_ONLY.replace(b"\n", b"\r\n"))

    def test_parse_serialise_parse(self) -> None:
        for name, data in FIXTURES.items():
            sdp = parse_sdp(data)
            self.assertEqual(parse_sdp(sdp.to_bytes()), sdp, name)
            self.assertEqual(bytes(sdp), sdp.to_bytes())

    def test_values_are_frozen_and_hashable(self) -> None:
        sdp = parse_sdp(CISCO_TWO_SENDONLY)
        self.assertEqual(hash(sdp), hash(parse_sdp(CISCO_TWO_SENDONLY)))
        self.assertRaises(AttributeError, setattr, sdp, "version", 1)

    def test_serialiser_refuses_line_breaks(self) -> None:
        """A value carrying CR/LF would inject lines; to_bytes refuses it."""
        sdp = session_with(media_with(("label", "1\r\na=sendrecv")))
        self.assertRaises(ValueError, sdp.to_bytes)
        self.assertRaises(ValueError, session_with(media_with(("", "x"))).to_bytes)

    def test_constructors_refuse_broken_tokens(self) -> None:
        """Fields written as one token cannot contain blanks."""
        self.assertRaises(ValueError, Origin, "a b", "1", 1, "IN", "IP4", "x")
        self.assertRaises(ValueError, Origin, "-", "1", -1, "IN", "IP4", "x")
        self.assertRaises(ValueError, Connection, "IN", "IP4", "")
        self.assertRaises(ValueError, MediaDescription, "audio", 70000, "RTP/AVP", ("0",))
        self.assertRaises(ValueError, MediaDescription, "audio", 1, "RTP/AVP", ("0 8",))

    def test_origin_bumped(self) -> None:
        origin = Origin("-", "99", 4, "IN", "IP4", "192.0.2.1")
        self.assertEqual(origin.bumped().session_version, 5)
        self.assertEqual(origin.bumped().session_id, "99")


# ---------------------------------------------------------------- hostile input


def check_parse_invariant(test: SynchronousTestCase, data: bytes) -> None:
    """Either SdpParseError, or a value that round-trips and answers its helpers."""
    try:
        sdp = parse_sdp(data)
    except SdpParseError:
        return
    test.assertEqual(parse_sdp(sdp.to_bytes()), sdp)
    for media in sdp.media:
        media.rtpmaps()
        media.direction(sdp)
        media.is_hold(sdp)
        media.ptime, media.label, media.crypto, media.rtcp_mux
        media.effective_connection(sdp)


_FORMATS = ["0", "8", "9", "13", "18", "96", "101", "111", "127", "128", "t38", "*", "x"]
_ENCODINGS = ["PCMU", "pcma", "G722", "opus", "telephone-event", "G729", "CN", "H264", "", "x y"]
_CLOCKS = ["8000", "16000", "48000", "90000", "0", "abc", ""]


def _rtpmap_value():
    return st.builds(
        lambda pt, enc, clock, channels: f"{pt} {enc}/{clock}{channels}",
        st.sampled_from(_FORMATS), st.sampled_from(_ENCODINGS), st.sampled_from(_CLOCKS),
        st.sampled_from(["", "/2", "/1", "/0", "/x"]))


def _attribute_line():
    flags = st.sampled_from(["sendonly", "recvonly", "inactive", "sendrecv", "SENDONLY",
                             "rtcp-mux"])
    named = st.tuples(st.sampled_from(["label", "ptime", "crypto", "maxptime", "fmtp",
                                       "mid", "rtcp"]),
                      st.text(alphabet="0123456789 abc-=;:/.", max_size=12))
    return st.one_of(
        flags,
        _rtpmap_value().map(lambda v: f"rtpmap:{v}"),
        named.map(lambda nv: f"{nv[0]}:{nv[1]}"),
        st.builds(lambda pt, params: f"fmtp:{pt} {params}", st.sampled_from(_FORMATS),
                  st.sampled_from(["0-15", "0-16", "annexb=no", "", "mode=30"])),
    ).map(lambda v: "a=" + v)


def _media_line():
    return st.builds(
        lambda media, port, count, proto, fmts: f"m={media} {port}{count} {proto} {' '.join(fmts)}",
        st.sampled_from(["audio", "video", "application", "image", "AUDIO"]),
        st.one_of(st.just(0), st.integers(1, 65535), st.just(70000)),
        st.sampled_from(["", "", "/2", "/0"]),
        st.sampled_from(["RTP/AVP", "RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF",
                         "UDP/TLS/RTP/SAVPF", "udptl", "TCP/MRCPv2"]),
        st.lists(st.sampled_from(_FORMATS), max_size=4))


def _connection_line():
    return st.builds(lambda kind, host: f"c=IN {kind} {host}",
                     st.sampled_from(["IP4", "IP6", "IP4", "X"]),
                     st.sampled_from(["192.0.2.1", "0.0.0.0", "::", "2001:db8::1",
                                      "host.example", "233.252.0.1/127", "", "a b"]))


def plausible_sdp():
    """SDP bodies close enough to real ones that most of them parse."""
    line = st.one_of(
        _media_line(), _attribute_line(), _attribute_line(), _connection_line(),
        st.sampled_from(["s=-", "s=", "t=0 0", "t=x", "i=info", "b=AS:64", "b=AS",
                         "k=prompt", "x=vendor", "r=1d 1h 0", "e=a@example.com"]),
        st.text(alphabet="abcmv=0 :/\r\x00\u00e9", max_size=10),
    )
    header = st.sampled_from([
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n",
        "v=0\no=- 1 1 IN IP4 192.0.2.1\n",
        "v=0\no=SRC 7 9 IN IP6 2001:db8::7\ns=x\nt=0 0\na=sendonly\n",
        "v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 0.0.0.0\na=inactive\n",
    ])
    return st.builds(lambda head, lines, end: head + end.join(lines) + end,
                     header, st.lists(line, max_size=20), st.sampled_from(["\n", "\r\n"]))


def plausible_offer():
    """Well-formed offers with varied media, transports, codecs and attributes."""
    attribute = st.sampled_from([
        "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 pcma/8000", "a=rtpmap:9 G722/8000",
        "a=rtpmap:18 G729/8000", "a=fmtp:18 annexb=no", "a=rtpmap:96 H264/90000",
        "a=rtpmap:111 opus/48000/2", "a=fmtp:111 useinbandfec=1",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
        "a=rtpmap:127 telephone-event/48000", "a=rtpmap:13 CN/8000",
        "a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv", "a=label:1", "a=label:77",
        "a=ptime:20", "a=ptime:30.0", "a=rtcp-mux", "a=maxptime:40",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo",
        "c=IN IP4 0.0.0.0", "c=IN IP4 198.51.100.3", "c=IN IP6 2001:db8::3", "b=AS:64",
    ])
    section = st.builds(
        lambda media, port, proto, fmts, attrs: "\n".join(
            [f"m={media} {port} {proto} {' '.join(fmts)}", *sorted(attrs)]),
        st.sampled_from(["audio", "audio", "audio", "video", "application", "image"]),
        st.sampled_from([0, 4000, 4002, 65535]),
        st.sampled_from(["RTP/AVP", "RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF",
                         "UDP/TLS/RTP/SAVPF", "udptl"]),
        st.lists(st.sampled_from(["0", "8", "9", "18", "13", "96", "101", "111", "127"]),
                 min_size=1, max_size=5),
        st.lists(attribute, max_size=6))
    header = st.sampled_from([
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n",
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n",
        "v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\na=sendonly\n",
        "v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 0.0.0.0\na=inactive\n",
    ])
    return st.builds(lambda head, sections: head + "".join(s + "\n" for s in sections),
                     header, st.lists(section, max_size=5))


class HostileInputTests(SynchronousTestCase):
    """Truncated, mutated and random input never escapes as another exception."""

    def test_every_truncation(self) -> None:
        """Every prefix of every fixture parses or raises SdpParseError."""
        for name, data in FIXTURES.items():
            for end in range(len(data) + 1):
                check_parse_invariant(self, data[:end])

    def test_every_single_byte_deletion(self) -> None:
        for data in (CISCO_TWO_SENDONLY, AVAYA_MULTI_CODEC):
            for index in range(len(data)):
                check_parse_invariant(self, data[:index] + data[index + 1:])

    @settings(max_examples=400, deadline=None)
    @given(st.binary(max_size=600))
    def test_random_bytes(self, data: bytes) -> None:
        check_parse_invariant(self, data)

    @settings(max_examples=400, deadline=None)
    @given(st.binary(max_size=300))
    def test_random_bytes_after_valid_header(self, tail: bytes) -> None:
        """Garbage after a good v=/o= reaches the deeper line parsers."""
        check_parse_invariant(self, b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n" + tail)

    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(
        st.sampled_from("vosiuepcbtrzkamxA1 "),
        st.text(alphabet=st.sampled_from(list("0123456789 /:.-=aAbIPNRTV\tx\u00e9\x00\r")),
                max_size=30)), max_size=25))
    def test_random_sdp_like_lines(self, lines) -> None:
        """Plausible line types with random values after a valid header."""
        body = "v=0\no=- 1 1 IN IP4 192.0.2.1\n" + "".join(
            f"{kind}={value}\n" for kind, value in lines)
        check_parse_invariant(self, body.encode("utf-8"))

    @settings(max_examples=500, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(plausible_sdp())
    def test_plausible_sdp(self, body: str) -> None:
        """Structured near-SDP: most parse, and those that do round-trip."""
        check_parse_invariant(self, body.encode("utf-8"))

    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(plausible_offer())
    def test_plausible_offers_parse(self, body: str) -> None:
        """Well-formed generated offers always parse, and round-trip."""
        sdp = parse_sdp(body.encode("utf-8"))
        self.assertEqual(parse_sdp(sdp.to_bytes()), sdp)
        check_parse_invariant(self, body.encode("utf-8"))

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(sorted(FIXTURES)), st.integers(min_value=0),
           st.binary(min_size=1, max_size=8))
    def test_random_splices(self, name: str, position: int, junk: bytes) -> None:
        """Junk spliced into a real offer."""
        data = FIXTURES[name]
        position %= len(data)
        check_parse_invariant(self, data[:position] + junk + data[position:])

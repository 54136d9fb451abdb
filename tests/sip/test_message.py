"""Tests for siprec.sip.message: parsing, serialising, 400s for bad requests.

The INVITE below is this project's own, written after the shape of SIPREC
INVITEs seen from SBCs (Sonus/Ribbon multipart bodies with ``+sip.src``,
Avaya-style header order, compact forms from lean stacks); the fuzz tests
mutate and truncate it and assert that nothing but SipParseError escapes.
"""

from __future__ import annotations

from typing import Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from siprec.sip.headers import HeaderError
from siprec.sip.message import (
    CSeqMethodMismatch,
    Headers,
    Request,
    Response,
    SipParseError,
    canonical_name,
    make_response,
    parse_message,
    reason_phrase,
)


def crlf(text: str) -> bytes:
    """Test messages are written with newlines; the wire uses CRLF."""
    return text.replace("\n", "\r\n").encode("utf-8")


SDP = (
    "v=0\n"
    "o=SBC 513085 921039 IN IP4 198.51.100.7\n"
    "s=SIPREC\n"
    "t=0 0\n"
    "m=audio 40000 RTP/AVP 0\n"
    "c=IN IP4 198.51.100.7\n"
    "a=label:1\n"
    "a=sendonly\n"
    "m=audio 40002 RTP/AVP 0\n"
    "c=IN IP4 198.51.100.7\n"
    "a=label:2\n"
    "a=sendonly\n"
)
METADATA = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<recording xmlns='urn:ietf:params:xml:ns:recording:1'>\n"
    "<datamode>complete</datamode>\n"
    '<session session_id="c2lwcmVjLXRlc3QtMDE="></session>\n'
    "</recording>\n"
)
BODY = crlf(
    "--rec-delim\n"
    "Content-Type: application/sdp\n\n" + SDP + "\n"
    "--rec-delim\n"
    "Content-Type: application/rs-metadata+xml\n"
    "Content-Disposition: recording-session\n\n" + METADATA + "\n"
    "--rec-delim--\n"
)
HEAD = (
    "INVITE sip:srs@192.0.2.10:5060;transport=udp SIP/2.0\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK04B0013f3db3;rport\n"
    'From: "Rec \\"SRC\\"" <sip:src@198.51.100.7>;tag=gK040028ac\n'
    "To: <sip:srs@192.0.2.10>\n"
    "Call-ID: 241467418_28680544@198.51.100.7\n"
    "CSeq: 100008 INVITE\n"
    "Max-Forwards: 70\n"
    "Allow: INVITE,ACK,CANCEL,BYE,\n"
    "  UPDATE,OPTIONS\n"
    'Contact: "SRC" <sip:src@198.51.100.7:5060>;+sip.src\n'
    "Require: siprec\n"
    "k: timer, 100rel\n"
    "Session-Expires: 1800\n"
    "Session-ID: ab30317f1a784dc48ff824d0d3715d86\n"
    "\t;remote=00000000000000000000000000000000\n"
    "c: multipart/mixed;boundary=rec-delim\n"
    "MIME-Version: 1.0\n"
)


def invite(head: str = HEAD, body: bytes = BODY, length: Optional[int] = None) -> bytes:
    n = len(body) if length is None else length
    return crlf(head + f"Content-Length: {n}\n\n") + body


def request_text(**overrides: Optional[str]) -> bytes:
    """A minimal request; each header can be replaced or (with None) removed."""
    headers = {
        "Via": "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKabc",
        "From": "<sip:src@198.51.100.7>;tag=1",
        "To": "<sip:srs@192.0.2.10>",
        "Call-ID": "c1@198.51.100.7",
        "CSeq": "1 OPTIONS",
    }
    start = overrides.pop("start", "OPTIONS sip:srs@192.0.2.10 SIP/2.0")
    for name, value in overrides.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    lines = [start] + [f"{n}: {v}" for n, v in headers.items()]
    return crlf("\n".join(lines) + "\nContent-Length: 0\n\n")


class ParseRequestTests(SynchronousTestCase):
    def test_siprec_invite(self) -> None:
        """A SIPREC INVITE parses into method, URI, typed headers and the exact body."""
        msg = parse_message(invite())
        self.assertIsInstance(msg, Request)
        self.assertEqual((msg.method, msg.uri, msg.version),
                         ("INVITE", "sip:srs@192.0.2.10:5060;transport=udp", "SIP/2.0"))
        self.assertEqual(msg.call_id, "241467418_28680544@198.51.100.7")
        self.assertEqual((msg.cseq.number, msg.cseq.method), (100008, "INVITE"))
        self.assertEqual(msg.from_.display_name, 'Rec "SRC"')
        self.assertEqual(msg.from_.tag, "gK040028ac")
        self.assertIsNone(msg.to.tag)
        self.assertEqual(msg.top_via.branch, "z9hG4bK04B0013f3db3")
        self.assertIn("+sip.src", msg.contacts()[0].params)
        self.assertEqual(msg.option_tags("Require"), ["siprec"])
        self.assertEqual(msg.content_type, "multipart/mixed;boundary=rec-delim")
        self.assertEqual(msg.body, BODY)

    def test_compact_forms(self) -> None:
        """Compact names (RFC 3261 §7.3.3) are expanded and found by either spelling."""
        data = crlf(
            "INVITE sip:srs@192.0.2.10 SIP/2.0\n"
            "v: SIP/2.0/TCP 198.51.100.7;branch=z9hG4bKc1\n"
            "f: <sip:src@198.51.100.7>;tag=a\n"
            "t: <sip:srs@192.0.2.10>\n"
            "i: compact@198.51.100.7\n"
            "CSeq: 2 INVITE\n"
            "m: <sip:src@198.51.100.7>;+sip.src\n"
            "k: siprec\n"
            "s: recorded call\n"
            "x: 1800;refresher=uac\n"
            "c: application/sdp\n"
            "l: 5\n\nv=0\n"
        )
        msg = parse_message(data)
        names = msg.headers.names()
        for full in ("Via", "From", "To", "Call-ID", "Contact", "Supported", "Subject",
                     "Session-Expires", "Content-Type", "Content-Length"):
            self.assertIn(full, names)
        self.assertEqual(msg.headers.get("i"), msg.headers.get("Call-ID"))
        self.assertEqual(msg.headers.get("x"), "1800;refresher=uac")
        self.assertEqual(msg.body, b"v=0\r\n")

    def test_case_insensitive_names(self) -> None:
        """Header names match whatever their case on the wire or in the lookup."""
        msg = parse_message(request_text(Call_ID=None) .replace(b"CSeq:", b"cseq:")
                            .replace(b"Content-Length", b"CONTENT-LENGTH")
                            .replace(b"\r\n\r\n", b"\r\ncALL-iD: mixed@case\r\n\r\n"))
        self.assertEqual(msg.call_id, "mixed@case")
        self.assertEqual(msg.headers.get("CALL-ID"), "mixed@case")
        self.assertIn("cseq", msg.headers)
        self.assertEqual(msg.cseq.method, "OPTIONS")

    def test_folded_headers(self) -> None:
        """Continuation lines (SP or HTAB) are joined with a single space."""
        msg = parse_message(invite())
        self.assertEqual(msg.headers.get("Allow"), "INVITE,ACK,CANCEL,BYE, UPDATE,OPTIONS")
        self.assertEqual(msg.headers.get_all("Allow")[-1], "OPTIONS")
        self.assertEqual(msg.headers.get("Session-ID"),
                         "ab30317f1a784dc48ff824d0d3715d86 ;remote=00000000000000000000000000000000")

    def test_multi_value_headers(self) -> None:
        """List headers split on commas, across several fields, in order."""
        data = request_text(
            Via="SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKp1, SIP/2.0/TCP [2001:db8::2]:5070;branch=z9hG4bKp0",
        ).replace(b"\r\nFrom", b"\r\nVia: SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKq\r\nFrom")
        msg = parse_message(data)
        self.assertEqual([v.host for v in msg.vias], ["198.51.100.7", "2001:db8::2", "203.0.113.5"])
        self.assertEqual(msg.top_via.branch, "z9hG4bKp1")
        self.assertEqual(msg.headers.count("Via"), 2)

    def test_bare_lf_and_leading_crlf(self) -> None:
        """Bare LF line ends are tolerated and CRLFs before the start line ignored."""
        data = b"\r\n\r\n" + request_text().replace(b"\r\n", b"\n")
        msg = parse_message(data)
        self.assertEqual(msg.method, "OPTIONS")
        self.assertEqual(msg.call_id, "c1@198.51.100.7")

    def test_header_without_space_and_empty_value(self) -> None:
        msg = parse_message(request_text(Subject="").replace(b"Call-ID: ", b"Call-ID:"))
        self.assertEqual(msg.call_id, "c1@198.51.100.7")
        self.assertEqual(msg.headers.get("Subject"), "")

    def test_tel_request_uri(self) -> None:
        msg = parse_message(request_text(start="OPTIONS tel:+15550100 SIP/2.0"))
        self.assertEqual(msg.uri, "tel:+15550100")

    def test_utf8_display_name(self) -> None:
        msg = parse_message(request_text(From='"Zoë Ünal" <sip:z@example.com>;tag=1'))
        self.assertEqual(msg.from_.display_name, "Zoë Ünal")


class BodyTests(SynchronousTestCase):
    def test_datagram_longer_than_content_length(self) -> None:
        """RFC 3261 §18.3: bytes past Content-Length in a datagram are discarded."""
        msg = parse_message(invite(body=BODY + b"trailing junk", length=len(BODY)))
        self.assertEqual(msg.body, BODY)

    def test_no_content_length_on_datagram(self) -> None:
        """Without Content-Length the body runs to the end of the datagram."""
        data = crlf(HEAD + "\n") + BODY
        self.assertEqual(parse_message(data).body, BODY)

    def test_full_udp_datagram(self) -> None:
        """A message as large as a UDP datagram can be parses with no size cap."""
        body = b"x" * (65535 - len(invite(body=b"", length=65000)))
        data = invite(body=body)
        self.assertEqual(len(data), 65535)
        self.assertEqual(len(parse_message(data).body), len(body))

    def test_stream_size_cap(self) -> None:
        """Past max_size the message is refused with 513 and cannot be answered."""
        data = invite(body=b"x" * 65536)
        with self.assertRaises(SipParseError) as ctx:
            parse_message(data, max_size=65536)
        self.assertEqual(ctx.exception.status, 513)
        self.assertIsNone(ctx.exception.request)
        self.assertEqual(len(parse_message(invite(body=b"y" * 60000), max_size=65536).body), 60000)


class ParseResponseTests(SynchronousTestCase):
    def test_response(self) -> None:
        data = crlf(
            "SIP/2.0 180 Ringing Now\n"
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx\n"
            "From: <sip:srs@192.0.2.10>;tag=1\n"
            "To: <sip:src@198.51.100.7>;tag=2\n"
            "Call-ID: r1\n"
            "CSeq: 5 BYE\n"
            "Content-Length: 0\n\n"
        )
        msg = parse_message(data)
        self.assertIsInstance(msg, Response)
        self.assertEqual((msg.status, msg.reason), (180, "Ringing Now"))
        self.assertEqual(msg.cseq.method, "BYE")

    def test_response_without_reason(self) -> None:
        data = crlf("SIP/2.0 200\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nFrom: <sip:a@b>\n"
                    "To: <sip:c@d>\nCall-ID: x\nCSeq: 1 BYE\n\n")
        self.assertEqual(parse_message(data).status, 200)

    def test_malformed_responses_are_dropped(self) -> None:
        """A bad response is never answerable: .request stays None."""
        good = ("Via: SIP/2.0/UDP h;branch=z9hG4bKx\nFrom: <sip:a@b>\nTo: <sip:c@d>\n"
                "Call-ID: x\nCSeq: 1 BYE\n\n")
        cases = {
            "SIP/2.0 099 Low\n" + good: "out of range",
            "SIP/2.0 700 High\n" + good: "out of range",
            "SIP/3.0 200 OK\n" + good: "not supported",
            "SIP/2.0 200 OK\nFrom: <sip:a@b>\nTo: <sip:c@d>\nCall-ID: x\nCSeq: 1 BYE\n\n": "missing Via",
            "SIP/2.0 \u00b2\u00b2\u00b2 OK\n" + good: "Malformed status line",
            "SIP/2.0 20 OK\n" + good: "Malformed status line",
        }
        for text, expected in cases.items():
            with self.assertRaises(SipParseError, msg=text) as ctx:
                parse_message(crlf(text))
            self.assertIn(expected, ctx.exception.reason)
            self.assertIsNone(ctx.exception.request)


class MalformedRequestTests(SynchronousTestCase):
    """Each malformation: status, what the reason says, whether a 400 can be sent."""

    def assertRejected(self, data: bytes, status: int, says: str, answerable: bool) -> SipParseError:
        with self.assertRaises(SipParseError) as ctx:
            parse_message(data)
        error = ctx.exception
        self.assertEqual(error.status, status, error.reason)
        self.assertIn(says, error.reason)
        self.assertEqual(error.request is not None, answerable, error.reason)
        if error.request is not None:
            response = make_response(error.request, error.status, error.reason, to_tag="t1")
            back = parse_message(response.to_bytes())
            self.assertEqual((back.status, back.reason), (status, error.reason))
        return error

    def test_mandatory_headers_missing_means_drop(self) -> None:
        """Without Via, From, To, Call-ID or CSeq no response can be routed: drop."""
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            self.assertRejected(request_text(**{name.replace("-", "_"): None}), 400,
                                f"Missing {name} header", answerable=False)
        self.assertRejected(request_text(Call_ID=" "), 400, "Empty Call-ID", answerable=False)

    def test_unparseable_via_or_cseq_means_drop(self) -> None:
        self.assertRejected(request_text(Via="SIP/2.0/UDP"), 400, "Bad Via header", False)
        self.assertRejected(request_text(Via="SIP/2.0/UDP h:\u00b2;branch=z9hG4bKx"), 400,
                            "bad port", False)
        self.assertRejected(request_text(CSeq="one OPTIONS"), 400, "Bad CSeq header", False)
        self.assertRejected(request_text(CSeq="\u00b2 OPTIONS"), 400, "Bad CSeq header", False)

    def test_answerable_problems(self) -> None:
        cases = [
            (request_text(CSeq="1 INVITE"), 400, "CSeq method INVITE does not match"),
            (request_text(From="<sip:a@b"), 400, "Bad From header"),
            (request_text(To='"open <sip:a@b>'), 400, "Bad To header"),
            (request_text(Max_Forwards="many"), 400, "Max-Forwards"),
            (request_text(start="OPTIONS sip:@192.0.2.10 SIP/2.0"), 400, "Bad Request-URI"),
            (request_text(start="OPTIONS http://example.com/ SIP/2.0"), 416, "not supported"),
            (request_text(start="OPTIONS sip:srs@192.0.2.10 SIP/3.0"), 505, "SIP/3.0 not supported"),
            (request_text().replace(b"\r\nTo:", b"\r\nBroken line\r\nTo:"), 400,
             "Malformed header line"),
            (request_text().replace(b"\r\nTo:", b"\r\nFrom: <sip:x@y>;tag=2\r\nTo:"), 400,
             "More than one From header"),
        ]
        for data, status, says in cases:
            self.assertRejected(data, status, says, answerable=True)

    def test_cseq_method_mismatch_is_its_own_error_with_the_whole_request(self) -> None:
        """Raised only when nothing else is wrong, so the UAS may still take it in a dialog."""
        error = self.assertRejected(request_text(CSeq="1 INVITE"), 400,
                                    "CSeq method INVITE does not match request method OPTIONS", True)
        self.assertIsInstance(error, CSeqMethodMismatch)
        self.assertEqual((error.request.method, error.request.cseq.method), ("OPTIONS", "INVITE"))
        other = self.assertRejected(request_text(CSeq="1 INVITE", Max_Forwards="many"), 400,
                                    "Max-Forwards", True)
        self.assertNotIsInstance(other, CSeqMethodMismatch)
        uri = self.assertRejected(request_text(CSeq="1 INVITE", start="OPTIONS http://x/ SIP/2.0"),
                                  416, "not supported", True)
        self.assertNotIsInstance(uri, CSeqMethodMismatch)

    def test_blank_mandatory_value_means_drop(self) -> None:
        """A From that is only a control character cannot be copied into an answer."""
        self.assertRejected(request_text(start="OPTIONS  sip:x SIP/2.0 extra", From="\x00"), 400,
                            "Malformed request line", answerable=False)

    def test_malformed_request_line_answered_with_cseq_method(self) -> None:
        """An unreadable request line still gets a 400 when the headers allow it."""
        error = self.assertRejected(request_text(start="OPTIONS  sip:x SIP/2.0 extra"), 400,
                                    "Malformed request line", True)
        self.assertEqual(error.request.method, "OPTIONS")

    def test_content_length_problems(self) -> None:
        self.assertRejected(invite(length=len(BODY) + 1), 400, "exceeds the", True)
        self.assertRejected(invite().replace(b"Content-Length: ", b"Content-Length: 1x"), 400,
                            "is not a number", True)
        self.assertRejected(invite().replace(b"Content-Length: ", b"Content-Length: -"), 400,
                            "is not a number", True)
        huge = invite().replace(b"Content-Length: ", b"Content-Length: " + b"9" * 5000)
        self.assertRejected(huge, 400, "exceeds the", True)
        two = invite().replace(b"\r\nMIME", b"\r\nl: 3\r\nMIME")
        self.assertRejected(two, 400, "Conflicting Content-Length", True)

    def test_control_characters_in_a_value(self) -> None:
        """A bare CR in a header is refused, and never copied into the 400."""
        data = request_text(From="<sip:a@b>;tag=1\rInjected: yes")
        error = self.assertRejected(data, 400, "control characters", True)
        wire = make_response(error.request, 400, error.reason).to_bytes()
        self.assertNotIn(b"\rInjected", wire)

    def test_empty_and_blank(self) -> None:
        for data in (b"", b"\r\n\r\n", b"\n"):
            self.assertRejected(data, 400, "Empty message", False)

    def test_garbage(self) -> None:
        self.assertRejected(b"\x00\xff\xfe garbage", 400, "Malformed request line", False)

    def test_invalid_utf8_still_answerable(self) -> None:
        """Non-UTF-8 bytes become U+FFFD; the request can still be answered."""
        data = request_text(Subject="x").replace(b"Subject: x", b"Subject: \xff\xfe")
        msg = parse_message(data)
        self.assertEqual(msg.headers.get("Subject"), "\ufffd\ufffd")

    def test_hostile_text_bounded_in_reason(self) -> None:
        """A 60 KB bad value does not become a 60 KB reason phrase."""
        data = request_text(From="<" + "a" * 60000)
        error = self.assertRejected(data, 400, "Bad From header", True)
        self.assertLessEqual(len(error.reason), 200)


class SerialiseTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """Serialising a parsed message and parsing it again gives the same message."""
        first = parse_message(invite())
        wire = first.to_bytes()
        second = parse_message(wire)
        self.assertEqual(list(second.headers), list(first.headers))
        self.assertEqual(second.body, first.body)
        self.assertEqual(bytes(second), wire)

    def test_compact_names_written_long_and_length_recomputed(self) -> None:
        """Names are written canonically and Content-Length always matches the body."""
        msg = parse_message(invite())
        msg.body = b"short"
        wire = msg.to_bytes()
        self.assertIn(b"\r\nSupported: timer, 100rel\r\n", wire)
        self.assertIn(b"\r\nContent-Type: multipart/mixed", wire)
        self.assertTrue(wire.endswith(b"\r\nContent-Length: 5\r\n\r\nshort"))
        self.assertEqual(wire.count(b"Content-Length"), 1)

    def test_request_built_by_hand(self) -> None:
        headers = Headers([("v", "SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKb"),
                           ("From", "<sip:srs@192.0.2.10>;tag=s"), ("t", "<sip:src@198.51.100.7>"),
                           ("i", "x"), ("CSeq", "2 BYE")])
        wire = Request("BYE", "sip:src@198.51.100.7", headers=headers).to_bytes()
        self.assertEqual(wire, (b"BYE sip:src@198.51.100.7 SIP/2.0\r\n"
                                b"Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKb\r\n"
                                b"From: <sip:srs@192.0.2.10>;tag=s\r\nTo: <sip:src@198.51.100.7>\r\n"
                                b"Call-ID: x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"))

    def test_reason_phrase_made_safe(self) -> None:
        """A Response reason with CR/LF or control characters is written on one line."""
        response = Response(400, "bad\r\nVia: injected\x00 here")
        self.assertEqual(response.reason, "bad Via: injected here")
        self.assertTrue(response.to_bytes().startswith(b"SIP/2.0 400 bad Via: injected here\r\n"))
        self.assertEqual(Response(486).reason, "Busy Here")
        self.assertEqual(Response(499).reason, "Unknown")
        self.assertEqual(Response(400, "\r\n").reason, "Bad Request")

    def test_header_values_cannot_break_lines(self) -> None:
        headers = Headers()
        headers.add("Warning", "399 x\r\nVia: evil")
        self.assertEqual(headers.get("Warning"), "399 x  Via: evil")


class ReasonPhraseTests(SynchronousTestCase):
    def test_single_line_printable_bounded(self) -> None:
        text = reason_phrase("a\r\nb\tc\u2028d\x7f" + "e" * 500)
        self.assertTrue(text.startswith("a b c d e"))
        self.assertTrue(text.isprintable())
        self.assertLessEqual(len(text), 200)
        self.assertTrue(text.endswith("..."))

    def test_default_when_empty(self) -> None:
        self.assertEqual(reason_phrase(" \r\n "), "Bad Request")
        self.assertEqual(reason_phrase("", "Server Internal Error"), "Server Internal Error")

    def test_parse_error_reason_is_safe(self) -> None:
        error = SipParseError("line1\r\nline2")
        self.assertEqual(error.reason, "line1 line2")
        self.assertEqual(str(error), "line1 line2")


class HeadersTests(SynchronousTestCase):
    def test_canonical_names(self) -> None:
        self.assertEqual(canonical_name("CALL-ID"), "Call-ID")
        self.assertEqual(canonical_name("cseq"), "CSeq")
        self.assertEqual(canonical_name("l"), "Content-Length")
        self.assertEqual(canonical_name("x-vendor-id"), "X-Vendor-Id")
        self.assertEqual(canonical_name("www-authenticate"), "WWW-Authenticate")

    def test_set_replaces_all_in_place(self) -> None:
        headers = Headers([("X-A", "1"), ("X-B", "2"), ("x-a", "3"), ("X-C", "4")])
        headers.set("x-A", "9")
        self.assertEqual(list(headers), [("X-A", "9"), ("X-B", "2"), ("X-C", "4")])
        headers.set("X-D", "5")
        self.assertEqual(headers.names(), ["X-A", "X-B", "X-C", "X-D"])

    def test_remove_count_copy(self) -> None:
        headers = Headers([("Route", "<sip:a>"), ("Route", "<sip:b>"), ("X", "1")])
        copy = headers.copy()
        self.assertEqual(headers.count("route"), 2)
        headers.remove("ROUTE")
        self.assertEqual(len(headers), 1)
        self.assertEqual(len(copy), 3)
        self.assertNotIn("Route", headers)

    def test_replace_first_keeps_other_values_and_order(self) -> None:
        headers = Headers([("From", "f"), ("Via", ""), ("Via", "SIP/2.0/UDP a, SIP/2.0/UDP b"),
                           ("To", "t"), ("Via", "SIP/2.0/UDP c")])
        headers.replace_first("Via", "SIP/2.0/UDP A;received=x")
        self.assertEqual(list(headers), [
            ("From", "f"), ("Via", ""), ("Via", "SIP/2.0/UDP A;received=x, SIP/2.0/UDP b"),
            ("To", "t"), ("Via", "SIP/2.0/UDP c")])
        self.assertEqual(headers.get_all("Via"),
                         ["SIP/2.0/UDP A;received=x", "SIP/2.0/UDP b", "SIP/2.0/UDP c"])

    def test_missing_typed_headers_raise_header_error(self) -> None:
        request = Request("OPTIONS", "sip:a@b")
        for attr in ("call_id", "cseq", "from_", "to", "top_via"):
            with self.assertRaises(HeaderError, msg=attr):
                getattr(request, attr)


class MakeResponseTests(SynchronousTestCase):
    def setUp(self) -> None:
        data = invite().replace(
            b"\r\nFrom",
            b"\r\nVia: SIP/2.0/TCP 203.0.113.5:5060;branch=z9hG4bKproxy\r\nTimestamp: 54\r\nFrom")
        self.request = parse_message(data)

    def test_copies_per_rfc3261_8_2_6(self) -> None:
        """Via (all, in order), From, Call-ID and CSeq are copied; To gets our tag."""
        response = make_response(self.request, 200, to_tag="srs1",
                                 headers=[("Contact", "<sip:srs@192.0.2.10>")], body=b"v=0\r\n")
        self.assertEqual(response.headers.get_all("Via"), self.request.headers.get_all("Via"))
        self.assertEqual(response.headers.get("From"), self.request.headers.get("From"))
        self.assertEqual(response.to.tag, "srs1")
        self.assertEqual(response.call_id, self.request.call_id)
        self.assertEqual(str(response.cseq), "100008 INVITE")
        self.assertEqual(response.headers.get("Contact"), "<sip:srs@192.0.2.10>")
        self.assertNotIn("Timestamp", response.headers)
        back = parse_message(response.to_bytes())
        self.assertEqual((back.status, back.reason, back.body), (200, "OK", b"v=0\r\n"))

    def test_100_has_no_tag_and_copies_timestamp(self) -> None:
        response = make_response(self.request, 100, to_tag="srs1")
        self.assertIsNone(response.to.tag)
        self.assertEqual(response.headers.get("Timestamp"), "54")
        self.assertEqual(response.reason, "Trying")

    def test_existing_to_tag_kept(self) -> None:
        request = parse_message(request_text(To="<sip:srs@192.0.2.10>;tag=mine"))
        self.assertEqual(make_response(request, 200, to_tag="other").to.tag, "mine")

    def test_custom_reason(self) -> None:
        response = make_response(self.request, 488, "No common codec")
        self.assertTrue(response.to_bytes().startswith(b"SIP/2.0 488 No common codec\r\n"))


# -- fuzzing -------------------------------------------------------------------

FUZZ_SEED = invite()


def check_only_parse_errors(test: SynchronousTestCase, data: bytes) -> None:
    """The fuzz invariant: a message, or a SipParseError that can be acted on."""
    try:
        message = parse_message(data)
    except SipParseError as error:
        test.assertTrue(error.reason and error.reason.isprintable(), repr(error.reason))
        test.assertLessEqual(len(error.reason), 200)
        if error.request is not None:
            response = make_response(error.request, error.status, error.reason, to_tag="fz")
            wire = response.to_bytes()
            head = wire.split(b"\r\n\r\n", 1)[0]
            test.assertNotIn(b"\n", head.replace(b"\r\n", b""))
            test.assertNotIn(b"\r", head.replace(b"\r\n", b""))
            back = parse_message(wire)
            test.assertIsInstance(back, Response)
            test.assertEqual(back.status, error.status)
    else:
        message.to_bytes()


_FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


class FuzzTests(SynchronousTestCase):
    @_FUZZ
    @given(st.binary(max_size=600))
    def test_random_bytes(self, data: bytes) -> None:
        check_only_parse_errors(self, data)

    @_FUZZ
    @given(st.binary(max_size=300))
    def test_random_bytes_after_a_request_line(self, data: bytes) -> None:
        check_only_parse_errors(self, b"INVITE sip:srs@192.0.2.10 SIP/2.0\r\n" + data)

    @_FUZZ
    @given(st.data())
    def test_mutated_invite(self, data) -> None:
        """Byte flips, insertions and deletions anywhere in a real-shaped INVITE."""
        buf = bytearray(FUZZ_SEED)
        for _ in range(data.draw(st.integers(1, 8), label="edits")):
            op = data.draw(st.sampled_from(["flip", "insert", "delete", "dup-line"]))
            at = data.draw(st.integers(0, len(buf)))
            if op == "flip" and at < len(buf):
                buf[at] = data.draw(st.sampled_from(
                    [0, 9, 10, 13, 32, 34, 44, 58, 59, 60, 62, 64, 92, 0xC2, 0xFF]
                    + list(range(48, 58))))
            elif op == "insert":
                buf[at:at] = data.draw(st.sampled_from(
                    [b"\r\n", b"\r\n ", b";", b"\"", b"<", b">", b":", b",", b"\xc2\xb2",
                     b"\r\n\r\n", b"\x00", b"Via: x\r\n", b"9" * 30]))
            elif op == "delete":
                del buf[at: at + data.draw(st.integers(1, 20))]
            else:
                line_end = buf.find(b"\r\n", at)
                line_start = buf.rfind(b"\r\n", 0, at) + 2
                if line_end > line_start:
                    buf[line_end:line_end] = b"\r\n" + buf[line_start:line_end]
        check_only_parse_errors(self, bytes(buf))

    def test_every_single_substitution_in_the_head(self) -> None:
        """Each header byte replaced by each troublesome character, exhaustively.

        Random edits rarely land on the few bytes that matter (a CSeq digit
        turned into a superscript two passes str.isdigit() but not int()).
        """
        head_end = FUZZ_SEED.index(b"\r\n\r\n")
        specials = [b"\x00", b"\t", b"\n", b"\r", b" ", b'"', b",", b":", b";", b"<", b">",
                    b"@", b"[", b"\\", b"\xc2\xb2", b"\xd9\xa3", b"\xff"]
        for at in range(head_end):
            for special in specials:
                check_only_parse_errors(self, FUZZ_SEED[:at] + special + FUZZ_SEED[at + 1 :])

    def test_every_truncation(self) -> None:
        """Each prefix of the INVITE parses or fails with SipParseError."""
        for n in range(len(FUZZ_SEED) + 1):
            check_only_parse_errors(self, FUZZ_SEED[:n])

    def test_every_header_removed(self) -> None:
        lines = FUZZ_SEED.split(b"\r\n")
        for i in range(1, 20):
            check_only_parse_errors(self, b"\r\n".join(lines[:i] + lines[i + 1 :]))

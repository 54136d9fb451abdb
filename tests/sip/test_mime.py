"""Tests for siprec.sip.mime: Content-Type values and MIME multipart splitting."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from siprec.sip.mime import (
    BodyPart,
    MultipartError,
    parse_content_type,
    parse_multipart,
    parse_multipart_with_tolerances,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str, crlf: bool = True) -> bytes:
    """Fixture files are stored with LF; SIP sends CRLF."""
    data = (FIXTURES / name).read_bytes()
    return data.replace(b"\n", b"\r\n") if crlf else data


CISCO_TYPE = "multipart/mixed;boundary=Cube-Boundary-77"


class ParseContentTypeTests(SynchronousTestCase):
    def test_type_and_boundary(self) -> None:
        """A plain multipart Content-Type yields its type and boundary."""
        self.assertEqual(
            parse_content_type("multipart/mixed;boundary=sonus-content-delim"),
            ("multipart/mixed", {"boundary": "sonus-content-delim"}),
        )

    def test_case_and_spaces(self) -> None:
        """Type and parameter names are lower-cased; spaces are ignored; values keep their case."""
        self.assertEqual(
            parse_content_type(" Multipart/Mixed ; Boundary = AbC ; CHARSET=UTF-8 "),
            ("multipart/mixed", {"boundary": "AbC", "charset": "UTF-8"}),
        )

    def test_space_around_slash(self) -> None:
        self.assertEqual(parse_content_type("application / SDP")[0], "application/sdp")

    def test_quoted_value_with_semicolon_and_escapes(self) -> None:
        """Quoted values may hold ';' and quoted-pairs (RFC 2045 / RFC 3261)."""
        mime, params = parse_content_type(
            'multipart/mixed; boundary="a;b \\"c\\" d"; x=1'
        )
        self.assertEqual(mime, "multipart/mixed")
        self.assertEqual(params, {"boundary": 'a;b "c" d', "x": "1"})

    def test_unterminated_quote(self) -> None:
        """An unterminated quote keeps the rest of the value instead of failing."""
        self.assertEqual(parse_content_type('a/b; boundary="abc')[1], {"boundary": "abc"})

    def test_disposition_value(self) -> None:
        """Content-Disposition uses the same syntax."""
        self.assertEqual(
            parse_content_type("session; handling=required"),
            ("session", {"handling": "required"}),
        )

    def test_junk_parameters_dropped(self) -> None:
        """Parameters without '=' or without a name are dropped; the first repeat wins."""
        self.assertEqual(
            parse_content_type("a/b; junk; =x; k=1; k=2")[1], {"k": "1"}
        )

    def test_empty(self) -> None:
        self.assertEqual(parse_content_type(""), ("", {}))


class ParseMultipartTests(SynchronousTestCase):
    def test_three_parts_crlf(self) -> None:
        """Cisco CUBE style: SDP, metadata and application/gtd, CRLF line ends."""
        parts = parse_multipart(CISCO_TYPE, fixture("cube_multipart.txt"))
        self.assertEqual(
            [part.content_type for part in parts],
            ["application/sdp", "application/rs-metadata+xml", "application/gtd"],
        )
        sdp, metadata, gtd = parts
        self.assertTrue(sdp.body.startswith(b"v=0\r\no=CiscoSystemsSIP-GW-UserAgent"))
        # The blank line is SDP content; the CRLF before the delimiter is not.
        self.assertTrue(sdp.body.endswith(b"a=label:2\r\n"))
        self.assertEqual(sdp.disposition, "session")
        self.assertEqual(sdp.disposition_params, {"handling": "required"})
        self.assertEqual(
            sdp.headers,
            [
                ("Content-Disposition", "session;handling=required"),
                ("Content-Type", "application/sdp"),
            ],
        )
        self.assertTrue(metadata.body.startswith(b"<?xml"))
        self.assertTrue(metadata.body.endswith(b"</recording>\r\n"))
        self.assertEqual(metadata.disposition, "recording-session")
        self.assertEqual(gtd.body, b"IAM,\r\nGCI,5c2b0d6e1f0a11eeb9f1a4bf0155d3c1\r\n")
        self.assertEqual(gtd.disposition_params, {"handling": "optional"})

    def test_lf_only(self) -> None:
        """LF-only line ends split the same way."""
        crlf = parse_multipart(CISCO_TYPE, fixture("cube_multipart.txt"))
        lf = parse_multipart(CISCO_TYPE, fixture("cube_multipart.txt", crlf=False))
        self.assertEqual([p.content_type for p in lf], [p.content_type for p in crlf])
        self.assertEqual([p.body.replace(b"\n", b"\r\n") for p in lf], [p.body for p in crlf])

    def test_mixed_line_ends(self) -> None:
        """Delimiters and headers with CRLF and LF mixed in one body."""
        body = (
            b"--b\r\nContent-Type: application/sdp\n\nv=0\r\n"
            b"--b\nContent-Type: text/plain\r\n\r\nhello\n--b--\r\n"
        )
        parts = parse_multipart("multipart/mixed; boundary=b", body)
        self.assertEqual([p.body for p in parts], [b"v=0", b"hello"])

    def test_quoted_boundary(self) -> None:
        """A quoted boundary, including spaces, is unquoted before use."""
        body = b"--my boundary\r\nContent-Type: text/plain\r\n\r\nx\r\n--my boundary--\r\n"
        parts = parse_multipart('multipart/mixed; boundary="my boundary"', body)
        self.assertEqual([p.body for p in parts], [b"x"])

    def test_preamble_and_epilogue_ignored(self) -> None:
        """Text before the first delimiter and after the close delimiter is not a part."""
        body = (
            b"This is a preamble.\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n"
            b"--b--\r\nepilogue\r\n--b\r\nContent-Type: text/plain\r\n\r\nnot a part\r\n"
        )
        parts, notes = parse_multipart_with_tolerances("multipart/mixed;boundary=b", body)
        self.assertEqual([p.body for p in parts], [b"one"])
        self.assertEqual(notes, ())

    def test_no_closing_delimiter(self) -> None:
        """A missing close delimiter is tolerated and noted; the last part runs to the end."""
        body = b"--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\nContent-Type: text/plain\r\n\r\ntwo\r\n"
        parts, notes = parse_multipart_with_tolerances("multipart/mixed;boundary=b", body)
        self.assertEqual([p.body for p in parts], [b"one", b"two\r\n"])
        self.assertEqual(notes, ("multipart body has no closing delimiter '--b--'",))

    def test_trailing_space_after_delimiters(self) -> None:
        """Transport padding after a delimiter (Oracle's '--boundary-- ') is accepted."""
        acme = (b"--acme-9\nContent-Type: application/sdp\n\nv=0\n\n--acme-9\n"
                b"Content-Type: application/rs-metadata+xml\n\n<recording/>\n--acme-9-- \n")
        parts, notes = parse_multipart_with_tolerances("multipart/mixed;boundary=acme-9", acme)
        self.assertEqual([p.body for p in parts], [b"v=0\n", b"<recording/>"])
        self.assertEqual(notes, ())
        body = b"--b \t\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--  \r\n"
        self.assertEqual([p.body for p in parse_multipart("multipart/mixed;boundary=b", body)], [b"x"])

    def test_longer_boundary_is_content(self) -> None:
        """A line starting with the delimiter but continuing with other text is content."""
        body = b"--b\r\nContent-Type: text/plain\r\n\r\n--bx\r\n--b-z\r\n--b--\r\n"
        parts = parse_multipart("multipart/mixed;boundary=b", body)
        self.assertEqual([p.body for p in parts], [b"--bx\r\n--b-z"])

    def test_header_folding(self) -> None:
        """Folded part headers are unfolded into one value."""
        body = (
            b"--b\r\nContent-Type: application/sdp;\r\n\tcharset=utf-8\r\n"
            b"Content-Disposition: session;\r\n  handling=required\r\n\r\nv=0\r\n--b--"
        )
        (part,) = parse_multipart("multipart/mixed;boundary=b", body)
        self.assertEqual(part.params, {"charset": "utf-8"})
        self.assertEqual(part.disposition_params, {"handling": "required"})
        self.assertEqual(part.header("content-type"), "application/sdp; charset=utf-8")

    def test_uppercase_types(self) -> None:
        """Part types and dispositions are lower-cased; headers keep their spelling."""
        body = (
            b"--b\r\nCONTENT-TYPE: Application/SDP\r\ncontent-disposition: Session\r\n\r\n"
            b"v=0\r\n--b--\r\n"
        )
        (part,) = parse_multipart("Multipart/Mixed;Boundary=b", body)
        self.assertEqual(part.content_type, "application/sdp")
        self.assertEqual(part.disposition, "session")
        self.assertEqual(part.headers[0], ("CONTENT-TYPE", "Application/SDP"))

    def test_part_without_headers_is_text_plain(self) -> None:
        """RFC 2046: a part without Content-Type is text/plain."""
        (part,) = parse_multipart("multipart/mixed;boundary=b", b"--b\r\n\r\nhello\r\n--b--")
        self.assertEqual((part.content_type, part.headers, part.body), ("text/plain", [], b"hello"))

    def test_part_without_blank_line(self) -> None:
        """Content straight after the delimiter is read as the body, with a note."""
        parts, notes = parse_multipart_with_tolerances(
            "multipart/mixed;boundary=b", b"--b\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n--b--"
        )
        self.assertEqual(parts[0].body, b"v=0\r\no=- 1 1 IN IP4 192.0.2.1")
        self.assertIn("no blank line after its headers", notes[0])

    def test_empty_part_ignored(self) -> None:
        parts, notes = parse_multipart_with_tolerances(
            "multipart/mixed;boundary=b", b"--b\r\n\r\n--b\r\n\r\nx\r\n--b--"
        )
        self.assertEqual([p.body for p in parts], [b"x"])
        self.assertEqual(notes, ("empty body part 1 was ignored",))

    def test_body_bytes_exact(self) -> None:
        """Binary content, CRs and a missing final newline pass through untouched."""
        payload = b"\x00\xff\r\n\r\n\x01--not-a-boundary\r"
        body = b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--b--"
        (part,) = parse_multipart("multipart/mixed;boundary=b", body)
        self.assertEqual(part.body, payload)

    def test_nested_multipart_is_one_part(self) -> None:
        """A nested multipart comes back whole and can be parsed again."""
        inner = b"--in\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--in--"
        body = b"--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n" + inner + b"\r\n--out--"
        (part,) = parse_multipart("multipart/mixed;boundary=out", body)
        self.assertEqual(part.content_type, "multipart/alternative")
        self.assertEqual(part.body, inner)
        (sdp,) = parse_multipart(part.header("Content-Type") or "", part.body)
        self.assertEqual(sdp.body, b"v=0")

    def test_missing_boundary(self) -> None:
        with self.assertRaises(MultipartError) as caught:
            parse_multipart("multipart/mixed", b"--b\r\n\r\nx\r\n--b--")
        self.assertEqual(str(caught.exception), "Content-Type 'multipart/mixed' has no boundary parameter")

    def test_no_delimiter_in_body(self) -> None:
        with self.assertRaises(MultipartError) as caught:
            parse_multipart("multipart/mixed;boundary=zz", b"v=0\r\n")
        self.assertEqual(str(caught.exception), "no delimiter line '--zz' found in the body")

    def test_only_close_delimiter(self) -> None:
        with self.assertRaises(MultipartError) as caught:
            parse_multipart("multipart/mixed;boundary=zz", b"preamble\r\n--zz--\r\n")
        self.assertIn("has no parts", str(caught.exception))

    def test_body_part_is_frozen(self) -> None:
        (part,) = parse_multipart("multipart/mixed;boundary=b", b"--b\r\n\r\nx\r\n--b--")
        self.assertIsInstance(part, BodyPart)
        with self.assertRaises(AttributeError):
            part.body = b"y"  # type: ignore[misc]

    def test_every_truncation(self) -> None:
        """Any prefix of a real body either parses or raises MultipartError."""
        data = fixture("cube_multipart.txt")
        for end in range(len(data) + 1):
            try:
                parts = parse_multipart(CISCO_TYPE, data[:end])
            except MultipartError:
                continue
            self.assertTrue(parts)

    @settings(max_examples=300, deadline=None)
    @given(
        st.binary(max_size=400),
        st.sampled_from(["b", "Cube-Boundary-77", "x y", "--"]),
    )
    def test_garbage_only_multipart_error(self, body: bytes, boundary: str) -> None:
        """Garbage bodies give parts or MultipartError, never another exception."""
        try:
            parse_multipart(f'multipart/mixed; boundary="{boundary}"', body)
        except MultipartError:
            pass

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.sampled_from([b"--b", b"--b--", b"\r\n", b"\n", b"Content-Type: a/b", b" x", b":", b"v=0", b" "]), max_size=30))
    def test_structured_garbage(self, pieces: list[bytes]) -> None:
        """Delimiter-ish token soup never escapes as another exception."""
        try:
            parts = parse_multipart("multipart/mixed;boundary=b", b"".join(pieces))
        except MultipartError:
            return
        for part in parts:
            self.assertIsInstance(part.body, bytes)

"""Tests for siprec.recording.multipart: which part of a SIPREC body is SDP, which metadata.

The MIME splitting underneath is tested in tests/sip/test_mime.py.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from siprec.recording.multipart import METADATA_TYPES, SiprecBody, split_siprec_body
from siprec.sip.mime import MultipartError, UnsupportedBody

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str, crlf: bool = True) -> bytes:
    """Fixture files are stored with LF; SIP sends CRLF."""
    data = (FIXTURES / name).read_bytes()
    return data.replace(b"\n", b"\r\n") if crlf else data


CISCO_TYPE = "multipart/mixed;boundary=Cube-Boundary-77"


class SplitSiprecBodyTests(SynchronousTestCase):
    def test_empty_body(self) -> None:
        """No body (or only whitespace) gives an empty SiprecBody whatever the type says."""
        for content_type in (None, "application/sdp", "multipart/mixed"):
            self.assertEqual(split_siprec_body(content_type, b""), SiprecBody())
        self.assertEqual(split_siprec_body(None, b"\r\n"), SiprecBody())

    def test_standalone_sdp_any_case(self) -> None:
        for content_type in ("application/sdp", "application/SDP", "Application/Sdp; charset=x"):
            result = split_siprec_body(content_type, b"v=0\r\n")
            self.assertEqual(result, SiprecBody(sdp=b"v=0\r\n"))

    def test_standalone_metadata_both_types(self) -> None:
        """Metadata alone (Avaya's metadata-only UPDATE) under either content type."""
        self.assertEqual(METADATA_TYPES, {"application/rs-metadata+xml", "application/rs-metadata"})
        body = fixture("avaya_sbce_update.xml")
        for content_type in ("application/rs-metadata", "application/RS-Metadata+XML"):
            result = split_siprec_body(content_type, body, "recording-session")
            self.assertEqual(result, SiprecBody(metadata=(body,)))

    def test_cisco_three_parts(self) -> None:
        """SDP and metadata are picked out; the gtd part is kept in other."""
        result = split_siprec_body(CISCO_TYPE, fixture("cisco_cube_body.txt"))
        self.assertTrue(result.sdp and result.sdp.startswith(b"v=0"))
        self.assertEqual(len(result.metadata), 1)
        self.assertIn(b"<recording", result.metadata[0])
        self.assertEqual([p.content_type for p in result.other], ["application/gtd"])
        self.assertEqual(result.tolerances, ())

    def test_sonus_disposition_on_sdp(self) -> None:
        """Sonus puts Content-Disposition on the SDP part too; no quirk to report."""
        result = split_siprec_body(
            "multipart/mixed;boundary=ribbon-delim", fixture("sonus_ribbon_body.txt")
        )
        self.assertTrue(result.sdp and b"Sonus_UAC" in result.sdp)
        self.assertIn(b"tns:recording", result.metadata[0])
        self.assertEqual(result.tolerances, ("multipart body has no closing delimiter '--ribbon-delim--'",))

    def test_avaya_lf_only(self) -> None:
        result = split_siprec_body(
            "multipart/mixed;boundary=avaya-sbce", fixture("avaya_sbce_body.txt", crlf=False)
        )
        self.assertTrue(result.sdp and result.sdp.endswith(b"a=inactive\n"))
        self.assertTrue(result.metadata[0].startswith(b"<?xml"))

    def test_metadata_parts_in_order(self) -> None:
        body = (
            b"--b\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<recording>1</recording>\r\n"
            b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
            b"--b\r\nContent-Type: application/rs-metadata\r\n\r\n<recording>2</recording>\r\n--b--"
        )
        result = split_siprec_body("multipart/mixed;boundary=b", body)
        self.assertEqual(result.metadata, (b"<recording>1</recording>", b"<recording>2</recording>"))
        self.assertEqual(result.sdp, b"v=0")

    def test_metadata_by_disposition(self) -> None:
        """A part of another type marked recording-session is metadata, with a note."""
        body = (
            b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
            b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: recording-session\r\n\r\n"
            b"<recording/>\r\n--b--"
        )
        result = split_siprec_body("multipart/mixed;boundary=b", body)
        self.assertEqual(result.metadata, (b"<recording/>",))
        self.assertEqual(result.other, ())
        self.assertIn("recognised by its Content-Disposition", result.tolerances[0])

    def test_standalone_metadata_by_disposition(self) -> None:
        result = split_siprec_body("application/octet-stream", b"<recording/>", "Recording-Session")
        self.assertEqual(result.metadata, (b"<recording/>",))
        self.assertTrue(result.tolerances)

    def test_generic_xml_with_recording_root(self) -> None:
        result = split_siprec_body("application/xml", b'<?xml version="1.0"?>\n<rs:recording xmlns:rs="x"/>')
        self.assertEqual(len(result.metadata), 1)
        self.assertEqual(result.tolerances, ("recording metadata labelled 'application/xml' accepted",))
        with self.assertRaises(UnsupportedBody):
            split_siprec_body("application/xml", b"<other/>")

    def test_two_sdp_parts(self) -> None:
        """The first SDP is used; the second is kept in other and noted."""
        body = (
            b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0 first\r\n"
            b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0 second\r\n--b--"
        )
        result = split_siprec_body("multipart/mixed;boundary=b", body)
        self.assertEqual(result.sdp, b"v=0 first")
        self.assertEqual([p.body for p in result.other], [b"v=0 second"])
        self.assertEqual(result.tolerances, ("more than one SDP body part; the first one was used",))

    def test_nested_multipart(self) -> None:
        """SDP and metadata inside one nested multipart are found."""
        inner = (
            b"--in\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
            b"--in\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<recording/>\r\n--in--"
        )
        body = b"--out\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n" + inner + b"\r\n--out--"
        result = split_siprec_body("multipart/mixed; boundary=out", body)
        self.assertEqual((result.sdp, result.metadata), (b"v=0", (b"<recording/>",)))

    def test_deeper_nesting_stays_opaque(self) -> None:
        """Only one level of nesting is opened; deeper multiparts are kept as parts."""
        level2 = b"--l2\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--l2--"
        level1 = b"--l1\r\nContent-Type: multipart/mixed; boundary=l2\r\n\r\n" + level2 + b"\r\n--l1--"
        body = b"--l0\r\nContent-Type: multipart/mixed; boundary=l1\r\n\r\n" + level1 + b"\r\n--l0--"
        result = split_siprec_body("multipart/mixed; boundary=l0", body)
        self.assertIsNone(result.sdp)
        self.assertEqual([p.content_type for p in result.other], ["multipart/mixed"])

    def test_no_content_type_sdp(self) -> None:
        result = split_siprec_body(None, b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n")
        self.assertTrue(result.sdp)
        self.assertEqual(result.tolerances, ("body without Content-Type read as SDP",))

    def test_no_content_type_metadata(self) -> None:
        body = fixture("rfc7865_complete.xml")
        result = split_siprec_body("", body)
        self.assertEqual(result.metadata, (body,))
        self.assertEqual(result.tolerances, ("body without Content-Type read as recording metadata",))

    def test_no_content_type_multipart(self) -> None:
        result = split_siprec_body(None, fixture("cisco_cube_body.txt"))
        self.assertTrue(result.sdp)
        self.assertEqual(len(result.metadata), 1)
        self.assertIn("read as multipart with boundary 'Cube-Boundary-77'", result.tolerances[0])

    def test_recording_metadata_root_sniffed(self) -> None:
        """<recording_metadata> (pre-RFC BroadWorks/Webex) is metadata wherever <recording> is."""
        doc = b'<?xml version="1.0"?>\r\n<recording_metadata xmlns="urn:ietf:params:xml:ns:siprec"/>'
        self.assertEqual(split_siprec_body(None, doc).metadata, (doc,))
        self.assertEqual(split_siprec_body("application/xml", doc).metadata, (doc,))
        body = b"--b\r\n\r\n" + doc + b"\r\n--b--"
        self.assertEqual(split_siprec_body("multipart/mixed;boundary=b", body).metadata, (doc,))
        with self.assertRaises(UnsupportedBody):
            split_siprec_body("application/xml", b"<recording_other/>")

    def test_metadata_part_before_sdp(self) -> None:
        """BroadWorks sends the metadata part first, with a Content-Length of its own."""
        body = (b"--B\r\nContent-Type:application/rs-metadata+xml\r\nContent-Disposition:recording-session"
                b"\r\nContent-Length:21\r\n\r\n<recording_metadata/>\r\n--B\r\nContent-Type: application/sdp"
                b"\r\n\r\nv=0\r\n\r\n--B--\r\n")
        result = split_siprec_body("multipart/mixed;boundary=B", body)
        self.assertEqual((result.sdp, result.metadata, result.tolerances),
                         (b"v=0\r\n", (b"<recording_metadata/>",), ()))

    def test_errors_are_the_sip_cores(self) -> None:
        """The splitter raises the SIP core's own error types, so the core maps them to 415/400."""
        from siprec.sip import mime
        self.assertIs(UnsupportedBody, mime.UnsupportedBody)
        self.assertIs(MultipartError, mime.MultipartError)

    def test_no_content_type_garbage(self) -> None:
        with self.assertRaises(UnsupportedBody) as caught:
            split_siprec_body(None, b"hello world")
        self.assertEqual(caught.exception.content_type, "")
        self.assertIn("no Content-Type", str(caught.exception))

    def test_unknown_standalone_type(self) -> None:
        """An unusable type raises UnsupportedBody naming it, for the 415."""
        with self.assertRaises(UnsupportedBody) as caught:
            split_siprec_body("Text/Plain; charset=utf-8", b"v=0\r\n")
        self.assertEqual(caught.exception.content_type, "text/plain")
        self.assertEqual(str(caught.exception), "unsupported body type 'text/plain'")

    def test_multipart_without_boundary_sniffed(self) -> None:
        result = split_siprec_body("multipart/mixed", fixture("cisco_cube_body.txt"))
        self.assertTrue(result.sdp)
        self.assertIn("without boundary", result.tolerances[0])

    def test_multipart_without_boundary_unusable(self) -> None:
        with self.assertRaises(MultipartError):
            split_siprec_body("multipart/mixed", b"v=0\r\n")

    def test_part_without_content_type_sniffed(self) -> None:
        body = b"--b\r\nContent-Disposition: session\r\n\r\nv=0\r\n--b\r\n\r\n<recording/>\r\n--b--"
        result = split_siprec_body("multipart/mixed;boundary=b", body)
        self.assertEqual((result.sdp, result.metadata), (b"v=0", (b"<recording/>",)))
        self.assertEqual(
            result.tolerances,
            (
                "body part without Content-Type read as SDP",
                "body part without Content-Type read as recording metadata",
            ),
        )

    def test_multipart_related_noted(self) -> None:
        result = split_siprec_body("multipart/related;boundary=b", b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b--")
        self.assertEqual(result.sdp, b"v=0")
        self.assertEqual(result.tolerances, ("multipart/related body read as multipart/mixed",))

    @settings(max_examples=300, deadline=None)
    @given(
        st.sampled_from([None, "", "multipart/mixed;boundary=b", "multipart/mixed", "application/sdp", "application/rs-metadata", "x/y"]),
        st.binary(max_size=300),
    )
    def test_garbage_only_own_errors(self, content_type: str | None, body: bytes) -> None:
        """Only MultipartError or UnsupportedBody may escape."""
        try:
            result = split_siprec_body(content_type, body)
        except (MultipartError, UnsupportedBody):
            return
        self.assertIsInstance(result, SiprecBody)

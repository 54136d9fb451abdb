"""Tests for siprec.sip.bodies: the SIP core's own body reader (SDP or nothing)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from siprec.sip.bodies import PlainBody, read_sdp_only
from siprec.sip.mime import UnsupportedBody


class ReadSdpOnlyTests(SynchronousTestCase):
    def test_sdp_in_any_spelling(self) -> None:
        for content_type in ("application/sdp", "Application/SDP; charset=utf-8", " application / sdp "):
            self.assertEqual(read_sdp_only(content_type, b"v=0\r\n"), PlainBody(sdp=b"v=0\r\n"))

    def test_no_body_whatever_the_type(self) -> None:
        for content_type in (None, "application/sdp", "multipart/mixed"):
            self.assertEqual(read_sdp_only(content_type, b"\r\n"), PlainBody())

    def test_anything_else_is_unsupported(self) -> None:
        """Multipart, metadata or no Content-Type at all: UnsupportedBody naming the type."""
        for content_type, named in (("multipart/mixed;boundary=b", "multipart/mixed"),
                                    ("application/rs-metadata+xml", "application/rs-metadata+xml"),
                                    (None, "")):
            with self.assertRaises(UnsupportedBody) as caught:
                read_sdp_only(content_type, b"--b\r\n")
            self.assertEqual(caught.exception.content_type, named)

    def test_value_is_frozen(self) -> None:
        with self.assertRaises(AttributeError):
            PlainBody().sdp = b"x"  # type: ignore[misc]

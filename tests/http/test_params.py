"""Tests for siprec.http.params and siprec.http.limits (pure parts)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyChannel

from siprec.http.errors import ApiError, encode_json, error_body
from siprec.http.limits import MAX_BODY, BoundedRequest, body_size, body_too_large
from siprec.http.params import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, Page, page_params


class PageParamTests(SynchronousTestCase):
    def assertBad(self, args: dict, name: str) -> None:
        error = self.assertRaises(ApiError, page_params, args)
        self.assertEqual((error.status, error.code), (400, "bad_request"))
        self.assertIn(f"'{name}'", error.message)

    def test_defaults(self) -> None:
        self.assertEqual(page_params({}), Page(limit=DEFAULT_LIMIT, offset=0))

    def test_values(self) -> None:
        self.assertEqual(page_params({b"limit": [b"7"], b"offset": [b"21"]}), Page(7, 21))
        self.assertEqual(page_params({b"limit": [b"007"]}).limit, 7)

    def test_limit_clamped_offset_not(self) -> None:
        self.assertEqual(page_params({b"limit": [b"999999"]}).limit, MAX_LIMIT)
        self.assertEqual(page_params({b"offset": [str(MAX_OFFSET).encode()]}).offset, MAX_OFFSET)
        self.assertBad({b"offset": [str(MAX_OFFSET + 1).encode()]}, "offset")

    def test_rejects_garbage(self) -> None:
        for raw in (b"", b"-1", b"+1", b" 1", b"1 ", b"1.0", b"abc", b"\xd9\xa3", b"\x00",
                    b"1" * 10, b"9" * 5000, b"\xff"):
            self.assertBad({b"limit": [raw]}, "limit")
            self.assertBad({b"offset": [raw]}, "offset")

    def test_rejects_repeats(self) -> None:
        self.assertBad({b"limit": [b"1", b"1"]}, "limit")

    def test_slice(self) -> None:
        items = list(range(10))
        self.assertEqual(Page(3, 8).slice(items), [8, 9])
        self.assertEqual(Page(0, 0).slice(items), [])
        self.assertEqual(Page(5, 50).slice(items), [])


class JsonTests(SynchronousTestCase):
    def test_error_body(self) -> None:
        self.assertEqual(error_body("not_found", "no such resource"),
                         b'{"error":{"code":"not_found","message":"no such resource"}}')

    def test_strict_json(self) -> None:
        self.assertRaises(ValueError, encode_json, {"x": float("inf")})
        self.assertEqual(encode_json({"name": "Zoë"}), '{"name":"Zoë"}'.encode("utf-8"))


class BoundedRequestTests(SynchronousTestCase):
    """Oversized bodies are flagged and not buffered."""

    def request(self) -> BoundedRequest:
        return BoundedRequest(DummyChannel())

    def test_small_body_kept(self) -> None:
        request = self.request()
        request.gotLength(11)
        request.handleContentChunk(b'{"a": true}')
        self.assertFalse(body_too_large(request))
        request.content.seek(0)
        self.assertEqual(request.content.read(), b'{"a": true}')

    def test_declared_length_over_limit(self) -> None:
        request = self.request()
        request.gotLength(MAX_BODY + 1)
        for _ in range(5):
            request.handleContentChunk(b"x" * 300_000)
        self.assertTrue(request.body_too_large)
        self.assertTrue(body_too_large(request))
        self.assertEqual(body_size(request), 0)

    def test_chunked_body_over_limit(self) -> None:
        """With no Content-Length, buffering stops once the limit is passed."""
        request = self.request()
        request.gotLength(None)
        chunk = b"y" * 65_536
        for _ in range(MAX_BODY // len(chunk)):
            request.handleContentChunk(chunk)
        self.assertFalse(request.body_too_large)
        self.assertEqual(body_size(request), MAX_BODY)
        request.handleContentChunk(b"z")
        self.assertTrue(request.body_too_large)
        for _ in range(20):
            request.handleContentChunk(chunk)
        self.assertEqual(body_size(request), 0)

"""Tests for siprec.sip.framing: Content-Length framing of TCP/TLS streams.

h11-style: the same stream fed whole, byte by byte and in random chunks
must give the same frames; keep-alives between messages are reported;
oversize and unframable input raises FramingError with a status to answer.
"""

from __future__ import annotations

from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from siprec.sip.framing import Frame, FramingError, KeepAlive, StreamFramer
from siprec.sip.message import Request, parse_message


def message(call_id: str, body: bytes = b"", length_name: str = "Content-Length",
            eol: bytes = b"\r\n") -> bytes:
    lines = [
        b"INVITE sip:srs@192.0.2.10 SIP/2.0",
        b"Via: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK" + call_id.encode(),
        b"From: <sip:src@198.51.100.7>;tag=1",
        b"To: <sip:srs@192.0.2.10>",
        b"Call-ID: " + call_id.encode(),
        b"CSeq: 1 INVITE",
        length_name.encode() + b": " + str(len(body)).encode(),
    ]
    return eol.join(lines) + eol + eol + body


# A body that looks like a header end must not cut the frame short.
TRICKY_BODY = b"v=0\r\n\r\nnot a header end\r\n\r\n"
STREAM_PARTS = [
    message("one"),
    b"\r\n\r\n",  # ping
    message("two", TRICKY_BODY, length_name="l"),
    b"\r\n",  # pong
    message("three", b"abc", eol=b"\n"),
    message("four", b"x" * 3000, length_name="content-LENGTH"),
]
STREAM = b"".join(STREAM_PARTS)
EXPECTED = [
    Frame(STREAM_PARTS[0]),
    KeepAlive(ping=True),
    Frame(STREAM_PARTS[2]),
    KeepAlive(ping=False),
    Frame(STREAM_PARTS[4]),
    Frame(STREAM_PARTS[5]),
]


def feed_all(framer: StreamFramer, chunks: List[bytes]) -> list:
    out: list = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


class ChunkingTests(SynchronousTestCase):
    def test_whole(self) -> None:
        """The whole stream in one feed gives every frame and keep-alive, in order."""
        self.assertEqual(StreamFramer().feed(STREAM), EXPECTED)

    def test_byte_by_byte(self) -> None:
        framer = StreamFramer()
        self.assertEqual(feed_all(framer, [STREAM[i : i + 1] for i in range(len(STREAM))]), EXPECTED)
        self.assertEqual(framer.buffered, 0)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(0, len(STREAM)), max_size=40))
    def test_random_chunks(self, cuts: List[int]) -> None:
        """Any split of the stream gives the same events."""
        points = [0] + sorted(cuts) + [len(STREAM)]
        chunks = [STREAM[a:b] for a, b in zip(points, points[1:])]
        self.assertEqual(feed_all(StreamFramer(), chunks), EXPECTED)

    def test_trailing_data_kept(self) -> None:
        """A partial next message stays buffered until the rest arrives."""
        framer = StreamFramer()
        first, second = message("a", b"hello"), message("b", b"world")
        self.assertEqual(framer.feed(first + second[:40]), [Frame(first)])
        self.assertEqual(framer.buffered, 40)
        self.assertEqual(framer.feed(second[40:]), [Frame(second)])

    def test_body_waits_for_content_length(self) -> None:
        framer = StreamFramer()
        data = message("a", b"0123456789")
        self.assertEqual(framer.feed(data[:-1]), [])
        self.assertEqual(framer.feed(data[-1:]), [Frame(data)])

    def test_no_content_length_means_no_body(self) -> None:
        data = message("a").replace(b"Content-Length: 0\r\n", b"")
        self.assertEqual(StreamFramer().feed(data + b"OPTIONS"), [Frame(data)])

    def test_frames_parse(self) -> None:
        """Each frame is exactly one message for parse_message."""
        for item in StreamFramer().feed(STREAM):
            if isinstance(item, Frame):
                self.assertIsInstance(parse_message(item.data, max_size=65536), Request)


class KeepAliveTests(SynchronousTestCase):
    def test_ping_split_across_feeds(self) -> None:
        """A double CRLF split in two is still one ping, not a pong."""
        framer = StreamFramer()
        self.assertEqual(framer.feed(b"\r\n"), [])
        self.assertEqual(framer.feed(b"\r"), [])
        self.assertEqual(framer.feed(b"\n"), [KeepAlive(ping=True)])

    def test_pong_then_message(self) -> None:
        data = message("a")
        self.assertEqual(StreamFramer().feed(b"\r\n" + data), [KeepAlive(ping=False), Frame(data)])

    def test_many_pings(self) -> None:
        self.assertEqual(StreamFramer().feed(b"\r\n\r\n" * 3), [KeepAlive(ping=True)] * 3)

    def test_stray_line_ends_skipped(self) -> None:
        """Lone LFs (and a CR not followed by LF) between messages are skipped, iteratively."""
        data = message("a")
        framer = StreamFramer()
        self.assertEqual(framer.feed(b"\n" * 100000 + data), [Frame(data)])
        self.assertEqual(framer.feed(b"\rX"), [])
        self.assertEqual(framer.buffered, 1)


class LimitTests(SynchronousTestCase):
    def test_64k_message_accepted(self) -> None:
        """A message of exactly max_size bytes is framed."""
        head_only = len(message("a", b"", length_name="Content-Length").replace(b": 0", b": 00000"))
        data = message("a", b"x" * (65536 - head_only))
        self.assertEqual(len(data), 65536)
        self.assertEqual(StreamFramer(65536).feed(data), [Frame(data)])

    def test_oversize_body_refused_before_it_arrives(self) -> None:
        """Content-Length past the cap raises 513 as soon as the head is complete."""
        data = message("a", b"x" * 65536)
        framer = StreamFramer(65536)
        head_end = data.index(b"\r\n\r\n") + 4
        with self.assertRaises(FramingError) as ctx:
            framer.feed(data[:head_end])
        self.assertEqual(ctx.exception.status, 513)
        self.assertIn("exceeds 65536", ctx.exception.reason)
        self.assertEqual(ctx.exception.head, data[: head_end - 4])

    def test_oversize_header_section(self) -> None:
        """Headers with no end in sight past the cap raise 513 with whole lines of head."""
        framer = StreamFramer(1000)
        data = message("a")[:-4] + b"\r\n" + b"X-Pad: " + b"y" * 2000
        with self.assertRaises(FramingError) as ctx:
            framer.feed(data)
        self.assertEqual(ctx.exception.status, 513)
        self.assertIn("Header section larger than 1000", ctx.exception.reason)
        self.assertTrue(ctx.exception.head.endswith(b"Content-Length: 0"))
        # the head excerpt is enough to answer the request
        self.assertEqual(parse_message(ctx.exception.head + b"\r\n\r\n").call_id, "a")

    def test_oversize_header_section_byte_by_byte(self) -> None:
        framer = StreamFramer(100)
        with self.assertRaises(FramingError):
            for _ in range(200):
                framer.feed(b"a")

    def test_non_numeric_content_length(self) -> None:
        for value in (b"abc", b"-1", b"1 2", b"", b"\xc2\xb2"):
            data = message("a").replace(b"Content-Length: 0", b"Content-Length: " + value)
            with self.assertRaises(FramingError, msg=value) as ctx:
                StreamFramer().feed(data)
            self.assertEqual(ctx.exception.status, 400)
            self.assertIn("is not a number", ctx.exception.reason)
            self.assertEqual(ctx.exception.head, data[:-4])

    def test_huge_content_length(self) -> None:
        data = message("a").replace(b"Content-Length: 0", b"Content-Length: " + b"9" * 5000)
        with self.assertRaises(FramingError) as ctx:
            StreamFramer().feed(data)
        self.assertEqual(ctx.exception.status, 513)

    def test_error_is_sticky(self) -> None:
        """Once unframable, the stream stays so: the same error for any later data."""
        framer = StreamFramer()
        bad = message("a").replace(b"Content-Length: 0", b"Content-Length: x")
        with self.assertRaises(FramingError) as first:
            framer.feed(bad)
        with self.assertRaises(FramingError) as second:
            framer.feed(message("b"))
        self.assertIs(first.exception, second.exception)
        self.assertEqual(framer.buffered, 0)


class _CountingBuffer(bytearray):
    """Counts how many bytes the framer's searches walk over."""

    scanned = 0

    def find(self, sub, start=0, *args):  # type: ignore[override]
        result = super().find(sub, start, *args)
        end = len(self) if result < 0 else result + len(sub)
        type(self).scanned += max(0, end - start)
        return result


class LinearityTests(SynchronousTestCase):
    def test_no_rescans_when_fed_byte_by_byte(self) -> None:
        """Bytes are searched a bounded number of times however small the chunks.

        A framer that searched the buffer from the start on each feed would
        walk head-size bytes per body byte here (millions); this one walks
        each head byte about once and body bytes not at all.
        """
        data = message("a", b"z" * 20000).replace(
            b"CSeq", b"X-Pad: " + b"p" * 4000 + b"\r\nCSeq")
        framer = StreamFramer()
        _CountingBuffer.scanned = 0
        framer._buffer = _CountingBuffer()
        frames = feed_all(framer, [data[i : i + 1] for i in range(len(data))])
        self.assertEqual(frames, [Frame(data)])
        head_len = data.index(b"\r\n\r\n") + 4
        self.assertLess(_CountingBuffer.scanned, 3 * head_len)

    def test_content_length_read_once(self) -> None:
        framer = StreamFramer()
        calls = []
        original = framer._content_length
        framer._content_length = lambda head: calls.append(head) or original(head)
        data = message("a", b"b" * 500)
        feed_all(framer, [data[i : i + 1] for i in range(len(data))])
        self.assertEqual(len(calls), 1)


class FuzzTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=200), max_size=20), st.integers(50, 2000))
    def test_only_framing_error_escapes(self, chunks: List[bytes], cap: int) -> None:
        """Arbitrary bytes in arbitrary chunks: events or FramingError, nothing else."""
        framer = StreamFramer(cap)
        try:
            for chunk in chunks:
                for item in framer.feed(chunk):
                    self.assertIsInstance(item, (Frame, KeepAlive))
                    if isinstance(item, Frame):
                        self.assertLessEqual(len(item.data), cap)
        except FramingError as error:
            self.assertIn(error.status, (400, 513))

    @settings(max_examples=200, deadline=None)
    @given(st.data())
    def test_noise_between_messages(self, data) -> None:
        """Keep-alives and stray line ends between messages never lose a message."""
        noise = st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\n", b"\n\n"])
        parts, expected = [], []
        for i in range(data.draw(st.integers(1, 5))):
            parts.append(data.draw(noise))
            msg = message(f"m{i}", data.draw(st.binary(max_size=50)))
            parts.append(msg)
            expected.append(msg)
        parts.append(data.draw(noise))
        stream = b"".join(parts)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
        points = [0] + cuts + [len(stream)]
        events = feed_all(StreamFramer(), [stream[a:b] for a, b in zip(points, points[1:])])
        self.assertEqual([e.data for e in events if isinstance(e, Frame)], expected)

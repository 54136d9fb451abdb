"""Deepgram, Speechmatics and Amazon Transcribe against local WebSocket servers speaking
their documented wire formats; event stream and SigV4 details; failover between real
adapters when a vendor drops mid-call."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from siprec.stt.base import SttAuthError, SttError, SttProtocolError
from siprec.stt.providers.amazon import AmazonTranscribeProvider
from siprec.stt.providers.deepgram import DeepgramProvider
from siprec.stt.providers.eventstream import (
    EventStreamError, MessageDecoder, encode_message,
)
from siprec.stt.providers.sigv4 import presign_url
from siprec.stt.providers.speechmatics import SpeechmaticsProvider
from siprec.stt.router import RouterSettings, SttRouter
from tests.stt.support import RATE, drive, listen_tcp, settle_autobahn, speech

BYTES_PER_SECOND = 2 * RATE


class Server(WebSocketServerProtocol):
    """Base fake: records the handshake and every message; subclasses answer."""

    def onConnect(self, request):
        self.factory.requests.append(request)
        self.factory.live.append(self)
        self.audio = bytearray()
        self.texts = []
        return self.check(request)

    def check(self, request):
        return None

    def onClose(self, wasClean, code, reason):
        self.factory.closed.append((wasClean, code))

    def drop(self):
        self.transport.abortConnection()


def serve(test, protocol, **settings) -> tuple[str, WebSocketServerFactory]:
    test.addCleanup(settle_autobahn)
    factory = WebSocketServerFactory("ws://127.0.0.1")
    factory.protocol = protocol
    factory.requests, factory.live, factory.closed = [], [], []
    factory.settings = settings
    port = listen_tcp(test, factory)

    def close_all():
        for proto in factory.live:
            if proto.transport is not None:
                proto.transport.abortConnection()
    test.addCleanup(close_all)
    return f"ws://127.0.0.1:{port}", factory


# -- Deepgram -----------------------------------------------------------------


class DeepgramServer(Server):
    def check(self, request):
        if request.headers.get("authorization") != "Token dg-key":
            raise ConnectionDeny(401, "Unauthorized")

    def onMessage(self, payload, isBinary):
        settings = self.factory.settings
        if isBinary:
            before = len(self.audio) // BYTES_PER_SECOND
            self.audio += payload
            seconds = len(self.audio) // BYTES_PER_SECOND
            if settings.get("drop_after") and len(self.audio) >= settings["drop_after"]:
                self.drop()
                return
            if seconds > before:  # an interim result per second of audio
                self.results(seconds - 1, 1.0, final=False)
            return
        message = json.loads(payload)
        self.texts.append(message)
        if message["type"] == "CloseStream":
            total = len(self.audio) / BYTES_PER_SECOND
            self.results(0.0, total, final=True)
            self.sendMessage(json.dumps({"type": "Metadata", "request_id": "r1",
                                         "duration": total, "channels": 1}).encode())
            self.sendClose(1000)

    def results(self, start, duration, final):
        text = "hello world" if final else "hello"
        message = {
            "type": "Results", "channel_index": [0, 1], "duration": duration, "start": start,
            "is_final": final, "speech_final": final,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.97, "words": [
                {"word": "hello", "start": start + 0.1, "end": start + 0.5, "confidence": 0.98,
                 "punctuated_word": "Hello"},
            ]}]},
            "metadata": {"request_id": "r1", "model_info": {"name": "nova-3"}},
        }
        self.sendMessage(json.dumps(message).encode())


class DeepgramTests(TestCase):
    timeout = 20

    def provider(self, url, key="dg-key", keepalive=5.0):
        return DeepgramProvider(reactor, key, url + "/v1/listen", "nova-3", 5.0, keepalive)

    @inlineCallbacks
    def test_live_stream_with_interim_and_final_results(self) -> None:
        url, factory = serve(self, DeepgramServer)
        audio = speech(2.5)
        listener = yield drive(self.provider(url), audio, start=100.0)
        self.assertEqual(listener.failures, [])
        request = factory.requests[0]
        params = dict(parse_qsl(urlsplit(request.path + "?" + "&".join(
            f"{k}={v[0]}" for k, v in request.params.items())).query))
        self.assertEqual((params["encoding"], params["sample_rate"], params["channels"],
                          params["interim_results"], params["model"], params["language"]),
                         ("linear16", "8000", "1", "true", "nova-3", "en-US"))
        server = factory.live[0]
        self.assertEqual(len(server.audio), len(audio) * 2)
        self.assertEqual(np.frombuffer(bytes(server.audio), "<i2")[:100].tolist(),
                         audio[:100].tolist())
        self.assertEqual(server.texts[-1], {"type": "CloseStream"})
        partials = [h for h in listener.hypotheses if not h.is_final]
        self.assertEqual([p.start for p in partials], [100.0, 101.0])
        [final] = listener.finals
        self.assertEqual((final.text, final.start, final.end), ("hello world", 100.0, 102.5))
        self.assertEqual((final.words[0].word, final.words[0].start), ("Hello", 100.1))

    @inlineCallbacks
    def test_gaps_map_to_the_call_timeline_and_keep_alive(self) -> None:
        """Audio after a hole keeps its call time; KeepAlive flows while nothing is sent."""
        url, factory = serve(self, DeepgramServer)
        provider = self.provider(url, keepalive=0.05)
        from tests.stt.support import Collector
        from siprec.stt.base import LegSpec
        listener = Collector()
        stream = provider.open_stream(LegSpec("c", "l", RATE), listener)
        stream.feed(speech(1.0), 0)
        yield deferLater(reactor, 0.3, lambda: None)
        stream.feed(speech(1.0), 10 * RATE)  # 9 s later on the call
        yield deferLater(reactor, 0.2, lambda: None)
        yield stream.finish()
        server = factory.live[0]
        self.assertIn({"type": "KeepAlive"}, server.texts)
        partials = [h for h in listener.hypotheses if not h.is_final]
        self.assertEqual([p.start for p in partials], [0.0, 10.0])
        self.assertEqual(listener.finals[0].end, 11.0)

    @inlineCallbacks
    def test_bad_key_is_refused_at_the_handshake(self) -> None:
        url, _ = serve(self, DeepgramServer)
        listener = yield drive(self.provider(url, key="wrong"), speech(0.5))
        [error] = listener.failures
        self.assertIsInstance(error, SttAuthError)
        self.assertIn("401", str(error))

    @inlineCallbacks
    def test_disconnect_mid_stream(self) -> None:
        url, _ = serve(self, DeepgramServer, drop_after=BYTES_PER_SECOND)
        listener = yield drive(self.provider(url), speech(3.0), pace=0.01)
        [error] = listener.failures
        self.assertNotIsInstance(error, SttAuthError)
        self.assertIn("connection closed", str(error))

    @inlineCallbacks
    def test_garbage_from_the_server(self) -> None:
        """Non-JSON, malformed results and error messages are protocol failures, once."""
        for reply, kind, text in (
            (b"not json", SttProtocolError, "non-JSON"),
            (b'{"type": "Results", "channel": {}}', SttProtocolError, "malformed"),
            (b'{"type": "Results", "start": "x", "channel": {"alternatives": [{}]}}',
             SttProtocolError, "malformed"),
            (b'{"type": "Error", "err_code": "INVALID_QUERY", "err_msg": "bad model"}', SttError,
             "INVALID_QUERY: bad model"),
        ):
            class Garbage(DeepgramServer):
                def onMessage(self, payload, isBinary, reply=reply):
                    self.sendMessage(reply)
                    self.sendMessage(reply)

            url, _ = serve(self, Garbage)
            listener = yield drive(self.provider(url), speech(0.5))
            [error] = listener.failures
            self.assertIsInstance(error, kind)
            self.assertIn(text, str(error))

    @inlineCallbacks
    def test_nobody_listening(self) -> None:
        listener = yield drive(self.provider("ws://127.0.0.1:1"), speech(0.5))
        self.assertIn("deepgram", str(listener.failures[0]))


# -- Speechmatics ---------------------------------------------------------------


class SpeechmaticsServer(Server):
    def check(self, request):
        self.started = False
        self.seq = 0
        if request.headers.get("authorization") != "Bearer sm-key":
            raise ConnectionDeny(401, "Unauthorized")

    def onMessage(self, payload, isBinary):
        settings = self.factory.settings
        if isBinary:
            assert self.started, "audio before StartRecognition"
            self.seq += 1
            self.audio += payload
            self.sendMessage(json.dumps({"message": "AudioAdded", "seq_no": self.seq}).encode())
            return
        message = json.loads(payload)
        self.texts.append(message)
        kind = message["message"]
        if kind == "StartRecognition":
            if settings.get("error"):
                self.sendMessage(json.dumps({"message": "Error", "type": settings["error"],
                                             "reason": "nope"}).encode())
                self.sendClose(1000)
                return
            self.started = True
            reactor.callLater(settings.get("start_delay", 0), self.sendMessage,
                              json.dumps({"message": "RecognitionStarted", "id": "s1"}).encode())
        elif kind == "EndOfStream":
            end = len(self.audio) / BYTES_PER_SECOND
            self.transcript("AddPartialTranscript", 0.0, end, ["good"])
            self.transcript("AddTranscript", 0.0, end, ["good", "bye"])
            self.sendMessage(json.dumps({"message": "EndOfTranscript"}).encode())

    def transcript(self, kind, start, end, words):
        results = []
        for i, word in enumerate(words):
            results.append({"type": "word", "start_time": start + 0.1 * i,
                            "end_time": start + 0.1 * i + 0.1,
                            "alternatives": [{"content": word, "confidence": 0.9,
                                              "language": "en"}]})
        results.append({"type": "punctuation", "start_time": end, "end_time": end,
                        "alternatives": [{"content": ".", "confidence": 1.0}]})
        self.sendMessage(json.dumps({
            "message": kind, "format": "2.9",
            "metadata": {"start_time": start, "end_time": end,
                         "transcript": " ".join(words) + "."},
            "results": results}).encode())


class SpeechmaticsTests(TestCase):
    timeout = 20

    def provider(self, url, key="sm-key"):
        return SpeechmaticsProvider(reactor, key, url + "/v2", 5.0)

    @inlineCallbacks
    def test_start_recognition_audio_and_end_of_transcript(self) -> None:
        """Audio waits for RecognitionStarted; EndOfStream names the last seq_no."""
        url, factory = serve(self, SpeechmaticsServer, start_delay=0.2)
        listener = yield drive(self.provider(url), speech(1.0), start=7.0)
        self.assertEqual(listener.failures, [])
        server = factory.live[0]
        start = server.texts[0]
        self.assertEqual(start["audio_format"], {"type": "raw", "encoding": "pcm_s16le",
                                                 "sample_rate": RATE})
        self.assertEqual(start["transcription_config"]["language"], "en")
        self.assertTrue(start["transcription_config"]["enable_partials"])
        self.assertEqual(server.texts[-1], {"message": "EndOfStream", "last_seq_no": server.seq})
        self.assertEqual(len(server.audio), 2 * RATE)
        self.assertEqual([(h.text, h.is_final) for h in listener.hypotheses],
                         [("good.", False), ("good bye.", True)])
        final = listener.finals[0]
        self.assertEqual((final.start, final.end), (7.0, 8.0))
        self.assertEqual([w.word for w in final.words], ["good", "bye."])

    @inlineCallbacks
    def test_errors(self) -> None:
        url, _ = serve(self, SpeechmaticsServer, error="not_authorised")
        listener = yield drive(self.provider(url), speech(0.5))
        self.assertIsInstance(listener.failures[0], SttAuthError)
        url, _ = serve(self, SpeechmaticsServer, error="quota_exceeded")
        listener = yield drive(self.provider(url), speech(0.5))
        self.assertIn("quota_exceeded", str(listener.failures[0]))
        url, _ = serve(self, SpeechmaticsServer)
        listener = yield drive(self.provider(url, key="bad"), speech(0.5))
        self.assertIsInstance(listener.failures[0], SttAuthError)


# -- Amazon Transcribe ----------------------------------------------------------

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def transcript_event(start, end, partial, text) -> bytes:
    items = [{"Content": word, "StartTime": start + 0.2 * i, "EndTime": start + 0.2 * i + 0.2,
              "Type": "pronunciation", "Confidence": 0.95 if not partial else None}
             for i, word in enumerate(text.split())]
    body = {"Transcript": {"Results": [{"ResultId": "r1", "StartTime": start, "EndTime": end,
                                        "IsPartial": partial, "ChannelId": "ch_0",
                                        "Alternatives": [{"Transcript": text, "Items": items}]}]}}
    return encode_message({":message-type": "event", ":event-type": "TranscriptEvent",
                           ":content-type": "application/json"}, json.dumps(body).encode())


class AmazonServer(Server):
    def check(self, request):
        self.decoder = MessageDecoder()
        params = {k: v[0] for k, v in request.params.items()}
        self.factory.params.append(params)
        signature = params.pop("X-Amz-Signature", "")
        when = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=timezone.utc)
        base = {k: v for k, v in params.items() if not k.startswith("X-Amz-")}
        expected = presign_url(f"wss://{request.headers['host']}{request.path}", base,
                               params["X-Amz-Credential"].split("/")[0], SECRET, "us-east-1",
                               "transcribe", when, session_token=params.get(
                                   "X-Amz-Security-Token", ""))
        if dict(parse_qsl(urlsplit(expected).query))["X-Amz-Signature"] != signature:
            raise ConnectionDeny(403, "Forbidden")

    def onMessage(self, payload, isBinary):
        assert isBinary
        for message in self.decoder.feed(payload):
            assert message.headers[":event-type"] == "AudioEvent"
            if message.payload == b"":
                end = len(self.audio) / BYTES_PER_SECOND
                self.sendMessage(transcript_event(0.0, end, False, "thank you"), isBinary=True)
                self.sendClose(1000)
                return
            before = len(self.audio)
            self.audio += message.payload
            if self.factory.settings.get("explode") and len(self.audio) > BYTES_PER_SECOND:
                self.sendMessage(encode_message(
                    {":message-type": "exception", ":exception-type": "BadRequestException",
                     ":content-type": "application/json"},
                    b'{"Message":"Your request timed out"}'), isBinary=True)
                return
            if before < BYTES_PER_SECOND <= len(self.audio):
                # one partial, split across two WebSocket frames
                data = transcript_event(0.0, 1.0, True, "thank")
                self.sendMessage(data[:10], isBinary=True)
                self.sendMessage(data[10:], isBinary=True)


class AmazonTests(TestCase):
    timeout = 20

    def provider(self, url, secret=SECRET, token=""):
        return AmazonTranscribeProvider(reactor, "AKIDEXAMPLE", secret, "us-east-1", token, url,
                                        5.0, now=lambda: WHEN)

    @inlineCallbacks
    def test_presigned_stream_with_event_stream_audio(self) -> None:
        url, factory = serve(self, AmazonServer)
        factory.params = []
        listener = yield drive(self.provider(url, token="FQoGZXIvYXdzEXAMPLE"), speech(1.5),
                               start=3.0)
        self.assertEqual(listener.failures, [])
        params = factory.params[0]
        self.assertEqual((params["language-code"], params["media-encoding"], params["sample-rate"],
                          params["X-Amz-Algorithm"], params["X-Amz-SignedHeaders"],
                          params["X-Amz-Security-Token"]),
                         ("en-US", "pcm", "8000", "AWS4-HMAC-SHA256", "host",
                          "FQoGZXIvYXdzEXAMPLE"))
        self.assertEqual(params["X-Amz-Credential"],
                         "AKIDEXAMPLE/20260304/us-east-1/transcribe/aws4_request")
        self.assertEqual(factory.requests[0].path, "/stream-transcription-websocket")
        self.assertEqual(len(factory.live[0].audio), 3 * RATE)
        self.assertEqual([(h.text, h.is_final, h.start) for h in listener.hypotheses],
                         [("thank", False, 3.0), ("thank you", True, 3.0)])
        self.assertEqual(listener.finals[0].end, 4.5)
        self.assertEqual(listener.finals[0].confidence, 0.95)

    @inlineCallbacks
    def test_bad_signature_and_exceptions(self) -> None:
        url, factory = serve(self, AmazonServer)
        factory.params = []
        listener = yield drive(self.provider(url, secret="wrong"), speech(0.5))
        self.assertIsInstance(listener.failures[0], SttAuthError)
        url, factory = serve(self, AmazonServer, explode=True)
        factory.params = []
        listener = yield drive(self.provider(url), speech(2.0))
        self.assertIn("BadRequestException: Your request timed out", str(listener.failures[0]))

    def test_default_endpoint_and_required_keys(self) -> None:
        provider = AmazonTranscribeProvider(reactor, "AK", "SK", "eu-west-1", now=lambda: WHEN)
        from siprec.stt.base import LegSpec
        url = provider.stream_url(LegSpec("c", "l", 16000, "en-GB"))
        self.assertTrue(url.startswith("wss://transcribestreaming.eu-west-1.amazonaws.com:8443/"
                                       "stream-transcription-websocket?"))
        self.assertIn("sample-rate=16000", url)
        self.assertRaises(SttError, AmazonTranscribeProvider, reactor, "", "SK", "eu-west-1")


class EventStreamTests(SynchronousTestCase):
    def test_round_trip_whole_and_byte_by_byte(self) -> None:
        data = encode_message({":event-type": "AudioEvent", "x": "é"}, b"\x00\x01pcm")
        [message] = MessageDecoder().feed(data + data[:5])
        self.assertEqual(message.headers, {":event-type": "AudioEvent", "x": "é"})
        self.assertEqual(message.payload, b"\x00\x01pcm")
        decoder = MessageDecoder()
        got = []
        for i in range(len(data) * 2):
            got += decoder.feed((data + data)[i:i + 1])
        self.assertEqual(len(got), 2)
        self.assertEqual(decoder.pending, 0)

    def test_every_truncation_waits(self) -> None:
        data = encode_message({"a": "b"}, b"payload")
        for cut in range(len(data)):
            self.assertEqual(MessageDecoder().feed(data[:cut]), [])

    def test_corruption_is_an_event_stream_error(self) -> None:
        data = bytearray(encode_message({"a": "b"}, b"payload"))
        for index, text in ((2, "prelude CRC"), (20, "message CRC")):
            broken = bytearray(data)
            broken[index] ^= 0xFF
            with self.assertRaises(EventStreamError) as raised:
                MessageDecoder().feed(bytes(broken))
            self.assertIn(text, str(raised.exception))
        self.assertRaises(EventStreamError, MessageDecoder().feed, b"\xff" * 16)

    def test_typed_headers(self) -> None:
        headers = (b"\x01t\x00" + b"\x01i\x04" + struct.pack(">i", -7)
                   + b"\x01u\x09" + b"u" * 16 + b"\x01b\x06\x00\x02ab")
        prelude = struct.pack(">II", 12 + len(headers) + 4, len(headers))
        raw = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers
        raw += struct.pack(">I", zlib.crc32(raw))
        [message] = MessageDecoder().feed(raw)
        self.assertEqual(message.headers, {"t": True, "i": -7, "u": b"u" * 16, "b": b"ab"})
        bad = b"\x01z\x63"
        prelude = struct.pack(">II", 12 + len(bad) + 4, len(bad))
        raw = prelude + struct.pack(">I", zlib.crc32(prelude)) + bad
        raw += struct.pack(">I", zlib.crc32(raw))
        self.assertRaises(EventStreamError, MessageDecoder().feed, raw)


class SigV4Tests(SynchronousTestCase):
    def test_matches_botocore(self) -> None:
        """Our presigned URL carries the signature botocore computes for the same request."""
        try:
            from botocore.auth import SigV4QueryAuth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials
        except ImportError:
            raise self.skipTest("botocore is not installed")
        from urllib.parse import urlencode
        params = {"language-code": "en-US", "media-encoding": "pcm", "sample-rate": "8000"}
        request = AWSRequest(method="GET", url="https://transcribestreaming.us-east-1.amazonaws"
                             ".com:8443/stream-transcription-websocket?" + urlencode(params))
        SigV4QueryAuth(Credentials("AKID", "se/cr+et", "tok=="), "transcribe", "us-east-1",
                       expires=300).add_auth(request)
        theirs = dict(parse_qsl(urlsplit(request.url).query))
        when = datetime.strptime(theirs["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=timezone.utc)
        ours = presign_url("wss://transcribestreaming.us-east-1.amazonaws.com:8443/"
                           "stream-transcription-websocket", params, "AKID", "se/cr+et",
                           "us-east-1", "transcribe", when, session_token="tok==")
        self.assertEqual(dict(parse_qsl(urlsplit(ours).query))["X-Amz-Signature"],
                         theirs["X-Amz-Signature"])

    def skipTest(self, reason):
        from twisted.trial.unittest import SkipTest
        return SkipTest(reason)


# -- failover between real adapters ---------------------------------------------


class FailoverTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_deepgram_dies_mid_call_speechmatics_gets_the_replay(self) -> None:
        """Killing a provider mid-call loses neither audio nor transcript."""
        dg_url, dg = serve(self, DeepgramServer)
        sm_url, sm = serve(self, SpeechmaticsServer)
        results = []
        router = SttRouter(
            {"deepgram": DeepgramProvider(reactor, "dg-key", dg_url + "/v1/listen"),
             "speechmatics": SpeechmaticsProvider(reactor, "sm-key", sm_url + "/v2")},
            results.append, reactor,
            RouterSettings(default_vendor="deepgram", supported=("speechmatics",)))
        leg = router.open_leg("call-5", "caller", sample_rate=RATE)
        audio = speech(4.0)
        step = RATE // 50
        for position in range(0, len(audio), step):
            leg.feed(audio[position:position + step], RATE, position)
            if position == 2 * RATE:
                yield deferLater(reactor, 0.3, lambda: None)
                dg.live[0].drop()  # the vendor goes away mid-call
                yield deferLater(reactor, 0.3, lambda: None)
            elif position % (step * 10) == 0:
                yield deferLater(reactor, 0, lambda: None)
        yield leg.close()
        self.assertEqual(leg.status()["tried"], ["deepgram", "speechmatics"])
        # Deepgram's interim results never became final, so all 4 s went to Speechmatics.
        self.assertEqual(len(sm.live[0].audio), 4 * BYTES_PER_SECOND)
        finals = [r for r in results if r.is_final]
        self.assertEqual([(r.provider, r.start, r.end) for r in finals],
                         [("speechmatics", 0.0, 4.0)])
        self.assertEqual(router.status()["failovers_total"], 1)

"""OpenAI, ElevenLabs, Azure, Google and Whisper (HTTP and CLI) against local servers
speaking each vendor's documented wire format."""

from __future__ import annotations

import base64
import email.parser
import io
import json
import os
import stat
import sys
import time
import wave
from urllib.parse import parse_qs

import jwt
import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from siprec.stt.base import LegSpec, SttAuthError, SttError, SttProtocolError, SttUnavailable
from siprec.stt.providers.azure import AzureSpeechProvider
from siprec.stt.providers.elevenlabs import ElevenLabsProvider
from siprec.stt.providers.google import GoogleSpeechProvider, parse_duration
from siprec.stt.providers.openai import OpenAIProvider
from siprec.stt.providers.whisper import WhisperCliProvider, WhisperHttpProvider
from siprec.stt.vad import energy_classifier
from tests.stt.support import RATE, Collector, drive, listen_tcp, talk

VAD = {"classifier": energy_classifier()}


def multipart(request) -> tuple[dict, dict]:
    """(fields, files) of a multipart/form-data request."""
    content_type = request.getHeader("content-type")
    body = request.content.read()
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields, files = {}, {}
    for part in message.get_payload():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename():
            files[name] = (part.get_filename(), part.get_content_type(),
                           part.get_payload(decode=True))
        else:
            fields.setdefault(name, []).append(part.get_payload(decode=True).decode())
    return fields, files


def wav_info(data: bytes) -> tuple[int, int]:
    with wave.open(io.BytesIO(data)) as reader:
        return reader.getframerate(), reader.getnframes()


class Endpoint(Resource):
    """A POST endpoint whose behaviour a test sets: check(request) -> (status, body)."""

    isLeaf = True

    def __init__(self, handler) -> None:
        super().__init__()
        self.handler = handler
        self.requests = []
        self.hang = False

    def render_POST(self, request):
        self.requests.append(request)
        if self.hang:
            return NOT_DONE_YET
        status, body = self.handler(request)
        request.setResponseCode(status)
        request.setHeader("content-type", "application/json")
        return body if isinstance(body, bytes) else json.dumps(body).encode()


class VendorTestCase(TestCase):
    timeout = 30

    def serve(self, path: bytes, handler) -> tuple[str, Endpoint]:
        root = Resource()
        endpoint = Endpoint(handler)
        node = root
        parts = path.strip(b"/").split(b"/")
        for part in parts[:-1]:
            child = Resource()
            node.putChild(part, child)
            node = child
        node.putChild(parts[-1], endpoint)
        port = listen_tcp(self, Site(root))
        return f"http://127.0.0.1:{port}", endpoint

    def closing(self, provider):
        self.addCleanup(provider._http.close)
        return provider


class OpenAITests(VendorTestCase):
    def answer(self, request):
        if request.getHeader("authorization") != "Bearer sk-test":
            return 401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
        fields, files = multipart(request)
        self.seen.append((fields, files))
        return 200, {"task": "transcribe", "language": "english", "duration": 1.5,
                     "text": " Hello there.", "words": [
                         {"word": "Hello", "start": 0.2, "end": 0.6},
                         {"word": "there", "start": 0.7, "end": 1.1}],
                     "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": " Hello there.",
                                   "avg_logprob": -0.2}]}

    def provider(self, key="sk-test", model="whisper-1", **options):
        self.seen = []
        base, self.endpoint = self.serve(b"/v1/audio/transcriptions", self.answer)
        return self.closing(OpenAIProvider(reactor, base + "/v1", key, model, 5.0,
                                           **{**VAD, **options}))

    @inlineCallbacks
    def test_utterances_are_posted_and_mapped_to_the_call(self) -> None:
        provider = self.provider()
        listener = yield drive(provider, talk(1.5, 1.0), start=30.0)
        self.assertEqual(listener.failures, [])
        self.assertEqual(len(self.seen), 2)
        fields, files = self.seen[0]
        self.assertEqual(fields["model"], ["whisper-1"])
        self.assertEqual(fields["language"], ["en"])
        self.assertEqual(fields["response_format"], ["verbose_json"])
        self.assertEqual(fields["timestamp_granularities[]"], ["word", "segment"])
        name, content_type, data = files["file"]
        self.assertEqual((name, content_type), ("utterance.wav", "audio/wav"))
        rate, frames = wav_info(data)
        self.assertEqual(rate, RATE)
        self.assertGreater(frames, 1.4 * RATE)
        first = listener.finals[0]
        self.assertEqual(first.text, "Hello there.")
        self.assertGreater(first.start, 30.3)
        self.assertEqual(first.words[0].start, round(first.start + 0.2, 3))
        self.assertEqual(first.confidence, round(np.exp(-0.2), 3))

    @inlineCallbacks
    def test_other_models_ask_for_plain_json(self) -> None:
        provider = self.provider(model="gpt-4o-mini-transcribe")
        yield drive(provider, talk(1.0))
        self.assertEqual(self.seen[0][0]["response_format"], ["json"])
        self.assertNotIn("timestamp_granularities[]", self.seen[0][0])

    @inlineCallbacks
    def test_bad_key_is_an_auth_failure(self) -> None:
        provider = self.provider(key="wrong")
        listener = yield drive(provider, talk(1.0, 1.0))
        [error] = listener.failures
        self.assertIsInstance(error, SttAuthError)
        self.assertIn("HTTP 401", str(error))
        self.assertEqual(len(self.endpoint.requests), 1)  # dead after the first failure

    @inlineCallbacks
    def test_server_errors_garbage_and_silence(self) -> None:
        for status, body, kind, text in (
            (500, {"error": "overloaded"}, SttError, "HTTP 500"),
            (200, b"<html>", SttProtocolError, "not JSON"),
            (200, {"words": []}, SttProtocolError, "no text"),
            (200, {"text": "x", "words": [{"word": "x", "start": "soon"}]}, SttProtocolError,
             "malformed"),
        ):
            base, _ = self.serve(b"/v1/audio/transcriptions", lambda r, s=status, b=body: (s, b))
            provider = self.closing(OpenAIProvider(reactor, base + "/v1", "k", "whisper-1", 5.0,
                                                   **VAD))
            listener = yield drive(provider, talk(1.0))
            [error] = listener.failures
            self.assertIsInstance(error, kind)
            self.assertIn(text, str(error))
        self.assertTrue(SttError("x", "y").retryable)

    @inlineCallbacks
    def test_unanswered_request_times_out(self) -> None:
        base, endpoint = self.serve(b"/v1/audio/transcriptions", self.answer)
        endpoint.hang = True
        provider = self.closing(OpenAIProvider(reactor, base + "/v1", "k", "whisper-1", 0.3, **VAD))
        listener = yield drive(provider, talk(1.0))
        self.assertIn("no answer", str(listener.failures[0]))
        for request in endpoint.requests:
            if not request.finished:
                request.finish()

    @inlineCallbacks
    def test_unreachable_server(self) -> None:
        provider = self.closing(OpenAIProvider(reactor, "http://127.0.0.1:1/v1", "k", "whisper-1",
                                               5.0, **VAD))
        listener = yield drive(provider, talk(1.0))
        self.assertIn("cannot reach", str(listener.failures[0]))


class WhisperHttpTests(OpenAITests):
    def provider(self, key="sk-test", model="whisper-1", **options):
        self.seen = []
        base, self.endpoint = self.serve(b"/v1/audio/transcriptions", self.answer)
        return self.closing(WhisperHttpProvider(reactor, base + "/v1", key, model, 5.0,
                                                **{**VAD, **options}))

    @inlineCallbacks
    def test_other_models_ask_for_plain_json(self) -> None:
        """Whisper servers always get verbose_json."""
        provider = self.provider(model="large-v3")
        listener = yield drive(provider, talk(1.0))
        self.assertEqual(self.seen[0][0]["response_format"], ["verbose_json"])
        self.assertEqual(listener.finals[0].text, "Hello there.")


class ElevenLabsTests(VendorTestCase):
    def answer(self, request):
        if request.getHeader("xi-api-key") != "el-key":
            return 401, {"detail": {"status": "invalid_api_key"}}
        fields, files = multipart(request)
        self.seen.append((fields, files))
        return 200, {"language_code": "eng", "language_probability": 0.98, "text": "Good morning",
                     "words": [
                         {"text": "Good", "start": 0.1, "end": 0.4, "type": "word", "logprob": -0.1},
                         {"text": " ", "start": 0.4, "end": 0.45, "type": "spacing"},
                         {"text": "morning", "start": 0.45, "end": 0.9, "type": "word",
                          "logprob": -0.3},
                         {"text": "(laughs)", "start": 0.9, "end": 1.0, "type": "audio_event"}]}

    @inlineCallbacks
    def test_transcribes_with_words(self) -> None:
        self.seen = []
        base, _ = self.serve(b"/v1/speech-to-text", self.answer)
        provider = self.closing(ElevenLabsProvider(reactor, base, "el-key", "scribe_v2", 5.0, **VAD))
        listener = yield drive(provider, talk(1.2), language="en-GB")
        fields, files = self.seen[0]
        self.assertEqual(fields["model_id"], ["scribe_v2"])
        self.assertEqual(fields["language_code"], ["en"])
        self.assertEqual(fields["timestamps_granularity"], ["word"])
        self.assertEqual(files["file"][1], "audio/wav")
        [final] = listener.finals
        self.assertEqual(final.text, "Good morning")
        self.assertEqual([w.word for w in final.words], ["Good", "morning"])
        self.assertEqual(final.language, "eng")
        self.assertEqual(final.confidence, round((np.exp(-0.1) + np.exp(-0.3)) / 2, 3))

    @inlineCallbacks
    def test_bad_key(self) -> None:
        self.seen = []
        base, _ = self.serve(b"/v1/speech-to-text", self.answer)
        provider = self.closing(ElevenLabsProvider(reactor, base, "nope", "scribe_v2", 5.0, **VAD))
        listener = yield drive(provider, talk(1.0))
        self.assertIsInstance(listener.failures[0], SttAuthError)


class AzureTests(VendorTestCase):
    PATH = b"/speech/recognition/conversation/cognitiveservices/v1"

    def answer(self, request):
        if request.getHeader("ocp-apim-subscription-key") != "az-key":
            return 401, {"error": {"code": "401", "message": "Access denied"}}
        body = request.content.read()
        self.seen.append((request.args, request.getHeader("content-type"), wav_info(body)))
        return 200, self.reply

    @inlineCallbacks
    def test_detailed_result_at_16khz(self) -> None:
        self.seen = []
        self.reply = {"RecognitionStatus": "Success", "Offset": 1800000, "Duration": 9000000,
                      "DisplayText": "Hi.", "NBest": [
                          {"Confidence": 0.93, "Lexical": "hi", "ITN": "hi", "MaskedITN": "hi",
                           "Display": "Hi."}]}
        base, _ = self.serve(self.PATH, self.answer)
        provider = self.closing(AzureSpeechProvider(reactor, "az-key", endpoint=base, timeout=5.0,
                                                    **VAD))
        listener = yield drive(provider, talk(1.0), language="en-GB")
        args, content_type, (rate, frames) = self.seen[0]
        self.assertEqual(args[b"language"], [b"en-GB"])
        self.assertEqual(args[b"format"], [b"detailed"])
        self.assertEqual(content_type, "audio/wav; codecs=audio/pcm; samplerate=16000")
        self.assertEqual(rate, 16000)
        [final] = listener.finals
        self.assertEqual((final.text, final.confidence), ("Hi.", 0.93))

    @inlineCallbacks
    def test_no_speech_and_errors(self) -> None:
        self.seen = []
        base, _ = self.serve(self.PATH, self.answer)
        self.reply = {"RecognitionStatus": "InitialSilenceTimeout", "Offset": 0, "Duration": 0}
        provider = self.closing(AzureSpeechProvider(reactor, "az-key", endpoint=base, timeout=5.0,
                                                    **VAD))
        listener = yield drive(provider, talk(1.0))
        self.assertEqual((listener.hypotheses, listener.failures), ([], []))
        self.reply = {"RecognitionStatus": "Error"}
        listener = yield drive(provider, talk(1.0))
        self.assertIn("recognition failed: Error", str(listener.failures[0]))
        wrong = self.closing(AzureSpeechProvider(reactor, "bad", endpoint=base, timeout=5.0, **VAD))
        listener = yield drive(wrong, talk(1.0))
        self.assertIsInstance(listener.failures[0], SttAuthError)

    def test_region_or_endpoint_required(self) -> None:
        self.assertRaises(SttError, AzureSpeechProvider, reactor, "k")
        provider = AzureSpeechProvider(reactor, "k", region="westeurope")
        self.addCleanup(provider._http.close)
        self.assertTrue(provider.url.startswith("https://westeurope.stt.speech.microsoft.com/"))


class GoogleTests(VendorTestCase):
    def setUp(self) -> None:
        self.pool = ThreadPool(1, 2)
        self.pool.start()
        self.addCleanup(self.pool.stop)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public = key.public_key()
        self.pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        self.tokens_issued = 0
        self.seen = []

    def token(self, request):
        form = parse_qs(request.content.read().decode())
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        try:
            claims = jwt.decode(form["assertion"][0], self.public, algorithms=["RS256"],
                                audience=self.token_uri)
        except jwt.InvalidTokenError as err:
            return 400, {"error": "invalid_grant", "error_description": str(err)}
        assert claims["iss"] == "stt@project.iam.gserviceaccount.com"
        assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        self.tokens_issued += 1
        return 200, {"access_token": f"ya29.token{self.tokens_issued}", "expires_in": 3599,
                     "token_type": "Bearer"}

    def recognize(self, request):
        if not (request.getHeader("authorization") or "").startswith("Bearer ya29.token"):
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        body = json.loads(request.content.read())
        self.seen.append(body)
        return 200, {"results": [{"alternatives": [{
            "transcript": "call me back", "confidence": 0.91, "words": [
                {"startTime": "0.100s", "endTime": "0.400s", "word": "call", "confidence": 0.9},
                {"startTime": "0.400s", "endTime": "0.600s", "word": "me"},
                {"startTime": "0.600s", "endTime": "1s", "word": "back"}]}],
            "resultEndTime": "1.200s", "languageCode": "en-us"}], "totalBilledTime": "2s"}

    def credentials(self, **changes) -> str:
        info = {"type": "service_account", "project_id": "p", "private_key_id": "k1",
                "private_key": self.pem, "client_email": "stt@project.iam.gserviceaccount.com",
                "token_uri": self.token_uri}
        info.update(changes)
        path = self.mktemp()
        with open(path, "w") as handle:
            json.dump(info, handle)
        return path

    def provider(self, credentials: str):
        provider = GoogleSpeechProvider(reactor, self.pool, credentials, self.base, "phone_call",
                                        5.0, **VAD)
        return self.closing(provider)

    def start_servers(self):
        root = Resource()
        v1 = Resource()
        root.putChild(b"v1", v1)
        v1.putChild(b"speech:recognize", Endpoint(self.recognize))
        root.putChild(b"token", Endpoint(self.token))
        port = listen_tcp(self, Site(root))
        self.base = f"http://127.0.0.1:{port}"
        self.token_uri = self.base + "/token"

    @inlineCallbacks
    def test_service_account_token_and_recognize(self) -> None:
        self.start_servers()
        provider = self.provider(self.credentials())
        listener = yield drive(provider, talk(1.0, 1.0), start=5.0)
        self.assertEqual(listener.failures, [])
        self.assertEqual(self.tokens_issued, 1)  # cached for the second utterance
        config = self.seen[0]["config"]
        self.assertEqual((config["encoding"], config["sampleRateHertz"], config["languageCode"],
                          config["model"], config["enableWordTimeOffsets"]),
                         ("LINEAR16", RATE, "en-US", "phone_call", True))
        audio = base64.b64decode(self.seen[0]["audio"]["content"])
        self.assertGreater(len(audio), 2 * RATE)
        first = listener.finals[0]
        self.assertEqual((first.text, first.confidence, first.language),
                         ("call me back", 0.91, "en-us"))
        self.assertEqual(first.words[2].end, round(first.start + 1.0, 3))

    @inlineCallbacks
    def test_bad_credentials(self) -> None:
        self.start_servers()
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        wrong_pem = other.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
        for path, text in ((self.credentials(private_key=wrong_pem), "HTTP 400"),
                           (self.credentials(client_email=None), "no client_email"),
                           ("/nonexistent/key.json", "cannot read"),
                           (self.credentials(private_key="not a key"), "cannot sign")):
            listener = yield drive(self.provider(path), talk(1.0))
            self.assertIn(text, str(listener.failures[0]))

    def test_durations(self) -> None:
        self.assertEqual(parse_duration("1.300s"), 1.3)
        self.assertEqual(parse_duration("2s"), 2.0)
        for bad in ("1.3", "-1s", 5, None, "s"):
            self.assertRaises(SttProtocolError, parse_duration, bad)


FAKE_WHISPER = r'''#!{python}
import json, os, sys
args = sys.argv[1:]
audio = args[0]
opts = dict(zip(args[1::2], args[2::2]))
if os.environ.get("FAKE_WHISPER_FAIL"):
    sys.stderr.write("RuntimeError: model not found\n")
    sys.exit(2)
if os.environ.get("FAKE_WHISPER_SLEEP"):
    import time; time.sleep(float(os.environ["FAKE_WHISPER_SLEEP"]))
stem = os.path.splitext(os.path.basename(audio))[0]
size = os.path.getsize(audio)
with open(os.path.join(opts["--output_dir"], stem + ".json"), "w") as out:
    json.dump({{"text": " heard %d bytes" % size, "language": opts.get("--language", "?"),
               "segments": [{{"start": 0.0, "end": 1.0, "avg_logprob": -0.1,
                             "words": [{{"word": " heard", "start": 0.1, "end": 0.3,
                                        "probability": 0.8}}]}}],
               "args": opts}}, out)
'''


class WhisperCliTests(VendorTestCase):
    def setUp(self) -> None:
        self.pool = ThreadPool(1, 2)
        self.pool.start()
        self.addCleanup(self.pool.stop)
        directory = self.mktemp()
        os.makedirs(directory)
        self.binary = os.path.join(directory, "whisper")
        with open(self.binary, "w") as handle:
            handle.write(FAKE_WHISPER.format(python=sys.executable))
        os.chmod(self.binary, os.stat(self.binary).st_mode | stat.S_IEXEC)

    def env(self, name, value):
        os.environ[name] = value
        self.addCleanup(os.environ.pop, name, None)

    @inlineCallbacks
    def test_runs_the_cli_per_utterance(self) -> None:
        provider = WhisperCliProvider(reactor, self.pool, self.binary, "tiny", 20.0, **VAD)
        listener = yield drive(provider, talk(1.0), start=2.0, language="de-DE")
        self.assertEqual(listener.failures, [])
        [final] = listener.finals
        self.assertTrue(final.text.startswith("heard "))
        self.assertGreater(int(final.text.split()[1]), 2 * RATE)  # a WAV of the utterance
        self.assertEqual(final.language, "de")
        self.assertEqual(final.words[0].confidence, 0.8)

    @inlineCallbacks
    def test_cli_failure_and_timeout(self) -> None:
        self.env("FAKE_WHISPER_FAIL", "1")
        provider = WhisperCliProvider(reactor, self.pool, self.binary, "tiny", 20.0, **VAD)
        listener = yield drive(provider, talk(1.0))
        self.assertIn("exited with 2: RuntimeError: model not found", str(listener.failures[0]))
        os.environ.pop("FAKE_WHISPER_FAIL")
        self.env("FAKE_WHISPER_SLEEP", "5")
        provider = WhisperCliProvider(reactor, self.pool, self.binary, "tiny", 0.5, **VAD)
        began = time.monotonic()
        listener = yield drive(provider, talk(1.0))
        self.assertIn("killed", str(listener.failures[0]))
        self.assertLess(time.monotonic() - began, 4)

    def test_missing_binary(self) -> None:
        provider = WhisperCliProvider(reactor, self.pool, "/nonexistent/whisper", **VAD)
        self.assertRaises(SttUnavailable, provider.open_stream, LegSpec("c", "l", RATE),
                          Collector())

"""Google Speech-to-Text v1: ``speech:recognize`` per utterance, OAuth2 from a service account.

The request is JSON: ``config`` (``encoding: LINEAR16``, ``sampleRateHertz``,
``languageCode``, ``model``, word time offsets and confidence, automatic
punctuation) and ``audio.content`` (base64 PCM). The answer's ``results``
hold ``alternatives`` with ``transcript``, ``confidence`` and ``words``
whose ``startTime``/``endTime`` are durations such as ``"1.300s"``.

Auth: a bearer token obtained from the service account in
GOOGLE_APPLICATION_CREDENTIALS with the JWT-bearer grant (RS256-signed JWT
posted to the key file's ``token_uri``), cached until shortly before it
expires. Streaming recognition is gRPC-only; a request per utterance keeps
this adapter on treq.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlencode

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThreadPool

from siprec.stt.base import SttAuthError, SttError, SttProtocolError, Word
from siprec.stt.providers._http import HttpClient
from siprec.stt.providers.base import UtteranceProvider
from siprec.stt.utterance import Recognition
from siprec.stt.vad import Utterance

__all__ = ["GoogleSpeechProvider", "ServiceAccount", "parse_google", "parse_duration"]

NAME = "google"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s")


def parse_duration(text: Any) -> float:
    """``"1.300s"`` -> 1.3 (protobuf Duration in JSON)."""
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        raise SttProtocolError(NAME, f"bad duration {text!r}")
    return float(text[:-1])


def parse_google(answer: Any) -> Recognition:
    if not isinstance(answer, dict):
        raise SttProtocolError(NAME, "answer is not an object")
    texts, words, confidences = [], [], []
    language = None
    results = answer.get("results") or []
    if not isinstance(results, list):
        raise SttProtocolError(NAME, "results is not a list")
    for result in results:
        alternatives = result.get("alternatives") if isinstance(result, dict) else None
        if not alternatives:
            continue
        best = alternatives[0]
        if not isinstance(best, dict) or not isinstance(best.get("transcript", ""), str):
            raise SttProtocolError(NAME, "malformed alternative")
        texts.append(best.get("transcript", "").strip())
        if isinstance(best.get("confidence"), (int, float)):
            confidences.append(float(best["confidence"]))
        language = result.get("languageCode") or language
        for item in best.get("words") or ():
            try:
                words.append(Word(str(item["word"]), parse_duration(item.get("startTime", "0s")),
                                  parse_duration(item.get("endTime", "0s")),
                                  item.get("confidence")))
            except (KeyError, TypeError, AttributeError):
                raise SttProtocolError(NAME, "malformed word") from None
    confidence = round(sum(confidences) / len(confidences), 3) if confidences else None
    return Recognition(" ".join(t for t in texts if t), confidence, language, tuple(words))


class ServiceAccount:
    """Bearer tokens for a Google service-account key file."""

    def __init__(self, path: str, reactor: Any, threadpool: Any, http: HttpClient) -> None:
        self.path = path
        self._reactor = reactor
        self._pool = threadpool
        self._http = http
        self._info: dict[str, Any] | None = None
        self._token: str | None = None
        self._expires = 0.0

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                info = json.load(handle)
        except (OSError, ValueError) as err:
            raise SttAuthError(NAME, f"cannot read GOOGLE_APPLICATION_CREDENTIALS "
                                     f"{self.path!r}: {err}") from None
        for key in ("client_email", "private_key", "token_uri"):
            if not isinstance(info.get(key), str):
                raise SttAuthError(NAME, f"{self.path!r} is not a service-account key "
                                         f"(no {key})")
        return info

    def _assertion(self, now: float) -> str:
        import jwt  # PyJWT[crypto]: RS256 needs cryptography

        assert self._info is not None
        claims = {"iss": self._info["client_email"], "scope": SCOPE,
                  "aud": self._info["token_uri"], "iat": int(now), "exp": int(now) + 3600}
        try:
            return jwt.encode(claims, self._info["private_key"], algorithm="RS256",
                              headers={"kid": self._info.get("private_key_id", "")})
        except Exception as err:
            raise SttAuthError(NAME, f"cannot sign with the service-account key: {err}") from None

    @inlineCallbacks
    def token(self) -> Deferred:
        now = self._reactor.seconds()
        if self._token is not None and now < self._expires - 60:
            return self._token
        if self._info is None:
            self._info = yield deferToThreadPool(self._reactor, self._pool, self._load)
        assertion = yield deferToThreadPool(self._reactor, self._pool, self._assertion, now)
        body = urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                          "assertion": assertion}).encode()
        answer = yield self._http.post(self._info["token_uri"], body,
                                       {"Content-Type": "application/x-www-form-urlencoded"})
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise SttAuthError(NAME, "token endpoint gave no access_token")
        lifetime = answer.get("expires_in", 3600)
        self._token = token
        self._expires = now + (float(lifetime) if isinstance(lifetime, (int, float)) else 3600.0)
        return token

    def forget(self) -> None:
        self._token = None


class GoogleSpeechProvider(UtteranceProvider):
    name = NAME

    def __init__(self, reactor: Any, threadpool: Any, credentials_file: str,
                 endpoint: str = "https://speech.googleapis.com", model: str = "phone_call",
                 timeout: float = 30.0, **options: Any) -> None:
        super().__init__(**options)
        if not credentials_file:
            raise SttError(NAME, "GOOGLE_APPLICATION_CREDENTIALS is required")
        self.url = endpoint.rstrip("/") + "/v1/speech:recognize"
        self.model = model
        self._http = HttpClient(NAME, reactor, timeout)
        self.account = ServiceAccount(credentials_file, reactor, threadpool, self._http)

    @inlineCallbacks
    def _recognize(self, utterance: Utterance, language: str) -> Deferred:
        token = yield self.account.token()
        config: dict[str, Any] = {
            "encoding": "LINEAR16", "sampleRateHertz": utterance.sample_rate,
            "languageCode": language or "en-US", "enableWordTimeOffsets": True,
            "enableWordConfidence": True, "enableAutomaticPunctuation": True,
        }
        if self.model:
            config["model"] = self.model
        body = json.dumps({"config": config, "audio": {
            "content": base64.b64encode(utterance.samples.astype("<i2").tobytes()).decode()}})
        try:
            answer = yield self._http.post(self.url, body.encode(), {
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        except SttAuthError:
            self.account.forget()
            raise
        return parse_google(answer)

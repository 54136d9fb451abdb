"""Amazon Transcribe streaming over WebSocket.

The connection URL is presigned with SigV4 (``siprec.stt.providers.sigv4``):
``wss://transcribestreaming.<region>.amazonaws.com:8443/stream-transcription-websocket
?language-code=en-US&media-encoding=pcm&sample-rate=8000&X-Amz-…``. Audio
goes as binary frames, each one event stream message
(``siprec.stt.providers.eventstream``) with headers ``:message-type: event``,
``:event-type: AudioEvent``, ``:content-type: application/octet-stream`` and
raw PCM as payload; an AudioEvent with an empty payload ends the stream.
Results come back as ``TranscriptEvent`` messages whose JSON payload is
``{"Transcript": {"Results": [{"ResultId", "StartTime", "EndTime",
"IsPartial", "Alternatives": [{"Transcript", "Items": [{"Content",
"StartTime", "EndTime", "Type", "Confidence"}]}]}]}}``; failures are
``:message-type: exception`` messages (``:exception-type`` names it, e.g.
``BadRequestException``) or a refused handshake (403 for bad signatures).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

from siprec.stt.base import (
    Hypothesis, LegSpec, StreamListener, SttAuthError, SttError, SttProtocolError, Word,
)
from siprec.stt.providers._ws import WebSocketStream
from siprec.stt.providers.eventstream import EventStreamError, MessageDecoder, encode_message
from siprec.stt.providers.sigv4 import presign_url

__all__ = ["AmazonTranscribeProvider", "AmazonTranscribeStream"]

NAME = "amazon"
AUDIO_HEADERS = {":message-type": "event", ":event-type": "AudioEvent",
                 ":content-type": "application/octet-stream"}
_AUTH_EXCEPTIONS = frozenset({"UnrecognizedClientException", "AccessDeniedException",
                              "InvalidSignatureException", "ExpiredTokenException"})


class AmazonTranscribeStream(WebSocketStream):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._decoder = MessageDecoder()
        super().__init__(*args, **kwargs)

    def audio_frame(self, data: bytes) -> tuple[bytes, bool]:
        return encode_message(AUDIO_HEADERS, data), True

    def end_frames(self) -> list[tuple[bytes, bool]]:
        return [(encode_message(AUDIO_HEADERS, b""), True)]

    def on_text(self, message: Any) -> None:
        raise SttProtocolError(NAME, "unexpected text message")

    def on_binary(self, payload: bytes) -> None:
        try:
            messages = self._decoder.feed(payload)
        except EventStreamError as err:
            raise SttProtocolError(NAME, f"bad event stream: {err}") from None
        for message in messages:
            kind = message.headers.get(":message-type")
            if kind == "exception" or kind == "error":
                name = str(message.headers.get(":exception-type")
                           or message.headers.get(":error-code") or "error")
                try:
                    detail = json.loads(message.payload).get("Message", "")
                except (ValueError, AttributeError):
                    detail = message.payload[:200].decode("utf-8", "replace")
                error_class = SttAuthError if name in _AUTH_EXCEPTIONS else SttError
                raise error_class(NAME, f"{name}: {detail}")
            if message.headers.get(":event-type") == "TranscriptEvent":
                self._transcript(json.loads(message.payload))

    def _transcript(self, event: dict) -> None:
        for result in event["Transcript"]["Results"]:
            alternatives = result.get("Alternatives") or []
            if not alternatives:
                continue
            best = alternatives[0]
            words, confidences = [], []
            for item in best.get("Items") or ():
                if item.get("Type") == "punctuation":
                    continue
                confidence = item.get("Confidence")
                if isinstance(confidence, (int, float)):
                    confidences.append(float(confidence))
                words.append(Word(str(item["Content"]), self.to_call(float(item["StartTime"])),
                                  self.to_call(float(item["EndTime"])),
                                  float(confidence) if isinstance(confidence, (int, float))
                                  else None))
            self.emit(Hypothesis(
                text=str(best.get("Transcript", "")).strip(),
                is_final=not result.get("IsPartial", False),
                start=self.to_call(float(result.get("StartTime", 0.0))),
                end=self.to_call(float(result.get("EndTime", 0.0))),
                confidence=round(sum(confidences) / len(confidences), 3) if confidences else None,
                language=result.get("LanguageCode") or self.leg.language,
                words=tuple(words),
            ))


class AmazonTranscribeProvider:
    name = NAME

    def __init__(self, reactor: Any, access_key: str, secret_key: str, region: str,
                 session_token: str = "", endpoint: str = "", timeout: float = 30.0,
                 now: Callable[[], datetime] | None = None) -> None:
        if not (access_key and secret_key and region):
            raise SttError(NAME, "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION "
                                 "are required")
        self._reactor = reactor
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.session_token = session_token
        self.endpoint = (endpoint or
                         f"wss://transcribestreaming.{region}.amazonaws.com:8443").rstrip("/")
        self.timeout = timeout
        self._now = now or (lambda: datetime.fromtimestamp(reactor.seconds(), timezone.utc))

    def supports_language(self, language: str) -> bool:
        return True

    def stream_url(self, leg: LegSpec) -> str:
        return presign_url(
            self.endpoint + "/stream-transcription-websocket",
            {"language-code": leg.language, "media-encoding": "pcm",
             "sample-rate": str(leg.sample_rate)},
            self.access_key, self.secret_key, self.region, "transcribe", self._now(),
            session_token=self.session_token,
        )

    def open_stream(self, leg: LegSpec, listener: StreamListener) -> AmazonTranscribeStream:
        return AmazonTranscribeStream(NAME, leg, listener, self._reactor, self.stream_url(leg),
                                      {}, self.timeout)

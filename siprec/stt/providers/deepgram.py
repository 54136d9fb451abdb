"""Deepgram live streaming: one WebSocket per leg.

``wss://api.deepgram.com/v1/listen?model=…&encoding=linear16&sample_rate=…
&channels=1&language=…&interim_results=true&punctuate=true`` with
``Authorization: Token <key>``. Audio goes as binary frames of raw PCM; a
``{"type": "KeepAlive"}`` text message keeps the socket open through gaps
(Deepgram closes an idle stream after about ten seconds), and
``{"type": "CloseStream"}`` ends it: Deepgram sends the last results and
closes. Transcripts arrive as ``{"type": "Results", "start", "duration",
"is_final", "channel": {"alternatives": [{"transcript", "confidence",
"words": [{"word", "punctuated_word", "start", "end", "confidence"}]}]}}``
with times on the stream's clock.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from siprec.stt.base import Hypothesis, LegSpec, StreamListener, SttError, Word
from siprec.stt.providers._ws import WebSocketStream

__all__ = ["DeepgramProvider", "DeepgramStream"]

NAME = "deepgram"


class DeepgramStream(WebSocketStream):
    keepalive_seconds = 5.0

    def audio_frame(self, data: bytes) -> tuple[bytes, bool]:
        return data, True

    def keepalive_frame(self) -> tuple[bytes, bool]:
        return json.dumps({"type": "KeepAlive"}).encode(), False

    def end_frames(self) -> list[tuple[bytes, bool]]:
        return [(json.dumps({"type": "CloseStream"}).encode(), False)]

    def on_text(self, message: Any) -> None:
        kind = message.get("type")
        if kind == "Results":
            self._results(message)
        elif kind == "Error":
            raise SttError(NAME, f"{message.get('err_code', 'error')}: "
                                 f"{message.get('err_msg') or message.get('description', '')}")
        # Metadata, SpeechStarted, UtteranceEnd: nothing to publish

    def _results(self, message: dict) -> None:
        best = message["channel"]["alternatives"][0]
        text = best.get("transcript") or ""
        start = float(message.get("start", 0.0))
        end = start + float(message.get("duration", 0.0))
        words = tuple(
            Word(str(w.get("punctuated_word") or w["word"]), self.to_call(float(w["start"])),
                 self.to_call(float(w["end"])),
                 float(w["confidence"]) if "confidence" in w else None)
            for w in best.get("words") or ()
        )
        confidence = best.get("confidence")
        self.emit(Hypothesis(
            text=text.strip(), is_final=bool(message.get("is_final")),
            start=self.to_call(start), end=self.to_call(end),
            confidence=float(confidence) if isinstance(confidence, (int, float)) else None,
            language=self.leg.language, words=words,
        ))


class DeepgramProvider:
    name = NAME

    def __init__(self, reactor: Any, api_key: str, url: str = "wss://api.deepgram.com/v1/listen",
                 model: str = "nova-3", timeout: float = 30.0, keepalive: float = 5.0) -> None:
        if not api_key:
            raise SttError(NAME, "DEEPGRAM_API_KEY is required")
        self._reactor = reactor
        self.api_key = api_key
        self.url = url
        self.model = model
        self.timeout = timeout
        self.keepalive = keepalive

    def supports_language(self, language: str) -> bool:
        return True

    def stream_url(self, leg: LegSpec) -> str:
        query = {"model": self.model, "encoding": "linear16", "sample_rate": leg.sample_rate,
                 "channels": 1, "language": leg.language, "interim_results": "true",
                 "punctuate": "true"}
        return f"{self.url}?{urlencode(query)}"

    def open_stream(self, leg: LegSpec, listener: StreamListener) -> DeepgramStream:
        stream = DeepgramStream(NAME, leg, listener, self._reactor, self.stream_url(leg),
                                {"Authorization": f"Token {self.api_key}"}, self.timeout)
        stream.keepalive_seconds = self.keepalive
        return stream

"""Speechmatics real-time API: one WebSocket per leg.

``wss://eu2.rt.speechmatics.com/v2`` with ``Authorization: Bearer <key>``.
The client opens with ``StartRecognition`` (``audio_format``: raw
``pcm_s16le`` at the leg's rate; ``transcription_config``: language,
``enable_partials``), waits for ``RecognitionStarted``, then sends binary
``AddAudio`` frames, each acknowledged by ``AudioAdded`` with its
``seq_no``. Results are ``AddPartialTranscript`` and ``AddTranscript``
(``metadata.transcript``, ``start_time``/``end_time``, and ``results`` of
``word``/``punctuation`` items with ``alternatives[0].content`` and
``confidence``). ``EndOfStream`` with ``last_seq_no`` ends the audio and the
server answers ``EndOfTranscript``. ``Error`` messages carry ``type`` and
``reason`` (``not_authorised`` for a bad key).
"""

from __future__ import annotations

import json
from typing import Any

from siprec.stt.base import (
    Hypothesis, LegSpec, StreamListener, SttAuthError, SttError, Word,
)
from siprec.stt.providers._ws import WebSocketStream
from siprec.stt.utterance import primary_language

__all__ = ["SpeechmaticsProvider", "SpeechmaticsStream"]

NAME = "speechmatics"


class SpeechmaticsStream(WebSocketStream):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.seq_sent = 0
        self.seq_acked = 0
        super().__init__(*args, **kwargs)

    def on_open(self) -> None:
        self.send_json({
            "message": "StartRecognition",
            "audio_format": {"type": "raw", "encoding": "pcm_s16le",
                             "sample_rate": self.leg.sample_rate},
            "transcription_config": {"language": primary_language(self.leg.language) or "en",
                                     "enable_partials": True, "max_delay": 2.0},
        })

    def audio_frame(self, data: bytes) -> tuple[bytes, bool]:
        self.seq_sent += 1
        return data, True

    def end_frames(self) -> list[tuple[bytes, bool]]:
        end = {"message": "EndOfStream", "last_seq_no": self.seq_sent}
        return [(json.dumps(end).encode(), False)]

    def finished_by_server_close(self) -> bool:
        return False  # only EndOfTranscript says all results are in

    def on_text(self, message: Any) -> None:
        kind = message.get("message")
        if kind == "RecognitionStarted":
            self.ready()
        elif kind == "AudioAdded":
            self.seq_acked = int(message.get("seq_no", self.seq_acked))
        elif kind in ("AddTranscript", "AddPartialTranscript"):
            self._transcript(message, final=kind == "AddTranscript")
        elif kind == "EndOfTranscript":
            self.complete()
        elif kind == "Error":
            reason = f"{message.get('type', 'error')}: {message.get('reason', '')}"
            if message.get("type") in ("not_authorised", "insufficient_funds"):
                raise SttAuthError(NAME, reason)
            raise SttError(NAME, reason)
        # Info, Warning: nothing to do

    def _transcript(self, message: dict, final: bool) -> None:
        metadata = message.get("metadata") or {}
        words = []
        texts = []
        for item in message.get("results") or ():
            best = item["alternatives"][0]
            content = str(best["content"])
            if item.get("type") == "punctuation" and texts:
                texts[-1] += content
                last = words[-1]
                words[-1] = Word(last.word + content, last.start, last.end, last.confidence)
                continue
            texts.append(content)
            words.append(Word(content, self.to_call(float(item["start_time"])),
                              self.to_call(float(item["end_time"])),
                              float(best["confidence"]) if "confidence" in best else None))
        text = metadata.get("transcript") or " ".join(texts)
        if not text.strip():
            return
        confidences = [w.confidence for w in words if w.confidence is not None]
        self.emit(Hypothesis(
            text=text.strip(), is_final=final,
            start=self.to_call(float(metadata.get("start_time", 0.0))),
            end=self.to_call(float(metadata.get("end_time", 0.0))),
            confidence=round(sum(confidences) / len(confidences), 3) if confidences else None,
            language=self.leg.language, words=tuple(words),
        ))


class SpeechmaticsProvider:
    name = NAME

    def __init__(self, reactor: Any, api_key: str,
                 url: str = "wss://eu2.rt.speechmatics.com/v2", timeout: float = 30.0) -> None:
        if not api_key:
            raise SttError(NAME, "SPEECHMATICS_API_KEY is required")
        self._reactor = reactor
        self.api_key = api_key
        self.url = url
        self.timeout = timeout

    def supports_language(self, language: str) -> bool:
        return True

    def open_stream(self, leg: LegSpec, listener: StreamListener) -> SpeechmaticsStream:
        return SpeechmaticsStream(NAME, leg, listener, self._reactor, self.url,
                                  {"Authorization": f"Bearer {self.api_key}"}, self.timeout)

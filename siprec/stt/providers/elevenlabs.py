"""ElevenLabs speech-to-text: ``POST /v1/speech-to-text`` per utterance.

multipart/form-data with ``model_id`` (scribe_v2 by default), ``file``,
``language_code`` and ``timestamps_granularity=word``; auth header
``xi-api-key``. The answer has ``text``, ``language_code`` and ``words``
whose ``type`` is ``word``, ``spacing`` or ``audio_event``, with ``start``,
``end`` (seconds) and ``logprob``.
"""

from __future__ import annotations

import math
from typing import Any

from twisted.internet.defer import Deferred

from siprec.stt.audio import wav_bytes
from siprec.stt.base import SttProtocolError, Word
from siprec.stt.providers._http import HttpClient, encode_multipart
from siprec.stt.providers.base import UtteranceProvider
from siprec.stt.utterance import Recognition, primary_language
from siprec.stt.vad import Utterance

__all__ = ["ElevenLabsProvider", "parse_elevenlabs"]

NAME = "elevenlabs"


def parse_elevenlabs(answer: Any) -> Recognition:
    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
        raise SttProtocolError(NAME, "answer has no text")
    words = []
    probabilities = []
    try:
        for item in answer.get("words") or ():
            if item.get("type", "word") != "word":
                continue
            probability = None
            if isinstance(item.get("logprob"), (int, float)):
                probability = round(math.exp(min(0.0, float(item["logprob"]))), 3)
                probabilities.append(probability)
            words.append(Word(str(item["text"]).strip(), round(float(item["start"]), 3),
                              round(float(item["end"]), 3), probability))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise SttProtocolError(NAME, f"malformed words ({err!r})") from None
    confidence = round(sum(probabilities) / len(probabilities), 3) if probabilities else None
    language = answer.get("language_code") if isinstance(answer.get("language_code"), str) else None
    return Recognition(answer["text"].strip(), confidence, language, tuple(words))


class ElevenLabsProvider(UtteranceProvider):
    name = NAME

    def __init__(self, reactor: Any, base_url: str, api_key: str, model: str,
                 timeout: float = 30.0, **options: Any) -> None:
        super().__init__(**options)
        self.url = base_url.rstrip("/") + "/v1/speech-to-text"
        self.api_key = api_key
        self.model = model
        self._http = HttpClient(NAME, reactor, timeout)

    def _recognize(self, utterance: Utterance, language: str) -> Deferred:
        fields = [("model_id", self.model), ("timestamps_granularity", "word"),
                  ("tag_audio_events", "false")]
        lang = primary_language(language)
        if lang:
            fields.append(("language_code", lang))
        body, content_type = encode_multipart(
            fields, [("file", "utterance.wav", "audio/wav",
                      wav_bytes(utterance.samples, utterance.sample_rate))])
        d = self._http.post(self.url, body, {"xi-api-key": self.api_key,
                                             "Content-Type": content_type})
        d.addCallback(parse_elevenlabs)
        return d

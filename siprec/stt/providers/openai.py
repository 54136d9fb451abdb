"""OpenAI speech-to-text: ``POST /v1/audio/transcriptions`` per utterance.

Also the client of any OpenAI-compatible Whisper server (WHISPER_API_URL).
The request is multipart/form-data with the utterance as a WAV ``file``,
``model``, the ISO-639-1 ``language`` and ``response_format``; with
``whisper-1`` we ask for ``verbose_json`` and word timestamps
(``timestamp_granularities[]=word``), other models answer ``json`` (text only).
Auth: ``Authorization: Bearer <key>``.
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

__all__ = ["OpenAIProvider", "parse_transcription"]


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def parse_transcription(provider: str, answer: Any) -> Recognition:
    """The Recognition in an OpenAI transcription answer (json or verbose_json)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
        raise SttProtocolError(provider, "answer has no text")
    words = []
    try:
        for item in answer.get("words") or ():
            words.append(Word(str(item["word"]).strip(), round(_float(item["start"]), 3),
                              round(_float(item["end"]), 3)))
        logprobs = [_float(s["avg_logprob"]) for s in answer.get("segments") or ()
                    if isinstance(s, dict) and "avg_logprob" in s]
    except (KeyError, TypeError, ValueError) as err:
        raise SttProtocolError(provider, f"malformed words or segments ({err!r})") from None
    confidence = round(math.exp(sum(logprobs) / len(logprobs)), 3) if logprobs else None
    return Recognition(answer["text"].strip(), confidence, None, tuple(words))


class OpenAIProvider(UtteranceProvider):
    """See the module docstring."""

    def __init__(self, reactor: Any, base_url: str, api_key: str, model: str,
                 timeout: float = 30.0, name: str = "openai", **options: Any) -> None:
        super().__init__(**options)
        self.name = name
        self.url = base_url.rstrip("/") + "/audio/transcriptions"
        self.api_key = api_key
        self.model = model
        self._http = HttpClient(name, reactor, timeout)

    @property
    def verbose(self) -> bool:
        return self.model.startswith("whisper")

    def _recognize(self, utterance: Utterance, language: str) -> Deferred:
        fields = [("model", self.model)]
        lang = primary_language(language)
        if lang:
            fields.append(("language", lang))
        if self.verbose:
            fields += [("response_format", "verbose_json"),
                       ("timestamp_granularities[]", "word"),
                       ("timestamp_granularities[]", "segment")]
        else:
            fields.append(("response_format", "json"))
        body, content_type = encode_multipart(
            fields, [("file", "utterance.wav", "audio/wav",
                      wav_bytes(utterance.samples, utterance.sample_rate))])
        headers = {"Content-Type": content_type}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        d = self._http.post(self.url, body, headers)
        d.addCallback(lambda answer: parse_transcription(self.name, answer))
        return d

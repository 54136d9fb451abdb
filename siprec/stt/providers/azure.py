"""Azure Speech: the REST API for short audio, one request per utterance.

``POST {endpoint}/speech/recognition/conversation/cognitiveservices/v1
?language=en-US&format=detailed`` with the utterance as 16 kHz 16-bit WAV
(``Content-Type: audio/wav; codecs=audio/pcm; samplerate=16000``) and the
resource key in ``Ocp-Apim-Subscription-Key``. The answer's
``RecognitionStatus`` is ``Success`` (text in ``NBest[0].Display`` with its
``Confidence``; ``Offset``/``Duration`` in 100 ns ticks), ``NoMatch``,
``InitialSilenceTimeout`` or ``BabbleTimeout`` (no speech: empty text), or
an error. Utterances must stay under 60 s, which the VAD's cut guarantees.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import numpy as np
from twisted.internet.defer import Deferred

from siprec.stt.audio import resample, wav_bytes
from siprec.stt.base import SttError, SttProtocolError
from siprec.stt.providers._http import HttpClient
from siprec.stt.providers.base import UtteranceProvider
from siprec.stt.utterance import Recognition
from siprec.stt.vad import Utterance

__all__ = ["AzureSpeechProvider", "parse_azure"]

NAME = "azure"
RATE = 16000
PATH = "/speech/recognition/conversation/cognitiveservices/v1"
NO_SPEECH = frozenset({"NoMatch", "InitialSilenceTimeout", "BabbleTimeout"})


def parse_azure(answer: Any) -> Recognition:
    if not isinstance(answer, dict) or not isinstance(answer.get("RecognitionStatus"), str):
        raise SttProtocolError(NAME, "answer has no RecognitionStatus")
    status = answer["RecognitionStatus"]
    if status in NO_SPEECH:
        return Recognition("")
    if status != "Success":
        raise SttError(NAME, f"recognition failed: {status}")
    best = answer.get("NBest")
    if isinstance(best, list) and best and isinstance(best[0], dict):
        text = best[0].get("Display")
        confidence = best[0].get("Confidence")
    else:
        text, confidence = answer.get("DisplayText"), None
    if not isinstance(text, str):
        raise SttProtocolError(NAME, "answer has no text")
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool):
        confidence = None
    return Recognition(text, round(float(confidence), 3) if confidence is not None else None)


class AzureSpeechProvider(UtteranceProvider):
    name = NAME

    def __init__(self, reactor: Any, key: str, region: str = "", endpoint: str = "",
                 timeout: float = 30.0, **options: Any) -> None:
        super().__init__(**options)
        if not endpoint:
            if not region:
                raise SttError(NAME, "AZURE_SPEECH_REGION or AZURE_SPEECH_ENDPOINT is required")
            endpoint = f"https://{region}.stt.speech.microsoft.com"
        self.url = endpoint.rstrip("/") + PATH
        self.key = key
        self._http = HttpClient(NAME, reactor, timeout)

    def _recognize(self, utterance: Utterance, language: str) -> Deferred:
        samples = utterance.samples
        if utterance.sample_rate != RATE:
            converted = resample(samples, utterance.sample_rate, RATE)
            samples = np.clip(np.round(converted), -32768, 32767).astype(np.int16)
        url = self.url + "?" + urlencode({"language": language or "en-US", "format": "detailed"})
        d = self._http.post(url, wav_bytes(samples, RATE), {
            "Ocp-Apim-Subscription-Key": self.key,
            "Content-Type": f"audio/wav; codecs=audio/pcm; samplerate={RATE}",
            "Accept": "application/json",
        })
        d.addCallback(parse_azure)
        return d

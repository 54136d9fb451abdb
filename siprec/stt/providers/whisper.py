"""Whisper, the open-source model, two ways.

* **CLI** (default): the ``whisper`` command of openai-whisper (or a
  compatible wrapper at WHISPER_BINARY_PATH) run as a subprocess per
  utterance through the reactor's process support: the utterance is written
  as a WAV file, the command writes ``<name>.json`` (``--output_format
  json``) with ``text``, ``language`` and ``segments`` (``avg_logprob`` and,
  with ``--word_timestamps True``, ``words``), and that is read back.
  A run longer than WHISPER_TIMEOUT is killed.
* **HTTP**: an OpenAI-compatible server (WHISPER_API_URL, e.g. a
  faster-whisper or whisper.cpp server) spoken to by ``OpenAIProvider``.

File work happens in the thread pool; the process is never waited for on
the reactor thread.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from siprec.stt.audio import wav_bytes
from siprec.stt.base import LegSpec, StreamListener, SttError, SttProtocolError, SttUnavailable, Word
from siprec.stt.providers.base import UtteranceProvider
from siprec.stt.providers.openai import OpenAIProvider
from siprec.stt.utterance import Recognition, UtteranceStream, primary_language
from siprec.stt.vad import Utterance

__all__ = ["WhisperCliProvider", "WhisperHttpProvider", "parse_whisper_json"]

NAME = "whisper"
_STDERR_KEPT = 2000


def parse_whisper_json(data: Any) -> Recognition:
    """Recognition from the CLI's JSON output."""
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise SttProtocolError(NAME, "whisper output has no text")
    words, logprobs = [], []
    try:
        for segment in data.get("segments") or ():
            if isinstance(segment.get("avg_logprob"), (int, float)):
                logprobs.append(float(segment["avg_logprob"]))
            for item in segment.get("words") or ():
                probability = item.get("probability")
                words.append(Word(str(item["word"]).strip(), round(float(item["start"]), 3),
                                  round(float(item["end"]), 3),
                                  round(float(probability), 3)
                                  if isinstance(probability, (int, float)) else None))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise SttProtocolError(NAME, f"malformed whisper segments ({err!r})") from None
    confidence = round(math.exp(sum(logprobs) / len(logprobs)), 3) if logprobs else None
    language = data.get("language") if isinstance(data.get("language"), str) else None
    return Recognition(data["text"].strip(), confidence, language, tuple(words))


class _Run(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.done: Deferred = Deferred()
        self.stderr = b""

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-_STDERR_KEPT:]

    def processEnded(self, reason: Failure) -> None:
        self.done.callback(getattr(reason.value, "exitCode", None))


class WhisperCliProvider(UtteranceProvider):
    name = NAME

    def __init__(self, reactor: Any, threadpool: Any, binary: str = "whisper",
                 model: str = "base", timeout: float = 120.0, **options: Any) -> None:
        super().__init__(**options)
        self._reactor = reactor
        self._pool = threadpool
        self.binary = binary
        self.model = model
        self.timeout = timeout

    def executable(self) -> str | None:
        found = shutil.which(self.binary)
        return os.path.abspath(found) if found else None

    def open_stream(self, leg: LegSpec, listener: StreamListener) -> UtteranceStream:
        if self.executable() is None:
            raise SttUnavailable(NAME, f"whisper CLI {self.binary!r} not found "
                                       "(WHISPER_BINARY_PATH)")
        return super().open_stream(leg, listener)

    @inlineCallbacks
    def _recognize(self, utterance: Utterance, language: str) -> Deferred:
        workdir = yield deferToThreadPool(self._reactor, self._pool, self._write, utterance)
        try:
            data = yield self._run(workdir, language)
        finally:
            yield deferToThreadPool(self._reactor, self._pool, shutil.rmtree, workdir, True)
        return parse_whisper_json(data)

    @staticmethod
    def _write(utterance: Utterance) -> str:
        workdir = tempfile.mkdtemp(prefix="siprec-whisper-")
        with open(os.path.join(workdir, "utterance.wav"), "wb") as handle:
            handle.write(wav_bytes(utterance.samples, utterance.sample_rate))
        return workdir

    @inlineCallbacks
    def _run(self, workdir: str, language: str) -> Deferred:
        executable = self.executable()
        if executable is None:
            raise SttUnavailable(NAME, f"whisper CLI {self.binary!r} not found")
        args = [executable, os.path.join(workdir, "utterance.wav"), "--model", self.model,
                "--output_format", "json", "--output_dir", workdir, "--fp16", "False",
                "--verbose", "False", "--word_timestamps", "True"]
        lang = primary_language(language)
        if lang:
            args += ["--language", lang]
        run = _Run()
        process = self._reactor.spawnProcess(run, executable, args, env=os.environ.copy(),
                                             path=workdir)
        timer = self._reactor.callLater(self.timeout, process.signalProcess, "KILL")
        code = yield run.done
        timed_out = not timer.active()
        if not timed_out:
            timer.cancel()
        if timed_out:
            raise SttError(NAME, f"whisper CLI ran longer than {self.timeout:g}s and was killed")
        if code != 0:
            tail = run.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise SttError(NAME, f"whisper CLI exited with {code}: {tail[0][:300]}")
        data = yield deferToThreadPool(self._reactor, self._pool, self._read, workdir)
        return data

    @staticmethod
    def _read(workdir: str) -> Any:
        path = os.path.join(workdir, "utterance.json")
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            raise SttProtocolError(NAME, "whisper CLI wrote no utterance.json") from None
        except ValueError:
            raise SttProtocolError(NAME, "whisper CLI wrote invalid JSON") from None


class WhisperHttpProvider(OpenAIProvider):
    """An OpenAI-compatible Whisper server (``/audio/transcriptions`` under WHISPER_API_URL)."""

    def __init__(self, reactor: Any, base_url: str, api_key: str = "", model: str = "whisper-1",
                 timeout: float = 30.0, **options: Any) -> None:
        super().__init__(reactor, base_url, api_key, model, timeout, name=NAME, **options)

    @property
    def verbose(self) -> bool:
        return True  # Whisper servers answer verbose_json with segments

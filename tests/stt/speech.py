"""Real speech for STT tests and benchmarks: espeak-ng sentences at 8 kHz.

The text is spoken by espeak-ng when the test runs (no audio files in the
repository), resampled to the telephone rate and, like a PCMU call, passed
through G.711 µ-law.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np

from siprec.media.codecs.g711 import ULAW_TO_PCM, encode_ulaw
from siprec.stt.audio import AudioError, read_wav, resample

# Clear call-centre sentences; the WER bound in test_offline holds for this set.
SENTENCES = (
    "Please call me back tomorrow morning about the invoice.",
    "I would like to check the status of my order.",
    "Thank you for calling, how can I help you today?",
    "My phone number has changed.",
    "Can you repeat that please?",
    "I want to cancel my subscription.",
    "The package arrived this morning.",
    "We are open from nine to five.",
    "The meeting has been moved to Thursday afternoon.",
    "Let me transfer you to the billing department.",
)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def require_espeak(skip_test) -> None:
    """Skip without espeak-ng, except in CI where it must be installed."""
    if not espeak_available():
        if os.environ.get("CI") == "true":
            raise AssertionError("espeak-ng is required in CI (scripts/test.sh installs it)")
        skip_test("espeak-ng is not installed")


def speak(text: str, rate: int = 8000, voice: str = "en-us", ulaw: bool = True) -> np.ndarray:
    """``text`` spoken by espeak-ng, as int16 samples at ``rate`` Hz."""
    output = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", text],
        capture_output=True, check=True, timeout=60,
    ).stdout
    samples, source_rate = read_wav(output)
    audio = resample(samples.astype(np.float32), source_rate, rate)
    pcm = np.clip(np.round(audio), -32768, 32767).astype(np.int16)
    if ulaw:
        pcm = ULAW_TO_PCM[np.frombuffer(encode_ulaw(pcm), dtype=np.uint8)]
    return pcm


def conversation(sentences=SENTENCES, rate: int = 8000, pause: float = 1.0,
                 **options) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The sentences one after another with ``pause`` seconds of silence
    around each; returns the audio and each sentence's (start, end) seconds."""
    silence = np.zeros(int(pause * rate), dtype=np.int16)
    parts = [silence]
    spans = []
    position = len(silence)
    for sentence in sentences:
        spoken = speak(sentence, rate, **options)
        spans.append((position / rate, (position + len(spoken)) / rate))
        parts.extend([spoken, silence])
        position += len(spoken) + len(silence)
    return np.concatenate(parts), spans


__all__ = ["AudioError", "SENTENCES", "conversation", "espeak_available",
           "require_espeak", "speak"]

"""Audio processing for the analysis path: VAD, noise reduction, echo cancellation, mix-down.

Never applied to the archived recordings: these stages work on copies of
the audio the media layer hands to its ``audio_sink``, for analytics and
transcription. Every stage is sans-IO numpy, streams (same output whether
fed whole or in any chunks), takes int16 or float samples and returns
float32 at full scale 1.0, and runs at 8 to 48 kHz. See docs/media.md.
"""

from siprec.media.dsp.base import SAMPLE_RATES, Chunk, DspError, to_int16
from siprec.media.dsp.echo import EchoCanceller, EchoConfig
from siprec.media.dsp.mix import MixConfig, Mixer, StreamResampler, mix_down, resample, soft_limit
from siprec.media.dsp.noise import NoiseConfig, NoiseReducer
from siprec.media.dsp.pipeline import (
    LegConfig,
    LegOutput,
    LegProcessor,
    LegStats,
    PairConfig,
    PairOutput,
    PairProcessor,
    PairStats,
)
from siprec.media.dsp.vad import SpeechSegment, VadConfig, VoiceActivityDetector, overlap_samples

__all__ = [
    "SAMPLE_RATES",
    "Chunk",
    "DspError",
    "EchoCanceller",
    "EchoConfig",
    "LegConfig",
    "LegOutput",
    "LegProcessor",
    "LegStats",
    "MixConfig",
    "Mixer",
    "NoiseConfig",
    "NoiseReducer",
    "PairConfig",
    "PairOutput",
    "PairProcessor",
    "PairStats",
    "SpeechSegment",
    "StreamResampler",
    "VadConfig",
    "VoiceActivityDetector",
    "mix_down",
    "overlap_samples",
    "resample",
    "soft_limit",
    "to_int16",
]

"""One module per vendor; ``build_providers`` makes those the configuration enables.

The offline engine is always built (it needs no account). A vendor is built
when it is DEFAULT_SPEECH_VENDOR, in STT_SUPPORTED_VENDORS, named by
STT_LANGUAGE_ROUTES or STT_POSTCALL_VENDOR, and its credentials are set;
one that is wanted but cannot be built is reported, not fatal, so a typo in
a key never stops the recording server.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from siprec.stt.base import SttError, SttProvider

__all__ = ["build_provider", "build_providers", "wanted_vendors"]

log = Logger()


def wanted_vendors(config: Any, routes: dict[str, tuple[str, ...]]) -> list[str]:
    names = [config.default_speech_vendor, *config.stt_supported_vendors]
    for chain in routes.values():
        names.extend(chain)
    if config.stt_postcall_vendor:
        names.append(config.stt_postcall_vendor)
    seen: list[str] = []
    for name in names:
        if name and name != "offline" and name not in seen:
            seen.append(name)
    return seen


def build_provider(name: str, config: Any, reactor: Any, threadpool: Any) -> SttProvider:
    """One vendor's provider from the configuration; SttError if it lacks settings."""
    timeout = config.stt_request_timeout
    if name == "deepgram":
        from siprec.stt.providers.deepgram import DeepgramProvider
        return DeepgramProvider(reactor, config.deepgram_api_key, config.deepgram_url,
                                config.deepgram_model, timeout)
    if name == "speechmatics":
        from siprec.stt.providers.speechmatics import SpeechmaticsProvider
        return SpeechmaticsProvider(reactor, config.speechmatics_api_key,
                                    config.speechmatics_url, timeout)
    if name == "openai":
        from siprec.stt.providers.openai import OpenAIProvider
        if not config.openai_api_key:
            raise SttError(name, "OPENAI_API_KEY is required")
        return OpenAIProvider(reactor, config.openai_base_url, config.openai_api_key,
                              config.openai_stt_model, timeout)
    if name == "elevenlabs":
        from siprec.stt.providers.elevenlabs import ElevenLabsProvider
        if not config.elevenlabs_api_key:
            raise SttError(name, "ELEVENLABS_API_KEY is required")
        return ElevenLabsProvider(reactor, config.elevenlabs_base_url, config.elevenlabs_api_key,
                                  config.elevenlabs_stt_model, timeout)
    if name == "azure":
        from siprec.stt.providers.azure import AzureSpeechProvider
        if not config.azure_speech_key:
            raise SttError(name, "AZURE_SPEECH_KEY is required")
        return AzureSpeechProvider(reactor, config.azure_speech_key, config.azure_speech_region,
                                   config.azure_speech_endpoint, timeout)
    if name == "amazon":
        from siprec.stt.providers.amazon import AmazonTranscribeProvider
        return AmazonTranscribeProvider(reactor, config.aws_access_key_id,
                                        config.aws_secret_access_key, config.aws_region,
                                        config.aws_session_token,
                                        config.amazon_transcribe_endpoint, timeout)
    if name == "google":
        from siprec.stt.providers.google import GoogleSpeechProvider
        return GoogleSpeechProvider(reactor, threadpool, config.google_application_credentials,
                                    config.google_speech_endpoint, config.google_speech_model,
                                    timeout)
    if name == "whisper":
        from siprec.stt.providers.whisper import WhisperCliProvider, WhisperHttpProvider
        if config.whisper_api_url:
            return WhisperHttpProvider(reactor, config.whisper_api_url, config.whisper_api_key,
                                       config.whisper_model, timeout)
        return WhisperCliProvider(reactor, threadpool, config.whisper_binary_path,
                                  config.whisper_model, config.whisper_timeout)
    raise SttError(name, "unknown vendor")


def build_providers(config: Any, reactor: Any, threadpool: Any,
                    routes: dict[str, tuple[str, ...]]) -> dict[str, SttProvider]:
    """Every wanted vendor that can be built (the offline engine is added by the caller)."""
    providers: dict[str, SttProvider] = {}
    for name in wanted_vendors(config, routes):
        try:
            providers[name] = build_provider(name, config, reactor, threadpool)
        except SttError as err:
            log.warn("STT vendor {vendor} is selected but unusable: {error}",
                     vendor=name, error=err.message)
    return providers

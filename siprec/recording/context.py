"""What a recording session is given to work with, in one small object.

Sessions get their collaborators here, at construction, instead of
reaching through a manager: the clock, the settings, the media service,
the files, the event publisher, transcription, metrics, and three
callbacks to the registry that owns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from twisted.internet.interfaces import IReactorTime

from siprec.media.events import OnEvent
from siprec.media.spec import PayloadFormat, StreamSpec
from siprec.recording.files import RecordingFiles

__all__ = ["RecordingSettings", "SessionContext", "MediaPort", "CallEvents", "NoEvents"]


@dataclass
class RecordingSettings:
    recording_dir: str
    media_address: str  # the address our SDP advertises (c=)
    combine_legs: bool = True
    rtp_timeout: float = 30.0
    max_calls: int = 0  # 0: unlimited
    accept_savp: bool = False
    warning_agent: str = "siprec"
    keep_ended: int = 200  # ended sessions kept for the API
    opus_sample_rate: int = 48000
    audio_analysis: bool = False


class MediaPort(Protocol):
    """The media service as sessions see it (siprec.media.service.MediaService)."""

    def open_stream(self, spec: StreamSpec, on_event: OnEvent, call_start: float,
                    deliver_audio: bool = False) -> Any: ...


class CallEvents(Protocol):
    """Where call events go (siprec.recording.publisher.CallEventPublisher)."""

    def call_started(self, session) -> None: ...
    def call_updated(self, session, reason: str) -> None: ...
    def call_ended(self, session) -> None: ...
    def stream_started(self, session, stream) -> None: ...
    def stream_stopped(self, session, stream, reason: str) -> None: ...
    def dtmf(self, session, record) -> None: ...
    def paused(self, session, **kwargs) -> None: ...
    def resumed(self, session, **kwargs) -> None: ...
    def transcript(self, session, result) -> None: ...
    def analytics(self, session, analysis) -> None: ...


class NoEvents:
    """Events go nowhere (no real-time delivery configured, and in tests)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def _nothing(*args: Any) -> None:
    return None


@dataclass
class SessionContext:
    clock: IReactorTime
    settings: RecordingSettings
    media: MediaPort
    files: RecordingFiles
    can_decode: Callable[[PayloadFormat], bool]
    combine_rate: Callable[[Any], int]  # plans -> the combined file's sample rate
    events: Any = field(default_factory=NoEvents)
    transcription: Optional[Any] = None  # a TranscriptionService (STT_ENABLED)
    metrics: Optional[Any] = None
    started: Callable[[Any], None] = _nothing  # the session became active
    ended: Callable[[Any], None] = _nothing  # its files are final
    refused: Callable[[Any, int, str], None] = _nothing  # (session, status, reason)

"""The life of a recording session, as one enum every layer shares.

The HTTP API, the event publisher and the manager test a session's state;
they import these names instead of comparing strings that may never occur.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["SessionState"]


class SessionState(str, Enum):
    """``str`` values, so records and JSON answers keep the plain words."""

    SETUP = "setup"  # INVITE being answered; nothing on disk yet
    ACTIVE = "active"  # answered; streams recording
    ENDING = "ending"  # BYE/timeout/API: streams closing, legs combining
    ENDED = "ended"  # files final (transcription may still be finishing)

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        """The recording's files are final."""
        return self is SessionState.ENDED

    @property
    def closing(self) -> bool:
        """Ending or ended: no more pauses, re-offers or terminations apply."""
        return self in (SessionState.ENDING, SessionState.ENDED)

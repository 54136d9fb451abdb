"""Pause intervals of a call: who paused what, when, and for how long.

The SRC pauses a leg with ``a=inactive`` or holds it with ``c=0.0.0.0``;
an operator pauses recording and/or transcription of the whole call over
the API. Each pause is an interval in the call record; the audio itself is
written as silence by the media layer, so the timeline stays true.
"""

from __future__ import annotations

from typing import Callable, List, Optional

__all__ = ["PauseLog", "MAX_PAUSES"]

#: A hostile SRC toggling a=inactive must not grow the record without bound.
MAX_PAUSES = 10_000

# on_change(started, interval): started True for a new pause, False when one ends.
OnChange = Callable[[bool, dict], None]


class PauseLog:
    """Intervals as dicts (``label``, ``stream``, ``reason``, ``recording``,
    ``transcription``, ``start``, ``end``), times in seconds; ``end`` None while open."""

    def __init__(self, now: Callable[[], float], on_change: OnChange) -> None:
        self._now = now
        self._on_change = on_change
        self.intervals: List[dict] = []

    def start(self, label: Optional[str], key: Optional[str], reason: str, *,
              recording: bool = True, transcription: bool = True) -> None:
        pause = {"label": label, "stream": key, "reason": reason, "recording": recording,
                 "transcription": transcription, "start": self._now(), "end": None}
        if len(self.intervals) < MAX_PAUSES:
            self.intervals.append(pause)
        self._on_change(True, pause)

    def end(self, key: Optional[str], reason: Optional[str] = None) -> Optional[dict]:
        """Close the latest open pause of ``key`` (None: the whole call), optionally
        only one of ``reason``; returns it, or None when none was open."""
        for pause in reversed(self.intervals):
            if pause["stream"] == key and pause["end"] is None and reason in (None, pause["reason"]):
                pause["end"] = self._now()
                self._on_change(False, pause)
                return pause
        return None

    def close_all(self) -> None:
        """The call is over: every open interval ends now (no events)."""
        now = self._now()
        for pause in self.intervals:
            if pause["end"] is None:
                pause["end"] = now

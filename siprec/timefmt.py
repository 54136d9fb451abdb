"""The one way siprec writes a moment: UTC ISO 8601 with milliseconds and Z.

Records, events, the API and health answers all carry times in this form,
so a consumer never has to guess which of several layouts a field uses.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

__all__ = ["iso_time"]


def iso_time(seconds: Optional[float]) -> Optional[str]:
    """``2026-01-05T09:00:00.123Z`` for a POSIX time; None stays None."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

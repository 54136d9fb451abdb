"""A bounded log: hostile or broken peers may send thousands of bad messages a
second; each deserves an answer but not a log line."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

__all__ = ["LogBudget"]


class LogBudget:
    """At most ``limit`` lines per ``window`` seconds; the rest are counted, then summarised."""

    def __init__(self, clock: IReactorTime, what: str, limit: int = 20, window: float = 60.0):
        self.clock = clock
        self.what = what
        self.limit = limit
        self.window = window
        self.start = clock.seconds()
        self.used = 0
        self.suppressed = 0

    def allow(self) -> bool:
        """Whether one more line may be written now."""
        now = self.clock.seconds()
        if now - self.start >= self.window:
            if self.suppressed:
                log.info("{n} more {what} not logged in the last {w:g}s", n=self.suppressed,
                         what=self.what, w=now - self.start)
            self.start, self.used, self.suppressed = now, 0, 0
        if self.used < self.limit:
            self.used += 1
            return True
        self.suppressed += 1
        return False

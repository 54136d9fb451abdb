"""LOG_LEVEL and LOG_FORMAT: applied to what twistd set up, once the service starts."""

from __future__ import annotations

import sys
from typing import IO, Optional

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    jsonFileLogObserver,
)

__all__ = ["install_log_filter", "LEVELS"]

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
}


def install_log_filter(level_name: str, log_format: str = "text", publisher=globalLogPublisher,
                       stream: Optional[IO[str]] = None) -> LogLevelFilterPredicate:
    """Wrap the observers of ``publisher`` in a level filter.

    With ``log_format="json"`` the text observers are replaced by one that
    writes a JSON object per line to ``stream`` (standard output). Calling
    again only changes the level (config reload).
    """
    level = LEVELS[str(level_name).lower()]
    current = [o for o in list(getattr(publisher, "_observers", []))
               if isinstance(o, FilteringLogObserver) and getattr(o, "_siprec", None)]
    if current:
        predicate = current[0]._siprec
        predicate.setLogLevelForNamespace("", level)
        return predicate
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    observers = list(getattr(publisher, "_observers", []))
    if log_format == "json":
        for observer in observers:
            publisher.removeObserver(observer)
        observers = [jsonFileLogObserver(stream or sys.stdout)]
    else:
        for observer in observers:
            publisher.removeObserver(observer)
    for observer in observers:
        wrapped = FilteringLogObserver(observer, [predicate])
        wrapped._siprec = predicate
        publisher.addObserver(wrapped)
    return predicate

"""LOG_LEVEL: filter what reaches the observers twistd installed."""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

__all__ = ["install_log_filter", "LEVELS"]

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
}

_installed = []


def install_log_filter(level_name: str, publisher=globalLogPublisher) -> LogLevelFilterPredicate:
    """Wrap every current observer of ``publisher`` in a level filter.

    Called when the service starts, after twistd began logging; calling
    again only changes the level (config reload).
    """
    level = LEVELS[str(level_name).lower()]
    if _installed:
        predicate = _installed[0]
        predicate.setLogLevelForNamespace("", level)
        return predicate
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    for observer in list(getattr(publisher, "_observers", [])):
        if isinstance(observer, FilteringLogObserver):
            continue
        publisher.removeObserver(observer)
        publisher.addObserver(FilteringLogObserver(observer, [predicate]))
    _installed.append(predicate)
    return predicate

"""A circuit breaker per STT provider (closed / open / half-open).

Closed: legs go to the provider; consecutive failures are counted and the
threshold opens the breaker. Open: new legs skip the provider until
``reset_timeout`` has passed on the injected clock. Half-open: up to
``half_open_max`` trial legs go through; a success closes the breaker, a
failure opens it again for another ``reset_timeout``. State changes are
reported to an optional callback (the router logs them); the current state
and counters are plain data for /health/ready and /metrics.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

__all__ = ["BreakerSettings", "BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Thresholds (STT_BREAKER_FAILURES, STT_BREAKER_RESET, STT_BREAKER_HALF_OPEN_LEGS)."""

    failure_threshold: int = 3
    reset_timeout: float = 30.0
    half_open_max: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.reset_timeout <= 0:
            raise ValueError("reset_timeout must be positive")
        if self.half_open_max < 1:
            raise ValueError("half_open_max must be at least 1")


StateCallback = Callable[[str, BreakerState, BreakerState], None]


class CircuitBreaker:
    """One provider's breaker; see the module docstring."""

    def __init__(
        self,
        name: str,
        clock: IReactorTime,
        settings: BreakerSettings = BreakerSettings(),
        on_change: StateCallback | None = None,
    ) -> None:
        self.name = name
        self._clock = clock
        self.settings = settings
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0
        self._trials = 0  # trial legs in flight while half-open
        self.successes_total = 0
        self.failures_total = 0
        self.rejections_total = 0
        self.opens_total = 0

    @property
    def state(self) -> BreakerState:
        """The state now; an open breaker whose timeout passed is half-open."""
        if (
            self._state is BreakerState.OPEN
            and self._clock.seconds() - self._opened_at >= self.settings.reset_timeout
        ):
            self._set(BreakerState.HALF_OPEN)
            self._trials = 0
        return self._state

    def allow(self) -> bool:
        """Whether a new leg may use the provider; takes a trial slot when half-open.

        A caller that got True must later call ``record_success`` or
        ``record_failure`` (or ``release`` if the leg never tested the provider).
        """
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._trials < self.settings.half_open_max:
            self._trials += 1
            return True
        self.rejections_total += 1
        return False

    def would_allow(self) -> bool:
        """Like ``allow`` without taking a slot (for status and planning)."""
        state = self.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and self._trials < self.settings.half_open_max
        )

    def record_success(self) -> None:
        self.successes_total += 1
        if self._state is BreakerState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)
            self._set(BreakerState.CLOSED)
        self._failures = 0

    def record_failure(self) -> None:
        self.failures_total += 1
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)
            self._open()
        elif state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.settings.failure_threshold:
                self._open()
        # Already open (a leg admitted earlier failed late): stay open.

    def release(self) -> None:
        """Give back a half-open trial slot that tested nothing."""
        if self._state is BreakerState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)

    def _open(self) -> None:
        self._opened_at = self._clock.seconds()
        self._failures = 0
        self._trials = 0
        self.opens_total += 1
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        previous, self._state = self._state, state
        if previous is not state and self._on_change is not None:
            self._on_change(self.name, previous, state)

    def snapshot(self) -> dict[str, Any]:
        """Plain data for health and metrics."""
        state = self.state
        retry_in = None
        if state is BreakerState.OPEN:
            retry_in = max(0.0, self._opened_at + self.settings.reset_timeout
                           - self._clock.seconds())
        return {
            "state": str(state),
            "consecutive_failures": self._failures,
            "retry_in": retry_in,
            "successes_total": self.successes_total,
            "failures_total": self.failures_total,
            "rejections_total": self.rejections_total,
            "opens_total": self.opens_total,
        }

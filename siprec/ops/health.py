"""Liveness, readiness and status for probes and operators.

Components register named checks; a check is a callable returning
``(ok, detail)`` or a Deferred firing with it. Readiness runs every check (with
a timeout on the injected clock) and fails when any fails, or while the server
drains calls before shutting down, so a load balancer stops sending new calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Union

from twisted.internet.defer import (
    CancelledError, Deferred, FirstError, TimeoutError, gatherResults, maybeDeferred,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

import siprec
from siprec.timefmt import iso_time

log = Logger()

CheckOutcome = Tuple[bool, str]
Check = Callable[[], Union[CheckOutcome, "Deferred[CheckOutcome]"]]

MAX_DETAIL = 200  # characters of a check's detail shown to probes


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's answer, as shown to probes."""

    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict:
        return {"ok": self.ok, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the server should be given new calls, and why not."""

    ok: bool
    draining: bool
    checks: Tuple[CheckResult, ...]

    @property
    def status(self) -> str:
        if self.draining:
            return "draining"
        return "ready" if self.ok else "not_ready"

    def to_json(self) -> dict:
        return {"status": self.status, "checks": {c.name: c.to_json() for c in self.checks}}


class Health:
    """Registry of health checks plus the process's draining flag and uptime."""

    def __init__(self, clock: IReactorTime, *, check_timeout: float = 2.0,
                 active_calls: Optional[Callable[[], int]] = None,
                 version: str = siprec.__version__) -> None:
        self.clock = clock
        self.check_timeout = check_timeout
        self.active_calls = active_calls
        self.version = version
        self.started = clock.seconds()
        self._checks: Dict[str, Check] = {}
        self._last_ok: Dict[str, bool] = {}
        self._draining = False

    # -- registration ----------------------------------------------------------
    def add_check(self, name: str, check: Check) -> None:
        """Register `check` under a unique, non-empty `name`."""
        if not isinstance(name, str) or not name:
            raise ValueError("health check name must be a non-empty string")
        if name in self._checks:
            raise ValueError(f"health check {name!r} is already registered")
        if not callable(check):
            raise TypeError(f"health check {name!r} is not callable")
        self._checks[name] = check

    def remove_check(self, name: str) -> None:
        self._checks.pop(name, None)
        self._last_ok.pop(name, None)

    @property
    def check_names(self) -> Tuple[str, ...]:
        return tuple(self._checks)

    # -- draining --------------------------------------------------------------
    def set_draining(self, draining: bool = True) -> None:
        """Mark the server as shutting down: readiness fails from now on."""
        if draining != self._draining:
            log.info("Health: draining {state}", state="on" if draining else "off")
        self._draining = draining

    @property
    def draining(self) -> bool:
        return self._draining

    # -- probes ----------------------------------------------------------------
    def uptime(self) -> float:
        return max(0.0, self.clock.seconds() - self.started)

    def live(self) -> dict:
        """Always alive while the process can answer at all."""
        return {"status": "alive", "uptime_seconds": round(self.uptime(), 3)}

    def ready(self) -> "Deferred[Readiness]":
        """Run every check; errbacks only when cancelled (the prober went away)."""
        names = list(self._checks)
        runs = [self._run(name, self._checks[name]) for name in names]
        d = gatherResults(runs, consumeErrors=True)
        d.addCallback(lambda results: Readiness(
            ok=not self._draining and all(r.ok for r in results),
            draining=self._draining,
            checks=tuple(results),
        ))
        d.addErrback(lambda failure: failure.value.subFailure if failure.check(FirstError) else failure)
        return d

    def status(self) -> dict:
        """Version, start time, uptime, draining and (when known) active calls."""
        status = {
            "version": self.version,
            "started_at": iso_time(self.started),
            "uptime_seconds": round(self.uptime(), 3),
            "draining": self._draining,
        }
        if self.active_calls is not None:
            status["active_calls"] = int(self.active_calls())
        return status

    # -- internals -------------------------------------------------------------
    def _run(self, name: str, check: Check) -> "Deferred[CheckResult]":
        d = maybeDeferred(check)
        d.addTimeout(self.check_timeout, self.clock)
        d.addCallbacks(lambda outcome: self._accept(name, outcome),
                       lambda failure: self._failed(name, failure))
        d.addCallback(self._note_change)
        return d

    @staticmethod
    def _accept(name: str, outcome: object) -> CheckResult:
        if (isinstance(outcome, tuple) and len(outcome) == 2
                and isinstance(outcome[0], bool) and isinstance(outcome[1], str)):
            return CheckResult(name, outcome[0], outcome[1][:MAX_DETAIL])
        log.error("Health check {name} returned {kind}, not (bool, str)",
                  name=name, kind=type(outcome).__name__)
        return CheckResult(name, False, "check returned an invalid result")

    def _failed(self, name: str, failure: Failure) -> Union[CheckResult, Failure]:
        if failure.check(CancelledError):
            return failure  # the probe was abandoned; nothing to report or log
        if failure.check(TimeoutError):
            return CheckResult(name, False, f"timed out after {self.check_timeout:g}s")
        log.failure("Health check {name} raised", failure, name=name)
        # The exception type only: messages may carry addresses or credentials.
        return CheckResult(name, False, f"check raised {failure.type.__name__}")

    def _note_change(self, result: CheckResult) -> CheckResult:
        """Log a check when it flips, not on every probe."""
        previous = self._last_ok.get(result.name)
        if result.name in self._checks:
            self._last_ok[result.name] = result.ok
        if previous is not None and previous != result.ok:
            log.info("Health check {name} is now {state}: {detail}", name=result.name,
                     state="ok" if result.ok else "failing", detail=result.detail)
        elif previous is None and not result.ok:
            log.warn("Health check {name} failing: {detail}", name=result.name, detail=result.detail)
        return result

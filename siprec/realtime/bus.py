"""The in-process event bus: publishers never wait for, or fail because of, subscribers.

``publish`` stamps the event (sequence number, time from the injected clock)
and appends it to each matching subscriber's bounded queue, nothing more: no
subscriber code runs inside ``publish``. Queues are drained on a later
reactor turn, a bounded number of events per subscriber per turn, so one
burst cannot starve the reactor. A subscriber that falls behind loses its
oldest events (counted); one that raises is counted and logged (rate
limited), and keeps its subscription.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Iterable, List, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from siprec.realtime.events import EVENT_TYPES, Event

__all__ = ["EventBus", "Subscription", "type_matcher", "DEFAULT_QUEUE", "DRAIN_BATCH"]

log = Logger()

DEFAULT_QUEUE = 10_000   # events waiting per subscriber before the oldest are dropped
DRAIN_BATCH = 500        # events handed to one subscriber per reactor turn
LOG_INTERVAL = 10.0      # seconds between repeated drop/failure log lines per subscriber

Subscriber = Callable[[Event], None]


def type_matcher(patterns: Optional[Iterable[str]]) -> Callable[[str], bool]:
    """A predicate over event types from patterns: exact types, ``prefix.*`` or ``*``.

    None (or ``*``) matches everything. Unknown exact types and malformed
    patterns raise ValueError, so a typo does not silently match nothing.
    """
    if patterns is None:
        return _any
    exact = set()
    prefixes = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("event type patterns are non-empty strings")
        if pattern == "*":
            return _any
        if pattern.endswith(".*"):
            prefix = pattern[:-1]
            if not any(t.startswith(prefix) for t in EVENT_TYPES):
                raise ValueError(f"no event type matches {pattern!r}")
            prefixes.append(prefix)
        elif pattern in EVENT_TYPES:
            exact.add(pattern)
        else:
            raise ValueError(f"unknown event type {pattern[:60]!r}")
    frozen_prefixes = tuple(prefixes)
    frozen_exact = frozenset(exact)
    return lambda t: t in frozen_exact or t.startswith(frozen_prefixes)


def _any(_: str) -> bool:
    return True


class Subscription:
    """One subscriber's queue and counters; ``cancel()`` stops delivery."""

    def __init__(self, bus: "EventBus", callback: Subscriber, name: str,
                 matches: Callable[[str], bool], queue_size: int) -> None:
        self.bus = bus
        self.callback = callback
        self.name = name
        self.matches = matches
        self.queue: Deque[Event] = deque()
        self.queue_size = queue_size
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self.active = True
        self._logged_drops_at: Optional[float] = None
        self._logged_failure_at: Optional[float] = None

    def cancel(self) -> None:
        self.active = False
        self.queue.clear()
        self.bus._remove(self)

    def stats(self) -> dict:
        return {"name": self.name, "queued": len(self.queue), "delivered": self.delivered,
                "dropped": self.dropped, "failed": self.failed}

    def _offer(self, event: Event) -> None:
        if len(self.queue) >= self.queue_size:
            self.queue.popleft()
            self.dropped += 1
            self.bus._note_drop(self)
        self.queue.append(event)


class EventBus:
    """Publish/subscribe inside the process; see the module docstring for the guarantees."""

    def __init__(self, clock: IReactorTime, *, queue_size: int = DEFAULT_QUEUE,
                 drain_batch: int = DRAIN_BATCH) -> None:
        if queue_size < 1 or drain_batch < 1:
            raise ValueError("queue_size and drain_batch must be positive")
        self.clock = clock
        self.queue_size = queue_size
        self.drain_batch = drain_batch
        self.published = 0
        self._subscriptions: List[Subscription] = []
        self._drain_call: Optional[IDelayedCall] = None
        self._seq = 0

    # -- publishing -----------------------------------------------------------------
    def publish(self, event: Event) -> Event:
        """Stamp and queue `event` for every matching subscriber; returns the stamped event.

        Never runs subscriber code and never raises for a subscriber's sake;
        a non-Event is a programming error and raises TypeError.
        """
        if not isinstance(event, Event):
            raise TypeError(f"publish() takes an Event, not {type(event).__name__}")
        self._seq += 1
        stamped = event.stamped(self._seq, event.time if event.time is not None
                                else self.clock.seconds())
        self.published += 1
        for subscription in self._subscriptions:
            if subscription.matches(stamped.type):
                subscription._offer(stamped)
        self._schedule()
        return stamped

    # -- subscribing --------------------------------------------------------------
    def subscribe(self, callback: Subscriber, *, name: str,
                  types: Optional[Iterable[str]] = None,
                  queue_size: Optional[int] = None) -> Subscription:
        """Deliver events whose type matches `types` (see type_matcher) to `callback`.

        `callback(event)` is called on a later reactor turn, in publish order.
        It should be quick (queue work elsewhere); exceptions are counted.
        """
        size = self.queue_size if queue_size is None else queue_size
        if size < 1:
            raise ValueError("queue_size must be positive")
        subscription = Subscription(self, callback, name, type_matcher(types), size)
        self._subscriptions.append(subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    @property
    def subscriptions(self) -> List[Subscription]:
        return list(self._subscriptions)

    def stats(self) -> dict:
        return {"published": self.published,
                "subscribers": [s.stats() for s in self._subscriptions]}

    # -- delivery -------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._drain_call is None or not self._drain_call.active():
            self._drain_call = self.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        for subscription in list(self._subscriptions):
            for _ in range(min(self.drain_batch, len(subscription.queue))):
                if not subscription.active:
                    break
                event = subscription.queue.popleft()
                try:
                    subscription.callback(event)
                except Exception:
                    subscription.failed += 1
                    self._note_failure(subscription)
                else:
                    subscription.delivered += 1
        if any(s.queue for s in self._subscriptions):
            self._schedule()

    def flush(self) -> None:
        """Deliver everything queued now (shutdown, tests); later publishes still wait."""
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        for _ in range(10_000):  # bounded: subscribers that publish while flushed cannot loop us
            if not any(s.queue for s in self._subscriptions):
                break
            self._drain()
            if self._drain_call is not None and self._drain_call.active():
                self._drain_call.cancel()
            self._drain_call = None
        if any(s.queue for s in self._subscriptions):
            self._schedule()

    # -- rate-limited logging -----------------------------------------------------------
    def _note_drop(self, subscription: Subscription) -> None:
        now = self.clock.seconds()
        last = subscription._logged_drops_at
        if last is None or now - last >= LOG_INTERVAL:
            subscription._logged_drops_at = now
            log.warn("Event subscriber {name} is falling behind: {dropped} event(s) dropped "
                     "so far (queue of {size})", name=subscription.name,
                     dropped=subscription.dropped, size=subscription.queue_size)

    def _note_failure(self, subscription: Subscription) -> None:
        now = self.clock.seconds()
        last = subscription._logged_failure_at
        if last is None or now - last >= LOG_INTERVAL:
            subscription._logged_failure_at = now
            log.failure("Event subscriber {name} failed ({failed} failure(s) so far)",
                        name=subscription.name, failed=subscription.failed)

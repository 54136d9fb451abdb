"""RFC 4028 session timers as decisions: requests and responses in, plans out.

No clock and no I/O: the UAS asks :func:`negotiate` what to put in a 2xx,
:func:`next_wake` when to act, and :func:`refresh_outcome` what an answer to
its own refresh means; scheduling and sending stay with the UAS.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import List, Optional, Tuple

from siprec.sip.errors import CallRejected
from siprec.sip.headers import HeaderError, parse_params
from siprec.sip.message import Request, Response

__all__ = [
    "TimerPlan",
    "NO_TIMER",
    "Wake",
    "RefreshAction",
    "RefreshOutcome",
    "negotiate",
    "answer_headers",
    "refresh_headers",
    "next_wake",
    "refresh_outcome",
    "supports_timer",
    "delta_seconds",
    "allows",
]

#: RFC 4028 §10: the refresh-less side ends the session this long before expiry, at most.
_EXPIRY_MARGIN = 32.0
#: Pause before trying a refresh again after a transient failure (491, 5xx ...).
_RETRY_DELAY = 4.0


@dataclass(frozen=True, slots=True)
class TimerPlan:
    """The session timer of one dialog; ``interval`` 0 means none."""

    interval: float
    we_refresh: bool  # True: we send the refreshes; False: the SRC does and we watch

    @property
    def active(self) -> bool:
        return self.interval > 0

    @property
    def refresher(self) -> str:
        """The refresher parameter value in a 2xx to the SRC's request."""
        return "uas" if self.we_refresh else "uac"


NO_TIMER = TimerPlan(0.0, False)


class Wake(enum.Enum):
    """What the UAS does when the timer fires."""

    REFRESH = "refresh"  # send an UPDATE
    EXPIRE = "expire"  # no refresh came: BYE


class RefreshAction(enum.Enum):
    """What an answer to our refresh UPDATE asks of the UAS."""

    RENEW = "renew"  # a 2xx: adopt ``plan`` and re-arm
    STOP = "stop"  # no more session timer; the call goes on
    END = "end"  # the session is gone: BYE
    GROW = "grow"  # 422: refresh again at once with the larger ``plan``
    RETRY = "retry"  # transient: refresh again after ``delay``


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    action: RefreshAction
    plan: Optional[TimerPlan] = None
    delay: float = 0.0
    reason: str = ""  # one line for the log when the outcome is not routine


def supports_timer(request: Request) -> bool:
    """The UAC takes part in session timers: 'timer' in Supported (or, oddly, only in Require)."""
    return "timer" in request.option_tags("Supported") or "timer" in request.option_tags("Require")


def delta_seconds(text: Optional[str]) -> Optional[int]:
    """RFC 3261 delta-seconds (the value before any parameters), or None."""
    if text is None:
        return None
    value = text.partition(";")[0].strip()
    if not value or len(value) > 10 or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def allows(request: Request, method: str) -> bool:
    """Whether the peer's Allow lists ``method``; no Allow header says nothing, so yes."""
    if "Allow" not in request.headers:
        return True
    return method in {m.strip().upper() for m in request.headers.get_all("Allow")}


def _requested(request: Request, notes: List[str]) -> Tuple[Optional[int], str]:
    """Session-Expires interval and refresher of a request; malformed parts noted and dropped."""
    text = request.headers.get("Session-Expires")
    if text is None:
        return None, ""
    value, _, params_text = text.partition(";")
    interval = delta_seconds(value)
    if not interval:
        notes.append(f"malformed Session-Expires {text[:40]!r} ignored")
        return None, ""
    try:
        refresher = (parse_params(params_text).get("refresher") or "").lower()
    except HeaderError:
        notes.append(f"malformed Session-Expires parameters {params_text[:40]!r} ignored")
        refresher = ""
    return interval, refresher


def negotiate(request: Request, current: Optional[TimerPlan], *, session_expires: float,
              min_se: float) -> Tuple[TimerPlan, Tuple[str, ...]]:
    """The session timer for our 2xx (RFC 4028 §9) and the quirks accepted on the way.

    The refresher follows §9 Table 2; when the SRC cannot take part (no
    'timer' in Supported) we refresh ourselves with UPDATE, or run no timer
    at all when the SRC does not allow UPDATE. Raises CallRejected(422) with
    our Min-SE when an SRC that understands it asks for less.
    """
    notes: List[str] = []
    supported = supports_timer(request)
    floor = max(min_se, delta_seconds(request.headers.get("Min-SE")) or 0)
    interval, refresher = _requested(request, notes)
    if interval is None:
        if not supported:
            return NO_TIMER, tuple(notes)
        if current is not None and current.active:
            return TimerPlan(max(current.interval, floor), current.we_refresh), tuple(notes)
        return TimerPlan(max(session_expires, floor), False), tuple(notes)
    if interval < min_se:
        if supported:
            raise CallRejected(422, headers=[("Min-SE", str(int(min_se)))])
        # A 422 would mean nothing to a UAC without session timers (a proxy added the header).
        notes.append(f"Session-Expires {interval} below our Min-SE from a UAC without "
                     "session-timer support; raised")
        interval = int(min_se)
    if refresher not in ("uac", "uas"):
        refresher = "uac" if supported else "uas"
    elif refresher == "uac" and not supported:
        notes.append("refresher=uac from a UAC that does not support session timers; we refresh")
        refresher = "uas"
    if refresher == "uas" and not allows(request, "UPDATE"):
        notes.append("SRC asks us to refresh the session but does not allow UPDATE; no session timer")
        return NO_TIMER, tuple(notes)
    return TimerPlan(float(interval), refresher == "uas"), tuple(notes)


def answer_headers(plan: Optional[TimerPlan], request: Request) -> List[Tuple[str, str]]:
    """Session-Expires (and Require: timer, RFC 4028 §9) for our 2xx to ``request``."""
    if plan is None or not plan.active:
        return []
    headers = [("Session-Expires", f"{int(plan.interval)};refresher={plan.refresher}")]
    if supports_timer(request):
        headers.append(("Require", "timer"))
    return headers


def refresh_headers(plan: TimerPlan, min_se: float) -> List[Tuple[str, str]]:
    """Headers of our refresh UPDATE; as its UAC, "refresher=uac" keeps us the refresher."""
    return [("Session-Expires", f"{int(plan.interval)};refresher=uac"),
            ("Min-SE", str(int(min_se))),
            ("Supported", "timer")]


def next_wake(plan: Optional[TimerPlan]) -> Optional[Tuple[Wake, float]]:
    """When to act on an active plan: refresh at half the interval, or BYE before expiry."""
    if plan is None or not plan.active:
        return None
    if plan.we_refresh:
        return Wake.REFRESH, plan.interval / 2
    # RFC 4028 §10: BYE shortly before expiry when no refresh arrives.
    return Wake.EXPIRE, plan.interval - min(_EXPIRY_MARGIN, plan.interval / 3)


def _renewed(response: Response, plan: TimerPlan) -> RefreshOutcome:
    text = response.headers.get("Session-Expires")
    if text is None:
        return RefreshOutcome(RefreshAction.STOP, reason="refresh answer has no Session-Expires: "
                                                         "session timer off")
    value, _, params_text = text.partition(";")
    interval = delta_seconds(value) or int(plan.interval)
    try:
        refresher = (parse_params(params_text).get("refresher") or "uac").lower()
    except HeaderError:
        refresher = "uac"
    return RefreshOutcome(RefreshAction.RENEW, TimerPlan(float(interval), refresher != "uas"))


def refresh_outcome(response: Response, plan: TimerPlan) -> RefreshOutcome:
    """What the final response to our refresh UPDATE (RFC 4028 §7.4, §10) means."""
    status = response.status
    if 200 <= status < 300:
        return _renewed(response, plan)
    if status in (408, 481):
        return RefreshOutcome(RefreshAction.END, reason=f"refresh answered {status}")
    if status == 422:
        wanted = delta_seconds(response.headers.get("Min-SE"))
        if wanted is None or wanted <= plan.interval:
            return RefreshOutcome(RefreshAction.END,
                                  reason="refresh answered 422 without a larger Min-SE")
        return RefreshOutcome(RefreshAction.GROW, TimerPlan(float(wanted), True))
    if status in (405, 501):
        return RefreshOutcome(RefreshAction.STOP, reason=f"SRC refuses UPDATE ({status}); no more "
                                                         "session refreshes, the call goes on")
    # 491, 500, 503...: the session is still up; try again shortly.
    return RefreshOutcome(RefreshAction.RETRY, delay=min(_RETRY_DELAY, plan.interval / 4))

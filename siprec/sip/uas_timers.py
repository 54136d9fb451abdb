"""Session timers on the UAS's clock: when to refresh, when to give up.

The decisions are :mod:`siprec.sip.session_timer`'s; this module only
schedules them on the injected clock and sends the refresh UPDATE or the
BYE through the callables the UAS gives it.
"""

from __future__ import annotations

from typing import Callable, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from siprec.sip import session_timer
from siprec.sip.dialog import Dialog
from siprec.sip.dialog_state import DialogState, DialogStates
from siprec.sip.message import Response
from siprec.sip.session_timer import NO_TIMER, RefreshAction, TimerPlan, Wake
from siprec.sip.transaction import TransactionTimeout
from siprec.sip.uas_settings import UasSettings

log = Logger()

__all__ = ["SessionTimers"]

SendInDialog = Callable[[Dialog, str, Sequence[Tuple[str, str]]], Deferred]
Terminate = Callable[[Dialog, str], object]


class SessionTimers:
    """Arms, re-arms and acts on the session timer of each dialog."""

    def __init__(self, clock: IReactorTime, settings: UasSettings, states: DialogStates,
                 send_in_dialog: SendInDialog, terminate: Terminate) -> None:
        self.clock = clock
        self.settings = settings
        self.states = states
        self.send_in_dialog = send_in_dialog
        self.terminate = terminate

    def replace(self, state: DialogState, plan: TimerPlan) -> None:
        """Adopt a new plan; the old one's pending call is cancelled."""
        if plan is not state.timer:
            state.cancel_timer()
        state.timer = plan

    def arm(self, dialog: Dialog) -> None:
        """(Re)schedule the dialog's next refresh or expiry from now."""
        state = self.states.of(dialog)
        state.cancel_timer()
        wake = session_timer.next_wake(state.timer)
        if wake is None or dialog.terminated:
            return
        what, delay = wake
        action = self._refresh if what is Wake.REFRESH else self._expired
        state.timer_call = self.clock.callLater(delay, action, dialog)

    def _expired(self, dialog: Dialog) -> None:
        state = self.states.get(dialog)
        if dialog.terminated or state is None:
            return
        state.timer_call = None
        log.warn("Session timer expired for {call_id}: the SRC did not refresh within {s:g}s; ending",
                 call_id=dialog.call_id, s=state.timer.interval)
        self.terminate(dialog, "session-timer-expired")

    def _refresh(self, dialog: Dialog) -> None:
        """We are the refresher: an UPDATE without a body (RFC 4028 §7.4, RFC 3311)."""
        state = self.states.get(dialog)
        if dialog.terminated or state is None:
            return
        state.timer_call = None
        plan = state.timer
        d = self.send_in_dialog(dialog, "UPDATE", session_timer.refresh_headers(plan, self.settings.min_se))
        d.addCallbacks(self._answered, self._failed,
                       callbackArgs=(dialog, plan), errbackArgs=(dialog,))

    def _answered(self, response: Response, dialog: Dialog, plan: TimerPlan) -> None:
        state = self.states.get(dialog)
        if dialog.terminated or state is None or state.timer is not plan:
            return  # call over, or the SRC renegotiated the timer meanwhile
        outcome = session_timer.refresh_outcome(response, plan)
        if outcome.reason:
            log.warn("Session refresh for {call_id}: {reason}", call_id=dialog.call_id,
                     reason=outcome.reason)
        action = outcome.action
        if action is RefreshAction.RENEW:
            self.replace(state, outcome.plan)
            self.arm(dialog)
        elif action is RefreshAction.STOP:
            self.replace(state, NO_TIMER)
        elif action is RefreshAction.END:
            self.terminate(dialog, "session-refresh-failed")
        elif action is RefreshAction.GROW:
            self.replace(state, outcome.plan)
            self._refresh(dialog)
        else:
            state.timer_call = self.clock.callLater(outcome.delay, self._refresh, dialog)

    def _failed(self, failure: Failure, dialog: Dialog) -> None:
        if dialog.terminated:
            return
        if not failure.check(TransactionTimeout):
            log.failure("Session refresh for {call_id} failed", failure, call_id=dialog.call_id)
        log.warn("Session refresh for {call_id} got no answer; ending", call_id=dialog.call_id)
        self.terminate(dialog, "session-refresh-failed")


"""What the UAS tracks per dialog beside RFC 3261 dialog state."""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

from twisted.internet.interfaces import IDelayedCall

from siprec.sip.dialog import Dialog
from siprec.sip.message import Response
from siprec.sip.session_timer import TimerPlan
from siprec.sip.transaction import InviteServerTransaction

__all__ = ["DialogState", "DialogStates"]

#: How many earlier INVITE CSeqs of a dialog are remembered to spot late ACK copies.
_PAST_INVITES = 16


class DialogState:
    """INVITE transactions awaiting their ACK, offer/answer and session-timer state."""

    def __init__(self, initial_cseq: int) -> None:
        self.initial_cseq = initial_cseq
        self.initial_ok: Optional[Response] = None  # our 200 to the initial INVITE
        # The INVITE transaction (initial or re-INVITE) whose 2xx awaits its ACK, and
        # copies of it sent to the same INVITE arriving on other branches.
        self.invite_tx: Optional[InviteServerTransaction] = None
        self.ok_txs: List[InviteServerTransaction] = []
        # The latest INVITE of the dialog whatever its outcome: pending checks, repeats.
        self.last_invite: Optional[InviteServerTransaction] = None
        self.invite_cseq: int = initial_cseq
        self._past_invites: Deque[int] = deque(maxlen=_PAST_INVITES)
        self.awaiting_answer = False  # our 200 carried an offer; the ACK brings the answer
        self.timer: Optional[TimerPlan] = None
        self.timer_call: Optional[IDelayedCall] = None

    def stop_2xx(self) -> None:
        """The SRC has our last 2xx: stop retransmitting it (and its copies)."""
        for tx in ([self.invite_tx] if self.invite_tx is not None else []) + self.ok_txs:
            tx.ack_for_2xx()
        self.invite_tx = None
        self.ok_txs = []

    def new_invite(self, tx: InviteServerTransaction) -> None:
        """A re-INVITE is being answered; the earlier INVITE's 2xx is no longer news."""
        self.stop_2xx()
        self._past_invites.append(self.invite_cseq)
        self.last_invite = tx
        self.invite_cseq = tx.request.cseq.number

    def stale_ack(self, cseq: int) -> bool:
        """An ACK for an earlier INVITE of this dialog (a late copy), not for the current one."""
        return cseq != self.invite_cseq and cseq in self._past_invites

    def cancel_timer(self) -> None:
        if self.timer_call is not None and self.timer_call.active():
            self.timer_call.cancel()
        self.timer_call = None


class DialogStates:
    """The DialogState of every dialog, by dialog key."""

    def __init__(self) -> None:
        self._by_key: Dict[Tuple, DialogState] = {}

    def start(self, dialog: Dialog, initial_cseq: int) -> DialogState:
        state = self._by_key[dialog.key] = DialogState(initial_cseq)
        return state

    def of(self, dialog: Dialog) -> DialogState:
        """The dialog's state, created for a dialog added without one."""
        state = self._by_key.get(dialog.key)
        if state is None:
            state = self._by_key[dialog.key] = DialogState(dialog.remote_cseq)
        return state

    def get(self, dialog: Dialog) -> Optional[DialogState]:
        return self._by_key.get(dialog.key)

    def pop(self, dialog: Dialog) -> Optional[DialogState]:
        return self._by_key.pop(dialog.key, None)

    def awaiting(self, tx: InviteServerTransaction, dialogs) -> Optional[Dialog]:
        """The dialog whose 2xx ``tx`` carries, if any."""
        for dialog in dialogs:
            state = self._by_key.get(dialog.key)
            if state is not None and state.invite_tx is tx:
                return dialog
        return None

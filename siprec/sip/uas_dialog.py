"""Requests inside an established dialog: BYE, re-INVITE, UPDATE, ACK.

The UAS has found the dialog; this module answers (RFC 3261 §12.2, §14,
RFC 3311, RFC 4028) and hands new offers, answers and metadata to the
dialog's recording session. Quirks it accepts go to ``session.tolerate``.
"""

from __future__ import annotations

import secrets
from typing import Callable, Optional

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from siprec.sip import request_checks, session_timer
from siprec.sip.bodies import BodyReader
from siprec.sip.dialog import CSeqCheck, Dialog
from siprec.sip.dialog_state import DialogStates
from siprec.sip.errors import CallRejected
from siprec.sip.message import Request
from siprec.sip.responder import Responder
from siprec.sip.sdp import SessionDescription
from siprec.sip.session_timer import TimerPlan
from siprec.sip.transaction import ServerTransaction
from siprec.sip.uas_settings import UasSettings
from siprec.sip.uas_timers import SessionTimers

log = Logger()

__all__ = ["InDialog"]


class InDialog:
    """Answers the requests of established dialogs."""

    def __init__(self, settings: UasSettings, responder: Responder, states: DialogStates,
                 timers: SessionTimers, read_body: BodyReader,
                 close_dialog: Callable[[Dialog], None]) -> None:
        self.settings = settings
        self.responder = responder
        self.states = states
        self.timers = timers
        self.read_body = read_body
        self.close_dialog = close_dialog

    # -- requests --------------------------------------------------------------
    def request(self, tx: ServerTransaction, dialog: Dialog) -> None:
        request = tx.request
        method = request.method
        session = dialog.session
        state = self.states.of(dialog)
        tag = dialog.local_tag
        dialog.peer = tx.peer
        number = request.cseq.number
        check = dialog.check_cseq(number)
        if check == CSeqCheck.OUT_OF_ORDER:
            if method in ("INVITE", "UPDATE"):
                self.responder.respond(tx, 500, "Out of order CSeq", headers=[("Retry-After", "1")],
                                       to_tag=tag)
                return
            session.tolerate(f"{method} with a lower CSeq than an earlier request accepted anyway")
        elif check == CSeqCheck.REPEATED and method == "INVITE" and number == state.invite_cseq:
            if self._repeated_reinvite(tx, dialog):
                return
        dialog.accept_cseq(number)
        if method == "BYE":
            self._bye(tx, dialog)
        elif method in ("INVITE", "UPDATE"):
            self._modify(tx, dialog)
        elif method == "PRACK":
            # We never send reliable provisional responses, so nothing can match.
            self.responder.respond(tx, 481, "No reliable provisional response to acknowledge",
                                   to_tag=tag)
        else:
            self.responder.respond(tx, 405, to_tag=tag)

    def _repeated_reinvite(self, tx, dialog: Dialog) -> bool:
        """A re-INVITE again on a new branch (same CSeq); True when answered here."""
        state = self.states.of(dialog)
        previous = state.last_invite
        if previous is None or previous.request.cseq.number != state.invite_cseq:
            return False
        dialog.session.tolerate("re-INVITE retransmitted with a new Via branch")
        if previous.last_response is None or previous.last_response.status < 200:
            self.responder.respond(tx, 500, "Previous INVITE still being answered",
                                   headers=[("Retry-After", str(secrets.randbelow(11)))],
                                   to_tag=dialog.local_tag)
        else:
            self.responder.copy_final(tx, previous.last_response)
            if previous.last_response.status < 300:
                state.ok_txs.append(tx)
        return True

    def _bye(self, tx, dialog: Dialog) -> None:
        request = tx.request
        session = dialog.session
        state = self.states.of(dialog)
        if request.body:
            try:
                body = request_checks.read_body(self.read_body, request)
                if body.metadata:
                    session.metadata_received(body.metadata)
            except CallRejected as e:
                session.tolerate(f"BYE body ignored: {e}")
        pending = state.last_invite
        if pending is not None and not pending.final_sent:
            # RFC 3261 §15.1.2: a re-INVITE still unanswered gets 487.
            self.responder.respond(pending, 487, to_tag=dialog.local_tag)
        self.responder.respond(tx, 200, to_tag=dialog.local_tag)
        self.close_dialog(dialog)
        session.end("bye")

    def _modify(self, tx, dialog: Dialog) -> None:
        """re-INVITE or UPDATE: new SDP, metadata, a session refresh, or all of these."""
        request = tx.request
        state = self.states.of(dialog)
        session = dialog.session
        tag = dialog.local_tag
        is_invite = request.method == "INVITE"
        if is_invite and state.last_invite is not None and not state.last_invite.final_sent:
            # RFC 3261 §14.2: a second INVITE before the first has its final response.
            self.responder.respond(tx, 500, "Previous INVITE still being answered",
                                   headers=[("Retry-After", str(secrets.randbelow(11)))], to_tag=tag)
            return
        try:
            request_checks.check_extensions(request)
            body = request_checks.read_body(self.read_body, request)
            offer, sdp_notes = request_checks.parse_offer(body)
            if (is_invite or offer is not None) and state.awaiting_answer:
                # RFC 3261 §14.2 / RFC 3311 §5.2: our offer in the last 2xx is unanswered.
                raise CallRejected(491)
            plan, timer_notes = session_timer.negotiate(
                request, state.timer, session_expires=self.settings.session_expires,
                min_se=self.settings.min_se)
        except CallRejected as e:
            self.responder.reject(tx, e, to_tag=tag)
            return
        for note in (*body.tolerances, *sdp_notes, *timer_notes):
            session.tolerate(note)
        if offer is None and not is_invite:
            # UPDATE without SDP: metadata (or a session refresh) only.
            if body.metadata:
                session.metadata_received(body.metadata)
            self._modified(None, tx, dialog, plan, False)
            return
        if is_invite:
            state.new_invite(tx)  # a new INVITE means the SRC has our last 2xx
        d = maybeDeferred(session.offer, offer, body.metadata)
        d.addCallbacks(self._modified, self._modify_failed,
                       callbackArgs=(tx, dialog, plan, offer is None),
                       errbackArgs=(tx, dialog))
        d.addErrback(lambda f: log.failure("Answering re-offer failed", f))

    def _modified(self, sdp: Optional[SessionDescription], tx, dialog: Dialog,
                  plan: TimerPlan, we_offered: bool) -> None:
        if tx.final_sent or dialog.terminated:
            log.info("Late answer to {method} in {call_id} dropped (cancelled or call ended)",
                     method=tx.request.method, call_id=dialog.call_id)
            return
        request = tx.request
        state = self.states.of(dialog)
        if request.method == "INVITE" and sdp is None:
            log.error("No SDP to put in the 2xx to re-INVITE in {call_id}", call_id=dialog.call_id)
            self.responder.respond(tx, 500, "Could not apply the new offer", to_tag=dialog.local_tag)
            return
        self._update_target(request, dialog)
        self.timers.replace(state, plan)
        response = self.responder.ok(request, dialog, sdp, plan)
        if request.method == "INVITE":
            state.awaiting_answer = we_offered
            state.invite_tx = tx
            state.ok_txs = []
        self.responder.send(tx, response)
        self.timers.arm(dialog)

    def _modify_failed(self, failure: Failure, tx, dialog: Dialog) -> None:
        if tx.final_sent or dialog.terminated:
            return
        if failure.check(CallRejected):
            # RFC 3261 §14.2: a failed re-INVITE leaves the session as it was.
            self.responder.reject(tx, failure.value, to_tag=dialog.local_tag)
        else:
            log.failure("Could not apply the re-offer in {call_id}", failure, call_id=dialog.call_id)
            self.responder.respond(tx, 500, "Could not apply the new offer", to_tag=dialog.local_tag)

    def _update_target(self, request: Request, dialog: Dialog) -> None:
        """re-INVITE and UPDATE are target refresh requests (RFC 3261 §12.2.2, RFC 3311)."""
        contact = request_checks.first_contact(request)
        if contact.note is not None:
            dialog.session.tolerate(f"{contact.note} in a target refresh request")
        if contact.address is None:
            return
        if contact.target is not None:
            dialog.remote_target = contact.target

    # -- ACK ----------------------------------------------------------------------
    def ack(self, request: Request, dialog: Dialog, exact: bool) -> None:
        """The ACK for a 2xx of this dialog (RFC 3261 §13.3.1.4): stop resending, take the answer."""
        state = self.states.of(dialog)
        cseq = request.cseq.number
        session = dialog.session
        if state.stale_ack(cseq):
            return  # a late copy of the ACK for an earlier INVITE of this dialog
        for note in request_checks.header_quirks(request):
            session.tolerate(note)
        if not exact:
            session.tolerate("ACK matched to the dialog by Call-ID and From-tag")
        if cseq != state.invite_cseq:
            session.tolerate("ACK with a CSeq other than its INVITE's accepted")
        state.stop_2xx()
        dialog.confirmed = True
        if state.awaiting_answer:
            state.awaiting_answer = False
            self._answer_in_ack(request, dialog)

    def _answer_in_ack(self, request: Request, dialog: Dialog) -> None:
        session = dialog.session
        if not request.body:
            session.tolerate("ACK carried no SDP answer to our offer; streams kept as they were")
            return
        try:
            body = request_checks.read_body(self.read_body, request)
            answer, notes = request_checks.parse_offer(body)
        except CallRejected as e:
            log.warn("Ignoring unusable answer in ACK for {call_id}: {error}",
                     call_id=dialog.call_id, error=e)
            return
        for note in (*body.tolerances, *notes):
            session.tolerate(note)
        if answer is not None:
            session.answer_received(answer)
        if body.metadata:
            session.metadata_received(body.metadata)

    def reinvite_unacked(self, dialog: Dialog) -> None:
        """Timer L for a re-INVITE's 2xx without ACK: the recording goes on."""
        state = self.states.of(dialog)
        log.warn("No ACK for the 200 OK to re-INVITE in {call_id}; keeping the recording",
                 call_id=dialog.call_id)
        state.invite_tx = None
        state.ok_txs = []
        if state.awaiting_answer:
            state.awaiting_answer = False
            dialog.session.tolerate("no ACK brought the answer to our offer; streams kept as they were")


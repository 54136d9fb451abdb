"""The SRS user agent server: SIP requests in, recording sessions driven.

This is the transaction user of :mod:`siprec.sip.transaction`. It decides
every answer (RFC 3261, RFC 4028 session timers, RFC 7866 SIPREC) and hands
media and metadata to a :class:`CallHandler` (the recording manager). It is
liberal with what SRCs send and strict with what it sends: each tolerated
quirk is logged once per call via ``session.tolerate``.

The work is shared out: :mod:`~siprec.sip.setups` remembers initial INVITEs,
:mod:`~siprec.sip.uas_dialog` answers requests inside dialogs,
:mod:`~siprec.sip.uas_timers` runs session timers and
:mod:`~siprec.sip.responder` builds every response. What a body holds is
read by the ``read_body`` callable the core is given (SDP only by default).
"""

from __future__ import annotations

import secrets
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from siprec.sip import request_checks, session_timer
from siprec.sip.bodies import BodyReader, read_sdp_only
from siprec.sip.capabilities import (
    ACCEPTED_TYPES,
    ALLOWED_METHODS,
    SUPPORTED_OPTIONS,
    capability_headers,
)
from siprec.sip.dialog import Dialog, DialogTable, contact_value, new_branch, new_tag, via_value
from siprec.sip.dialog_state import DialogStates
from siprec.sip.errors import CallRejected
from siprec.sip.headers import HeaderError
from siprec.sip.log_budget import LogBudget
from siprec.sip.message import CSeqMethodMismatch, Request, Response, SipParseError
from siprec.sip.request_checks import Contact
from siprec.sip.responder import Responder
from siprec.sip.sdp import SessionDescription
from siprec.sip.session_timer import TimerPlan
from siprec.sip.setups import Setup, SetupTable
from siprec.sip.transaction import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    Peer,
    ServerTransaction,
    TransactionLayer,
)
from siprec.sip.uas_dialog import InDialog
from siprec.sip.uas_settings import UasSettings
from siprec.sip.uas_timers import SessionTimers

log = Logger()

__all__ = ["SipCore", "UasSettings", "CallRejected", "CallHandler", "RecordingCall",
           "ALLOWED_METHODS", "SUPPORTED_OPTIONS", "ACCEPTED_TYPES"]

# Vendor headers worth keeping in the call record besides X-* and P-*.
_RECORD_HEADERS = ("From", "To", "Call-ID", "Contact", "User-Agent", "Session-ID",
                   "Diversion", "History-Info", "User-to-User", "Subject", "Organization")
#: In-dialog requests some SRCs send with 'CSeq: N INVITE' (BroadWorks).
_CSEQ_INVITE_TOLERATED = frozenset({"BYE", "ACK"})


class RecordingCall(Protocol):
    """What the UAS needs from a recording session."""

    ended: bool

    def offer(self, offer: Optional[SessionDescription],
              metadata: Sequence[bytes]): ...  # -> SessionDescription | Deferred
    def answer_received(self, answer: SessionDescription) -> None: ...
    def metadata_received(self, metadata: Sequence[bytes]) -> None: ...
    def tolerate(self, note: str) -> None: ...
    def end(self, reason: str) -> Deferred: ...
    def dialog_established(self, hang_up: Callable[[str], Deferred]) -> None: ...


class CallHandler(Protocol):
    def admission(self) -> Optional[CallRejected]: ...
    def create_session(self, call_id: str, sip_info: dict) -> RecordingCall: ...
    def call_refused(self, call_id: str, status: int, reason: Optional[str],
                     source: Optional[str]) -> None: ...


class SipCore:
    """Transaction user for the SRS. One per server; transports feed it.

    ``peer_for_dialog`` chooses the transport for requests we send in a
    dialog (BYE, UPDATE); by default the peer the SRC last used.
    ``read_body`` sorts request bodies (see :mod:`siprec.sip.bodies`).
    """

    def __init__(self, clock: IReactorTime, handler: CallHandler, settings: UasSettings,
                 metrics=None, peer_for_dialog: Optional[Callable[[Dialog], Peer]] = None,
                 read_body: BodyReader = read_sdp_only):
        self.clock = clock
        self.handler = handler
        self.settings = settings
        self.metrics = metrics
        self.read_body = read_body
        self.layer = TransactionLayer(clock, self, settings.timers)
        self.dialogs = DialogTable()
        self.states = DialogStates()
        self.setups = SetupTable(clock, settings.timers.timeout)
        self.responder = Responder(clock, settings, metrics, on_refused=self._refused)
        self.timers = SessionTimers(clock, settings, self.states, self._send_in_dialog,
                                    self.terminate)
        self.in_dialog = InDialog(settings, self.responder, self.states, self.timers, read_body,
                                  self._close_dialog)
        self.peer_for_dialog = peer_for_dialog or (lambda dialog: dialog.peer)
        self.accepting = True
        self.malformed_log = LogBudget(clock, "malformed messages")

    # -- input from transports -------------------------------------------------
    def receive(self, message, peer: Peer) -> None:
        if isinstance(message, Request):
            if self.metrics:
                self.metrics.sip_request(message.method)
            self.layer.receive_request(message, peer)
        else:
            self.layer.receive_response(message, peer)

    def parse_error(self, error: SipParseError, peer: Peer) -> None:
        """Answer a malformed request statelessly when it can be answered."""
        request = error.request
        if isinstance(error, CSeqMethodMismatch) and self._cseq_invite_in_dialog(request):
            self.receive(request, peer)  # tolerated and noted once the dialog is found
            return
        if request is None or request.method == "ACK":
            if self.malformed_log.allow():
                log.info("Dropped malformed SIP message from {remote}: {reason}",
                         remote=peer.remote, reason=error.reason)
            return
        if self.malformed_log.allow():
            log.info("Rejecting malformed {method} from {remote}: {status} {reason}",
                     method=request.method or "request", remote=peer.remote,
                     status=error.status, reason=error.reason)
        self.responder.stateless(request, error.status, error.reason, peer)

    def _cseq_invite_in_dialog(self, request: Optional[Request]) -> bool:
        """A BYE or ACK with 'CSeq: N INVITE' for a dialog we have (BroadWorks)."""
        if request is None or request.method not in _CSEQ_INVITE_TOLERATED:
            return False
        try:
            if request.cseq.method != "INVITE":
                return False
            dialog, _ = self.dialogs.find(request.call_id, request.to.tag, request.from_.tag)
        except HeaderError:
            return False
        return dialog is not None

    # -- TransactionUser ------------------------------------------------------
    def handle_request(self, tx: ServerTransaction) -> None:
        request = tx.request
        try:
            self._dispatch(tx)
        except Exception:
            log.failure("Unexpected error handling {method} {call_id}",
                        method=request.method, call_id=request.headers.get("Call-ID"))
            if not tx.final_sent:
                self.responder.respond(tx, 500, "Internal error, see server log")

    def _dispatch(self, tx: ServerTransaction) -> None:
        request = tx.request
        method = request.method
        if method not in ALLOWED_METHODS:
            self.responder.respond(tx, 405)
            return
        if method == "OPTIONS":
            self._options(tx)
            return
        call_id = request.call_id
        to_tag = request.to.tag
        from_tag = request.from_.tag
        cseq = request.cseq.number
        if method == "INVITE" and to_tag is None:
            setup = self.setups.get((call_id, from_tag, cseq))
            if setup is not None:
                self._merged_invite(tx, setup)
                return
        dialog, exact = self.dialogs.find(call_id, to_tag, from_tag)
        if dialog is None:
            if method == "INVITE" and to_tag is None:
                self._initial_invite(tx)
            else:
                self.responder.respond(tx, 481)
            return
        session = dialog.session
        if not exact:
            if to_tag is None:
                if method == "INVITE" and cseq == self.states.of(dialog).initial_cseq:
                    self._retransmitted_invite(tx, dialog)
                    return
                session.tolerate(f"{method} without To-tag matched to the dialog by Call-ID and From-tag")
            else:
                session.tolerate(f"{method} with unknown To-tag matched to the dialog by Call-ID and From-tag")
        for note in request_checks.header_quirks(request):
            session.tolerate(note)
        self.in_dialog.request(tx, dialog)

    def _refused(self, request: Request, response: Response, peer: Peer) -> None:
        """A new INVITE will not be recorded: the handler accounts for it."""
        self.handler.call_refused(request.headers.get("Call-ID") or "", response.status,
                                  response.reason, f"{peer.remote[0]}:{peer.remote[1]}")

    def _options(self, tx: ServerTransaction) -> None:
        """Capabilities; while draining a 503, so that load balancers send calls elsewhere.

        An OPTIONS inside one of our dialogs (a dialog keep-alive) still gets 200.
        """
        request = tx.request
        if not self.accepting:
            dialog, exact = self.dialogs.find(request.call_id, request.to.tag, request.from_.tag)
            if dialog is None or not exact:
                self._draining(tx)
                return
        missing = request_checks.unsupported(request)
        if missing:
            self.responder.respond(tx, 420, headers=[("Unsupported", ", ".join(missing))])
        else:
            self.responder.respond(tx, 200, headers=capability_headers())

    def _draining(self, tx: ServerTransaction) -> None:
        self.responder.respond(tx, 503, "Shutting down",
                               headers=[("Retry-After", str(self.settings.drain_retry_after))])

    def handle_ack(self, request: Request, peer: Peer) -> None:
        try:
            dialog, exact = self.dialogs.find(request.call_id, request.to.tag, request.from_.tag)
        except HeaderError:
            return
        if dialog is None:
            log.debug("ACK outside any dialog for {call_id}", call_id=request.headers.get("Call-ID"))
            return
        self.in_dialog.ack(request, dialog, exact)

    def handle_cancel(self, cancel: NonInviteServerTransaction,
                      invite: Optional[InviteServerTransaction]) -> None:
        if invite is None:
            self.responder.respond(cancel, 481)
            return
        self.responder.respond(cancel, 200)
        if invite.final_sent:
            return  # RFC 3261 §9.2: too late, the CANCEL has no effect
        setup = self.setups.for_tx(invite)
        if setup is None:
            # A re-INVITE still being answered: RFC 3261 §9.2 says 487; the
            # session stays as it was (the late answer is dropped by InDialog).
            self.responder.respond(invite, 487)
            return
        log.info("Call {call_id} cancelled by the SRC before it was answered",
                 call_id=invite.request.call_id)
        final = self.responder.respond(invite, 487)
        self._finish_setup(setup, final)
        setup.session.end("cancelled")

    def ack_timeout(self, tx: InviteServerTransaction) -> None:
        dialog = self.states.awaiting(tx, self.dialogs)
        if dialog is None:
            return
        if tx.request.to.tag is None:
            log.warn("No ACK for the 200 OK to INVITE {call_id} within {t:g}s: ending the call",
                     call_id=dialog.call_id, t=self.settings.timers.timeout)
            self.terminate(dialog, "ack-timeout")
        else:
            self.in_dialog.reinvite_unacked(dialog)

    # -- new calls -------------------------------------------------------------
    def _initial_invite(self, tx: InviteServerTransaction) -> None:
        request = tx.request
        call_id, from_tag = request.call_id, request.from_.tag
        if self.dialogs.matching(call_id, from_tag):
            self.responder.respond(tx, 481, "Ambiguous dialog: no To-tag and several matches")
        elif self.setups.pending(call_id, from_tag) is not None:
            # RFC 3261 §14.2, by analogy: a second INVITE while the first is unanswered.
            self.responder.respond(tx, 500, "Previous INVITE still being answered",
                                   headers=[("Retry-After", str(secrets.randbelow(11)))])
        else:
            self._new_call(tx)

    def _new_call(self, tx: InviteServerTransaction) -> None:
        request = tx.request
        if not self.accepting:
            self._draining(tx)
            return
        rejected = self.handler.admission()
        if rejected is not None:
            self.responder.reject(tx, rejected)
            return
        try:
            request_checks.check_extensions(request)
            body = request_checks.read_body(self.read_body, request)
            if not body.metadata and self.settings.require_metadata:
                raise CallRejected(403, "Recording metadata required")
            offer, sdp_notes = request_checks.parse_offer(body)
            plan, timer_notes = session_timer.negotiate(
                request, None, session_expires=self.settings.session_expires,
                min_se=self.settings.min_se)
        except CallRejected as e:
            self.responder.reject(tx, e)
            return
        session = self.handler.create_session(request.call_id, self._sip_info(request, tx.peer))
        contact = request_checks.first_contact(request)
        for note in (*body.tolerances, *sdp_notes, *timer_notes,
                     *request_checks.header_quirks(request),
                     *request_checks.siprec_quirks(request, body, contact),
                     *_contact_notes(contact, tx.peer)):
            session.tolerate(note)
        setup = self.setups.start((request.call_id, request.from_.tag, request.cseq.number),
                                  tx, session)
        d = maybeDeferred(session.offer, offer, body.metadata)
        d.addCallbacks(self._answered, self._offer_failed,
                       callbackArgs=(setup, plan, offer is None, contact), errbackArgs=(setup,))
        d.addErrback(lambda f: log.failure("Answering INVITE failed", f))

    def _answered(self, sdp: Optional[SessionDescription], setup: Setup, plan: TimerPlan,
                  we_offered: bool, contact: Contact) -> None:
        if setup.done:
            return  # cancelled meanwhile; handle_cancel ended the session
        tx = setup.first
        session = setup.session
        if sdp is None or session.ended:
            log.warn("Recording session for {call_id} ended or gave no SDP before the answer",
                     call_id=tx.request.call_id)
            final = self.responder.respond(tx, 503, "Recording session unavailable",
                                           headers=[("Retry-After", "5")])
            self._finish_setup(setup, final)
            session.end("rejected")
            return
        request = tx.request
        local_tag = new_tag()
        dialog = Dialog(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag,
            local_party=f"{request.headers.get('To')};tag={local_tag}",
            remote_party=request.headers.get("From"),
            remote_target=contact.target,
            remote_cseq=request.cseq.number,
            route_set=request.headers.get_all("Record-Route"),
            peer=tx.peer,
            secure=tx.peer.transport == "TLS",
            session=session,
        )
        self.dialogs.add(dialog)
        state = self.states.start(dialog, request.cseq.number)
        state.invite_tx = state.last_invite = tx
        state.awaiting_answer = we_offered
        state.timer = plan
        response = self.responder.ok(request, dialog, sdp, plan)
        state.initial_ok = response
        self.responder.send(tx, response)
        sent = tx.last_response
        if sent is not response:
            # Too large for a UDP datagram: a 513 (or nothing) went out instead.
            self._close_dialog(dialog)
            self._finish_setup(setup, sent if sent is not None and sent.status >= 200 else response)
            session.end("rejected")
            return
        setup.dialog = dialog
        self._finish_setup(setup, response)
        self.timers.arm(dialog)
        session.dialog_established(lambda reason: self.terminate(dialog, reason))

    def _offer_failed(self, failure: Failure, setup: Setup) -> None:
        if setup.done:
            return  # cancelled meanwhile
        tx = setup.first
        if failure.check(CallRejected):
            final = self.responder.reject(tx, failure.value)
        else:
            log.failure("Could not set up recording for {call_id}", failure,
                        call_id=tx.request.call_id)
            final = self.responder.respond(tx, 500, "Could not set up the recording")
        self._finish_setup(setup, final)
        setup.session.end("rejected")

    def _finish_setup(self, setup: Setup, final: Response) -> None:
        """Give the final answer to every copy of the INVITE; forget the setup after 64*T1."""
        copies = self.setups.finish(setup, final)
        for tx in copies:
            self.responder.copy_final(tx, final)
        if setup.dialog is not None:
            self.states.of(setup.dialog).ok_txs.extend(copies)

    def _merged_invite(self, tx: InviteServerTransaction, setup: Setup) -> None:
        """The INVITE again on a new branch: same answer as the first, never a second call."""
        setup.session.tolerate("INVITE retransmitted with a new Via branch; answered like the first")
        self.setups.join(setup, tx)
        if not setup.done:
            return  # answered with the others in _finish_setup; 100 Trying comes from the transaction
        dialog = setup.dialog
        if dialog is not None and dialog.terminated:
            self.responder.respond(tx, 481, "Call already ended")
            return
        self.responder.copy_final(tx, setup.final)
        if dialog is not None:
            self.states.of(dialog).ok_txs.append(tx)

    def _retransmitted_invite(self, tx, dialog: Dialog) -> None:
        """The initial INVITE on a new branch after we forgot its setup: answer from the dialog."""
        state = self.states.of(dialog)
        dialog.session.tolerate("INVITE retransmitted with a new Via branch; answered like the first")
        if state.initial_ok is None:
            self.responder.respond(tx, 500, "Internal error, see server log")
            return
        self.responder.copy_final(tx, state.initial_ok)
        state.ok_txs.append(tx)

    # -- ending calls from our side ---------------------------------------------
    def terminate(self, dialog: Dialog, reason: str) -> Deferred:
        """Send BYE to the SRC and finalise the recording (API, timeouts, shutdown)."""
        if dialog.terminated:
            return succeed(None)
        bye = self._send_in_dialog(dialog, "BYE")
        bye.addErrback(lambda f: log.info("BYE for {call_id} got no answer: {error}",
                                          call_id=dialog.call_id, error=f.getErrorMessage()))
        self._close_dialog(dialog)
        return dialog.session.end(reason)

    def terminate_call(self, call_id: str, reason: str) -> Optional[Deferred]:
        for dialog in self.dialogs:
            if dialog.call_id == call_id:
                return self.terminate(dialog, reason)
        return None

    def _send_in_dialog(self, dialog: Dialog, method: str,
                        extra: Sequence[Tuple[str, str]] = ()) -> Deferred:
        try:
            peer = self.peer_for_dialog(dialog)
        except Exception as e:
            log.warn("No route to the SRC of {call_id} for {method}: {error}",
                     call_id=dialog.call_id, method=method, error=e)
            return succeed(Response(503))
        request = dialog.create_request(
            method,
            via=via_value(peer.transport, self.settings.host, peer.local[1], new_branch()),
            contact=contact_value(self.settings.host, peer.local[1], peer.transport),
            user_agent=self.settings.user_agent,
        )
        for name, value in extra:
            request.headers.add(name, value)
        if self.metrics:
            self.metrics.sip_request_sent(method)
        return self.layer.send_request(request, peer).deferred

    def _close_dialog(self, dialog: Dialog) -> None:
        dialog.terminated = True
        state = self.states.pop(dialog)
        if state is not None:
            state.stop_2xx()  # a BYE either way: the 200 is no longer news
            state.cancel_timer()
        self.dialogs.remove(dialog)

    def stop_accepting(self) -> None:
        """Drain: new INVITEs and out-of-dialog OPTIONS get 503; existing calls go on."""
        self.accepting = False

    def close(self) -> None:
        """After draining: cancel session timers and transaction timers."""
        for dialog in list(self.dialogs):
            self._close_dialog(dialog)
        self.setups.close()
        self.layer.close()

    def active_dialogs(self) -> List[Dialog]:
        return list(self.dialogs)

    # -- helpers -----------------------------------------------------------------
    def _sip_info(self, request: Request, peer: Peer) -> dict:
        headers: Dict[str, List[str]] = {}
        for name, value in request.headers:
            lower = name.lower()
            if (name in _RECORD_HEADERS or lower.startswith("x-") or lower.startswith("p-")):
                headers.setdefault(name, []).append(value)
        return {
            "call_id": request.call_id,
            "request_uri": request.uri,
            "headers": headers,
            "transport": peer.transport,
            "source": f"{peer.remote[0]}:{peer.remote[1]}",
        }


def _contact_notes(contact: Contact, peer: Peer) -> List[str]:
    """How the remote target of a new dialog was found, when not from a clean Contact."""
    source = f"{peer.remote[0]}:{peer.remote[1]}"
    if contact.address is None:
        if contact.note is not None:
            return [f"{contact.note}; using the source address {source}"]
        return [f"INVITE without Contact; using the source address {source}"]
    if contact.address.wildcard:
        return [f"INVITE with Contact '*'; using the source address {source}"]
    if not contact.address.uri.is_sip:
        return [f"Contact {contact.address.uri.scheme}: URI is no SIP URI; using the source address {source}"]
    return [contact.note] if contact.note is not None else []

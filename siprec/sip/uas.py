"""The SRS user agent server: SIP requests in, recording sessions driven.

This is the transaction user of :mod:`siprec.sip.transaction`. It decides
every answer (RFC 3261, RFC 4028 session timers, RFC 7866 SIPREC) and hands
media and metadata to a :class:`CallHandler` (the recording manager). It is
liberal with what SRCs send and strict with what it sends: each tolerated
quirk is logged once per call via ``session.tolerate``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from siprec.recording.multipart import MultipartError, UnsupportedBody, split_siprec_body
from siprec.sip.dialog import (
    CSeqCheck,
    Dialog,
    DialogTable,
    contact_value,
    new_branch,
    new_tag,
    via_value,
)
from siprec.sip.errors import CallRejected
from siprec.sip.headers import HeaderError, SipURI, parse_params
from siprec.sip.message import Request, Response, SipParseError, make_response, reason_phrase
from siprec.sip.sdp import SdpParseError, SessionDescription, parse_sdp
from siprec.sip.transaction import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    Peer,
    ServerTransaction,
    Timers,
    TransactionLayer,
    TransactionTimeout,
)

log = Logger()

__all__ = ["SipCore", "UasSettings", "CallRejected", "CallHandler", "RecordingCall",
           "ALLOWED_METHODS", "SUPPORTED_OPTIONS", "ACCEPTED_TYPES"]

ALLOWED_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "PRACK")
SUPPORTED_OPTIONS = ("siprec", "timer", "100rel")
ACCEPTED_TYPES = "application/sdp, application/rs-metadata+xml, application/rs-metadata"
# Vendor headers worth keeping in the call record besides X-* and P-*.
_RECORD_HEADERS = ("From", "To", "Call-ID", "Contact", "User-Agent", "Session-ID",
                   "Diversion", "History-Info", "User-to-User", "Subject", "Organization")
# Copied from a final response when it answers a retransmission on a new branch.
_OWN_HEADERS = frozenset({"Via", "From", "To", "Call-ID", "CSeq", "Content-Length"})
_IDENTITY_ENCODINGS = frozenset({"", "identity"})


class RecordingCall(Protocol):
    """What the UAS needs from a recording session."""

    ended: bool

    def offer(self, offer: Optional[SessionDescription],
              metadata: Sequence[bytes]): ...  # -> SessionDescription | Deferred
    def answer_received(self, answer: SessionDescription) -> None: ...
    def metadata_received(self, metadata: Sequence[bytes]) -> None: ...
    def tolerate(self, note: str) -> None: ...
    def end(self, reason: str) -> Deferred: ...


class CallHandler(Protocol):
    def admission(self) -> Optional[CallRejected]: ...
    def create_session(self, call_id: str, sip_info: dict) -> RecordingCall: ...


@dataclass
class UasSettings:
    host: str  # address we put in Contact and Via
    user_agent: str = "siprec"
    require_metadata: bool = False
    session_expires: float = 1800.0
    min_se: float = 90.0
    timers: Timers = field(default_factory=Timers)


@dataclass
class SessionTimer:
    """RFC 4028 state of one dialog; ``interval`` 0 means no session timer."""

    interval: float
    we_refresh: bool  # True: we send the refreshes; False: the SRC does and we watch
    call: Optional[IDelayedCall] = None

    @property
    def refresher(self) -> str:
        """The refresher parameter value in a 2xx to the SRC's request."""
        return "uas" if self.we_refresh else "uac"


class _DialogState:
    """What the UAS tracks per dialog beside RFC 3261 dialog state."""

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
        self.awaiting_answer = False  # our 200 carried an offer; the ACK brings the answer
        self.timer: Optional[SessionTimer] = None


class _Setup:
    """An initial INVITE being answered, remembered until 64*T1 after its final response.

    The same INVITE arriving again on another branch (same Call-ID, From-tag
    and CSeq) joins it and gets the same answer; never a second call.
    """

    def __init__(self, key: Tuple[str, Optional[str], int], tx: InviteServerTransaction,
                 session: RecordingCall) -> None:
        self.key = key
        self.txs: List[InviteServerTransaction] = [tx]
        self.session = session
        self.final: Optional[Response] = None
        self.dialog: Optional[Dialog] = None
        self.expiry: Optional[IDelayedCall] = None

    @property
    def done(self) -> bool:
        return self.final is not None


class _LogBudget:
    """At most ``limit`` lines per ``window`` seconds; the rest are counted, then summarised.

    Hostile or broken peers can send thousands of bad requests a second; each
    deserves an answer but not a log line.
    """

    def __init__(self, clock: IReactorTime, what: str, limit: int = 20, window: float = 60.0):
        self.clock = clock
        self.what = what
        self.limit = limit
        self.window = window
        self.start = clock.seconds()
        self.used = 0
        self.suppressed = 0

    def allow(self) -> bool:
        now = self.clock.seconds()
        if now - self.start >= self.window:
            if self.suppressed:
                log.info("{n} more {what} not logged in the last {w:g}s", n=self.suppressed,
                         what=self.what, w=now - self.start)
            self.start, self.used, self.suppressed = now, 0, 0
        if self.used < self.limit:
            self.used += 1
            return True
        self.suppressed += 1
        return False


class SipCore:
    """Transaction user for the SRS. One per server; transports feed it.

    ``peer_for_dialog`` chooses the transport for requests we send in a
    dialog (BYE, UPDATE); by default the peer the SRC last used.
    """

    def __init__(self, clock: IReactorTime, handler: CallHandler, settings: UasSettings,
                 metrics=None, peer_for_dialog: Optional[Callable[[Dialog], Peer]] = None):
        self.clock = clock
        self.handler = handler
        self.settings = settings
        self.metrics = metrics
        self.layer = TransactionLayer(clock, self, settings.timers)
        self.dialogs = DialogTable()
        self._state: Dict[Tuple, _DialogState] = {}
        self._setups: Dict[Tuple[str, Optional[str], int], _Setup] = {}
        self._setup_by_tx: Dict[int, _Setup] = {}
        self._latest_setup: Dict[Tuple[str, Optional[str]], _Setup] = {}
        self.peer_for_dialog = peer_for_dialog or (lambda dialog: dialog.peer)
        self.accepting = True
        self._bad_log = _LogBudget(clock, "malformed messages")
        self._reject_log = _LogBudget(clock, "rejected requests")

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
        if request is None or request.method == "ACK":
            if self._bad_log.allow():
                log.info("Dropped malformed SIP message from {remote}: {reason}",
                         remote=peer.remote, reason=error.reason)
            return
        if self._bad_log.allow():
            log.info("Rejecting malformed {method} from {remote}: {status} {reason}",
                     method=request.method or "request", remote=peer.remote,
                     status=error.status, reason=error.reason)
        response = make_response(request, error.status, reason_phrase(error.reason),
                                 to_tag=new_tag())
        self._decorate(response)
        self._count(response, request.method)
        try:
            peer.send(response.to_bytes())
        except Exception as e:
            log.warn("Could not send {status}: {error}", status=error.status, error=e)

    # -- TransactionUser ------------------------------------------------------
    def handle_request(self, tx: ServerTransaction) -> None:
        request = tx.request
        try:
            self._dispatch(tx)
        except Exception:
            log.failure("Unexpected error handling {method} {call_id}",
                        method=request.method, call_id=request.headers.get("Call-ID"))
            if not tx.final_sent:
                self._respond(tx, 500, "Internal error, see server log")

    def _dispatch(self, tx: ServerTransaction) -> None:
        request = tx.request
        method = request.method
        if method not in ALLOWED_METHODS:
            self._respond(tx, 405)
            return
        if method == "OPTIONS":
            unsupported = _unsupported(request)
            if unsupported:
                self._respond(tx, 420, headers=[("Unsupported", ", ".join(unsupported))])
            else:
                self._respond(tx, 200, headers=self._capabilities())
            return
        call_id = request.call_id
        to_tag = request.to.tag
        from_tag = request.from_.tag
        cseq = request.cseq.number
        if method == "INVITE" and to_tag is None:
            setup = self._setups.get((call_id, from_tag, cseq))
            if setup is not None:
                self._merged_invite(tx, setup)
                return
        dialog, exact = self.dialogs.find(call_id, to_tag, from_tag)
        if dialog is None:
            if method == "INVITE" and to_tag is None:
                if self.dialogs.matching(call_id, from_tag):
                    self._respond(tx, 481, "Ambiguous dialog: no To-tag and several matches")
                    return
                pending = self._latest_setup.get((call_id, from_tag))
                if pending is not None and not pending.done:
                    # RFC 3261 §14.2, by analogy: a second INVITE while the first is unanswered.
                    self._respond(tx, 500, "Previous INVITE still being answered",
                                  headers=[("Retry-After", str(secrets.randbelow(11)))])
                    return
                self._new_call(tx)
                return
            self._respond(tx, 481)
            return
        session = dialog.session
        if not exact:
            if to_tag is None:
                state = self._st(dialog)
                if method == "INVITE" and cseq == state.initial_cseq:
                    self._retransmitted_invite(tx, dialog)
                    return
                session.tolerate(f"{method} without To-tag matched to the dialog by Call-ID and From-tag")
            else:
                session.tolerate(f"{method} with unknown To-tag matched to the dialog by Call-ID and From-tag")
        self._in_dialog(tx, dialog)

    def handle_ack(self, request: Request, peer: Peer) -> None:
        try:
            dialog, exact = self.dialogs.find(request.call_id, request.to.tag, request.from_.tag)
            cseq = request.cseq.number
        except HeaderError:
            return
        if dialog is None:
            log.debug("ACK outside any dialog for {call_id}", call_id=request.headers.get("Call-ID"))
            return
        state = self._st(dialog)
        if cseq < state.invite_cseq:
            return  # a late copy of the ACK for an earlier INVITE of this dialog
        if not exact:
            dialog.session.tolerate("ACK matched to the dialog by Call-ID and From-tag")
        if cseq != state.invite_cseq:
            dialog.session.tolerate("ACK with a CSeq other than its INVITE's accepted")
        self._stop_2xx(state)
        dialog.confirmed = True
        if state.awaiting_answer:
            state.awaiting_answer = False
            self._answer_in_ack(request, dialog)

    def _answer_in_ack(self, request: Request, dialog: Dialog) -> None:
        if not request.body:
            dialog.session.tolerate("ACK carried no SDP answer to our offer; streams kept as they were")
            return
        try:
            body = split_siprec_body(request.content_type, request.body,
                                     request.headers.get("Content-Disposition"))
            if body.sdp:
                dialog.session.answer_received(parse_sdp(body.sdp))
            if body.metadata:
                dialog.session.metadata_received(body.metadata)
        except (MultipartError, UnsupportedBody, SdpParseError) as e:
            log.warn("Ignoring unusable answer in ACK for {call_id}: {error}",
                     call_id=dialog.call_id, error=e)

    def handle_cancel(self, cancel: NonInviteServerTransaction,
                      invite: Optional[InviteServerTransaction]) -> None:
        if invite is None:
            self._respond(cancel, 481)
            return
        self._respond(cancel, 200)
        if invite.final_sent:
            return  # RFC 3261 §9.2: too late, the CANCEL has no effect
        setup = self._setup_by_tx.get(id(invite))
        if setup is None:
            # A re-INVITE still being answered: RFC 3261 §9.2 says 487; the
            # session stays as it was (the late answer is dropped in _modified).
            self._respond(invite, 487)
            return
        log.info("Call {call_id} cancelled by the SRC before it was answered",
                 call_id=invite.request.call_id)
        final = self._respond(invite, 487)
        self._finish_setup(setup, final)
        setup.session.end("cancelled")

    def ack_timeout(self, tx: InviteServerTransaction) -> None:
        dialog = self._dialog_for_tx(tx)
        if dialog is None:
            return
        state = self._st(dialog)
        if tx.request.to.tag is None:
            log.warn("No ACK for the 200 OK to INVITE {call_id} within {t:g}s: ending the call",
                     call_id=dialog.call_id, t=self.settings.timers.timeout)
            self.terminate(dialog, "ack-timeout")
        else:
            log.warn("No ACK for the 200 OK to re-INVITE in {call_id}; keeping the recording",
                     call_id=dialog.call_id)
            state.invite_tx = None
            state.ok_txs = []
            if state.awaiting_answer:
                state.awaiting_answer = False
                dialog.session.tolerate("no ACK brought the answer to our offer; streams kept as they were")

    # -- new calls -------------------------------------------------------------
    def _new_call(self, tx: InviteServerTransaction) -> None:
        request = tx.request
        if not self.accepting:
            self._respond(tx, 503, "Shutting down", headers=[("Retry-After", "30")])
            return
        rejected = self.handler.admission()
        if rejected is not None:
            self._reject(tx, rejected)
            return
        notes: List[str] = []
        try:
            _check_extensions(request)
            body = _split_body(request)
            if not body.metadata and self.settings.require_metadata:
                raise CallRejected(403, "Recording metadata required")
            offer = _parse_offer(body)
            timer = self._negotiate_timer(request, None, notes)
        except CallRejected as e:
            self._reject(tx, e)
            return
        session = self.handler.create_session(request.call_id, self._sip_info(request, tx.peer))
        for note in list(body.tolerances) + notes:
            session.tolerate(note)
        self._note_siprec_quirks(request, body, session)
        setup = _Setup((request.call_id, request.from_.tag, request.cseq.number), tx, session)
        self._setups[setup.key] = setup
        self._setup_by_tx[id(tx)] = setup
        self._latest_setup[setup.key[:2]] = setup
        d = maybeDeferred(session.offer, offer, body.metadata)
        d.addCallbacks(self._answered, self._offer_failed,
                       callbackArgs=(setup, timer, offer is None), errbackArgs=(setup,))
        d.addErrback(lambda f: log.failure("Answering INVITE failed", f))

    def _answered(self, sdp: Optional[SessionDescription], setup: _Setup,
                  timer: SessionTimer, we_offered: bool) -> None:
        if setup.done:
            return  # cancelled meanwhile; handle_cancel ended the session
        tx = setup.txs[0]
        session = setup.session
        if sdp is None or getattr(session, "ended", False):
            log.warn("Recording session for {call_id} ended or gave no SDP before the answer",
                     call_id=tx.request.call_id)
            final = self._respond(tx, 503, "Recording session unavailable",
                                  headers=[("Retry-After", "5")])
            self._finish_setup(setup, final)
            session.end("rejected")
            return
        request = tx.request
        local_tag = new_tag()
        remote_target = self._remote_target(request, tx.peer, session)
        dialog = Dialog(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag,
            local_party=f"{request.headers.get('To')};tag={local_tag}",
            remote_party=request.headers.get("From"),
            remote_target=remote_target,
            remote_cseq=request.cseq.number,
            route_set=request.headers.get_all("Record-Route"),
            peer=tx.peer,
            secure=tx.peer.transport == "TLS",
            session=session,
        )
        self.dialogs.add(dialog)
        state = self._state[dialog.key] = _DialogState(request.cseq.number)
        state.invite_tx = state.last_invite = tx
        state.awaiting_answer = we_offered
        state.timer = timer
        response = self._ok(request, dialog, sdp, timer)
        state.initial_ok = response
        tx.respond(response)
        self._count(response, "INVITE")
        setup.dialog = dialog
        self._finish_setup(setup, response)
        self._arm_timer(dialog)
        if hasattr(session, "attach_dialog"):
            session.attach_dialog(dialog)

    def _offer_failed(self, failure: Failure, setup: _Setup) -> None:
        if setup.done:
            return  # cancelled meanwhile
        tx = setup.txs[0]
        if failure.check(CallRejected):
            final = self._reject(tx, failure.value)
        else:
            log.failure("Could not set up recording for {call_id}", failure,
                        call_id=tx.request.call_id)
            final = self._respond(tx, 500, "Could not set up the recording")
        self._finish_setup(setup, final)
        setup.session.end("rejected")

    def _finish_setup(self, setup: _Setup, final: Response) -> None:
        """Record the final answer, give it to every copy of the INVITE, forget it after 64*T1."""
        setup.final = final
        copies = [tx for tx in setup.txs if not tx.final_sent]
        for tx in copies:
            self._copy_final(tx, final)
        if setup.dialog is not None:
            self._st(setup.dialog).ok_txs.extend(copies)
        setup.expiry = self.clock.callLater(self.settings.timers.timeout, self._forget_setup, setup)

    def _forget_setup(self, setup: _Setup) -> None:
        setup.expiry = None
        if self._setups.get(setup.key) is setup:
            del self._setups[setup.key]
        if self._latest_setup.get(setup.key[:2]) is setup:
            del self._latest_setup[setup.key[:2]]
        for tx in setup.txs:
            self._setup_by_tx.pop(id(tx), None)

    def _merged_invite(self, tx: InviteServerTransaction, setup: _Setup) -> None:
        """The INVITE again on a new branch: same answer as the first, never a second call."""
        setup.session.tolerate("INVITE retransmitted with a new Via branch; answered like the first")
        self._setup_by_tx[id(tx)] = setup
        setup.txs.append(tx)
        if not setup.done:
            return  # answered with the others in _finish_setup; 100 Trying comes from the transaction
        dialog = setup.dialog
        if dialog is not None and dialog.terminated:
            self._respond(tx, 481, "Call already ended")
            return
        self._copy_final(tx, setup.final)
        if dialog is not None:
            self._st(dialog).ok_txs.append(tx)

    def _retransmitted_invite(self, tx, dialog: Dialog) -> None:
        """The initial INVITE on a new branch after we forgot its setup: answer from the dialog."""
        state = self._st(dialog)
        dialog.session.tolerate("INVITE retransmitted with a new Via branch; answered like the first")
        if state.initial_ok is None:
            self._respond(tx, 500, "Internal error, see server log")
            return
        self._copy_final(tx, state.initial_ok)
        state.ok_txs.append(tx)

    def _copy_final(self, tx: InviteServerTransaction, final: Response) -> None:
        try:
            tag = final.to.tag
        except HeaderError:
            tag = None
        response = make_response(tx.request, final.status, final.reason, to_tag=tag or new_tag(),
                                 headers=[(n, v) for n, v in final.headers if n not in _OWN_HEADERS],
                                 body=final.body)
        tx.respond(response)
        self._count(response, "INVITE")

    # -- in-dialog -------------------------------------------------------------
    def _in_dialog(self, tx: ServerTransaction, dialog: Dialog) -> None:
        request = tx.request
        method = request.method
        session = dialog.session
        state = self._st(dialog)
        tag = dialog.local_tag
        dialog.peer = tx.peer
        number = request.cseq.number
        check = dialog.check_cseq(number)
        if check == CSeqCheck.OUT_OF_ORDER:
            if method in ("INVITE", "UPDATE"):
                self._respond(tx, 500, "Out of order CSeq", headers=[("Retry-After", "1")], to_tag=tag)
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
            self._respond(tx, 481, "No reliable provisional response to acknowledge", to_tag=tag)
        else:
            self._respond(tx, 405, to_tag=tag)

    def _repeated_reinvite(self, tx, dialog: Dialog) -> bool:
        """A re-INVITE again on a new branch (same CSeq); True when answered here."""
        state = self._st(dialog)
        previous = state.last_invite
        if previous is None or previous.request.cseq.number != state.invite_cseq:
            return False
        dialog.session.tolerate("re-INVITE retransmitted with a new Via branch")
        if previous.last_response is None or previous.last_response.status < 200:
            self._respond(tx, 500, "Previous INVITE still being answered",
                          headers=[("Retry-After", str(secrets.randbelow(11)))],
                          to_tag=dialog.local_tag)
        else:
            self._copy_final(tx, previous.last_response)
            if previous.last_response.status < 300:
                state.ok_txs.append(tx)
        return True

    def _bye(self, tx, dialog: Dialog) -> None:
        request = tx.request
        session = dialog.session
        state = self._st(dialog)
        if request.body:
            try:
                body = _split_body(request)
                if body.metadata:
                    session.metadata_received(body.metadata)
            except CallRejected as e:
                session.tolerate(f"BYE body ignored: {e.reason}")
        pending = state.last_invite
        if pending is not None and not pending.final_sent:
            # RFC 3261 §15.1.2: a re-INVITE still unanswered gets 487.
            self._respond(pending, 487, to_tag=dialog.local_tag)
        self._respond(tx, 200, to_tag=dialog.local_tag)
        self._close_dialog(dialog)
        session.end("bye")

    def _modify(self, tx, dialog: Dialog) -> None:
        """re-INVITE or UPDATE: new SDP, metadata, a session refresh, or all of these."""
        request = tx.request
        state = self._st(dialog)
        session = dialog.session
        tag = dialog.local_tag
        is_invite = request.method == "INVITE"
        if is_invite and state.last_invite is not None and not state.last_invite.final_sent:
            # RFC 3261 §14.2: a second INVITE before the first has its final response.
            self._respond(tx, 500, "Previous INVITE still being answered",
                          headers=[("Retry-After", str(secrets.randbelow(11)))], to_tag=tag)
            return
        notes: List[str] = []
        try:
            _check_extensions(request)
            body = _split_body(request)
            offer = _parse_offer(body)
            if (is_invite or offer is not None) and state.awaiting_answer:
                # RFC 3261 §14.2 / RFC 3311 §5.2: our offer in the last 2xx is unanswered.
                raise CallRejected(491)
            timer = self._negotiate_timer(request, state.timer, notes)
        except CallRejected as e:
            self._reject(tx, e, to_tag=tag)
            return
        for note in list(body.tolerances) + notes:
            session.tolerate(note)
        if offer is None and not is_invite:
            # UPDATE without SDP: metadata (or a session refresh) only.
            if body.metadata:
                session.metadata_received(body.metadata)
            self._modified(None, tx, dialog, timer, False)
            return
        if is_invite:
            self._stop_2xx(state)  # a new INVITE means the SRC has our last 2xx
            state.last_invite = tx
            state.invite_cseq = request.cseq.number
        d = maybeDeferred(session.offer, offer, body.metadata)
        d.addCallbacks(self._modified, self._modify_failed,
                       callbackArgs=(tx, dialog, timer, offer is None),
                       errbackArgs=(tx, dialog))
        d.addErrback(lambda f: log.failure("Answering re-offer failed", f))

    def _modified(self, sdp: Optional[SessionDescription], tx, dialog: Dialog,
                  timer: SessionTimer, we_offered: bool) -> None:
        if tx.final_sent or dialog.terminated:
            log.info("Late answer to {method} in {call_id} dropped (cancelled or call ended)",
                     method=tx.request.method, call_id=dialog.call_id)
            return
        request = tx.request
        state = self._st(dialog)
        if request.method == "INVITE" and sdp is None:
            log.error("No SDP to put in the 2xx to re-INVITE in {call_id}", call_id=dialog.call_id)
            self._respond(tx, 500, "Could not apply the new offer", to_tag=dialog.local_tag)
            return
        self._update_target(request, dialog)
        self._replace_timer(state, timer)
        response = self._ok(request, dialog, sdp, timer)
        if request.method == "INVITE":
            state.awaiting_answer = we_offered
            state.invite_tx = tx
            state.ok_txs = []
        tx.respond(response)
        self._count(response, request.method)
        self._arm_timer(dialog)

    def _modify_failed(self, failure: Failure, tx, dialog: Dialog) -> None:
        if tx.final_sent or dialog.terminated:
            return
        if failure.check(CallRejected):
            # RFC 3261 §14.2: a failed re-INVITE leaves the session as it was.
            self._reject(tx, failure.value, to_tag=dialog.local_tag)
        else:
            log.failure("Could not apply the re-offer in {call_id}", failure, call_id=dialog.call_id)
            self._respond(tx, 500, "Could not apply the new offer", to_tag=dialog.local_tag)

    def _update_target(self, request: Request, dialog: Dialog) -> None:
        """re-INVITE and UPDATE are target refresh requests (RFC 3261 §12.2.2, RFC 3311)."""
        try:
            contacts = request.contacts()
        except HeaderError:
            dialog.session.tolerate("unparseable Contact in a target refresh request; remote target kept")
            return
        if contacts and not contacts[0].wildcard:
            dialog.remote_target = contacts[0].uri

    # -- session timers (RFC 4028) --------------------------------------------
    def _negotiate_timer(self, request: Request, current: Optional[SessionTimer],
                         notes: List[str]) -> SessionTimer:
        """The session timer for a 2xx (RFC 4028 §9); raises CallRejected(422) when too short.

        The refresher follows §9 Table 2; when the SRC cannot take part
        (no 'timer' in Supported) we refresh ourselves, with UPDATE, or run no
        timer at all if the SRC does not allow UPDATE.
        """
        supported = _supports_timer(request)
        min_se = self.settings.min_se
        requested_min = _delta_seconds(request.headers.get("Min-SE"))
        floor = max(min_se, requested_min or 0)
        interval: Optional[int] = None
        refresher = ""
        text = request.headers.get("Session-Expires")
        if text is not None:
            value, _, params_text = text.partition(";")
            interval = _delta_seconds(value)
            if interval is None or interval == 0:
                notes.append(f"malformed Session-Expires {text[:40]!r} ignored")
                interval = None
            else:
                try:
                    refresher = (parse_params(params_text).get("refresher") or "").lower()
                except HeaderError:
                    notes.append(f"malformed Session-Expires parameters {params_text[:40]!r} ignored")
        if interval is None:
            if not supported:
                return SessionTimer(0, False)
            if current is not None and current.interval > 0:
                return SessionTimer(max(current.interval, floor), current.we_refresh)
            return SessionTimer(max(self.settings.session_expires, floor), False)
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
        if refresher == "uas" and not _allows(request, "UPDATE"):
            notes.append("SRC asks us to refresh the session but does not allow UPDATE; no session timer")
            return SessionTimer(0, False)
        return SessionTimer(float(interval), refresher == "uas")

    def _replace_timer(self, state: _DialogState, timer: SessionTimer) -> None:
        old = state.timer
        if old is not None and old is not timer and old.call is not None and old.call.active():
            old.call.cancel()
        state.timer = timer

    def _arm_timer(self, dialog: Dialog) -> None:
        state = self._st(dialog)
        timer = state.timer
        if timer is None:
            return
        if timer.call is not None and timer.call.active():
            timer.call.cancel()
        timer.call = None
        if timer.interval <= 0 or dialog.terminated:
            return
        if timer.we_refresh:
            timer.call = self.clock.callLater(timer.interval / 2, self._refresh, dialog)
        else:
            # RFC 4028 §10: BYE shortly before expiry when no refresh arrives.
            delay = timer.interval - min(32.0, timer.interval / 3)
            timer.call = self.clock.callLater(delay, self._session_expired, dialog)

    def _session_expired(self, dialog: Dialog) -> None:
        if dialog.terminated:
            return
        log.warn("Session timer expired for {call_id}: the SRC did not refresh within {s:g}s; ending",
                 call_id=dialog.call_id, s=self._st(dialog).timer.interval)
        self.terminate(dialog, "session-timer-expired")

    def _refresh(self, dialog: Dialog) -> None:
        """We are the refresher: an UPDATE without a body (RFC 4028 §7.4, RFC 3311)."""
        if dialog.terminated:
            return
        timer = self._st(dialog).timer
        timer.call = None
        # In our UPDATE we are the UAC, so "refresher=uac" keeps us the refresher.
        d = self._send_in_dialog(dialog, "UPDATE", extra=[
            ("Session-Expires", f"{int(timer.interval)};refresher=uac"),
            ("Min-SE", str(int(self.settings.min_se))),
            ("Supported", "timer")])
        d.addCallbacks(self._refreshed, self._refresh_failed,
                       callbackArgs=(dialog, timer), errbackArgs=(dialog,))

    def _refreshed(self, response: Response, dialog: Dialog, timer: SessionTimer) -> None:
        state = self._state.get(dialog.key)
        if dialog.terminated or state is None or state.timer is not timer:
            return  # call over, or the SRC renegotiated the timer meanwhile
        status = response.status
        if 200 <= status < 300:
            text = response.headers.get("Session-Expires")
            if text is None:
                log.info("Session refresh answer for {call_id} has no Session-Expires: "
                         "session timer off", call_id=dialog.call_id)
                self._replace_timer(state, SessionTimer(0, False))
                return
            value, _, params_text = text.partition(";")
            interval = _delta_seconds(value) or int(timer.interval)
            try:
                refresher = (parse_params(params_text).get("refresher") or "uac").lower()
            except HeaderError:
                refresher = "uac"
            self._replace_timer(state, SessionTimer(float(interval), refresher != "uas"))
            self._arm_timer(dialog)
        elif status in (408, 481):
            log.warn("Session refresh UPDATE for {call_id} answered {status}; ending",
                     call_id=dialog.call_id, status=status)
            self.terminate(dialog, "session-refresh-failed")
        elif status == 422:
            wanted = _delta_seconds(response.headers.get("Min-SE"))
            if wanted is None or wanted <= timer.interval:
                self.terminate(dialog, "session-refresh-failed")
                return
            self._replace_timer(state, SessionTimer(float(wanted), True))
            self._refresh(dialog)
        elif status in (405, 501):
            log.warn("SRC of {call_id} refuses UPDATE ({status}); no more session refreshes, "
                     "the call goes on", call_id=dialog.call_id, status=status)
            self._replace_timer(state, SessionTimer(0, False))
        else:
            # 491, 500, 503...: the session is still up; try again shortly.
            timer.call = self.clock.callLater(min(4.0, timer.interval / 4), self._refresh, dialog)

    def _refresh_failed(self, failure: Failure, dialog: Dialog) -> None:
        if dialog.terminated:
            return
        if not failure.check(TransactionTimeout):
            log.failure("Session refresh for {call_id} failed", failure, call_id=dialog.call_id)
        log.warn("Session refresh for {call_id} got no answer; ending", call_id=dialog.call_id)
        self.terminate(dialog, "session-refresh-failed")

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
        state = self._state.pop(dialog.key, None)
        if state is not None:
            self._stop_2xx(state)  # a BYE either way: the 200 is no longer news
            if state.timer and state.timer.call and state.timer.call.active():
                state.timer.call.cancel()
        self.dialogs.remove(dialog)

    def stop_accepting(self) -> None:
        self.accepting = False

    def close(self) -> None:
        """After draining: cancel session timers and transaction timers."""
        for dialog in list(self.dialogs):
            self._close_dialog(dialog)
        for setup in list(self._setups.values()):
            if setup.expiry is not None and setup.expiry.active():
                setup.expiry.cancel()
            self._forget_setup(setup)
        self.layer.close()

    def active_dialogs(self) -> List[Dialog]:
        return list(self.dialogs)

    # -- helpers -----------------------------------------------------------------
    def _st(self, dialog: Dialog) -> _DialogState:
        state = self._state.get(dialog.key)
        if state is None:
            state = self._state[dialog.key] = _DialogState(dialog.remote_cseq)
        return state

    def _stop_2xx(self, state: _DialogState) -> None:
        for tx in ([state.invite_tx] if state.invite_tx is not None else []) + state.ok_txs:
            tx.ack_for_2xx()
        state.invite_tx = None
        state.ok_txs = []

    def _dialog_for_tx(self, tx) -> Optional[Dialog]:
        for dialog in self.dialogs:
            state = self._state.get(dialog.key)
            if state is not None and state.invite_tx is tx:
                return dialog
        return None

    def _ok(self, request: Request, dialog: Dialog, sdp: Optional[SessionDescription],
            timer: Optional[SessionTimer]) -> Response:
        headers: List[Tuple[str, str]] = []
        if request.method == "INVITE":
            # RFC 3261 §12.1.1: Record-Route copied, in order, into the 2xx.
            headers += [(n, v) for n, v in request.headers if n == "Record-Route"]
        headers.append(("Contact", contact_value(self.settings.host, dialog.peer.local[1],
                                                 dialog.peer.transport)))
        headers += self._capabilities()
        if timer is not None and timer.interval > 0:
            headers.append(("Session-Expires", f"{int(timer.interval)};refresher={timer.refresher}"))
            if _supports_timer(request):
                headers.append(("Require", "timer"))  # RFC 4028 §9
        body = b""
        if sdp is not None:
            headers.append(("Content-Type", "application/sdp"))
            body = sdp.to_bytes()
        response = make_response(request, 200, to_tag=dialog.local_tag, headers=headers, body=body)
        self._decorate(response)
        return response

    def _capabilities(self) -> List[Tuple[str, str]]:
        return [
            ("Allow", ", ".join(ALLOWED_METHODS)),
            ("Accept", ACCEPTED_TYPES),
            ("Supported", ", ".join(SUPPORTED_OPTIONS)),
        ]

    def _decorate(self, response: Response) -> None:
        response.headers.add("Server", self.settings.user_agent)

    def _respond(self, tx: ServerTransaction, status: int, reason: Optional[str] = None,
                 headers: Sequence[Tuple[str, str]] = (),
                 to_tag: Optional[str] = None) -> Response:
        """Build, send and count one response; ``to_tag`` is the dialog's when there is one."""
        headers = list(headers)
        if status == 405 and not any(n == "Allow" for n, _ in headers):
            headers.append(("Allow", ", ".join(ALLOWED_METHODS)))
        response = make_response(tx.request, status, reason,
                                 to_tag=(to_tag or new_tag()) if status > 100 else None,
                                 headers=headers)
        self._decorate(response)
        tx.respond(response)
        self._count(response, tx.request.method)
        if status >= 400 and self._reject_log.allow():
            log.info("{method} {call_id} answered {status} {reason}", method=tx.request.method,
                     call_id=tx.request.headers.get("Call-ID"), status=status,
                     reason=response.reason)
        return response

    def _reject(self, tx, rejected: CallRejected, to_tag: Optional[str] = None) -> Response:
        return self._respond(tx, rejected.status, rejected.reason, headers=rejected.headers,
                             to_tag=to_tag)

    def _count(self, response: Response, method: str) -> None:
        if self.metrics:
            self.metrics.sip_response(method, response.status)

    def _remote_target(self, request: Request, peer: Peer, session) -> Optional[SipURI]:
        try:
            contacts = request.contacts()
            if contacts and not contacts[0].wildcard:
                return contacts[0].uri
        except HeaderError as e:
            session.tolerate(f"Unparseable Contact ({e}); using the source address {peer.remote[0]}:{peer.remote[1]}")
            return None
        session.tolerate("INVITE without Contact; using the source address")
        return None

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

    def _note_siprec_quirks(self, request: Request, body, session) -> None:
        require = request.option_tags("Require")
        src_contact = False
        try:
            src_contact = any("+sip.src" in c.params or "+sip.src" in c.uri.params
                              for c in request.contacts())
        except HeaderError:
            pass
        if body.metadata and "siprec" not in require and not src_contact:
            session.tolerate("SIPREC INVITE without 'Require: siprec' or '+sip.src'; recognised by its metadata")
        if not body.metadata:
            session.tolerate("INVITE without recording metadata; recording as a plain call")
        if request.headers.get("Proxy-Require"):
            session.tolerate("Proxy-Require ignored (it is meant for proxies)")


# -- request checks shared by INVITE, re-INVITE and UPDATE (raise CallRejected) ----

def _unsupported(request: Request) -> List[str]:
    """Require option-tags we do not support (RFC 3261 §8.2.2.3); Proxy-Require is not ours."""
    return [t for t in request.option_tags("Require") if t not in SUPPORTED_OPTIONS]


def _check_extensions(request: Request) -> None:
    unsupported = _unsupported(request)
    if unsupported:
        raise CallRejected(420, headers=[("Unsupported", ", ".join(unsupported))])
    encodings = [e for e in request.option_tags("Content-Encoding") if e not in _IDENTITY_ENCODINGS]
    if encodings and request.body:
        # RFC 3261 §8.2.3: an encoding we cannot undo is a 415 with what we accept.
        raise CallRejected(415, headers=[("Accept", ACCEPTED_TYPES), ("Accept-Encoding", "identity")])


def _split_body(request: Request):
    try:
        return split_siprec_body(request.content_type, request.body,
                                 request.headers.get("Content-Disposition"))
    except UnsupportedBody:
        raise CallRejected(415, headers=[("Accept", ACCEPTED_TYPES)])
    except MultipartError as e:
        raise CallRejected(400, reason_phrase(f"Malformed multipart body: {e}"))


def _parse_offer(body) -> Optional[SessionDescription]:
    if body.sdp is None:
        return None
    try:
        return parse_sdp(body.sdp)
    except SdpParseError as e:
        raise CallRejected(400, reason_phrase(f"Malformed SDP: {e}"))


def _supports_timer(request: Request) -> bool:
    """The UAC takes part in session timers: 'timer' in Supported (or, oddly, only in Require)."""
    return "timer" in request.option_tags("Supported") or "timer" in request.option_tags("Require")


def _delta_seconds(text: Optional[str]) -> Optional[int]:
    """RFC 3261 delta-seconds (the value before any parameters), or None."""
    if text is None:
        return None
    value = text.partition(";")[0].strip()
    if not value or len(value) > 10 or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def _allows(request: Request, method: str) -> bool:
    """Whether the peer's Allow lists ``method``; no Allow header says nothing, so yes."""
    if "Allow" not in request.headers:
        return True
    return method in {m.strip().upper() for m in request.headers.get_all("Allow")}

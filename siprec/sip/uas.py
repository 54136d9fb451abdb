"""The SRS user agent server: SIP requests in, recording sessions driven.

This is the transaction user of :mod:`siprec.sip.transaction`. It decides
every answer (RFC 3261, RFC 4028 session timers, RFC 7866 SIPREC) and hands
media and metadata to a :class:`CallHandler` (the recording manager). It is
liberal with what SRCs send and strict with what it sends: each tolerated
quirk is logged once per call via ``session.tolerate``.
"""

from __future__ import annotations

import re
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
from siprec.sip.headers import HeaderError, SipURI, parse_params
from siprec.sip.message import Request, Response, SipParseError, make_response
from siprec.sip.sdp import SdpParseError, SessionDescription, parse_sdp
from siprec.sip.transaction import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    Peer,
    ServerTransaction,
    Timers,
    TransactionLayer,
)

log = Logger()

__all__ = ["SipCore", "UasSettings", "CallRejected", "CallHandler", "ALLOWED_METHODS"]

ALLOWED_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "PRACK")
SUPPORTED_OPTIONS = ("siprec", "timer", "100rel")
ACCEPTED_TYPES = "application/sdp, application/rs-metadata+xml, application/rs-metadata"
# Vendor headers worth keeping in the call record besides X-* and P-*.
_RECORD_HEADERS = ("From", "To", "Call-ID", "Contact", "User-Agent", "Session-ID",
                   "Diversion", "History-Info", "User-to-User", "Subject", "Organization")


class CallRejected(Exception):
    """Raised by the call handler to refuse an offer with a SIP status."""

    def __init__(self, status: int, reason: Optional[str] = None,
                 headers: Sequence[Tuple[str, str]] = ()):
        super().__init__(f"{status} {reason or ''}".strip())
        self.status = status
        self.reason = reason
        self.headers = list(headers)


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
    interval: float
    refresher: str  # "uac" (the SRC refreshes) or "uas" (we do)
    call: Optional[IDelayedCall] = None


class _DialogState:
    """What the UAS tracks per dialog beside RFC 3261 dialog state."""

    def __init__(self) -> None:
        self.invite_tx: Optional[InviteServerTransaction] = None
        self.invite_cseq: int = 0
        self.awaiting_answer = False  # our 200 carried an offer; the ACK brings the answer
        self.timer: Optional[SessionTimer] = None
        self.last_ok: Optional[Response] = None


class SipCore:
    """Transaction user for the SRS. One per server; transports feed it."""

    def __init__(self, clock: IReactorTime, handler: CallHandler, settings: UasSettings,
                 metrics=None, peer_for_dialog: Optional[Callable[[Dialog], Peer]] = None):
        self.clock = clock
        self.handler = handler
        self.settings = settings
        self.metrics = metrics
        self.layer = TransactionLayer(clock, self, settings.timers)
        self.dialogs = DialogTable()
        self._state: Dict[Tuple, _DialogState] = {}
        self._pending: Dict[int, RecordingCall] = {}  # id(invite tx) -> session being set up
        self.peer_for_dialog = peer_for_dialog
        self.accepting = True

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
            log.info("Dropped malformed SIP message from {remote}: {reason}",
                     remote=peer.remote, reason=error.reason)
            return
        log.info("Rejecting malformed {method} from {remote}: {status} {reason}",
                 method=request.method or "request", remote=peer.remote,
                 status=error.status, reason=error.reason)
        response = make_response(request, error.status, _reason_phrase(error.reason),
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
            self._respond(tx, 405, headers=[("Allow", ", ".join(ALLOWED_METHODS))])
            return
        if method == "OPTIONS":
            self._respond(tx, 200, headers=self._capabilities())
            return
        to_tag = request.to.tag
        from_tag = request.from_.tag
        dialog, exact = self.dialogs.find(request.call_id, to_tag, from_tag)
        if method == "INVITE" and to_tag is None and dialog is None:
            self._new_call(tx)
            return
        if dialog is None:
            self._respond(tx, 481)
            return
        session = dialog.session
        if not exact:
            if to_tag is None:
                if method == "INVITE" and request.cseq.number == self._st(dialog).invite_cseq:
                    self._retransmitted_invite(tx, dialog)
                    return
                session.tolerate(f"{method} without To-tag matched to the dialog by Call-ID and From-tag")
            else:
                session.tolerate(f"{method} with unknown To-tag {to_tag} matched by Call-ID and From-tag")
        self._in_dialog(tx, dialog)

    def handle_ack(self, request: Request, peer: Peer) -> None:
        try:
            dialog, exact = self.dialogs.find(request.call_id, request.to.tag, request.from_.tag)
        except HeaderError:
            return
        if dialog is None:
            log.debug("ACK outside any dialog for {call_id}", call_id=request.headers.get("Call-ID"))
            return
        state = self._st(dialog)
        if not exact:
            dialog.session.tolerate("ACK matched to the dialog by Call-ID and From-tag")
        if state.invite_tx is not None:
            state.invite_tx.ack_for_2xx()
            state.invite_tx = None
        dialog.confirmed = True
        if state.awaiting_answer:
            state.awaiting_answer = False
            if request.body:
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
            else:
                dialog.session.tolerate("ACK carried no SDP answer to our offer; streams kept as they were")

    def handle_cancel(self, cancel: NonInviteServerTransaction,
                      invite: Optional[InviteServerTransaction]) -> None:
        if invite is None:
            self._respond(cancel, 481)
            return
        self._respond(cancel, 200)
        if invite.final_sent:
            return  # RFC 3261 §9.2: too late, the CANCEL has no effect
        self._respond(invite, 487)
        session = self._pending.pop(id(invite), None)
        if session is not None:
            log.info("Call {call_id} cancelled by the SRC before it was answered",
                     call_id=invite.request.call_id)
            session.end("cancelled")

    def ack_timeout(self, tx: InviteServerTransaction) -> None:
        request = tx.request
        dialog = self._dialog_for_tx(tx)
        if dialog is None:
            return
        if request.to.tag is None:
            log.warn("No ACK for the 200 OK to INVITE {call_id} within {t}s: ending the call",
                     call_id=dialog.call_id, t=self.settings.timers.timeout)
            self.terminate(dialog, "ack-timeout")
        else:
            log.warn("No ACK for the 200 OK to re-INVITE in {call_id}; keeping the recording",
                     call_id=dialog.call_id)

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
        unsupported = [t for t in request.option_tags("Require") if t not in SUPPORTED_OPTIONS]
        if unsupported:
            self._respond(tx, 420, headers=[("Unsupported", ", ".join(unsupported))])
            return
        try:
            body = split_siprec_body(request.content_type, request.body,
                                     request.headers.get("Content-Disposition"))
        except UnsupportedBody as e:
            self._respond(tx, 415, headers=[("Accept", ACCEPTED_TYPES)])
            log.info("Rejected INVITE {call_id}: unsupported body {error}",
                     call_id=request.call_id, error=e)
            return
        except MultipartError as e:
            self._respond(tx, 400, _reason_phrase(f"Malformed multipart body: {e}"))
            return
        if not body.metadata and self.settings.require_metadata:
            self._respond(tx, 403, "Recording metadata required")
            return
        offer = None
        if body.sdp is not None:
            try:
                offer = parse_sdp(body.sdp)
            except SdpParseError as e:
                self._respond(tx, 400, _reason_phrase(f"Malformed SDP: {e}"))
                return
        timer = self._negotiate_timer(tx)
        if timer is None:
            return
        session = self.handler.create_session(request.call_id, self._sip_info(request, tx.peer))
        for note in body.tolerances:
            session.tolerate(note)
        self._note_siprec_quirks(request, body, session)
        self._pending[id(tx)] = session
        d = maybeDeferred(session.offer, offer, body.metadata)
        d.addCallbacks(self._answered, self._offer_failed,
                       callbackArgs=(tx, session, timer, offer is None),
                       errbackArgs=(tx, session))
        d.addErrback(lambda f: log.failure("Answering INVITE failed", f))

    def _answered(self, sdp: SessionDescription, tx, session, timer, we_offered: bool):
        if self._pending.pop(id(tx), None) is None or tx.final_sent:
            # cancelled meanwhile; handle_cancel ended the session
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
        state = self._st(dialog)
        state.invite_tx = tx
        state.invite_cseq = request.cseq.number
        state.awaiting_answer = we_offered
        state.timer = timer
        response = self._ok(request, dialog, sdp, timer)
        state.last_ok = response
        tx.respond(response)
        self._count(response, "INVITE")
        self._arm_timer(dialog)
        if hasattr(session, "attach_dialog"):
            session.attach_dialog(dialog)

    def _offer_failed(self, failure: Failure, tx, session):
        self._pending.pop(id(tx), None)
        if failure.check(CallRejected):
            self._reject(tx, failure.value)
        else:
            log.failure("Could not set up recording for {call_id}", failure,
                        call_id=tx.request.call_id)
            if not tx.final_sent:
                self._respond(tx, 500, "Could not set up the recording")
        session.end("rejected")

    def _retransmitted_invite(self, tx, dialog: Dialog) -> None:
        """Same INVITE again on a new branch: answer it again, never a second call."""
        state = self._st(dialog)
        dialog.session.tolerate("INVITE retransmitted with a new Via branch; answered from the dialog")
        if state.last_ok is not None:
            response = make_response(tx.request, 200, to_tag=dialog.local_tag,
                                     headers=[(n, v) for n, v in state.last_ok.headers
                                              if n not in ("Via", "From", "To", "Call-ID", "CSeq")],
                                     body=state.last_ok.body)
            tx.respond(response)

    # -- in-dialog -------------------------------------------------------------
    def _in_dialog(self, tx: ServerTransaction, dialog: Dialog) -> None:
        request = tx.request
        method = request.method
        session = dialog.session
        dialog.peer = tx.peer
        check = dialog.check_cseq(request.cseq.number)
        if check == CSeqCheck.OUT_OF_ORDER:
            if method in ("INVITE", "UPDATE"):
                self._respond(tx, 500, "Out of order CSeq", headers=[("Retry-After", "1")])
                return
            session.tolerate(f"{method} with a lower CSeq than an earlier request accepted anyway")
        dialog.accept_cseq(request.cseq.number)
        if method == "BYE":
            self._bye(tx, dialog)
        elif method in ("INVITE", "UPDATE"):
            self._modify(tx, dialog)
        elif method == "PRACK":
            # We never send reliable provisional responses, so nothing can match.
            self._respond(tx, 481, "No reliable provisional response to acknowledge")
        else:
            self._respond(tx, 405, headers=[("Allow", ", ".join(ALLOWED_METHODS))])

    def _bye(self, tx, dialog: Dialog) -> None:
        request = tx.request
        session = dialog.session
        if request.body:
            try:
                body = split_siprec_body(request.content_type, request.body,
                                         request.headers.get("Content-Disposition"))
                if body.metadata:
                    session.metadata_received(body.metadata)
            except (MultipartError, UnsupportedBody) as e:
                session.tolerate(f"BYE body ignored: {e}")
        self._respond(tx, 200)
        self._close_dialog(dialog)
        session.end("bye")

    def _modify(self, tx, dialog: Dialog) -> None:
        request = tx.request
        state = self._st(dialog)
        session = dialog.session
        is_invite = request.method == "INVITE"
        if is_invite and (state.awaiting_answer or
                          (state.invite_tx is not None and not state.invite_tx.final_sent)):
            self._respond(tx, 491)
            return
        unsupported = [t for t in request.option_tags("Require") if t not in SUPPORTED_OPTIONS]
        if unsupported:
            self._respond(tx, 420, headers=[("Unsupported", ", ".join(unsupported))])
            return
        try:
            body = split_siprec_body(request.content_type, request.body,
                                     request.headers.get("Content-Disposition"))
        except UnsupportedBody:
            self._respond(tx, 415, headers=[("Accept", ACCEPTED_TYPES)])
            return
        except MultipartError as e:
            self._respond(tx, 400, _reason_phrase(f"Malformed multipart body: {e}"))
            return
        for note in body.tolerances:
            session.tolerate(note)
        offer = None
        if body.sdp is not None:
            try:
                offer = parse_sdp(body.sdp)
            except SdpParseError as e:
                self._respond(tx, 400, _reason_phrase(f"Malformed SDP: {e}"))
                return
        timer = self._negotiate_timer(tx, current=state.timer)
        if timer is None:
            return
        if offer is None and not is_invite:
            # UPDATE without SDP: metadata (or a session refresh) only.
            if body.metadata:
                session.metadata_received(body.metadata)
            state.timer = timer
            response = self._ok(request, dialog, None, timer)
            tx.respond(response)
            self._count(response, request.method)
            self._arm_timer(dialog)
            return
        if is_invite:
            state.invite_tx = tx
            state.invite_cseq = request.cseq.number
        d = maybeDeferred(session.offer, offer, body.metadata)
        d.addCallbacks(self._modified, self._modify_failed,
                       callbackArgs=(tx, dialog, timer, offer is None),
                       errbackArgs=(tx, dialog))
        d.addErrback(lambda f: log.failure("Answering re-offer failed", f))

    def _modified(self, sdp, tx, dialog, timer, we_offered):
        state = self._st(dialog)
        state.timer = timer
        if tx.request.method == "INVITE":
            state.awaiting_answer = we_offered
        response = self._ok(tx.request, dialog, sdp, timer)
        if tx.request.method == "INVITE":
            state.last_ok = response
        tx.respond(response)
        self._count(response, tx.request.method)
        self._arm_timer(dialog)

    def _modify_failed(self, failure: Failure, tx, dialog):
        state = self._st(dialog)
        if state.invite_tx is tx:
            state.invite_tx = None
        if failure.check(CallRejected):
            # RFC 3261 §14.2: a failed re-INVITE leaves the session as it was.
            self._reject(tx, failure.value)
        else:
            log.failure("Could not apply the re-offer in {call_id}", failure, call_id=dialog.call_id)
            self._respond(tx, 500, "Could not apply the new offer")

    # -- session timers (RFC 4028) --------------------------------------------
    def _negotiate_timer(self, tx, current: Optional[SessionTimer] = None):
        """The session timer to use, or None after answering 422."""
        request = tx.request
        se_text = request.headers.get("Session-Expires")
        min_se = self.settings.min_se
        if se_text is None:
            if "timer" in request.option_tags("Supported") and current is None:
                return SessionTimer(self.settings.session_expires, "uac")
            return current or SessionTimer(0, "uac")
        value, _, params_text = se_text.partition(";")
        value = value.strip()
        if not value.isdigit():
            self._respond(tx, 400, "Malformed Session-Expires")
            return None
        interval = int(value)
        if interval < min_se:
            self._respond(tx, 422, headers=[("Min-SE", str(int(min_se)))])
            return None
        try:
            refresher = parse_params(params_text).get("refresher") or "uac"
        except HeaderError:
            refresher = "uac"
        return SessionTimer(float(interval), refresher.lower() if refresher.lower() in ("uac", "uas") else "uac")

    def _arm_timer(self, dialog: Dialog) -> None:
        state = self._st(dialog)
        timer = state.timer
        if timer is None:
            return
        if timer.call is not None and timer.call.active():
            timer.call.cancel()
        timer.call = None
        if timer.interval <= 0:
            return
        if timer.refresher == "uac":
            # RFC 4028 §10: BYE shortly before expiry when no refresh arrives.
            delay = timer.interval - min(32.0, timer.interval / 3)
            timer.call = self.clock.callLater(delay, self._session_expired, dialog)
        else:
            timer.call = self.clock.callLater(timer.interval / 2, self._refresh, dialog)

    def _session_expired(self, dialog: Dialog) -> None:
        if dialog.terminated:
            return
        log.warn("Session timer expired for {call_id}: the SRC did not refresh within {s}s; ending",
                 call_id=dialog.call_id, s=self._st(dialog).timer.interval)
        self.terminate(dialog, "session-timer-expired")

    def _refresh(self, dialog: Dialog) -> None:
        """We are the refresher: send an UPDATE without a body (RFC 4028 §7.4)."""
        if dialog.terminated:
            return
        state = self._st(dialog)
        d = self._send_in_dialog(dialog, "UPDATE", extra=[
            ("Session-Expires", f"{int(state.timer.interval)};refresher=uas"),
            ("Supported", "timer")])

        def done(response):
            if 200 <= response.status < 300:
                self._arm_timer(dialog)
            else:
                log.warn("Session refresh UPDATE for {call_id} answered {status}; ending",
                         call_id=dialog.call_id, status=response.status)
                self.terminate(dialog, "session-refresh-failed")

        def failed(f):
            log.warn("Session refresh for {call_id} failed: {error}", call_id=dialog.call_id,
                     error=f.getErrorMessage())
            self.terminate(dialog, "session-refresh-failed")

        d.addCallbacks(done, failed)

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
        if self.peer_for_dialog is None:
            return succeed(Response(200))
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
        if state and state.timer and state.timer.call and state.timer.call.active():
            state.timer.call.cancel()
        self.dialogs.remove(dialog)

    def stop_accepting(self) -> None:
        self.accepting = False

    def close(self) -> None:
        """After draining: cancel session timers and transaction timers."""
        for dialog in list(self.dialogs):
            self._close_dialog(dialog)
        self.layer.close()

    def active_dialogs(self) -> List[Dialog]:
        return list(self.dialogs)

    # -- helpers -----------------------------------------------------------------
    def _st(self, dialog: Dialog) -> _DialogState:
        state = self._state.get(dialog.key)
        if state is None:
            state = self._state[dialog.key] = _DialogState()
        return state

    def _dialog_for_tx(self, tx) -> Optional[Dialog]:
        for dialog in self.dialogs:
            if self._st(dialog).invite_tx is tx:
                return dialog
        return None

    def _ok(self, request: Request, dialog: Dialog, sdp: Optional[SessionDescription],
            timer: Optional[SessionTimer]) -> Response:
        headers = [("Contact", contact_value(self.settings.host, dialog.peer.local[1],
                                             dialog.peer.transport))]
        headers += self._capabilities()
        if timer is not None and timer.interval > 0:
            headers.append(("Session-Expires", f"{int(timer.interval)};refresher={timer.refresher}"))
            if "timer" in request.option_tags("Supported") or "Session-Expires" in request.headers:
                headers.append(("Require", "timer"))
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
                 headers: Sequence[Tuple[str, str]] = ()) -> None:
        if status == 405 and not any(n == "Allow" for n, _ in headers):
            headers = list(headers) + [("Allow", ", ".join(ALLOWED_METHODS))]
        response = make_response(tx.request, status, reason,
                                 to_tag=new_tag() if status > 100 else None,
                                 headers=headers)
        self._decorate(response)
        tx.respond(response)
        self._count(response, tx.request.method)
        if status >= 400:
            log.info("{method} {call_id} answered {status} {reason}", method=tx.request.method,
                     call_id=tx.request.headers.get("Call-ID"), status=status,
                     reason=response.reason)

    def _reject(self, tx, rejected: CallRejected) -> None:
        self._respond(tx, rejected.status, rejected.reason, headers=rejected.headers)

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


def _reason_phrase(text: str) -> str:
    """Make free text safe for a status line: one line, printable, bounded."""
    text = re.sub(r"[\r\n\t]+", " ", text)
    text = "".join(ch for ch in text if ch.isprintable())
    return text[:120] or "Bad Request"

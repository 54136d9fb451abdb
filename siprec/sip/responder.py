"""Every response the UAS sends is built, sent and counted here.

One place decides what each answer carries (Server, Allow on 405, our
capabilities and Contact in a 2xx, the session timer) so that the rest of
the UAS only says which status to send.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from siprec.sip import session_timer
from siprec.sip.capabilities import ALLOWED_METHODS, capability_headers
from siprec.sip.datagram import fit_datagram
from siprec.sip.dialog import Dialog, contact_value, new_tag
from siprec.sip.errors import CallRejected
from siprec.sip.headers import HeaderError
from siprec.sip.log_budget import LogBudget
from siprec.sip.message import Request, Response, make_response
from siprec.sip.sdp import SessionDescription
from siprec.sip.transaction import InviteServerTransaction, Peer, ServerTransaction
from siprec.sip.uas_settings import UasSettings

log = Logger()

__all__ = ["Responder"]

# Copied from a final response when it answers a retransmission on a new branch.
_OWN_HEADERS = frozenset({"Via", "From", "To", "Call-ID", "CSeq", "Content-Length"})


#: told of every new INVITE answered with an error: (request, response, peer)
OnRefused = Callable[[Request, Response, Peer], None]


def _is_new_invite(request: Request) -> bool:
    try:
        return request.method == "INVITE" and request.to.tag is None
    except HeaderError:
        return request.method == "INVITE"


class Responder:
    """Builds, sends and counts the UAS's responses; logs refusals within a budget.

    ``on_refused`` hears of each new INVITE answered 3xx-6xx (once per
    INVITE: copies to retransmissions on other branches are not news), so
    that every call an SRC offered is accounted for.
    """

    def __init__(self, clock: IReactorTime, settings: UasSettings, metrics=None,
                 on_refused: Optional[OnRefused] = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.on_refused = on_refused
        self._reject_log = LogBudget(clock, "rejected requests")

    def build(self, request: Request, status: int, reason: Optional[str] = None,
              headers: Sequence[Tuple[str, str]] = (), to_tag: Optional[str] = None,
              body: bytes = b"") -> Response:
        """A response to ``request``; a To-tag on every non-100 (ours or ``to_tag``)."""
        headers = list(headers)
        if status == 405 and not any(n == "Allow" for n, _ in headers):
            headers.append(("Allow", ", ".join(ALLOWED_METHODS)))
        response = make_response(request, status, reason,
                                 to_tag=(to_tag or new_tag()) if status > 100 else None,
                                 headers=headers, body=body)
        response.headers.add("Server", self.settings.user_agent)
        return response

    def respond(self, tx: ServerTransaction, status: int, reason: Optional[str] = None,
                headers: Sequence[Tuple[str, str]] = (),
                to_tag: Optional[str] = None) -> Response:
        """Build, send and count one response; ``to_tag`` is the dialog's when there is one."""
        response = self.build(tx.request, status, reason, headers, to_tag)
        self.send(tx, response)
        if status >= 400 and self._reject_log.allow():
            log.info("{method} {call_id} answered {status} {reason}", method=tx.request.method,
                     call_id=tx.request.headers.get("Call-ID"), status=status,
                     reason=response.reason)
        return response

    def reject(self, tx: ServerTransaction, rejected: CallRejected,
               to_tag: Optional[str] = None) -> Response:
        return self.respond(tx, rejected.status, rejected.reason, headers=rejected.headers,
                            to_tag=to_tag)

    def send(self, tx: ServerTransaction, response: Response, copy: bool = False) -> None:
        tx.respond(response)
        self.count(response, tx.request.method)
        if not copy and response.status >= 300 and _is_new_invite(tx.request):
            self._refused(tx.request, response, tx.peer)

    def _refused(self, request: Request, response: Response, peer: Peer) -> None:
        if self.on_refused is None:
            return
        try:
            self.on_refused(request, response, peer)
        except Exception:
            log.failure("Accounting for a refused INVITE failed")

    def ok(self, request: Request, dialog: Dialog, sdp: Optional[SessionDescription],
           plan: Optional[session_timer.TimerPlan]) -> Response:
        """Our 2xx in a dialog: Contact +sip.srs, capabilities, session timer, SDP if any."""
        headers: List[Tuple[str, str]] = []
        if request.method == "INVITE":
            # RFC 3261 §12.1.1: Record-Route copied, in order, into the 2xx.
            headers += [(n, v) for n, v in request.headers if n == "Record-Route"]
        headers.append(("Contact", contact_value(self.settings.host, dialog.peer.local[1],
                                                 dialog.peer.transport)))
        headers += capability_headers()
        headers += session_timer.answer_headers(plan, request)
        body = b""
        if sdp is not None:
            headers.append(("Content-Type", "application/sdp"))
            body = sdp.to_bytes()
        return self.build(request, 200, headers=headers, to_tag=dialog.local_tag, body=body)

    def copy_final(self, tx: InviteServerTransaction, final: Response) -> None:
        """The final answer of one INVITE given to a copy of it on another branch."""
        try:
            tag = final.to.tag
        except HeaderError:
            tag = None
        response = make_response(tx.request, final.status, final.reason, to_tag=tag or new_tag(),
                                 headers=[(n, v) for n, v in final.headers if n not in _OWN_HEADERS],
                                 body=final.body)
        self.send(tx, response, copy=True)

    def stateless(self, request: Request, status: int, reason: str, peer: Peer) -> None:
        """An answer outside any transaction (a request too broken for one)."""
        response = self.build(request, status, reason)
        if not peer.reliable:
            fitted = fit_datagram(response)
            if fitted is None:
                log.info("Dropped {status} to a malformed request from {remote}: too large "
                         "for UDP", status=status, remote=peer.remote)
                return
            response = fitted
        self.count(response, request.method)
        if response.status >= 300 and _is_new_invite(request):
            self._refused(request, response, peer)
        try:
            peer.send(response.to_bytes())
        except Exception as e:
            log.warn("Could not send {status}: {error}", status=response.status, error=e)

    def count(self, response: Response, method: str) -> None:
        if self.metrics:
            self.metrics.sip_response(method, response.status)

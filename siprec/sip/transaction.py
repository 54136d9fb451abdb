"""RFC 3261 §17 transactions (with the RFC 6026 "Accepted" state).

Each transaction is a small state machine driven by messages and by
timers on an injected ``IReactorTime``; it sends bytes through the
:class:`Peer` it was created with and never touches a socket itself.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Dict, Hashable, Optional, Protocol, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from siprec.sip.datagram import MAX_DATAGRAM, fit_datagram
from siprec.sip.headers import HeaderError
from siprec.sip.log_budget import LogBudget
from siprec.sip.message import Request, Response, make_response

log = Logger()

__all__ = [
    "Timers",
    "Peer",
    "TransactionUser",
    "TransactionLayer",
    "InviteServerTransaction",
    "NonInviteServerTransaction",
    "ClientTransaction",
    "TransactionTimeout",
    "TransactionClosed",
    "State",
    "server_key",
]


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 timer bases (seconds).

    ``trying`` is how long an INVITE server transaction waits for the TU's
    first response before sending ``100 Trying`` itself (RFC 3261 §17.2.1
    says 200 ms); None turns that off.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying: Optional[float] = 0.2

    @property
    def timeout(self) -> float:  # Timers B, F, H, J, L
        return 64 * self.t1


class Peer(Protocol):
    """Where a message came from and how to answer it (built by the transport)."""

    transport: str  # "UDP", "TCP", "TLS"
    reliable: bool  # False: one datagram per message, so at most MAX_DATAGRAM bytes
    remote: Tuple[str, int]
    local: Tuple[str, int]

    def send(self, data: bytes) -> None: ...


class TransactionUser(Protocol):
    def handle_request(self, tx: "ServerTransaction") -> None: ...
    def handle_ack(self, request: Request, peer: Peer) -> None: ...
    def handle_cancel(self, cancel: "NonInviteServerTransaction",
                      invite: "Optional[InviteServerTransaction]") -> None: ...
    def ack_timeout(self, tx: "InviteServerTransaction") -> None: ...


class State(enum.Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class TransactionTimeout(Exception):
    """No final response arrived before Timer F."""


class TransactionClosed(TransactionTimeout):
    """The layer was closed (shutdown) before a final response arrived."""


def server_key(request: Request) -> Hashable:
    """RFC 3261 §17.2.3 matching key; the method is always the last element.

    ACK maps onto its INVITE. A CANCEL has its own key; replacing its last
    element with "INVITE" gives the key of the INVITE it cancels.
    """
    via = request.top_via
    method = request.method
    if method == "ACK":
        method = "INVITE"
    if via.rfc3261_branch:
        return ("3261", via.branch, via.sent_by, method)
    # RFC 2543 peers (no magic cookie): Request-URI, From tag, Call-ID, CSeq
    # number and the top Via. The To tag is left out: an ACK for a non-2xx
    # carries the tag our response added, the INVITE did not.
    return ("2543", request.uri, request.from_.tag, request.call_id, request.cseq.number,
            via.sent_by, via.branch, method)


class _Base:
    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, peer: Peer):
        self.layer = layer
        self.key = key
        self.request = request
        self.peer = peer
        self.state = State.TRYING
        self.last_response: Optional[Response] = None
        self._send_failed = False
        self._timers: Dict[str, IDelayedCall] = {}
        self.created_at = layer.clock.seconds()

    @property
    def timers(self) -> Timers:
        return self.layer.timers

    def _start(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self._cancel(name)
        self._timers[name] = self.layer.clock.callLater(delay, self._fire, name, fn)

    def _fire(self, name: str, fn: Callable[[], None]) -> None:
        self._timers.pop(name, None)
        fn()

    def _cancel(self, name: str) -> None:
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _fit(self, response: Response) -> Response:
        """A final response too large for one datagram becomes a 513 (RFC 3261 §21.5.4)."""
        if self.peer.reliable or response.status < 200:
            return response
        fitted = fit_datagram(response)
        if fitted is None:
            return response  # not even a 513 fits: _send drops it and says so
        if fitted is not response and self.layer.oversize_log.allow():
            log.warn("{status} for {method} {call_id} is {n} bytes, too large for UDP; "
                     "sent 513 instead", status=response.status, method=self.request.method,
                     call_id=self.request.headers.get("Call-ID"), n=len(response.to_bytes()))
        return fitted

    def _send(self, response: Response) -> None:
        data = response.to_bytes()
        if not self.peer.reliable and len(data) > MAX_DATAGRAM:
            if not self._send_failed:
                self._send_failed = True
                if self.layer.oversize_log.allow():
                    log.warn("Dropped {status} for {method} {call_id}: {n} bytes do not fit in "
                             "a UDP datagram, not even as a 513", status=response.status,
                             method=self.request.method,
                             call_id=self.request.headers.get("Call-ID"), n=len(data))
            return
        try:
            self.peer.send(data)
        except (ConnectionError, OSError, MessageLengthError) as e:
            # A closed TCP/TLS connection, an unreachable address or a datagram
            # the socket refuses: say so once.
            if not self._send_failed:
                self._send_failed = True
                log.warn("Could not send {status} for {method} to {peer}: {error}",
                         status=response.status, method=self.request.method,
                         peer=self.peer.remote, error=e)
        except Exception:
            log.failure("Could not send {status} for {method}", status=response.status,
                        method=self.request.method)

    def terminate(self) -> None:
        if self.state is State.TERMINATED:
            return
        self.state = State.TERMINATED
        for name in list(self._timers):
            self._cancel(name)
        self.layer._forget(self)


class ServerTransaction(_Base, ABC):
    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def start(self) -> None:
        """Arm the timers a fresh transaction needs (called by the layer, not the constructor)."""

    @abstractmethod
    def respond(self, response: Response) -> None:
        """Send a response from the TU through this transaction."""


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 as updated by RFC 6026 §7.1."""

    def __init__(self, layer, key, request, peer):
        super().__init__(layer, key, request, peer)
        self.state = State.PROCEEDING
        self.acked = False

    def start(self) -> None:
        # RFC 3261 §17.2.1: 100 Trying when the TU has not answered within
        # 200 ms. Waiting (rather than sending at once) saves a packet for
        # every INVITE the TU answers synchronously (rejections, 200s from a
        # fast offer/answer) while still stopping the SRC's Timer A
        # retransmissions, which start at T1 = 500 ms, when it is slow.
        if self.timers.trying is not None:
            self._start("100", self.timers.trying, self._send_trying)

    def _send_trying(self) -> None:
        if self.last_response is None and self.state is State.PROCEEDING:
            self.last_response = make_response(self.request, 100)
            self._send(self.last_response)

    def respond(self, response: Response) -> None:
        if self.state not in (State.PROCEEDING, State.ACCEPTED):
            log.warn("Dropping {status} for INVITE: transaction is {state}",
                     status=response.status, state=self.state.value)
            return
        if self.state is State.ACCEPTED:
            # RFC 6026 §7.1: only 2xx can follow a 2xx, and ours is being
            # retransmitted already.
            if response.status >= 300:
                log.warn("Dropping {status} for INVITE: a 2xx was sent already",
                         status=response.status)
            return
        self._cancel("100")
        response = self._fit(response)
        self.last_response = response
        self._send(response)
        if response.status < 200:
            return
        if response.status < 300:
            self.state = State.ACCEPTED
            self._retransmit_interval = self.timers.t1
            self._start("2xx", self._retransmit_interval, self._retransmit_2xx)
            self._start("L", self.timers.timeout, self._timer_l)
        else:
            self.state = State.COMPLETED
            if not self.peer.reliable:
                self._retransmit_interval = self.timers.t1
                self._start("G", self._retransmit_interval, self._timer_g)
            self._start("H", self.timers.timeout, self._timer_h)

    def retransmission(self, request: Request) -> None:
        """Answer a retransmitted INVITE from the transaction (absorbed once Confirmed)."""
        if self.state in (State.PROCEEDING, State.ACCEPTED, State.COMPLETED):
            if self.last_response is None:
                self._cancel("100")
                self._send_trying()  # the TU is slow and the peer is asking again
            else:
                self._send(self.last_response)

    def receive_ack(self, request: Request) -> bool:
        """An ACK matching this transaction; True when it was absorbed here."""
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self._cancel("G")
            self._cancel("H")
            self._start("I", 0 if self.peer.reliable else self.timers.t4, self.terminate)
            return True
        if self.state is State.CONFIRMED:
            return True
        return False

    def ack_for_2xx(self) -> None:
        """The dialog received the ACK for our 2xx: stop retransmitting it."""
        self.acked = True
        self._cancel("2xx")

    def _retransmit_2xx(self) -> None:
        if self.state is not State.ACCEPTED or self.acked:
            return
        self._send(self.last_response)
        self._retransmit_interval = min(self._retransmit_interval * 2, self.timers.t2)
        self._start("2xx", self._retransmit_interval, self._retransmit_2xx)

    def _timer_g(self) -> None:
        if self.state is not State.COMPLETED:
            return
        self._send(self.last_response)
        self._retransmit_interval = min(self._retransmit_interval * 2, self.timers.t2)
        self._start("G", self._retransmit_interval, self._timer_g)

    def _timer_h(self) -> None:
        log.info("No ACK for {status} to INVITE {call_id} (Timer H)",
                 status=self.last_response.status, call_id=self.request.headers.get("Call-ID"))
        self.terminate()

    def _timer_l(self) -> None:
        if not self.acked:
            self.layer.tu.ack_timeout(self)
        self.terminate()


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2."""

    def start(self) -> None:
        # Not in the RFC: a TU that never answers would leave the transaction
        # in the table forever. The client gives up at Timer F (64*T1), so
        # nothing is lost by forgetting it then.
        self._start("guard", self.timers.timeout, self._unanswered)

    def _unanswered(self) -> None:
        if not self.final_sent:
            log.warn("No final response to {method} {call_id} within {t:g}s; forgetting it",
                     method=self.request.method, call_id=self.request.headers.get("Call-ID"),
                     t=self.timers.timeout)
            self.terminate()

    def respond(self, response: Response) -> None:
        if self.state in (State.COMPLETED, State.TERMINATED):
            log.warn("Dropping {status} for {method}: transaction already answered",
                     status=response.status, method=self.request.method)
            return
        response = self._fit(response)
        self.last_response = response
        self._send(response)
        if response.status < 200:
            self.state = State.PROCEEDING
            return
        self.state = State.COMPLETED
        self._cancel("guard")
        self._start("J", 0 if self.peer.reliable else self.timers.timeout, self.terminate)

    def retransmission(self, request: Request) -> None:
        """Trying absorbs it; Proceeding and Completed resend the last response."""
        if self.last_response is not None:
            self._send(self.last_response)


class ClientTransaction(_Base):
    """RFC 3261 §17.1.2 non-INVITE client transaction (BYE, OPTIONS)."""

    def __init__(self, layer, key, request, peer):
        super().__init__(layer, key, request, peer)
        self.deferred: Deferred = Deferred()
        self._interval = self.timers.t1

    def start(self) -> None:
        self._transmit()
        if not self.peer.reliable:
            self._start("E", self._interval, self._timer_e)
        self._start("F", self.timers.timeout, self._timer_f)

    def _transmit(self) -> None:
        try:
            self.peer.send(self.request.to_bytes())
        except Exception as e:
            log.warn("Could not send {method}: {error}", method=self.request.method, error=e)

    def _timer_e(self) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        self._transmit()
        if self.state is State.PROCEEDING:
            self._interval = self.timers.t2
        else:
            self._interval = min(self._interval * 2, self.timers.t2)
        self._start("E", self._interval, self._timer_e)

    def _timer_f(self) -> None:
        if self.state in (State.TRYING, State.PROCEEDING):
            self.terminate()
            self.deferred.errback(TransactionTimeout(
                f"No final response to {self.request.method} within {self.timers.timeout:g}s"))

    def receive_response(self, response: Response) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        if response.status < 200:
            self.state = State.PROCEEDING
            return
        self.state = State.COMPLETED
        self._cancel("E")
        self._cancel("F")
        self._start("K", 0 if self.peer.reliable else self.timers.t4, self.terminate)
        self.deferred.callback(response)


class TransactionLayer:
    """Matches messages to transactions and hands new requests to the TU."""

    def __init__(self, clock: IReactorTime, tu: TransactionUser, timers: Timers = Timers()):
        self.clock = clock
        self.tu = tu
        self.timers = timers
        self.server: Dict[Hashable, ServerTransaction] = {}
        self.client: Dict[Hashable, ClientTransaction] = {}
        # Counted, not logged: a flood of strays must not become a flood of log lines.
        self.stray_responses = 0
        self.oversize_log = LogBudget(clock, "oversized responses")

    def receive_request(self, request: Request, peer: Peer) -> None:
        try:
            key = server_key(request)
        except HeaderError as e:  # parse_message checked these; be safe anyway
            log.warn("Dropping request without matchable headers: {error}", error=e)
            return
        if request.method == "ACK":
            tx = self.server.get(key)
            if isinstance(tx, InviteServerTransaction) and tx.receive_ack(request):
                return
            self.tu.handle_ack(request, peer)
            return
        if request.method == "CANCEL":
            existing = self.server.get(key)
            if existing is not None:
                existing.retransmission(request)
                return
            cancel = NonInviteServerTransaction(self, key, request, peer)
            self.server[cancel.key] = cancel
            cancel.start()
            invite = self.server.get(key[:-1] + ("INVITE",))
            if not isinstance(invite, InviteServerTransaction):
                invite = None
            self.tu.handle_cancel(cancel, invite)
            return
        tx = self.server.get(key)
        if tx is not None:
            tx.retransmission(request)
            return
        if request.method == "INVITE":
            tx = InviteServerTransaction(self, key, request, peer)
        else:
            tx = NonInviteServerTransaction(self, key, request, peer)
        self.server[key] = tx
        tx.start()
        self.tu.handle_request(tx)

    def receive_response(self, response: Response, peer: Peer) -> None:
        """RFC 3261 §17.1.3: match on the top Via branch and the CSeq method; ignore strays."""
        try:
            via = response.top_via
            key = (via.branch, response.cseq.method)
        except HeaderError:
            self.stray_responses += 1
            return
        tx = self.client.get(key)
        if tx is None:
            self.stray_responses += 1
            return
        tx.receive_response(response)

    def send_request(self, request: Request, peer: Peer) -> ClientTransaction:
        """Start a non-INVITE client transaction; its Deferred fires with the final response."""
        key = (request.top_via.branch, request.method)
        tx = ClientTransaction(self, key, request, peer)
        self.client[key] = tx
        tx.start()
        return tx

    def close(self) -> None:
        """Stop every transaction's timers (service shutdown).

        A client transaction still waiting fails its Deferred with
        :class:`TransactionClosed`, so nobody waits forever for a BYE's answer.
        """
        for tx in list(self.server.values()) + list(self.client.values()):
            waiting = isinstance(tx, ClientTransaction) and tx.state in (State.TRYING, State.PROCEEDING)
            tx.terminate()
            if waiting:
                tx.deferred.errback(TransactionClosed(
                    f"Transaction layer closed before a final response to {tx.request.method}"))

    def _forget(self, tx: _Base) -> None:
        table = self.client if isinstance(tx, ClientTransaction) else self.server
        if table.get(tx.key) is tx:
            del table[tx.key]

    def invite_transaction_for(self, request: Request) -> Optional[InviteServerTransaction]:
        """The INVITE transaction an ACK (for a 2xx) or CANCEL refers to, if alive."""
        try:
            key = server_key(request)
        except HeaderError:
            return None
        tx = self.server.get(key[:-1] + ("INVITE",))
        return tx if isinstance(tx, InviteServerTransaction) else None


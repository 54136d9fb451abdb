"""Tests for siprec.sip.transaction: RFC 3261 §17 (and RFC 6026) state machines.

Time is a twisted.internet.task.Clock; the Peer is a fake that records
what would have gone on the wire, and the TU a fake that records calls.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from siprec.sip.message import Request, Response, make_response, parse_message
from siprec.sip.transaction import (
    ClientTransaction,
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    State,
    Timers,
    TransactionClosed,
    TransactionLayer,
    TransactionTimeout,
    server_key,
)

T1, T2, T4 = 0.5, 4.0, 5.0
TIMEOUT = 64 * T1


class FakePeer:
    def __init__(self, clock: Clock, transport: str = "UDP",
                 remote: Tuple[str, int] = ("198.51.100.7", 5060)) -> None:
        self.clock = clock
        self.transport = transport
        self.reliable = transport != "UDP"
        self.remote = remote
        self.local = ("192.0.2.10", 5060)
        self.sent: List[Tuple[float, bytes]] = []
        self.fail = False

    def send(self, data: bytes) -> None:
        if self.fail:
            raise ConnectionError("gone")
        self.sent.append((self.clock.seconds(), data))

    def messages(self) -> list:
        return [parse_message(data) for _, data in self.sent]

    def statuses(self) -> List[int]:
        return [m.status for m in self.messages()]

    def times(self) -> List[float]:
        return [t for t, _ in self.sent]


class FakeTU:
    def __init__(self) -> None:
        self.requests: List[ServerTransaction] = []
        self.acks: List[Request] = []
        self.cancels: List[Tuple[NonInviteServerTransaction, Optional[InviteServerTransaction]]] = []
        self.ack_timeouts: List[InviteServerTransaction] = []
        self.on_request: Optional[Callable[[ServerTransaction], None]] = None

    def handle_request(self, tx: ServerTransaction) -> None:
        self.requests.append(tx)
        if self.on_request is not None:
            self.on_request(tx)

    def handle_ack(self, request: Request, peer) -> None:
        self.acks.append(request)

    def handle_cancel(self, cancel, invite) -> None:
        self.cancels.append((cancel, invite))

    def ack_timeout(self, tx: InviteServerTransaction) -> None:
        self.ack_timeouts.append(tx)


def make_request(method: str = "INVITE", branch: Optional[str] = "z9hG4bKinv1", cseq: int = 1,
                 sent_by: str = "198.51.100.7:5060", to_tag: Optional[str] = None,
                 cseq_method: Optional[str] = None, extra: str = "") -> Request:
    via = f"SIP/2.0/UDP {sent_by}" + (f";branch={branch}" if branch else "")
    to = "<sip:srs@192.0.2.10>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:srs@192.0.2.10 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "From: <sip:src@198.51.100.7>;tag=src1\r\n"
        f"To: {to}\r\n"
        "Call-ID: tx-test@198.51.100.7\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    return parse_message(text.encode())


class Base(SynchronousTestCase):
    transport = "UDP"

    def setUp(self) -> None:
        self.clock = Clock()
        self.tu = FakeTU()
        self.layer = TransactionLayer(self.clock, self.tu, Timers(t1=T1, t2=T2, t4=T4))
        self.peer = FakePeer(self.clock, self.transport)

    def receive(self, request: Request) -> None:
        self.layer.receive_request(request, self.peer)

    def advance_to(self, when: float) -> None:
        """Run every timer due up to ``when`` at its own time (Clock.advance
        in one jump would schedule follow-up timers from the end time)."""
        while True:
            due = [c.getTime() for c in self.clock.getDelayedCalls()]
            nxt = min(due, default=None)
            if nxt is None or nxt > when:
                break
            self.clock.rightNow = max(self.clock.rightNow, nxt)
            self.clock.advance(0)
        self.clock.rightNow = max(self.clock.rightNow, when)
        self.clock.advance(0)

    def respond(self, tx: ServerTransaction, status: int, **kw) -> Response:
        response = make_response(tx.request, status, to_tag="srs1" if status > 100 else None, **kw)
        tx.respond(response)
        return response

    def invite_tx(self, request: Optional[Request] = None) -> InviteServerTransaction:
        self.receive(request or make_request())
        tx = self.tu.requests[-1]
        self.assertIsInstance(tx, InviteServerTransaction)
        return tx


class TryingTests(Base):
    def test_100_after_200ms_when_tu_is_silent(self) -> None:
        """RFC 3261 §17.2.1: the transaction sends 100 Trying if the TU has not answered in 200 ms."""
        self.invite_tx(make_request(extra="Timestamp: 54.2\r\n"))
        self.advance_to(0.199)
        self.assertEqual(self.peer.sent, [])
        self.advance_to(0.2)
        [trying] = self.peer.messages()
        self.assertEqual((trying.status, trying.reason), (100, "Trying"))
        self.assertIsNone(trying.to.tag)
        self.assertEqual(trying.headers.get("Timestamp"), "54.2")
        self.advance_to(10)
        self.assertEqual(self.peer.statuses(), [100])

    def test_no_100_when_tu_answers_at_once(self) -> None:
        self.tu.on_request = lambda tx: self.respond(tx, 486)
        self.invite_tx()
        self.advance_to(0.3)
        self.assertEqual(self.peer.statuses(), [486])

    def test_no_100_when_tu_answers_within_200ms(self) -> None:
        tx = self.invite_tx()
        self.advance_to(0.1)
        self.respond(tx, 180)
        self.advance_to(1)
        self.assertEqual(self.peer.statuses(), [180])

    def test_100_can_be_turned_off(self) -> None:
        self.layer = TransactionLayer(self.clock, self.tu, Timers(trying=None))
        self.invite_tx()
        self.advance_to(5)
        self.assertEqual(self.peer.sent, [])

    def test_retransmission_before_any_response_gets_100_now(self) -> None:
        """A retransmitted INVITE while the TU is still busy is answered with 100 at once."""
        self.invite_tx()
        self.advance_to(0.1)
        self.receive(make_request())
        self.assertEqual(self.peer.statuses(), [100])
        self.assertEqual(self.peer.times(), [0.1])
        self.advance_to(1)
        self.assertEqual(self.peer.statuses(), [100])
        self.assertEqual(len(self.tu.requests), 1)

    def test_tu_response_after_automatic_100(self) -> None:
        tx = self.invite_tx()
        self.advance_to(0.3)
        self.respond(tx, 200)
        self.assertEqual(self.peer.statuses(), [100, 200])
        self.assertIs(tx.state, State.ACCEPTED)


class InviteServerTests(Base):
    def test_retransmission_in_proceeding_resends_provisional(self) -> None:
        tx = self.invite_tx()
        self.respond(tx, 180)
        self.receive(make_request())
        self.assertEqual(self.peer.statuses(), [180, 180])
        self.assertEqual(len(self.tu.requests), 1)

    def test_2xx_retransmitted_with_backoff_capped_at_t2(self) -> None:
        """RFC 6026 Accepted: 2xx resent at T1, 2T1, 4T1 ... intervals capped at T2."""
        tx = self.invite_tx()
        self.respond(tx, 200)
        self.assertIs(tx.state, State.ACCEPTED)
        self.advance_to(20)
        times = self.peer.times()
        self.assertEqual(times[:7], [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5])
        self.assertEqual(set(self.peer.statuses()), {200})
        intervals = [b - a for a, b in zip(times, times[1:])]
        self.assertEqual(max(intervals), T2)

    def test_2xx_retransmitted_on_reliable_transports_too(self) -> None:
        """RFC 3261 §13.3.1.4: 2xx retransmission is end to end, whatever the first hop."""
        self.peer = FakePeer(self.clock, "TCP")
        tx = self.invite_tx()
        self.respond(tx, 200)
        self.advance_to(2)
        self.assertEqual(self.peer.times(), [0, 0.5, 1.5])

    def test_ack_for_2xx_stops_retransmission(self) -> None:
        tx = self.invite_tx()
        self.respond(tx, 200)
        self.advance_to(1)
        tx.ack_for_2xx()
        self.advance_to(TIMEOUT + 1)
        self.assertEqual(self.peer.times(), [0, 0.5])
        self.assertEqual(self.tu.ack_timeouts, [])
        self.assertIs(tx.state, State.TERMINATED)
        self.assertEqual(self.layer.server, {})

    def test_timer_l_reports_missing_ack(self) -> None:
        """No ACK within 64*T1: tu.ack_timeout, then the transaction is gone."""
        tx = self.invite_tx()
        self.respond(tx, 200)
        self.advance_to(TIMEOUT - 0.01)
        self.assertEqual(self.tu.ack_timeouts, [])
        self.advance_to(TIMEOUT)
        self.assertEqual(self.tu.ack_timeouts, [tx])
        self.assertIs(tx.state, State.TERMINATED)
        self.assertEqual(self.layer.server, {})
        sent = len(self.peer.sent)
        self.advance_to(100)
        self.assertEqual(len(self.peer.sent), sent)

    def test_retransmission_in_accepted_resends_2xx(self) -> None:
        tx = self.invite_tx()
        self.respond(tx, 200)
        self.advance_to(0.2)
        self.receive(make_request())
        self.assertEqual(self.peer.times(), [0, 0.2])
        self.assertEqual(len(self.tu.requests), 1)

    def test_ack_for_2xx_goes_to_tu(self) -> None:
        """The ACK for a 2xx is its own transaction (new branch): it goes to the TU."""
        tx = self.invite_tx()
        self.respond(tx, 200)
        ack = make_request("ACK", branch="z9hG4bKack1", to_tag="srs1")
        self.receive(ack)
        self.assertEqual(self.tu.acks, [ack])
        self.assertIs(tx.state, State.ACCEPTED)

    def test_ack_matching_accepted_transaction_goes_to_tu(self) -> None:
        """RFC 6026 §7.1: an ACK matching the transaction in Accepted is passed up."""
        tx = self.invite_tx()
        self.respond(tx, 200)
        self.receive(make_request("ACK", to_tag="srs1"))
        self.assertEqual(len(self.tu.acks), 1)

    def test_only_2xx_after_2xx(self) -> None:
        tx = self.invite_tx()
        self.respond(tx, 200)
        self.respond(tx, 500)
        self.respond(tx, 200)
        self.assertEqual(self.peer.statuses(), [200])
        self.assertIs(tx.state, State.ACCEPTED)

    def test_non_2xx_retransmitted_by_timer_g_until_timer_h(self) -> None:
        """Completed on UDP: Timer G at T1, 2T1 ... capped at T2; Timer H ends it at 64*T1."""
        tx = self.invite_tx()
        self.respond(tx, 488)
        self.assertIs(tx.state, State.COMPLETED)
        self.advance_to(TIMEOUT - 0.01)
        times = self.peer.times()
        self.assertEqual(times[:6], [0, 0.5, 1.5, 3.5, 7.5, 11.5])
        self.assertEqual(set(self.peer.statuses()), {488})
        self.assertIs(tx.state, State.COMPLETED)
        self.advance_to(TIMEOUT)
        self.assertIs(tx.state, State.TERMINATED)
        self.assertEqual(self.layer.server, {})
        self.assertEqual(self.tu.ack_timeouts, [])

    def test_no_timer_g_on_reliable_transport(self) -> None:
        self.peer = FakePeer(self.clock, "TLS")
        tx = self.invite_tx()
        self.respond(tx, 488)
        self.advance_to(TIMEOUT - 0.01)
        self.assertEqual(self.peer.times(), [0])
        self.advance_to(TIMEOUT)
        self.assertIs(tx.state, State.TERMINATED)

    def test_retransmission_in_completed_resends_final(self) -> None:
        tx = self.invite_tx()
        self.respond(tx, 486)
        self.advance_to(0.1)
        self.receive(make_request())
        self.assertEqual(self.peer.times(), [0, 0.1])
        self.assertEqual(len(self.tu.requests), 1)

    def test_ack_absorbed_then_timer_i(self) -> None:
        """ACK for a non-2xx: Confirmed, retransmissions stop, Timer I (T4) terminates."""
        tx = self.invite_tx()
        self.respond(tx, 486)
        self.advance_to(0.6)
        self.receive(make_request("ACK", to_tag="srs1"))
        self.assertIs(tx.state, State.CONFIRMED)
        self.assertEqual(self.tu.acks, [])
        self.receive(make_request("ACK", to_tag="srs1"))  # retransmitted ACK: absorbed too
        self.receive(make_request())  # retransmitted INVITE: absorbed in Confirmed
        self.assertEqual(self.tu.acks, [])
        self.advance_to(0.6 + T4 - 0.01)
        self.assertEqual(self.peer.times(), [0, 0.5])
        self.assertIs(tx.state, State.CONFIRMED)
        self.advance_to(0.6 + T4)
        self.assertIs(tx.state, State.TERMINATED)
        self.assertEqual(self.layer.server, {})

    def test_timer_i_zero_on_reliable(self) -> None:
        self.peer = FakePeer(self.clock, "TCP")
        tx = self.invite_tx()
        self.respond(tx, 486)
        self.receive(make_request("ACK", to_tag="srs1"))
        self.assertIs(tx.state, State.CONFIRMED)
        self.clock.advance(0)
        self.assertIs(tx.state, State.TERMINATED)

    def test_late_responses_dropped(self) -> None:
        tx = self.invite_tx()
        self.respond(tx, 486)
        self.respond(tx, 200)
        self.assertEqual(self.peer.statuses(), [486])

    def test_new_transaction_after_termination(self) -> None:
        """Once forgotten, the same INVITE is new to the layer (the TU decides what it is)."""
        tx = self.invite_tx()
        self.respond(tx, 486)
        self.advance_to(TIMEOUT)
        self.receive(make_request())
        self.assertEqual(len(self.tu.requests), 2)

    def test_send_failure_does_not_escape(self) -> None:
        """A closed connection costs one warning, not an exception or a traceback per retry."""
        from twisted.logger import globalLogPublisher
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.peer.fail = True
        tx = self.invite_tx()
        self.respond(tx, 200)
        self.advance_to(2)
        self.assertIs(tx.state, State.ACCEPTED)
        self.assertEqual(self.flushLoggedErrors(), [])
        warnings = [e for e in events if "Could not send" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)


class NonInviteServerTests(Base):
    def test_final_response_and_timer_j(self) -> None:
        """Completed on UDP: retransmissions answered from the transaction until Timer J."""
        self.receive(make_request("BYE", branch="z9hG4bKbye"))
        tx = self.tu.requests[0]
        self.assertIsInstance(tx, NonInviteServerTransaction)
        self.respond(tx, 200)
        self.assertIs(tx.state, State.COMPLETED)
        self.advance_to(5)
        self.receive(make_request("BYE", branch="z9hG4bKbye"))
        self.assertEqual(self.peer.times(), [0, 5])
        self.assertEqual(len(self.tu.requests), 1)
        self.advance_to(TIMEOUT - 0.01)
        self.assertIn(tx.key, self.layer.server)
        self.advance_to(TIMEOUT)
        self.assertIs(tx.state, State.TERMINATED)
        self.assertEqual(self.layer.server, {})

    def test_no_retransmissions_of_its_own(self) -> None:
        """A non-INVITE server transaction never retransmits unprompted."""
        self.tu.on_request = lambda tx: self.respond(tx, 200)
        self.receive(make_request("OPTIONS", branch="z9hG4bKo"))
        self.advance_to(TIMEOUT)
        self.assertEqual(self.peer.times(), [0])

    def test_timer_j_zero_on_reliable(self) -> None:
        self.peer = FakePeer(self.clock, "TCP")
        self.tu.on_request = lambda tx: self.respond(tx, 200)
        self.receive(make_request("OPTIONS", branch="z9hG4bKo"))
        self.assertEqual(len(self.layer.server), 1)
        self.clock.advance(0)
        self.assertEqual(self.layer.server, {})

    def test_retransmission_in_trying_absorbed(self) -> None:
        self.receive(make_request("BYE", branch="z9hG4bKbye"))
        self.receive(make_request("BYE", branch="z9hG4bKbye"))
        self.assertEqual(self.peer.sent, [])
        self.assertEqual(len(self.tu.requests), 1)
        self.assertIs(self.tu.requests[0].state, State.TRYING)

    def test_provisional_then_retransmission(self) -> None:
        self.receive(make_request("BYE", branch="z9hG4bKbye"))
        tx = self.tu.requests[0]
        self.respond(tx, 100)
        self.assertIs(tx.state, State.PROCEEDING)
        self.receive(make_request("BYE", branch="z9hG4bKbye"))
        self.respond(tx, 200)
        self.respond(tx, 500)  # after the final: dropped
        self.assertEqual(self.peer.statuses(), [100, 100, 200])

    def test_unanswered_transaction_forgotten(self) -> None:
        """A TU that never answers does not leave the transaction behind forever."""
        self.receive(make_request("BYE", branch="z9hG4bKbye"))
        tx = self.tu.requests[0]
        self.advance_to(TIMEOUT)
        self.assertIs(tx.state, State.TERMINATED)
        self.assertEqual(self.layer.server, {})


class CancelTests(Base):
    def test_cancel_matches_invite_by_branch(self) -> None:
        """RFC 3261 §9.2: the CANCEL carries the INVITE's branch and goes to the TU with it."""
        invite = self.invite_tx()
        self.receive(make_request("CANCEL"))
        [(cancel, matched)] = self.tu.cancels
        self.assertIs(matched, invite)
        self.assertIsInstance(cancel, NonInviteServerTransaction)
        self.assertIsNot(cancel, invite)
        self.respond(cancel, 200)
        self.respond(invite, 487)
        self.assertEqual([(m.status, m.cseq.method) for m in self.peer.messages()],
                         [(200, "CANCEL"), (487, "INVITE")])

    def test_cancel_retransmission_answered_from_transaction(self) -> None:
        self.invite_tx()
        self.receive(make_request("CANCEL"))
        cancel, _ = self.tu.cancels[0]
        self.respond(cancel, 200)
        self.receive(make_request("CANCEL"))
        self.assertEqual(len(self.tu.cancels), 1)
        self.assertEqual(self.peer.statuses(), [200, 200])

    def test_cancel_without_invite(self) -> None:
        self.receive(make_request("CANCEL", branch="z9hG4bKunknown"))
        [(cancel, matched)] = self.tu.cancels
        self.assertIsNone(matched)

    def test_cancel_from_other_sent_by_does_not_match(self) -> None:
        """Same branch but another sent-by is another transaction (§17.2.3)."""
        self.invite_tx()
        self.receive(make_request("CANCEL", sent_by="203.0.113.5:5060"))
        self.assertIsNone(self.tu.cancels[0][1])

    def test_cancel_after_invite_terminated(self) -> None:
        tx = self.invite_tx()
        self.respond(tx, 486)
        self.advance_to(TIMEOUT)
        self.receive(make_request("CANCEL"))
        self.assertIsNone(self.tu.cancels[0][1])


class Rfc2543Tests(Base):
    """Peers without the z9hG4bK cookie are matched on dialog identifiers and CSeq."""

    def test_retransmission_matched(self) -> None:
        tx = self.invite_tx(make_request(branch=None))
        self.respond(tx, 180)
        self.receive(make_request(branch=None))
        self.assertEqual(len(self.tu.requests), 1)
        self.assertEqual(self.peer.statuses(), [180, 180])

    def test_old_style_branch_matched(self) -> None:
        self.invite_tx(make_request(branch="1234"))
        self.receive(make_request(branch="1234"))
        self.assertEqual(len(self.tu.requests), 1)
        self.receive(make_request(branch="5678"))
        self.assertEqual(len(self.tu.requests), 2)

    def test_ack_for_non_2xx_absorbed(self) -> None:
        """The ACK carries our To tag; the INVITE had none; they still match."""
        tx = self.invite_tx(make_request(branch=None))
        self.respond(tx, 486)
        self.receive(make_request("ACK", branch=None, to_tag="srs1"))
        self.assertIs(tx.state, State.CONFIRMED)
        self.assertEqual(self.tu.acks, [])

    def test_cancel_matched(self) -> None:
        tx = self.invite_tx(make_request(branch=None))
        self.receive(make_request("CANCEL", branch=None))
        self.assertIs(self.tu.cancels[0][1], tx)

    def test_other_cseq_is_a_new_transaction(self) -> None:
        self.invite_tx(make_request(branch=None))
        self.receive(make_request(branch=None, cseq=2))
        self.assertEqual(len(self.tu.requests), 2)

    def test_key_shape(self) -> None:
        key = server_key(make_request(branch=None))
        self.assertEqual(key[0], "2543")
        self.assertEqual(key[-1], "INVITE")
        self.assertEqual(server_key(make_request("ACK", branch=None, to_tag="x")), key)


class ServerKeyTests(SynchronousTestCase):
    def test_rfc3261_key(self) -> None:
        invite = server_key(make_request())
        self.assertEqual(invite, ("3261", "z9hG4bKinv1", ("198.51.100.7", 5060), "INVITE"))
        self.assertEqual(server_key(make_request("ACK", to_tag="t")), invite)
        self.assertNotEqual(server_key(make_request("CANCEL")), invite)
        self.assertEqual(server_key(make_request("CANCEL"))[:-1], invite[:-1])
        self.assertNotEqual(server_key(make_request(sent_by="198.51.100.7:5070")), invite)


class ClientTransactionTests(Base):
    def bye(self, branch: str = "z9hG4bKcli1") -> Request:
        return make_request("BYE", branch=branch, sent_by="192.0.2.10:5060", to_tag="srs1")

    def response_to(self, request: Request, status: int, branch: Optional[str] = None,
                    method: Optional[str] = None) -> Response:
        response = make_response(request, status)
        if branch is not None:
            response.headers.set("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch={branch}")
        if method is not None:
            response.headers.set("CSeq", f"{request.cseq.number} {method}")
        return parse_message(response.to_bytes())

    def test_timer_e_retransmits_until_final(self) -> None:
        """UDP: Timer E at T1, doubling to T2; a final response fires the Deferred."""
        request = self.bye()
        tx = self.layer.send_request(request, self.peer)
        self.assertIsInstance(tx, ClientTransaction)
        results: list = []
        tx.deferred.addCallback(results.append)
        self.advance_to(12)
        self.assertEqual(self.peer.times(), [0, 0.5, 1.5, 3.5, 7.5, 11.5])
        final = self.response_to(request, 200)
        self.layer.receive_response(final, self.peer)
        self.assertEqual(results, [final])
        self.assertIs(tx.state, State.COMPLETED)
        self.advance_to(30)
        self.assertEqual(len(self.peer.sent), 6)

    def test_provisional_moves_retransmissions_to_t2(self) -> None:
        request = self.bye()
        self.layer.send_request(request, self.peer)
        self.advance_to(0.6)  # sent at 0 and 0.5
        self.layer.receive_response(self.response_to(request, 100), self.peer)
        self.advance_to(10)
        self.assertEqual(self.peer.times(), [0, 0.5, 1.5, 5.5, 9.5])

    def test_timer_f_times_out(self) -> None:
        tx = self.layer.send_request(self.bye(), self.peer)
        failures: list = []
        tx.deferred.addErrback(failures.append)
        self.advance_to(TIMEOUT - 0.01)
        self.assertEqual(failures, [])
        self.advance_to(TIMEOUT)
        [failure] = failures
        self.assertTrue(failure.check(TransactionTimeout))
        self.assertIn("BYE", failure.getErrorMessage())
        self.assertEqual(self.layer.client, {})

    def test_no_retransmission_on_reliable(self) -> None:
        self.peer = FakePeer(self.clock, "TCP")
        tx = self.layer.send_request(self.bye(), self.peer)
        tx.deferred.addErrback(lambda f: None)
        self.advance_to(TIMEOUT - 0.01)
        self.assertEqual(self.peer.times(), [0])
        self.advance_to(TIMEOUT)
        self.assertIs(tx.state, State.TERMINATED)

    def test_timer_k(self) -> None:
        request = self.bye()
        tx = self.layer.send_request(request, self.peer)
        self.layer.receive_response(self.response_to(request, 200), self.peer)
        self.advance_to(T4 - 0.01)
        self.assertIn(tx.key, self.layer.client)
        self.layer.receive_response(self.response_to(request, 200), self.peer)  # absorbed
        self.advance_to(T4)
        self.assertEqual(self.layer.client, {})

    def test_response_matching(self) -> None:
        """RFC 3261 §17.1.3: branch and CSeq method must both match; strays are counted."""
        request = self.bye()
        tx = self.layer.send_request(request, self.peer)
        results: list = []
        tx.deferred.addCallback(results.append)
        self.layer.receive_response(self.response_to(request, 200, branch="z9hG4bKother"), self.peer)
        self.layer.receive_response(self.response_to(request, 200, method="INVITE"), self.peer)
        self.assertEqual(results, [])
        self.assertEqual(self.layer.stray_responses, 2)
        self.layer.receive_response(self.response_to(request, 481), self.peer)
        self.assertEqual([r.status for r in results], [481])

    def test_stray_and_unmatchable_responses_ignored(self) -> None:
        response = Response(200)
        self.layer.receive_response(response, self.peer)  # no Via, no CSeq
        self.layer.receive_response(self.response_to(self.bye(), 200), self.peer)
        self.assertEqual(self.layer.stray_responses, 2)

    def test_close_fails_waiting_client_transactions(self) -> None:
        """Shutdown: timers stop, tables empty, a pending BYE's Deferred fails at once."""
        tx = self.layer.send_request(self.bye(), self.peer)
        failures: list = []
        tx.deferred.addErrback(failures.append)
        self.invite_tx()
        self.layer.close()
        self.assertTrue(failures[0].check(TransactionClosed, TransactionTimeout))
        self.assertEqual((self.layer.server, self.layer.client), ({}, {}))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_send_failure_does_not_escape(self) -> None:
        self.peer.fail = True
        tx = self.layer.send_request(self.bye(), self.peer)
        tx.deferred.addErrback(lambda f: None)
        self.advance_to(TIMEOUT)
        self.assertIs(tx.state, State.TERMINATED)


_actions = st.lists(st.one_of(
    st.tuples(st.just("request"), st.sampled_from(["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"]),
              st.sampled_from(["z9hG4bKa", "z9hG4bKb", None]), st.sampled_from([None, "srs1"])),
    st.tuples(st.just("respond"), st.integers(0, 10), st.sampled_from([100, 180, 200, 202, 404, 487, 500])),
    st.tuples(st.just("ack_for_2xx"), st.integers(0, 10)),
    st.tuples(st.just("advance"), st.sampled_from([0, 0.1, 0.5, 2, 10, 40])),
    st.tuples(st.just("client"), st.sampled_from(["z9hG4bKc1", "z9hG4bKc2"])),
    st.tuples(st.just("client_response"), st.sampled_from(["z9hG4bKc1", "z9hG4bKc2", "z9hG4bKzz"]),
              st.sampled_from([100, 200, 408])),
), max_size=30)


class RandomSequenceTests(Base):
    @settings(max_examples=200, deadline=None)
    @given(_actions, st.sampled_from(["UDP", "TCP"]))
    def test_any_sequence_is_safe_and_leaves_nothing_behind(self, actions, transport) -> None:
        """Whatever arrives in whatever order: no exception, every message sent parses,
        and once every transaction is answered, timers empty both tables."""
        self.setUp()
        self.peer = FakePeer(self.clock, transport)
        self.tu.on_request = None
        txs: List[ServerTransaction] = []
        client_requests = {}
        for action in actions:
            kind = action[0]
            if kind == "request":
                _, method, branch, to_tag = action
                self.receive(make_request(method, branch=branch, to_tag=to_tag))
                txs[:] = self.tu.requests + [c for c, _ in self.tu.cancels]
            elif kind == "respond" and txs:
                tx = txs[action[1] % len(txs)]
                status = action[2]
                if tx.request.method != "INVITE" and status == 487:
                    status = 481
                self.respond(tx, status)
            elif kind == "ack_for_2xx" and txs:
                tx = txs[action[1] % len(txs)]
                if isinstance(tx, InviteServerTransaction):
                    tx.ack_for_2xx()
            elif kind == "advance":
                self.advance_to(self.clock.seconds() + action[1])
            elif kind == "client":
                request = make_request("BYE", branch=action[1], sent_by="192.0.2.10:5060",
                                       to_tag="srs1")
                client_requests[action[1]] = request
                self.layer.send_request(request, self.peer).deferred.addErrback(lambda f: None)
            elif kind == "client_response":
                request = client_requests.get(action[1]) or make_request(
                    "BYE", branch=action[1], sent_by="192.0.2.10:5060")
                self.layer.receive_response(make_response(request, action[2]), self.peer)
        for tx in self.tu.requests + [c for c, _ in self.tu.cancels]:
            if not tx.final_sent:
                self.respond(tx, 500)
        self.advance_to(self.clock.seconds() + 3 * TIMEOUT)
        self.assertEqual(self.layer.server, {})
        self.assertEqual(self.layer.client, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])
        for _, data in self.peer.sent:
            parse_message(data)

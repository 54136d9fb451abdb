"""Initial INVITEs being answered, and for 64*T1 after their final response.

The same INVITE arriving again on another branch (same Call-ID, From-tag and
CSeq) must join the first and get the same answer, never become a second
call; a new INVITE for the same Call-ID and From-tag while the first is
unanswered gets 500 (RFC 3261 §14.2, by analogy). This table answers those
questions; the UAS decides what to send.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from siprec.sip.dialog import Dialog
from siprec.sip.message import Response
from siprec.sip.transaction import InviteServerTransaction

__all__ = ["Setup", "SetupTable"]

SetupKey = Tuple[str, Optional[str], int]  # Call-ID, From-tag, CSeq number


class Setup:
    """One initial INVITE and its copies, the session it created and its answer."""

    def __init__(self, key: SetupKey, tx: InviteServerTransaction, session) -> None:
        self.key = key
        self.txs: List[InviteServerTransaction] = [tx]
        self.session = session
        self.final: Optional[Response] = None
        self.dialog: Optional[Dialog] = None
        self.expiry: Optional[IDelayedCall] = None

    @property
    def first(self) -> InviteServerTransaction:
        return self.txs[0]

    @property
    def done(self) -> bool:
        return self.final is not None


class SetupTable:
    """Setups by INVITE identity, by transaction, and the latest per Call-ID and From-tag."""

    def __init__(self, clock: IReactorTime, keep: float) -> None:
        self.clock = clock
        self.keep = keep  # seconds a setup is remembered after its final response (64*T1)
        self._by_key: Dict[SetupKey, Setup] = {}
        self._by_tx: Dict[int, Setup] = {}
        self._latest: Dict[Tuple[str, Optional[str]], Setup] = {}

    def start(self, key: SetupKey, tx: InviteServerTransaction, session) -> Setup:
        setup = Setup(key, tx, session)
        self._by_key[key] = setup
        self._by_tx[id(tx)] = setup
        self._latest[key[:2]] = setup
        return setup

    def join(self, setup: Setup, tx: InviteServerTransaction) -> None:
        """A copy of the INVITE on another branch."""
        setup.txs.append(tx)
        self._by_tx[id(tx)] = setup

    def get(self, key: SetupKey) -> Optional[Setup]:
        return self._by_key.get(key)

    def for_tx(self, tx: InviteServerTransaction) -> Optional[Setup]:
        return self._by_tx.get(id(tx))

    def pending(self, call_id: str, from_tag: Optional[str]) -> Optional[Setup]:
        """The latest setup for this Call-ID and From-tag if it is still unanswered."""
        setup = self._latest.get((call_id, from_tag))
        return setup if setup is not None and not setup.done else None

    def finish(self, setup: Setup, final: Response) -> List[InviteServerTransaction]:
        """Record the final answer; the copies still to answer come back; forgotten after ``keep``."""
        setup.final = final
        setup.expiry = self.clock.callLater(self.keep, self.forget, setup)
        return [tx for tx in setup.txs if not tx.final_sent]

    def forget(self, setup: Setup) -> None:
        if setup.expiry is not None and setup.expiry.active():
            setup.expiry.cancel()
        setup.expiry = None
        if self._by_key.get(setup.key) is setup:
            del self._by_key[setup.key]
        if self._latest.get(setup.key[:2]) is setup:
            del self._latest[setup.key[:2]]
        for tx in setup.txs:
            self._by_tx.pop(id(tx), None)

    def close(self) -> None:
        for setup in list(self._by_key.values()):
            self.forget(setup)

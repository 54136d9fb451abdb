"""UAS dialogs (RFC 3261 §12): identifiers, CSeq bookkeeping, in-dialog requests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from siprec.sip.headers import BRANCH_MAGIC, NameAddr, SipURI, format_host, parse_name_addr
from siprec.sip.message import Headers, Request

__all__ = ["Dialog", "DialogTable", "new_tag", "new_branch", "CSeqCheck"]


def new_tag() -> str:
    return secrets.token_hex(8)


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(10)


class CSeqCheck:
    IN_ORDER = "in-order"
    REPEATED = "repeated"  # same number as the last request: a retransmission on a new branch
    OUT_OF_ORDER = "out-of-order"


@dataclass
class Dialog:
    """One SRC↔SRS dialog as seen by the SRS (the UAS)."""

    call_id: str
    local_tag: str
    remote_tag: Optional[str]
    local_party: str  # our To header value, with tag
    remote_party: str  # their From header value, with tag
    remote_target: Optional[SipURI]
    remote_cseq: int
    route_set: List[str] = field(default_factory=list)
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(10000) + 1)
    peer: object = None  # transport Peer of the last request
    secure: bool = False
    confirmed: bool = False
    terminated: bool = False
    session: object = None  # the RecordingSession this dialog feeds

    @property
    def key(self) -> Tuple[str, str, Optional[str]]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def check_cseq(self, number: int) -> str:
        if number > self.remote_cseq:
            return CSeqCheck.IN_ORDER
        if number == self.remote_cseq:
            return CSeqCheck.REPEATED
        return CSeqCheck.OUT_OF_ORDER

    def accept_cseq(self, number: int) -> None:
        self.remote_cseq = max(self.remote_cseq, number)

    def create_request(self, method: str, via: str, contact: str,
                       user_agent: Optional[str] = None) -> Request:
        """A request we originate in this dialog (BYE, UPDATE), RFC 3261 §12.2.1.1.

        A route set whose first hop is a strict router (no ``lr``) puts that
        hop in the Request-URI and the remote target last in Route.
        """
        self.local_cseq += 1
        target = self._target()
        routes = list(self.route_set)
        strict = _uri_of(routes[0]) if routes and not _is_loose(routes[0]) else None
        if strict is not None:
            routes.pop(0)
            routes.append(f"<{target}>")
            target = strict
        headers = Headers()
        headers.add("Via", via)
        headers.add("Max-Forwards", "70")
        headers.add("From", self.local_party)
        headers.add("To", self.remote_party)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.local_cseq} {method}")
        headers.add("Contact", contact)
        for route in routes:
            headers.add("Route", route)
        if user_agent:
            headers.add("User-Agent", user_agent)
        return Request(method, target, headers=headers)


    def _target(self) -> str:
        """The remote target, else the From URI, else the source address: always a SIP URI."""
        if self.remote_target is not None and self.remote_target.is_sip:
            return str(self.remote_target)
        party = _uri_of(self.remote_party)
        if party is not None:
            return party
        if self.peer is None:
            return "sip:invalid"
        host, port = self.peer.remote
        return f"sip:{format_host(host)}:{port}"


def _uri_of(address: str) -> Optional[str]:
    """The sip/sips URI of a name-addr, or None (a request we send never carries another)."""
    try:
        uri = parse_name_addr(address).uri
    except ValueError:
        return None
    return str(uri) if uri.is_sip else None


def _is_loose(route: str) -> bool:
    """Whether a Record-Route hop is a loose router (``;lr``); unparseable ones count as loose."""
    try:
        return "lr" in parse_name_addr(route).uri.params
    except ValueError:
        return True


class DialogTable:
    """Dialogs by full id, with a Call-ID + From-tag index for tolerant matching."""

    def __init__(self) -> None:
        self._by_key: Dict[Tuple, Dialog] = {}
        self._by_call: Dict[Tuple[str, Optional[str]], List[Dialog]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self):
        return iter(list(self._by_key.values()))

    def add(self, dialog: Dialog) -> None:
        self._by_key[dialog.key] = dialog
        self._by_call.setdefault((dialog.call_id, dialog.remote_tag), []).append(dialog)

    def remove(self, dialog: Dialog) -> None:
        self._by_key.pop(dialog.key, None)
        peers = self._by_call.get((dialog.call_id, dialog.remote_tag), [])
        if dialog in peers:
            peers.remove(dialog)
        if not peers:
            self._by_call.pop((dialog.call_id, dialog.remote_tag), None)

    def find(self, call_id: str, local_tag: Optional[str],
             remote_tag: Optional[str]) -> Tuple[Optional[Dialog], bool]:
        """(dialog, exact): exact False when matched only by Call-ID and From-tag."""
        if local_tag is not None:
            dialog = self._by_key.get((call_id, local_tag, remote_tag))
            if dialog is not None:
                return dialog, True
        candidates = self._by_call.get((call_id, remote_tag), [])
        if len(candidates) == 1:
            return candidates[0], False
        return None, False

    def matching(self, call_id: str, remote_tag: Optional[str]) -> List[Dialog]:
        """Every dialog with this Call-ID and remote (From) tag."""
        return list(self._by_call.get((call_id, remote_tag), []))


def via_value(transport: str, host: str, port: int, branch: Optional[str] = None) -> str:
    return f"SIP/2.0/{transport} {format_host(host)}:{port};branch={branch or new_branch()};rport"


def contact_value(host: str, port: int, transport: str, user: str = "srs") -> str:
    # RFC 5630: a sips: URI says TLS by itself; no transport=tls.
    scheme = "sips" if transport == "TLS" else "sip"
    params = ";transport=tcp" if transport == "TCP" else ""
    return f"<{scheme}:{user}@{format_host(host)}:{port}{params}>;+sip.srs"


__all__ += ["via_value", "contact_value", "NameAddr"]

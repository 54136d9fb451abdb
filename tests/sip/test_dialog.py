"""Tests for siprec.sip.dialog: dialog identity, tolerant matching, requests we originate."""

from __future__ import annotations

from typing import List, Optional

from twisted.trial.unittest import SynchronousTestCase

from siprec.sip.dialog import (
    CSeqCheck,
    Dialog,
    DialogTable,
    contact_value,
    new_branch,
    new_tag,
    via_value,
)
from siprec.sip.headers import parse_uri
from siprec.sip.message import Request, parse_message


def make_dialog(call_id: str = "abc@src", local_tag: str = "ours", remote_tag: Optional[str] = "theirs",
                route_set: Optional[List[str]] = None, remote_target: Optional[str] = "sip:sbc@192.0.2.10:5070",
                remote_cseq: int = 5) -> Dialog:
    return Dialog(
        call_id=call_id,
        local_tag=local_tag,
        remote_tag=remote_tag,
        local_party=f"<sip:srs@srs.example>;tag={local_tag}",
        remote_party=f'"SBC" <sip:sbc@src.example>;tag={remote_tag}',
        remote_target=parse_uri(remote_target) if remote_target else None,
        remote_cseq=remote_cseq,
        route_set=list(route_set or []),
        local_cseq=100,
    )


class IdentifierTests(SynchronousTestCase):
    def test_tags_are_random_tokens(self) -> None:
        tags = {new_tag() for _ in range(200)}
        self.assertEqual(len(tags), 200)
        self.assertTrue(all(len(t) == 16 and t.isalnum() for t in tags))

    def test_branches_carry_the_magic_cookie(self) -> None:
        branches = {new_branch() for _ in range(200)}
        self.assertEqual(len(branches), 200)
        self.assertTrue(all(b.startswith("z9hG4bK") and len(b) > 7 for b in branches))


class CSeqTests(SynchronousTestCase):
    def test_ordering(self) -> None:
        dialog = make_dialog(remote_cseq=5)
        self.assertEqual(dialog.check_cseq(6), CSeqCheck.IN_ORDER)
        self.assertEqual(dialog.check_cseq(5), CSeqCheck.REPEATED)
        self.assertEqual(dialog.check_cseq(4), CSeqCheck.OUT_OF_ORDER)

    def test_accept_never_goes_back(self) -> None:
        dialog = make_dialog(remote_cseq=5)
        dialog.accept_cseq(9)
        dialog.accept_cseq(7)
        self.assertEqual(dialog.remote_cseq, 9)


class TableTests(SynchronousTestCase):
    def test_exact_match(self) -> None:
        table = DialogTable()
        dialog = make_dialog()
        table.add(dialog)
        self.assertEqual(table.find("abc@src", "ours", "theirs"), (dialog, True))
        self.assertEqual(len(table), 1)
        self.assertEqual(list(table), [dialog])

    def test_missing_or_unknown_to_tag_matched_by_call_id_and_from_tag(self) -> None:
        table = DialogTable()
        dialog = make_dialog()
        table.add(dialog)
        self.assertEqual(table.find("abc@src", None, "theirs"), (dialog, False))
        self.assertEqual(table.find("abc@src", "stale", "theirs"), (dialog, False))

    def test_no_match(self) -> None:
        table = DialogTable()
        table.add(make_dialog())
        self.assertEqual(table.find("abc@src", "ours", "other"), (None, False))
        self.assertEqual(table.find("ABC@src", "ours", "theirs"), (None, False))  # Call-ID is case-sensitive
        self.assertEqual(table.find("abc@src", None, None), (None, False))

    def test_ambiguous_match_refused(self) -> None:
        table = DialogTable()
        first, second = make_dialog(local_tag="a"), make_dialog(local_tag="b")
        table.add(first)
        table.add(second)
        self.assertEqual(table.find("abc@src", None, "theirs"), (None, False))
        self.assertEqual(table.find("abc@src", "b", "theirs"), (second, True))
        self.assertEqual(table.matching("abc@src", "theirs"), [first, second])

    def test_remove_cleans_both_indexes(self) -> None:
        table = DialogTable()
        first, second = make_dialog(local_tag="a"), make_dialog(local_tag="b")
        table.add(first)
        table.add(second)
        table.remove(first)
        self.assertEqual(table.find("abc@src", None, "theirs"), (second, False))
        table.remove(second)
        table.remove(second)  # twice is harmless
        self.assertEqual(table.matching("abc@src", "theirs"), [])
        self.assertEqual(table.find("abc@src", "b", "theirs"), (None, False))
        self.assertEqual(len(table), 0)


class CreateRequestTests(SynchronousTestCase):
    def build(self, dialog: Dialog, method: str = "BYE") -> Request:
        request = dialog.create_request(method, via=via_value("UDP", "192.0.2.1", 5060, "z9hG4bKfixed"),
                                        contact=contact_value("192.0.2.1", 5060, "UDP"),
                                        user_agent="siprec-test")
        parsed = parse_message(request.to_bytes())
        self.assertIsInstance(parsed, Request)
        return parsed

    def test_bye_follows_rfc3261_12_2_1_1(self) -> None:
        request = self.build(make_dialog())
        self.assertEqual(request.uri, "sip:sbc@192.0.2.10:5070")
        self.assertEqual(request.from_.tag, "ours")
        self.assertEqual(request.to.tag, "theirs")
        self.assertEqual(request.to.display_name, "SBC")
        self.assertEqual(request.call_id, "abc@src")
        self.assertEqual((request.cseq.number, request.cseq.method), (101, "BYE"))
        self.assertEqual(request.headers.get("Max-Forwards"), "70")
        self.assertEqual(request.top_via.branch, "z9hG4bKfixed")
        self.assertEqual(request.headers.get("User-Agent"), "siprec-test")
        self.assertNotIn("Route", request.headers)
        self.assertEqual(request.headers.get("Content-Length"), "0")

    def test_cseq_increases_per_request(self) -> None:
        dialog = make_dialog()
        numbers = [self.build(dialog, m).cseq.number for m in ("UPDATE", "UPDATE", "BYE")]
        self.assertEqual(numbers, [101, 102, 103])

    def test_loose_route_set_kept_in_order(self) -> None:
        dialog = make_dialog(route_set=["<sip:p1.example;lr>", "<sip:p2.example;lr>"])
        request = self.build(dialog)
        self.assertEqual(request.uri, "sip:sbc@192.0.2.10:5070")
        self.assertEqual(request.headers.get_all("Route"), ["<sip:p1.example;lr>", "<sip:p2.example;lr>"])

    def test_strict_router_first(self) -> None:
        """A strict first hop goes into the Request-URI; the remote target ends the Route set."""
        dialog = make_dialog(route_set=["<sip:strict.example>", "<sip:p2.example;lr>"])
        request = self.build(dialog)
        self.assertEqual(request.uri, "sip:strict.example")
        self.assertEqual(request.headers.get_all("Route"),
                         ["<sip:p2.example;lr>", "<sip:sbc@192.0.2.10:5070>"])
        self.assertEqual(dialog.route_set, ["<sip:strict.example>", "<sip:p2.example;lr>"])

    def test_without_remote_target_uses_from_uri(self) -> None:
        request = self.build(make_dialog(remote_target=None))
        self.assertEqual(request.uri, "sip:sbc@src.example")

    def test_never_a_request_uri_we_would_refuse(self) -> None:
        """A non-SIP remote target and a non-SIP From fall back to the source address
        (found by fuzzing: 'Contact: <Require: siprec' once became our Request-URI)."""
        class Peer:
            remote = ("192.0.2.10", 5062)
        dialog = make_dialog(remote_target="urn:service:x")
        dialog.remote_party = "<urn:x:y>;tag=theirs"
        dialog.peer = Peer()
        self.assertEqual(self.build(dialog).uri, "sip:192.0.2.10:5062")

    def test_unreadable_strict_router_kept_as_a_route(self) -> None:
        dialog = make_dialog(route_set=["<urn:not-a-router>"])
        request = self.build(dialog)
        self.assertEqual(request.uri, "sip:sbc@192.0.2.10:5070")
        self.assertEqual(request.headers.get_all("Route"), ["<urn:not-a-router>"])


class FormatTests(SynchronousTestCase):
    def test_via_value(self) -> None:
        self.assertEqual(via_value("TCP", "192.0.2.1", 5060, "z9hG4bK1"),
                         "SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1;rport")
        self.assertEqual(via_value("UDP", "2001:db8::1", 5060, "z9hG4bK1"),
                         "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport")
        self.assertTrue(via_value("UDP", "h", 1).split("branch=")[1].startswith("z9hG4bK"))

    def test_contact_value_per_transport(self) -> None:
        self.assertEqual(contact_value("192.0.2.1", 5060, "UDP"), "<sip:srs@192.0.2.1:5060>;+sip.srs")
        self.assertEqual(contact_value("192.0.2.1", 5060, "TCP"),
                         "<sip:srs@192.0.2.1:5060;transport=tcp>;+sip.srs")
        self.assertEqual(contact_value("192.0.2.1", 5061, "TLS"), "<sips:srs@192.0.2.1:5061>;+sip.srs")
        self.assertEqual(contact_value("2001:db8::1", 5060, "UDP"), "<sip:srs@[2001:db8::1]:5060>;+sip.srs")

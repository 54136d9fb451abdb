"""Tests for siprec.sip.routing: Via received/rport (RFC 3261 §18.2, RFC 3581)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from siprec.sip.headers import HeaderError, parse_via
from siprec.sip.message import Headers, Request, make_response, parse_message
from siprec.sip.routing import response_address, same_host, stamp_via


def request(*vias: str) -> Request:
    headers = Headers([("Via", v) for v in vias] + [
        ("From", "<sip:src@example.com>;tag=1"), ("To", "<sip:srs@192.0.2.10>"),
        ("Call-ID", "r1"), ("CSeq", "1 OPTIONS")])
    return Request("OPTIONS", "sip:srs@192.0.2.10", headers=headers)


class StampViaTests(SynchronousTestCase):
    def test_received_added_when_host_differs(self) -> None:
        """RFC 3261 §18.2.1: a sent-by that is not the source address gets received=."""
        req = request("SIP/2.0/UDP src.example.com:5060;branch=z9hG4bKa")
        via = stamp_via(req, ("198.51.100.7", 5060))
        self.assertEqual(via.params["received"], "198.51.100.7")
        self.assertNotIn("rport", via.params)
        self.assertEqual(req.top_via, via)

    def test_private_address_behind_nat(self) -> None:
        req = request("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa")
        self.assertEqual(stamp_via(req, ("203.0.113.9", 40123)).params["received"], "203.0.113.9")

    def test_nothing_added_when_host_matches(self) -> None:
        """Same address, no rport: the Via is left exactly as received."""
        value = "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKa"
        req = request(value)
        via = stamp_via(req, ("198.51.100.7", 5060))
        self.assertNotIn("received", via.params)
        self.assertEqual(req.headers.get("Via"), value)

    def test_ipv6_spellings_compare_as_addresses(self) -> None:
        req = request("SIP/2.0/UDP [2001:DB8:0::7]:5060;branch=z9hG4bKa")
        self.assertNotIn("received", stamp_via(req, ("2001:db8::7", 5060)).params)

    def test_ipv4_mapped_source(self) -> None:
        """A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; that is the same host."""
        req = request("SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKa")
        self.assertNotIn("received", stamp_via(req, ("::ffff:198.51.100.7", 5060)).params)
        req = request("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa")
        self.assertEqual(stamp_via(req, ("::ffff:198.51.100.7", 5060)).params["received"],
                         "198.51.100.7")

    def test_rport_filled_and_received_always_added(self) -> None:
        """RFC 3581 §4: with rport, received is added even when the host matches."""
        req = request("SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bKa")
        via = stamp_via(req, ("198.51.100.7", 61000))
        self.assertEqual(via.params["rport"], "61000")
        self.assertEqual(via.params["received"], "198.51.100.7")
        self.assertEqual(
            req.headers.get("Via"),
            "SIP/2.0/UDP 198.51.100.7:5060;rport=61000;branch=z9hG4bKa;received=198.51.100.7")

    def test_ipv6_received_written_bare(self) -> None:
        req = request("SIP/2.0/UDP [2001:db8::1];rport;branch=z9hG4bKa")
        stamp_via(req, ("2001:db8::2", 5062))
        self.assertIn(";received=2001:db8::2", req.headers.get("Via"))
        self.assertEqual(req.top_via.params["received"], "2001:db8::2")

    def test_only_top_via_rewritten_in_place(self) -> None:
        """Other Via values and the order of every header stay as they were."""
        req = request("SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKtop, SIP/2.0/UDP 10.0.0.6;branch=z9hG4bKnext",
                      "SIP/2.0/TCP 10.0.0.7;branch=z9hG4bKlast")
        req.headers.add("X-After", "1")
        names = req.headers.names()
        stamp_via(req, ("198.51.100.7", 5060))
        self.assertEqual(req.headers.names(), names)
        self.assertEqual([v.branch for v in req.vias],
                         ["z9hG4bKtop", "z9hG4bKnext", "z9hG4bKlast"])
        self.assertEqual([v.params.get("received") for v in req.vias], ["198.51.100.7", None, None])

    def test_responses_copy_the_stamped_via(self) -> None:
        req = request("SIP/2.0/UDP 10.0.0.5;rport;branch=z9hG4bKa")
        stamp_via(req, ("203.0.113.9", 40000))
        response = parse_message(make_response(req, 200, to_tag="t").to_bytes())
        self.assertEqual(response.top_via.params["rport"], "40000")
        self.assertEqual(response.top_via.params["received"], "203.0.113.9")

    def test_missing_or_bad_via(self) -> None:
        req = request()
        with self.assertRaises(HeaderError):
            stamp_via(req, ("198.51.100.7", 5060))
        with self.assertRaises(HeaderError):
            stamp_via(request("garbage"), ("198.51.100.7", 5060))


class ResponseAddressTests(SynchronousTestCase):
    SOURCE = ("203.0.113.9", 40000)

    def test_rport_and_received(self) -> None:
        """RFC 3581 §4: received address, rport port."""
        via = parse_via("SIP/2.0/UDP 10.0.0.5:5060;rport=40000;received=203.0.113.9")
        self.assertEqual(response_address(via, ("192.0.2.99", 1)), ("203.0.113.9", 40000))

    def test_rport_without_received_uses_source(self) -> None:
        via = parse_via("SIP/2.0/UDP 203.0.113.9:5060;rport=40000")
        self.assertEqual(response_address(via, self.SOURCE), ("203.0.113.9", 40000))

    def test_received_without_rport_uses_sent_by_port(self) -> None:
        """RFC 3261 §18.2.2: received address, sent-by port (5060 when absent)."""
        self.assertEqual(response_address(
            parse_via("SIP/2.0/UDP 10.0.0.5:5070;received=203.0.113.9"), self.SOURCE),
            ("203.0.113.9", 5070))
        self.assertEqual(response_address(
            parse_via("SIP/2.0/UDP 10.0.0.5;received=203.0.113.9"), self.SOURCE),
            ("203.0.113.9", 5060))

    def test_neither_uses_sent_by(self) -> None:
        self.assertEqual(response_address(parse_via("SIP/2.0/UDP 198.51.100.7:5080"), self.SOURCE),
                         ("198.51.100.7", 5080))
        self.assertEqual(response_address(parse_via("SIP/2.0/TLS 198.51.100.7"), self.SOURCE),
                         ("198.51.100.7", 5061))

    def test_empty_or_bogus_rport_ignored(self) -> None:
        for rport in ("rport", "rport=", "rport=0", "rport=70000", "rport=12a", "rport=" + "9" * 5000):
            via = parse_via(f"SIP/2.0/UDP 10.0.0.5:5070;received=203.0.113.9;{rport}")
            self.assertEqual(response_address(via, self.SOURCE), ("203.0.113.9", 5070), rport)

    def test_maddr_ignored(self) -> None:
        """maddr would let any sender aim our responses at a third party."""
        via = parse_via("SIP/2.0/UDP 10.0.0.5;maddr=192.0.2.200;received=203.0.113.9")
        self.assertEqual(response_address(via, self.SOURCE), ("203.0.113.9", 5060))

    def test_stamp_then_route_returns_to_the_nat_binding(self) -> None:
        """The usual NAT case end to end: the response goes back where the request came from."""
        req = request("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport")
        via = stamp_via(req, self.SOURCE)
        self.assertEqual(response_address(via, self.SOURCE), self.SOURCE)


class SameHostTests(SynchronousTestCase):
    def test_cases(self) -> None:
        self.assertTrue(same_host("Example.COM", "example.com"))
        self.assertTrue(same_host("2001:db8::1", "2001:DB8:0:0::1"))
        self.assertTrue(same_host("fe80::1%eth0", "fe80::1"))
        self.assertFalse(same_host("example.com", "198.51.100.7"))
        self.assertFalse(same_host("198.51.100.7", "198.51.100.8"))

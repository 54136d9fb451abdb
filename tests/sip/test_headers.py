"""Tests for siprec.sip.headers: URIs, name-addr, Via, CSeq, parameters.

Values are written after what SRCs (SBCs and PBXs) put on the wire: IPv6
hosts, quoted display names with escaped quotes, ``;+sip.src`` feature
tags, ``tel:`` URIs; addresses come from the documentation ranges.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from siprec.sip.headers import (
    CSeq,
    HeaderError,
    NameAddr,
    SipURI,
    Via,
    format_host,
    iter_name_addrs,
    parse_cseq,
    parse_name_addr,
    parse_option_tags,
    parse_params,
    parse_uri,
    parse_via,
    quote_string,
    repair_name_addr,
    split_commas,
)


class SplitCommasTests(SynchronousTestCase):
    def test_plain_list(self) -> None:
        """Values split on commas with surrounding whitespace removed."""
        self.assertEqual(split_commas("INVITE, ACK ,BYE"), ["INVITE", "ACK", "BYE"])

    def test_commas_inside_quotes_and_brackets_stay(self) -> None:
        """A comma in a display name or inside <...> does not split the value."""
        value = '"Doe, John" <sip:j@example.com;x=a,b>;tag=1, <sip:k@example.com>'
        self.assertEqual(
            split_commas(value),
            ['"Doe, John" <sip:j@example.com;x=a,b>;tag=1', "<sip:k@example.com>"],
        )

    def test_escaped_quote_does_not_end_quoting(self) -> None:
        """An escaped quote inside a quoted string keeps the comma after it quoted."""
        self.assertEqual(split_commas(r'"a \", b" <sip:x@y>, <sip:z@w>'),
                         [r'"a \", b" <sip:x@y>', "<sip:z@w>"])

    def test_empty_items_dropped(self) -> None:
        """Empty list elements (",,") are ignored."""
        self.assertEqual(split_commas(" , a,, b ,"), ["a", "b"])


class ParamsTests(SynchronousTestCase):
    def test_values_names_and_flags(self) -> None:
        """Names are lower-cased, values keep case, a bare name maps to None."""
        self.assertEqual(parse_params(";Transport=TCP;lr;Tag=AbC"),
                         {"transport": "TCP", "lr": None, "tag": "AbC"})

    def test_feature_tags(self) -> None:
        """RFC 3840 feature tags such as +sip.src are valid parameter names."""
        params = parse_params(';+sip.src;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"')
        self.assertIsNone(params["+sip.src"])
        self.assertEqual(params["+sip.instance"], "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")

    def test_quoted_value_with_semicolon_and_escape(self) -> None:
        """A quoted value may hold ';' and escaped quotes."""
        self.assertEqual(parse_params(r';a="x;y \"z\"";b=1'), {"a": 'x;y "z"', "b": "1"})

    def test_empty_value(self) -> None:
        """'name=' is an empty string, not a flag."""
        self.assertEqual(parse_params(";a="), {"a": ""})

    def test_bad_name(self) -> None:
        """A parameter name that is not a token is an error naming it."""
        with self.assertRaises(HeaderError) as ctx:
            parse_params(";a b=1")
        self.assertIn("bad parameter name", str(ctx.exception))

    def test_empty(self) -> None:
        self.assertEqual(parse_params("  "), {})


class UriTests(SynchronousTestCase):
    def test_full_sip_uri(self) -> None:
        """Every part of a sip: URI is parsed and serialised back."""
        uri = parse_uri("sip:alice:secret@Example.COM:5070;transport=TCP;lr?Subject=hi")
        self.assertEqual(
            (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.headers),
            ("sip", "alice", "secret", "example.com", 5070, "Subject=hi"),
        )
        self.assertEqual(uri.params, {"transport": "TCP", "lr": None})
        self.assertEqual(uri.transport, "tcp")
        self.assertEqual(str(uri), "sip:alice:secret@example.com:5070;transport=TCP;lr?Subject=hi")

    def test_ipv6_host(self) -> None:
        """IPv6 references lose their brackets in .host and regain them in str()."""
        uri = parse_uri("sips:srs@[2001:DB8::10]:5061;transport=tls")
        self.assertEqual((uri.scheme, uri.host, uri.port), ("sips", "2001:db8::10", 5061))
        self.assertEqual(str(uri), "sips:srs@[2001:db8::10]:5061;transport=tls")

    def test_ipv6_without_port_or_user(self) -> None:
        uri = parse_uri("sip:[::1]")
        self.assertEqual((uri.user, uri.host, uri.port), (None, "::1", None))

    def test_user_part_with_semicolon(self) -> None:
        """The user part may hold ';' (telephone-subscriber); the first '@' ends it."""
        uri = parse_uri("sip:+15551234;phone-context=example.com@gw.example.com;user=phone")
        self.assertEqual(uri.user, "+15551234;phone-context=example.com")
        self.assertEqual(uri.host, "gw.example.com")
        self.assertEqual(uri.params, {"user": "phone"})

    def test_param_without_value_and_feature_tag(self) -> None:
        uri = parse_uri("sip:src@198.51.100.7:5060;transport=udp;+sip.src")
        self.assertIn("+sip.src", uri.params)
        self.assertEqual(str(uri), "sip:src@198.51.100.7:5060;transport=udp;+sip.src")

    def test_tel_uri(self) -> None:
        """tel: URIs are kept verbatim; the number and params are offered too."""
        uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
        self.assertFalse(uri.is_sip)
        self.assertEqual(uri.user, "+1-201-555-0123")
        self.assertEqual(uri.params, {"phone-context": "example.com"})
        self.assertEqual(str(uri), "tel:+1-201-555-0123;phone-context=example.com")

    def test_other_scheme_opaque(self) -> None:
        uri = parse_uri("urn:service:sos")
        self.assertEqual((uri.scheme, uri.opaque), ("urn", "service:sos"))
        self.assertEqual(str(uri), "urn:service:sos")

    def test_hashable(self) -> None:
        """Parsed values can be dict keys even though params is a dict."""
        self.assertEqual(hash(parse_uri("sip:a@b;x=1")), hash(parse_uri("sip:a@b;x=1")))

    def test_with_params(self) -> None:
        uri = parse_uri("sip:a@b").with_params(transport="tcp")
        self.assertEqual(str(uri), "sip:a@b;transport=tcp")

    def test_malformed(self) -> None:
        """Each malformation is a HeaderError whose message says what is wrong."""
        cases = {
            "example.com": "no scheme",
            "sip:": "no host",
            "sip:@host": "empty user part",
            "sip:a@host:99999": "out of range",
            "sip:a@host:0": "out of range",
            "sip:a@host:5x": "bad port",
            "sip:a@host:\u00b2": "bad port",  # isdigit() says yes, int() says no
            "sip:a@[::1": "unterminated IPv6",
            "sip:a@[::1]x": "after the IPv6",
            "sip:a@ho st": "bad host",
            "sip:a@host\x00": "control characters",
            "tel:": "empty after the scheme",
            "tel:;x=1": "no number",
            "1sip:a@b": "no scheme",
        }
        for text, expected in cases.items():
            with self.assertRaises(HeaderError, msg=text) as ctx:
                parse_uri(text)
            self.assertIn(expected, str(ctx.exception), text)

    def test_error_message_bounded(self) -> None:
        """Hostile text is cut in error messages so they fit a reason phrase."""
        with self.assertRaises(HeaderError) as ctx:
            parse_uri("sip:a@" + "h" * 5000 + "!")
        self.assertLess(len(str(ctx.exception)), 120)

    def test_format_host(self) -> None:
        self.assertEqual(format_host("2001:db8::1"), "[2001:db8::1]")
        self.assertEqual(format_host("[2001:db8::1]"), "[2001:db8::1]")
        self.assertEqual(format_host("example.com"), "example.com")


class NameAddrTests(SynchronousTestCase):
    def test_quoted_display_with_escaped_quotes(self) -> None:
        """Escaped quotes and backslashes in a display name are unescaped, then re-escaped."""
        na = parse_name_addr(r'"Rec \"SRC\" \\ 1" <sip:src@198.51.100.7>;tag=gK04')
        self.assertEqual(na.display_name, 'Rec "SRC" \\ 1')
        self.assertEqual(na.tag, "gK04")
        self.assertEqual(str(na), r'"Rec \"SRC\" \\ 1" <sip:src@198.51.100.7>;tag=gK04')
        self.assertEqual(parse_name_addr(str(na)), na)

    def test_angle_bracket_inside_display_name(self) -> None:
        """'<' inside the quoted display name is not the start of the URI."""
        na = parse_name_addr('"a <b>" <sip:x@example.com>')
        self.assertEqual(na.display_name, "a <b>")
        self.assertEqual(na.uri.user, "x")

    def test_token_display_name(self) -> None:
        na = parse_name_addr("Bob Smith <sip:bob@example.com>")
        self.assertEqual(na.display_name, "Bob Smith")

    def test_contact_with_feature_tag(self) -> None:
        """';+sip.src' after '>' is a header parameter; inside it is a URI parameter."""
        outside = parse_name_addr('"SRC" <sip:src@198.51.100.7:5060>;+sip.src')
        self.assertIn("+sip.src", outside.params)
        self.assertNotIn("+sip.src", outside.uri.params)
        inside = parse_name_addr('"H323 User" <sip:198.51.100.8:5060;transport=tcp;+sip.src>')
        self.assertIn("+sip.src", inside.uri.params)
        self.assertEqual(inside.uri.user, None)

    def test_addr_spec_params_belong_to_header(self) -> None:
        """RFC 3261 §20.10: in addr-spec form the ;tag is a header parameter."""
        na = parse_name_addr("sip:alice@example.com;tag=1928301774")
        self.assertEqual(na.tag, "1928301774")
        self.assertEqual(na.uri.params, {})
        self.assertEqual(str(na), "<sip:alice@example.com>;tag=1928301774")

    def test_tel_addr(self) -> None:
        na = parse_name_addr("<tel:+15550100>;tag=9")
        self.assertEqual((na.uri.scheme, na.uri.user, na.tag), ("tel", "+15550100", "9"))

    def test_ipv6(self) -> None:
        na = parse_name_addr("<sip:srs@[2001:db8::10]:5060>")
        self.assertEqual(na.uri.host, "2001:db8::10")

    def test_wildcard(self) -> None:
        self.assertTrue(parse_name_addr("*").wildcard)
        self.assertEqual(str(parse_name_addr(" * ")), "*")

    def test_with_params(self) -> None:
        na = parse_name_addr("<sip:a@b>").with_params(tag="x")
        self.assertEqual(str(na), "<sip:a@b>;tag=x")

    def test_display_name_control_characters_not_emitted(self) -> None:
        """A display name carrying CR/LF is serialised on one line."""
        na = NameAddr(uri=parse_uri("sip:a@b"), display_name="evil\r\nVia: x")
        self.assertNotIn("\r", str(na))
        self.assertNotIn("\n", str(na))

    def test_iter_name_addrs(self) -> None:
        values = ['<sip:a@b>, "c, d" <sip:c@d>', "sip:e@f"]
        self.assertEqual([str(n.uri) for n in iter_name_addrs(values)],
                         ["sip:a@b", "sip:c@d", "sip:e@f"])

    def test_malformed(self) -> None:
        cases = {
            "": "empty address",
            "<sip:a@b": "without '>'",
            '"unterminated <sip:a@b>': "unterminated",
            "<sip:a@b> junk;tag=1": "text after '>'",
            "Bob sip:bob@example.com": "neither name-addr nor addr-spec",
            "<nonsense>": "no scheme",
        }
        for text, expected in cases.items():
            with self.assertRaises(HeaderError, msg=text) as ctx:
                parse_name_addr(text)
            self.assertIn(expected, str(ctx.exception), text)


class RepairNameAddrTests(SynchronousTestCase):
    def test_unclosed_bracket_read_to_the_end(self) -> None:
        """Everything after an unclosed '<' is the URI, its parameters included."""
        repaired = repair_name_addr('"SBC" <sip:src@192.0.2.1:5060;transport=udp')
        self.assertEqual(str(repaired.uri), "sip:src@192.0.2.1:5060;transport=udp")
        self.assertEqual(repaired.display_name, "SBC")

    def test_only_that_breakage(self) -> None:
        """Good addresses, other breakage and unreadable URIs are not "repaired"."""
        for text in ("<sip:a@b>", "sip:a@b", "<", "<nonsense", '"open <sip:a@b', "<sip:@>",
                     "<Require: siprec", "<tel:+15550100"):
            self.assertIsNone(repair_name_addr(text), text)


class ViaTests(SynchronousTestCase):
    def test_parse(self) -> None:
        via = parse_via("SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport")
        self.assertEqual((via.transport, via.host, via.port), ("UDP", "198.51.100.7", 5060))
        self.assertEqual(via.branch, "z9hG4bK776asdhds")
        self.assertTrue(via.rfc3261_branch)
        self.assertIsNone(via.params["rport"])
        self.assertEqual(str(via), "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport")

    def test_whitespace_around_slashes_and_ipv6(self) -> None:
        """LWS around '/' is allowed (RFC 3261 §25.1); IPv6 sent-by is bracketed."""
        via = parse_via("SIP / 2.0 / tcp [2001:db8::9]:5080 ;branch=z9hG4bKa")
        self.assertEqual((via.transport, via.host, via.port), ("TCP", "2001:db8::9", 5080))
        self.assertEqual(str(via), "SIP/2.0/TCP [2001:db8::9]:5080;branch=z9hG4bKa")

    def test_sent_by_default_ports(self) -> None:
        self.assertEqual(parse_via("SIP/2.0/UDP h").sent_by, ("h", 5060))
        self.assertEqual(parse_via("SIP/2.0/TLS h").sent_by, ("h", 5061))

    def test_rfc2543_branch(self) -> None:
        self.assertFalse(parse_via("SIP/2.0/UDP h;branch=1234").rfc3261_branch)
        self.assertFalse(parse_via("SIP/2.0/UDP h").rfc3261_branch)

    def test_received_ipv6_value_unquoted(self) -> None:
        """A received= IPv6 address is written bare, as RFC 3261 §20.42 has it."""
        via = parse_via("SIP/2.0/UDP h").with_params(received="2001:db8::1")
        self.assertEqual(str(via), "SIP/2.0/UDP h;received=2001:db8::1")
        self.assertEqual(parse_via(str(via)).params["received"], "2001:db8::1")

    def test_malformed(self) -> None:
        cases = {
            "": "is not 'SIP/2.0/<transport> <host>'",
            "SIP/2.0/UDP": "is not",
            "SIP/3.0/UDP h": "not SIP/2.0",
            "HTTP/2.0/UDP h": "not SIP/2.0",
            "SIP/2.0/UDP h:abc": "bad port",
            "SIP/2.0/UDP ho st;branch=1": "bad host",
            "SIP/2.0/UDP h;bad name=1": "bad parameter name",
        }
        for text, expected in cases.items():
            with self.assertRaises(HeaderError, msg=text) as ctx:
                parse_via(text)
            self.assertIn(expected, str(ctx.exception), text)

    def test_constructed(self) -> None:
        via = Via("UDP", "2001:db8::1", 5060, {"branch": "z9hG4bKx"})
        self.assertEqual(parse_via(str(via)), via)


class CSeqTests(SynchronousTestCase):
    def test_parse(self) -> None:
        self.assertEqual(parse_cseq("  100008   invite "), CSeq(100008, "INVITE"))
        self.assertEqual(str(CSeq(1, "BYE")), "1 BYE")

    def test_malformed(self) -> None:
        for text in ("", "1", "INVITE 1", "1 INVITE x", "-1 INVITE", "\u00b2 INVITE",
                     "1 IN<VITE", "2147483648 INVITE", "9" * 5000 + " INVITE"):
            with self.assertRaises(HeaderError, msg=text):
                parse_cseq(text)

    def test_largest(self) -> None:
        self.assertEqual(parse_cseq("2147483647 ACK").number, 2**31 - 1)


class OptionTagTests(SynchronousTestCase):
    def test_lower_cased_and_split(self) -> None:
        self.assertEqual(parse_option_tags(["siprec, Timer", "100rel"]),
                         ["siprec", "timer", "100rel"])


class QuoteTests(SynchronousTestCase):
    def test_quote_string(self) -> None:
        self.assertEqual(quote_string('a"b\\c'), r'"a\"b\\c"')


_display = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30
).filter(lambda s: s.strip() == s and s != "")
_user = st.from_regex(r"[A-Za-z0-9_.!~*'()&=+$,;?/-]{1,12}", fullmatch=True)
_host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    st.ip_addresses().map(str),
)
_pname = st.from_regex(r"[a-z+][a-z0-9.+-]{0,8}", fullmatch=True)
_pval = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9.-]{1,10}", fullmatch=True))


class RoundTripProperties(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(display=st.one_of(st.none(), _display), user=_user, host=_host,
           port=st.one_of(st.none(), st.integers(1, 65535)),
           uparams=st.dictionaries(_pname, _pval, max_size=3),
           hparams=st.dictionaries(_pname, _pval, max_size=3))
    def test_name_addr_round_trip(self, display, user, host, port, uparams, hparams) -> None:
        """str() of any NameAddr parses back to an equal value."""
        na = NameAddr(uri=SipURI("sip", user=user, host=host.lower(), port=port, params=uparams),
                      display_name=display, params=hparams)
        self.assertEqual(parse_name_addr(str(na)), na)

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=80))
    def test_parsers_raise_only_header_error(self, text: str) -> None:
        """Any text gives a value or a HeaderError, never another exception."""
        for parser in (parse_uri, parse_name_addr, parse_via, parse_cseq, parse_params):
            try:
                parser(text)
            except HeaderError as e:
                self.assertNotIn("\n", str(e))

"""Tests for siprec.recording.metadata: the RFC 7865 parser and the merged model."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import defusedxml.ElementTree as SafeET
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from siprec.recording.metadata import (
    DRAFT_NAMESPACE,
    MAX_DEPTH,
    MAX_METADATA_BYTES,
    RFC_NAMESPACE,
    SIPREC_NAMESPACE,
    MetadataDocument,
    MetadataError,
    NameID,
    Participant,
    RecordingMetadata,
    normalize_aor,
    parse_metadata,
)
from siprec.recording.multipart import split_siprec_body

FIXTURES = Path(__file__).parent / "fixtures"
UTC = timezone.utc


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def vendor_metadata(name: str, boundary: str) -> bytes:
    """The metadata part of a vendor INVITE body fixture (sent with CRLF)."""
    body = fixture(name).replace(b"\n", b"\r\n")
    (metadata,) = split_siprec_body(f"multipart/mixed;boundary={boundary}", body).metadata
    return metadata


def model(*documents: bytes) -> RecordingMetadata:
    live = RecordingMetadata()
    for data in documents:
        live.apply(parse_metadata(data))
    return live


def doc(body: str, mode: str = "complete", ns: str = RFC_NAMESPACE) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<recording xmlns="{ns}">'
        f"<datamode>{mode}</datamode>{body}</recording>"
    ).encode()


# RFC 7865 example ids, shortened for readability in assertions.
ALICE = "UGFydHktQWxpY2UtMDAwMQ=="
BOB = "UGFydHktQm9iLTAwMDAwMg=="
CAROL = "UGFydHktQ2Fyb2wtMDAwMw=="
AUDIO_ALICE = "U3RyZWFtLUF1ZGlvLUFsaWNl"
VIDEO_ALICE = "U3RyZWFtLVZpZGVvLUFsaWNl"
AUDIO_BOB = "U3RyZWFtLUF1ZGlvLUJvYjAw"
VIDEO_BOB = "U3RyZWFtLVZpZGVvLUJvYjAw"
SESSION_ONE = "U2Vzc2lvbi1PbmUtRXhhbXA="
SESSION_TWO = "U2Vzc2lvbi1Ud28tVHJhbnM="
GROUP = "R3JvdXAtT25lLUV4YW1wbGU="


class RfcCompleteExampleTests(SynchronousTestCase):
    """RFC 7865 §8.1 style: groups, extensions, all associations."""

    def setUp(self) -> None:
        self.doc = parse_metadata(fixture("rfc7865_complete.xml"))

    def test_document(self) -> None:
        self.assertIsInstance(self.doc, MetadataDocument)
        self.assertEqual(self.doc.data_mode, "complete")
        self.assertEqual(self.doc.namespace, RFC_NAMESPACE)
        self.assertEqual(self.doc.tolerances, [])

    def test_group_with_extensions(self) -> None:
        (group,) = self.doc.groups
        self.assertEqual(group.group_id, GROUP)
        self.assertEqual(group.associate_time, datetime(2015, 3, 2, 10, 0, 0, tzinfo=UTC))
        self.assertEqual(len(group.extensions), 2)
        call_center = SafeET.fromstring(group.extensions[0])
        self.assertEqual(call_center.tag, "{urn:ietf:params:xml:ns:callcenter}call-center")
        self.assertEqual(
            call_center.findtext("{urn:ietf:params:xml:ns:callcenter}supervisor"),
            "sip:carol@pbx.example.com",
        )
        self.assertTrue(group.extensions[1].startswith('<mydata xmlns="http://example.com/my">'))
        self.assertIn("<structure>FOO!</structure>", group.extensions[1])

    def test_session(self) -> None:
        (session,) = self.doc.sessions
        self.assertEqual(session.session_id, SESSION_ONE)
        self.assertEqual(session.group_ref, GROUP)
        # The folded sipSessionID loses its line break and indentation.
        self.assertEqual(
            session.sip_session_ids,
            ("0123456789abcdef0123456789abcdef;remote=fedcba9876543210fedcba9876543210",),
        )
        self.assertEqual(session.associate_time, datetime(2015, 3, 2, 10, 0, 1, tzinfo=UTC))
        self.assertEqual(len(session.extensions), 1)

    def test_participants(self) -> None:
        alice, bob = self.doc.participants
        self.assertEqual(alice.participant_id, ALICE)
        self.assertEqual(alice.name_ids, (NameID("sip:alice@atlanta.example.com", "sip:alice@atlanta.example.com", (("Alice", "en"),)),))
        self.assertEqual(alice.send, (VIDEO_ALICE, AUDIO_ALICE))
        self.assertEqual(alice.recv, (AUDIO_BOB, VIDEO_BOB))
        self.assertEqual(alice.session_ids, (SESSION_ONE,))
        self.assertIn("ALICE", alice.extensions[0])
        self.assertEqual(bob.name, "Bob")
        self.assertEqual(bob.name_ids[0].names, (("Bob", "en"), ("Robert", "fr")))
        self.assertEqual(
            bob.associate_time,
            datetime(2015, 3, 2, 10, 0, 2, 250000, tzinfo=timezone(timedelta(hours=1))),
        )

    def test_streams(self) -> None:
        self.assertEqual([s.label for s in self.doc.streams], ["96", "97", "98", "99"])
        self.assertEqual({s.session_id for s in self.doc.streams}, {SESSION_ONE})

    def test_model_queries(self) -> None:
        live = model(fixture("rfc7865_complete.xml"))
        self.assertEqual(live.ordered_labels(), ["96", "97", "98", "99"])
        self.assertEqual(live.participant_for_label("98").participant_id, BOB)
        self.assertEqual(live.participant_for_label("97").participant_id, ALICE)
        self.assertEqual([p.participant_id for p in live.receivers_of(AUDIO_BOB)], [ALICE])
        self.assertEqual(live.stream_by_label("99").stream_id, VIDEO_BOB)
        self.assertIsNone(live.stream_by_label("100"))
        self.assertIsNone(live.participant_for_label("100"))
        self.assertEqual(live.group_id(), GROUP)

    def test_to_dict(self) -> None:
        """The JSON view has ISO 8601 times, AORs, names and labels per participant."""
        view = model(fixture("rfc7865_complete.xml")).to_dict()
        json.dumps(view)  # JSON-ready
        alice, bob = view["participants"]
        self.assertEqual(alice["aor"], "sip:alice@atlanta.example.com")
        self.assertEqual(alice["name"], "Alice")
        self.assertEqual(alice["send_labels"], ["97", "96"])
        self.assertEqual(alice["recv_labels"], ["98", "99"])
        self.assertEqual(bob["associate_time"], "2015-03-02T10:00:02.250000+01:00")
        self.assertEqual(view["streams"][0]["label"], "96")
        self.assertEqual(view["streams"][0]["sender"], ALICE)
        self.assertEqual(view["streams"][0]["sender_aor"], "sip:alice@atlanta.example.com")
        self.assertEqual(view["groups"][0]["associate_time"], "2015-03-02T10:00:00+00:00")
        self.assertEqual(view["group_id"], GROUP)
        self.assertEqual(view["documents_applied"], 1)
        self.assertEqual(view["history"]["participants"], [])


class VendorTests(SynchronousTestCase):
    def test_cisco_cube(self) -> None:
        """Cisco: RFC namespace, elements out of schema order, ms timestamps."""
        document = parse_metadata(vendor_metadata("cisco_cube_body.txt", "Cube-Boundary-77"))
        self.assertEqual(document.tolerances, [])
        first, second = document.participants
        self.assertEqual(first.aor, "sip:4101@203.0.113.7")
        self.assertIsNone(first.name)
        self.assertEqual(first.send, ("cUBEsTrEaM000000000A1==",))
        self.assertEqual(first.associate_time, datetime(2023, 4, 11, 9, 15, 42, 318000, tzinfo=UTC))
        self.assertEqual(second.name, "4102")
        self.assertEqual(document.sessions[0].start_time, datetime(2023, 4, 11, 9, 15, 42, 318000, tzinfo=UTC))
        live = model(vendor_metadata("cisco_cube_body.txt", "Cube-Boundary-77"))
        self.assertEqual(live.ordered_labels(), ["1", "2"])
        self.assertEqual(live.participant_for_label("2").aor, "sip:4102@203.0.113.7")
        self.assertIsNone(live.group_id())

    def test_oracle_acme_draft_schema(self) -> None:
        """Oracle/Acme: draft namespace, id/session attributes, <send> in <participant>."""
        document = parse_metadata(vendor_metadata("oracle_acme_body.txt", "acme-boundary-9"))
        self.assertEqual(document.namespace, DRAFT_NAMESPACE)
        for expected in (
            "pre-RFC namespace 'urn:ietf:params:xml:ns:recording' (without ':1') accepted",
            "draft-era 'id' attribute read as participant_id",
            "draft-era <send>/<recv> inside <participant> accepted",
            "timestamps without a time zone were read as UTC",
        ):
            self.assertIn(expected, document.tolerances)
        callee, caller = document.participants
        self.assertEqual(caller.participant_id, "AcMeCaLlEr0000000000Q==")
        self.assertEqual(caller.send, ("AcMeStReAmB000000000Q==",))
        self.assertEqual(caller.session_ids, ("AcMeSeSsIoN000000000Q==",))
        self.assertEqual(caller.associate_time, datetime(2022, 11, 2, 8, 5, 10, tzinfo=UTC))
        self.assertEqual(
            caller.extensions,
            (
                '<extensiondata xmlns="urn:ietf:params:xml:ns:recording" '
                'xmlns:apkt="http://acmepacket.com/siprec/extensiondata">\n\t\t\t'
                "<apkt:callingParty>true</apkt:callingParty>\n\t\t</extensiondata>",
            ),
        )
        stream = document.streams[1]
        self.assertEqual(
            (stream.stream_id, stream.session_id, stream.label, stream.mode),
            ("AcMeStReAmB000000000Q==", "AcMeSeSsIoN000000000Q==", "33554442", "separate"),
        )
        self.assertEqual(document.sessions[0].session_id, "AcMeSeSsIoN000000000Q==")

    def test_oracle_calling_party_first(self) -> None:
        """Acme's callingParty=true marks the caller even when listed second."""
        live = model(vendor_metadata("oracle_acme_body.txt", "acme-boundary-9"))
        self.assertEqual(live.caller().aor, "sip:5551234@192.0.2.99")
        self.assertEqual(live.ordered_labels(), ["33554442", "33554441"])
        self.assertEqual(live.participant_for_label("33554441").aor, "sip:7002@192.0.2.10")

    def test_sonus_ribbon_prefixed(self) -> None:
        """Sonus/Ribbon: tns: prefixes, callData extension, AORs without scheme."""
        document = parse_metadata(vendor_metadata("sonus_ribbon_body.txt", "ribbon-delim"))
        self.assertEqual(document.namespace, DRAFT_NAMESPACE)
        self.assertIn("AORs without URI scheme were normalised with 'sip:'", document.tolerances)
        caller, callee = document.participants
        self.assertEqual(caller.aor, "6175550100@198.51.100.5")
        self.assertEqual(caller.aor_normalized, "sip:6175550100@198.51.100.5")
        self.assertEqual(caller.name, "Front Desk")
        self.assertIsNone(callee.name)  # a blank <name> is no name
        (call_data,) = document.groups[0].extensions
        self.assertTrue(call_data.startswith('<callData xmlns="urn:ietf:params:xml:ns:callData">'))
        self.assertIn('"Front Desk" &lt;sip:6175550100@198.51.100.5&gt;;tag=xY7pQ2', call_data)
        parsed = SafeET.fromstring(call_data)
        self.assertEqual(parsed.findtext("{urn:ietf:params:xml:ns:callData}gcid"), "880031")
        live = model(vendor_metadata("sonus_ribbon_body.txt", "ribbon-delim"))
        self.assertEqual(live.ordered_labels(), ["2", "1"])
        self.assertEqual(live.group_id(), "UmliQm9uR3JvdXAtMDAwMQ==")
        view = live.to_dict()
        self.assertEqual(view["participants"][0]["send_labels"], ["2"])
        self.assertEqual(view["participants"][0]["aor_normalized"], "sip:6175550100@198.51.100.5")

    def test_avaya_camel_case_and_empty_stream_id(self) -> None:
        """Avaya SBCE: dataMode, an empty stream_id, an empty participantstreamassoc."""
        document = parse_metadata(vendor_metadata("avaya_sbce_body.txt", "avaya-sbce"))
        self.assertEqual(document.data_mode, "complete")
        self.assertIn("element <dataMode> read as <datamode>", document.tolerances)
        self.assertIn("empty stream_id tolerated", document.tolerances)
        self.assertEqual([(s.stream_id, s.label) for s in document.streams], [("f0e1d2c3b4a596870011", "10"), ("", "20")])
        sbce = document.participants[1]
        self.assertEqual((sbce.send, sbce.recv, sbce.streams_given), ((), (), True))
        live = model(vendor_metadata("avaya_sbce_body.txt", "avaya-sbce"))
        self.assertIsNone(live.participant_for_label("20"))
        self.assertEqual(live.stream_by_label("20").stream_id, "")

    def test_avaya_update_replaces_snapshot(self) -> None:
        """A second complete document replaces the view; left-out elements go to history."""
        live = model(vendor_metadata("avaya_sbce_body.txt", "avaya-sbce"), fixture("avaya_sbce_update.xml"))
        self.assertEqual(live.documents_applied, 2)
        self.assertEqual(live.complete_documents, 2)
        self.assertEqual(list(live.participants), ["aa11bb22cc33dd44ee55", "99887766554433221100"])
        self.assertEqual(live.participant_for_label("20").aor, "sip:7205550177@192.0.2.32")
        self.assertEqual(live.ordered_labels(), ["10", "20"])
        view = live.to_dict()
        self.assertEqual([p["aor"] for p in view["history"]["participants"]], ["sip:SBCE@sbce.example.com"])
        self.assertEqual([s["label"] for s in view["history"]["streams"]], ["20"])
        self.assertEqual(view["streams"][1]["sender_aor"], "sip:7205550177@192.0.2.32")


class PartialUpdateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.live = model(fixture("rfc7865_complete.xml"))

    def test_hold_then_resume(self) -> None:
        """RFC 7866 hold: Alice's send list is emptied, then restored on resume."""
        self.live.apply(parse_metadata(fixture("rfc7866_hold_partial.xml")))
        alice = self.live.participant(ALICE)
        self.assertEqual(alice.send, ())
        self.assertEqual(alice.recv, (AUDIO_BOB, VIDEO_BOB))
        self.assertEqual(alice.name, "Alice")  # untouched by the partial
        self.assertEqual(alice.session_ids, (SESSION_ONE,))
        self.assertIsNone(self.live.participant_for_label("96"))
        self.assertEqual(self.live.participant(BOB).recv, ())
        self.assertEqual(self.live.participant(BOB).send, (AUDIO_BOB, VIDEO_BOB))
        self.live.apply(parse_metadata(fixture("rfc7866_resume_partial.xml")))
        self.assertEqual(self.live.participant_for_label("96").participant_id, ALICE)
        self.assertEqual(self.live.participant(BOB).recv, (VIDEO_ALICE, AUDIO_ALICE))
        self.assertEqual(
            (self.live.documents_applied, self.live.complete_documents, self.live.partial_documents),
            (3, 1, 2),
        )
        self.assertEqual(self.live.data_mode, "partial")

    def test_transfer_adds_participant_and_session(self) -> None:
        """Bob leaves, Carol joins in a new session of the same group and takes his stream."""
        self.live.apply(parse_metadata(fixture("transfer_partial.xml")))
        carol = self.live.participant(CAROL)
        self.assertEqual(carol.name, "Carol")
        self.assertEqual(carol.session_ids, (SESSION_TWO,))
        bob = self.live.participant(BOB)
        self.assertEqual(bob.disassociate_time, datetime(2015, 3, 2, 10, 4, 59, tzinfo=UTC))
        self.assertEqual(bob.name, "Bob")
        self.assertEqual(
            [p.participant_id for p in self.live.senders_of(AUDIO_BOB)], [CAROL, BOB]
        )
        self.assertEqual(self.live.participant_for_label("98").participant_id, CAROL)
        self.assertEqual(
            [s.session_id for s in self.live.sessions_in_group(GROUP)], [SESSION_ONE, SESSION_TWO]
        )
        self.assertEqual(self.live.group_id(), GROUP)
        self.assertEqual(list(self.live.participants), [ALICE, BOB, CAROL])
        self.assertEqual(self.live.ordered_labels()[0], "96")

    def test_field_by_field_update(self) -> None:
        """A partial restating a participant's name keeps its streams and extensions."""
        self.live.apply(parse_metadata(doc(
            f'<participant participant_id="{ALICE}"><nameID aor="sip:alice@example.org">'
            '<name xml:lang="en">Alice A.</name></nameID></participant>',
            mode="partial",
        )))
        alice = self.live.participant(ALICE)
        self.assertEqual((alice.aor, alice.name), ("sip:alice@example.org", "Alice A."))
        self.assertEqual(alice.send, (VIDEO_ALICE, AUDIO_ALICE))
        self.assertEqual(len(alice.extensions), 1)
        self.assertEqual(alice.associate_time, datetime(2015, 3, 2, 10, 0, 1, tzinfo=UTC))

    def test_change_stream_association(self) -> None:
        """A participantstreamassoc in a partial replaces that participant's lists."""
        self.live.apply(parse_metadata(doc(
            f'<participantstreamassoc participant_id="{BOB}"><send>{AUDIO_BOB}</send></participantstreamassoc>',
            mode="partial",
        )))
        self.assertEqual(self.live.participant(BOB).send, (AUDIO_BOB,))
        self.assertEqual(self.live.participant(BOB).recv, ())
        self.assertEqual(self.live.senders_of(VIDEO_BOB), ())
        self.assertEqual(self.live.participant(ALICE).send, (VIDEO_ALICE, AUDIO_ALICE))

    def test_disassociate_stream(self) -> None:
        self.live.apply(parse_metadata(doc(
            f'<stream stream_id="{VIDEO_BOB}"><disassociate-time>2015-03-02T10:03:00Z</disassociate-time></stream>',
            mode="partial",
        )))
        stream = self.live.stream(VIDEO_BOB)
        self.assertEqual((stream.label, stream.session_id), ("99", SESSION_ONE))
        self.assertEqual(stream.disassociate_time, datetime(2015, 3, 2, 10, 3, tzinfo=UTC))
        self.assertEqual(self.live.to_dict()["streams"][3]["disassociate_time"], "2015-03-02T10:03:00+00:00")

    def test_add_stream(self) -> None:
        self.live.apply(parse_metadata(doc(
            f'<stream stream_id="new" session_id="{SESSION_ONE}"><label>100</label></stream>'
            f'<participantstreamassoc participant_id="{CAROL}"><send>new</send></participantstreamassoc>',
            mode="partial",
        )))
        self.assertEqual(self.live.ordered_labels(), ["96", "97", "98", "99", "100"])
        self.assertEqual(self.live.participant_for_label("100").participant_id, CAROL)

    def test_reassociation_clears_disassociate_time(self) -> None:
        self.live.apply(parse_metadata(fixture("transfer_partial.xml")))
        self.live.apply(parse_metadata(doc(
            f'<participantsessionassoc participant_id="{BOB}" session_id="{SESSION_TWO}">'
            "<associate-time>2015-03-02T10:06:00Z</associate-time></participantsessionassoc>",
            mode="partial",
        )))
        bob = self.live.participant(BOB)
        self.assertIsNone(bob.disassociate_time)
        self.assertEqual(bob.session_ids, (SESSION_ONE, SESSION_TWO))

    def test_complete_moves_missing_to_history_and_partial_revives(self) -> None:
        without_bob = fixture("rfc7865_complete.xml").replace(b'participant_id="' + BOB.encode(), b'participant_id="gone')
        self.live.apply(parse_metadata(without_bob))
        self.assertIsNone(self.live.participant(BOB))
        self.assertIn(BOB, self.live.history["participants"])
        self.assertEqual(self.live.to_dict()["history"]["participants"][0]["name"], "Bob")
        self.live.apply(parse_metadata(doc(
            f'<participantsessionassoc participant_id="{BOB}" session_id="{SESSION_ONE}"/>', mode="partial"
        )))
        self.assertEqual(self.live.participant(BOB).name, "Bob")
        self.assertNotIn(BOB, self.live.history["participants"])

    def test_complete_brings_back_from_history(self) -> None:
        """An element back in a later complete snapshot is live again, not history."""
        without_bob = fixture("rfc7865_complete.xml").replace(b'participant_id="' + BOB.encode(), b'participant_id="gone')
        self.live.apply(parse_metadata(without_bob))
        self.live.apply(parse_metadata(fixture("rfc7865_complete.xml")))
        self.assertEqual(self.live.participant(BOB).name, "Bob")
        self.assertEqual(list(self.live.history["participants"]), ["gone"])
        self.assertEqual(self.live.to_dict()["history"]["participants"][0]["participant_id"], "gone")

    def test_partial_first(self) -> None:
        live = model(fixture("rfc7866_hold_partial.xml"))
        self.assertIn("partial metadata arrived before any complete snapshot", live.tolerances)
        self.assertEqual(live.participant(ALICE).recv, (AUDIO_BOB, VIDEO_BOB))

    def test_document_level_extensions(self) -> None:
        live = model(doc('<extensiondata xmlns:x="urn:x"><x:a>1</x:a></extensiondata>'))
        self.assertEqual(
            live.extensions,
            ['<extensiondata xmlns="urn:ietf:params:xml:ns:recording:1" xmlns:x="urn:x"><x:a>1</x:a></extensiondata>'],
        )
        live.apply(parse_metadata(doc("<other>2</other>", mode="partial")))
        self.assertEqual(len(live.extensions), 2)
        live.apply(parse_metadata(doc("")))
        self.assertEqual(live.extensions, [])


class ToleranceTests(SynchronousTestCase):
    def test_no_namespace(self) -> None:
        document = parse_metadata(b"<recording><datamode>complete</datamode></recording>")
        self.assertEqual(document.namespace, "")
        self.assertEqual(document.tolerances, ["metadata without XML namespace accepted"])

    def test_prefixed_rfc_namespace(self) -> None:
        document = parse_metadata(
            b'<rs:recording xmlns:rs="urn:ietf:params:xml:ns:recording:1"><rs:datamode>partial</rs:datamode>'
            b'<rs:stream rs:x="1" stream_id="s"><rs:label>7</rs:label></rs:stream></rs:recording>'
        )
        self.assertEqual((document.data_mode, document.tolerances), ("partial", []))
        self.assertEqual(document.streams[0].label, "7")

    def test_unknown_namespace(self) -> None:
        document = parse_metadata(b'<recording xmlns="urn:other"><stream stream_id="s"><label>1</label></stream></recording>')
        self.assertEqual(document.streams[0].label, "1")
        self.assertIn("unexpected namespace 'urn:other'; elements read by local name", document.tolerances)

    def test_data_mode_spellings(self) -> None:
        for element, value, mode in (
            ("datamode", "Partial", "partial"),
            ("DataMode", "COMPLETE", "complete"),
            ("dataMode", "partial", "partial"),
        ):
            document = parse_metadata(f"<recording><{element}>{value}</{element}></recording>".encode())
            self.assertEqual(document.data_mode, mode)
        document = parse_metadata(b"<recording><datamode>Partial</datamode></recording>")
        self.assertIn("datamode value 'Partial' read as 'partial'", document.tolerances)

    def test_missing_and_unknown_data_mode(self) -> None:
        self.assertEqual(parse_metadata(b"<recording/>").data_mode, "complete")
        self.assertIn("no datamode element; complete assumed", parse_metadata(b"<recording/>").tolerances)
        document = parse_metadata(b"<recording><datamode>full</datamode></recording>")
        self.assertEqual(document.data_mode, "complete")
        self.assertIn("unknown datamode 'full'; complete assumed", document.tolerances)

    def test_out_of_order(self) -> None:
        """Associations before the objects they name are still folded in."""
        document = parse_metadata(doc(
            '<participantstreamassoc participant_id="p"><send>s</send></participantstreamassoc>'
            '<participantsessionassoc participant_id="p" session_id="c"/>'
            '<stream stream_id="s" session_id="c"><label>5</label></stream>'
            '<participant participant_id="p"><nameID aor="sip:p@example.com"/></participant>'
            '<session session_id="c"/>'
        ))
        (participant,) = document.participants
        self.assertEqual((participant.send, participant.session_ids, participant.aor), (("s",), ("c",), "sip:p@example.com"))
        self.assertEqual(document.tolerances, [])

    def test_association_to_unknown_participant_in_complete(self) -> None:
        document = parse_metadata(doc('<participantstreamassoc participant_id="ghost"><send>s</send></participantstreamassoc>'))
        self.assertEqual(document.participants[0].participant_id, "ghost")
        self.assertIn("<participantstreamassoc> names a participant the document does not describe", document.tolerances)

    def test_timestamps(self) -> None:
        document = parse_metadata(doc(
            '<session session_id="a"><start-time>2020-01-02T03:04:05.123456789z</start-time>'
            "<stop-time>2020-01-02T03:04:05</stop-time></session>"
            '<session session_id="b"><start-time>yesterday at noon</start-time></session>'
        ))
        first, second = document.sessions
        self.assertEqual(first.start_time, datetime(2020, 1, 2, 3, 4, 5, 123456, tzinfo=UTC))
        self.assertEqual(first.stop_time, datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC))
        self.assertEqual(second.start_time, "yesterday at noon")
        self.assertEqual(
            document.tolerances,
            ["timestamps without a time zone were read as UTC", "unparseable timestamp 'yesterday at noon' kept as text"],
        )
        live = model(doc('<session session_id="b"><start-time>2020-13-01T00:00:00Z</start-time></session>'))
        self.assertEqual(live.to_dict()["sessions"][0]["start_time"], "2020-13-01T00:00:00Z")

    def test_missing_ids(self) -> None:
        document = parse_metadata(doc('<participant><nameID aor="sip:a@b"/></participant><stream><label>1</label></stream>'))
        self.assertEqual(document.participants[0].participant_id, "")
        self.assertEqual(document.streams[0].stream_id, "")
        self.assertIn("<participant> without participant_id tolerated", document.tolerances)

    def test_normalize_aor(self) -> None:
        self.assertEqual(normalize_aor("1234@192.0.2.1"), "sip:1234@192.0.2.1")
        self.assertEqual(normalize_aor("5551234"), "sip:5551234")
        self.assertEqual(normalize_aor("1234@host:5060"), "sip:1234@host:5060")
        self.assertEqual(normalize_aor("SIP:Alice@example.com"), "SIP:Alice@example.com")
        self.assertEqual(normalize_aor("sips:bob@example.com"), "sips:bob@example.com")
        self.assertEqual(normalize_aor("tel:+15551234"), "tel:+15551234")
        self.assertEqual(normalize_aor("<sip:a@b>"), "sip:a@b")
        self.assertIsNone(normalize_aor("  "))

    def test_extension_namespaces_round_trip(self) -> None:
        """Extensions serialise as standalone, well-formed XML with the same names."""
        document = parse_metadata(doc(
            '<participant participant_id="p">'
            '<v:ext xmlns:v="urn:v" xmlns:w="urn:w" w:attr="a&amp;&quot;b">'
            '<inner xmlns="">t&lt;x</inner><v:x/><w:y xmlns:v="urn:other"><v:z/></w:y></v:ext>'
            "</participant>"
        ))
        (extension,) = document.participants[0].extensions
        parsed = SafeET.fromstring(extension)
        self.assertEqual(parsed.tag, "{urn:v}ext")
        self.assertEqual(parsed.get("{urn:w}attr"), 'a&"b')
        self.assertEqual([child.tag for child in parsed], ["inner", "{urn:v}x", "{urn:w}y"])
        self.assertEqual(parsed.findtext("inner"), "t<x")
        self.assertEqual(parsed.find("{urn:w}y")[0].tag, "{urn:other}z")

    def test_extension_default_namespace_children(self) -> None:
        document = parse_metadata(doc('<group group_id="g"><my xmlns="urn:my"><a><b xmlns="">x</b></a></my></group>'))
        (extension,) = document.groups[0].extensions
        self.assertEqual(extension, '<my xmlns="urn:my"><a><b xmlns="">x</b></a></my>')
        self.assertEqual(SafeET.fromstring(extension).find("{urn:my}a/b").text, "x")


class BrokenAndHostileTests(SynchronousTestCase):
    def assertRefused(self, data: bytes, fragment: str) -> None:
        with self.assertRaises(MetadataError) as caught:
            parse_metadata(data)
        self.assertIn(fragment, str(caught.exception))

    def test_not_well_formed(self) -> None:
        self.assertRefused(b"<recording><datamode>complete</recording>", "not well-formed XML")

    def test_truncated(self) -> None:
        self.assertRefused(fixture("rfc7865_complete.xml")[:200], "not well-formed XML")

    def test_wrong_root(self) -> None:
        self.assertRefused(b'<metadata xmlns="urn:ietf:params:xml:ns:recording:1"/>', "root element is <metadata>, expected <recording> or <recording_metadata>")

    def test_empty(self) -> None:
        self.assertRefused(b"", "empty")
        self.assertRefused(b" \r\n", "empty")

    def test_not_xml(self) -> None:
        self.assertRefused(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n", "not well-formed XML")

    def test_bad_encoding(self) -> None:
        self.assertRefused(b'<?xml version="1.0" encoding="no-such-codec"?><recording/>', "metadata")
        self.assertRefused(b"<recording>\xff\xfe</recording>", "not well-formed XML")

    def test_wrong_type(self) -> None:
        with self.assertRaises(MetadataError):
            parse_metadata(None)  # type: ignore[arg-type]

    def test_str_accepted(self) -> None:
        self.assertEqual(parse_metadata("<recording/>").data_mode, "complete")  # type: ignore[arg-type]

    def test_too_large(self) -> None:
        data = b"<recording>" + b" " * MAX_METADATA_BYTES + b"</recording>"
        self.assertRefused(data, "exceeds")

    def test_too_deep(self) -> None:
        data = b"<recording>" + b"<x>" * MAX_DEPTH + b"</x>" * MAX_DEPTH + b"</recording>"
        self.assertRefused(data, "nests deeper")

    def test_billion_laughs(self) -> None:
        data = (
            b'<?xml version="1.0"?><!DOCTYPE recording ['
            b'<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
            b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
            b"<recording><datamode>&lol3;</datamode></recording>"
        )
        self.assertRefused(data, "refused")

    def test_external_entity(self) -> None:
        data = (
            b'<?xml version="1.0"?><!DOCTYPE recording [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b"<recording><datamode>&xxe;</datamode></recording>"
        )
        self.assertRefused(data, "refused")

    def test_external_dtd_and_parameter_entities(self) -> None:
        self.assertRefused(b'<!DOCTYPE recording SYSTEM "http://127.0.0.1:1/x.dtd"><recording/>', "refused")
        self.assertRefused(
            b'<!DOCTYPE recording [<!ENTITY % p SYSTEM "http://127.0.0.1:1/p">%p;]><recording/>', "refused"
        )

    def test_every_truncation_of_every_fixture(self) -> None:
        """Any prefix of a real document parses or raises MetadataError."""
        documents = [
            fixture("rfc7865_complete.xml"),
            fixture("transfer_partial.xml"),
            vendor_metadata("sonus_ribbon_body.txt", "ribbon-delim"),
            vendor_metadata("oracle_acme_body.txt", "acme-boundary-9"),
            vendor_metadata("broadworks_origcall_body.txt", "BroadWorksBoundary-7"),
            fixture("webex_calling_no_streams.xml"),
            fixture("metaswitch_cfs.xml"),
            fixture("intrado_viper.xml"),
        ]
        for data in documents:
            for end in range(len(data) + 1):
                try:
                    parsed = parse_metadata(data[:end])
                except MetadataError:
                    continue
                RecordingMetadata().apply(parsed)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=500))
    def test_random_bytes(self, data: bytes) -> None:
        try:
            parse_metadata(data)
        except MetadataError:
            pass

    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(
            st.sampled_from([
                "<recording>", "</recording>", "<rs:recording xmlns:rs='urn:ietf:params:xml:ns:recording'>",
                "</rs:recording>", "<datamode>", "</datamode>", "partial", "complete",
                '<participant participant_id="p">', "</participant>", '<stream stream_id="s">', "</stream>",
                '<stream id="">', "<label>", "</label>", "1", "<send>", "</send>", "<recv>", "</recv>",
                '<participantstreamassoc participant_id="p">', "</participantstreamassoc>",
                '<participantsessionassoc participant_id="p" session_id="c">', "</participantsessionassoc>",
                "<associate-time>", "</associate-time>", "2020-01-01T00:00:00", "<disassociate-time>",
                "</disassociate-time>", '<nameID aor="1@h">', "</nameID>", "<name>", "</name>",
                '<x:e xmlns:x="urn:x">', "</x:e>", "<extensiondata>", "</extensiondata>", "&amp;", "<", ">", " ",
                '<session session_id="c">', "</session>", "<group-ref>", "</group-ref>", "<sipSessionID>", "</sipSessionID>",
                f'<recording_metadata xmlns="{SIPREC_NAMESPACE}">', "</recording_metadata>", "<dataMode>",
                "</dataMode>", '<participant id="p" session="c">', '<stream id="s" session="c">', "<aor>", "</aor>",
                "<id>", "</id>", "s", '<group id="g" recording="r">', "</group>", '<extensiondata parent="c">',
                '<extensiondata parent="p">', "<broadWorksRecordingMetadata>", "</broadWorksRecordingMetadata>",
                "<callType>", "</callType>", "<termCall>", "</termCall>", "<origCall>", "</origCall>",
                "<callingPartyNumber>", "</callingPartyNumber>", "<initiator>", "</initiator>", "sip:1@h",
                "<role>", "</role>", "calling", "<metaswitchRecordingMetadata>", "</metaswitchRecordingMetadata>",
            ]),
            max_size=40,
        )
    )
    def test_structured_garbage(self, pieces: list[str]) -> None:
        """XML-ish token soup: a document or MetadataError, and any document merges."""
        try:
            parsed = parse_metadata("".join(pieces).encode())
        except MetadataError:
            return
        live = RecordingMetadata()
        live.apply(parsed)
        live.apply(parsed)
        json.dumps(live.to_dict())
        live.ordered_labels()
        for extension in [*parsed.extensions, *(e for p in parsed.participants for e in p.extensions)]:
            SafeET.fromstring(extension)


_ELEMENT_NAMES = [
    "datamode", "dataMode", "group", "session", "participant", "stream", "label", "mode", "send", "recv",
    "nameID", "name", "associate-time", "disassociate-time", "participantstreamassoc",
    "participantsessionassoc", "sessionrecordingassoc", "sipSessionID", "group-ref", "start-time",
    "stop-time", "extensiondata", "x:ext", "callData", "aor", "id", "initiator", "recording", "requestor",
    "broadWorksRecordingMetadata", "metaswitchRecordingMetadata", "callType", "origCall", "termCall",
    "callingPartyNumber", "callingParty", "role",
]
_ATTRIBUTES = [
    "participant_id", "session_id", "stream_id", "group_id", "id", "session", "aor", "xml:lang", "x:a",
    "parent", "group",
]
_VALUES = ["", "p", "q", "s", "c", "g", "1", "sip:a@b", "1234", "complete", "partial", "Partial", "calling", "true",
           "2020-01-01T00:00:00Z", "2020-01-01T00:00:00", "2020-13-40", " ", "&amp;&lt;", "\u00e9"]


@st.composite
def _elements(draw: st.DrawFn, children: st.SearchStrategy[list[str]]) -> str:
    name = draw(st.sampled_from(_ELEMENT_NAMES))
    attributes = draw(st.dictionaries(st.sampled_from(_ATTRIBUTES), st.sampled_from(_VALUES), max_size=3))
    rendered = "".join(f' {key}="{value}"' for key, value in attributes.items())
    text = draw(st.sampled_from(_VALUES))
    return f"<{name}{rendered}>{text}{''.join(draw(children))}</{name}>"


_TREES = st.recursive(
    st.sampled_from(_VALUES),
    lambda inner: _elements(st.lists(inner, max_size=4)),
    max_leaves=25,
)


class GeneratedDocumentTests(SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(
        st.sampled_from(["recording", "recording_metadata"]),
        st.sampled_from([RFC_NAMESPACE, DRAFT_NAMESPACE, SIPREC_NAMESPACE, "", "urn:other"]),
        st.lists(_TREES, max_size=8),
        st.booleans(),
    )
    def test_well_formed_documents_always_read(
        self, root: str, namespace: str, children: list[str], prefixed: bool
    ) -> None:
        """Any well-formed document of either root is read (never an error) and merges."""
        if prefixed and namespace:
            body = "".join(children)
            data = f'<rs:{root} xmlns:rs="{namespace}" xmlns:x="urn:x">{body}</rs:{root}>'
        else:
            declaration = f' xmlns="{namespace}"' if namespace else ""
            data = f'<{root}{declaration} xmlns:x="urn:x">{"".join(children)}</{root}>'
        parsed = parse_metadata(data.encode())
        live = RecordingMetadata()
        live.apply(parsed)
        live.apply(parsed)
        json.dumps(live.to_dict())
        live.caller()
        for stream in live.streams.values():
            if stream.label:
                live.participant_for_label(stream.label)
        extensions = [*parsed.extensions]
        for element in [*parsed.groups, *parsed.sessions, *parsed.participants, *parsed.streams]:
            extensions.extend(element.extensions)
        for extension in extensions:
            SafeET.fromstring(extension)


class ValueTests(SynchronousTestCase):
    def test_participant_is_frozen(self) -> None:
        participant = Participant("p")
        with self.assertRaises(AttributeError):
            participant.send = ("x",)  # type: ignore[misc]
        self.assertIsNone(participant.aor)
        self.assertIsNone(participant.name)

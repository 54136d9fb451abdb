"""Metadata dialects beyond RFC 7865: BroadWorks / Webex Calling, Metaswitch,
Intrado, Connectel, SEMS; each checked for participants ↔ labels, group, times."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import defusedxml.ElementTree as SafeET
from twisted.trial.unittest import SynchronousTestCase

from siprec.recording.metadata import (
    BROADWORKS_DIALECT,
    DRAFT_DIALECT,
    RFC_DIALECT,
    RFC_NAMESPACE,
    SIPREC_NAMESPACE,
    parse_metadata,
)
from tests.recording.test_metadata import fixture, model, vendor_metadata

UTC = timezone.utc
DIALECT_NOTE = "pre-RFC <recording_metadata> schema (BroadWorks, Webex Calling) read as RFC 7865"
NO_SCHEME_NOTE = "AORs without URI scheme were normalised with 'sip:'"
BW = "{http://schema.broadsoft.com/broadworksCallRecording}"


def bw_uuid(suffix: str) -> str:
    return f"urn:uuid:0c6f6a3e-5d1b-4c55-9a0e-7b3f9e0a{suffix}"


def broadworks_origcall() -> bytes:
    return vendor_metadata("broadworks_origcall_body.txt", "BroadWorksBoundary-7")


def webex_body() -> bytes:
    return vendor_metadata("webex_calling_body.txt", "WebexBoundary-3")


def recording_metadata(body: str, mode: str = "complete", ns: str = SIPREC_NAMESPACE) -> bytes:
    declaration = f' xmlns="{ns}"' if ns else ""
    return f"<recording_metadata{declaration}><dataMode>{mode}</dataMode>{body}</recording_metadata>".encode()


class BroadWorksTests(SynchronousTestCase):
    """Cisco BroadWorks: one mixed stream every participant sends."""

    def test_origcall_document(self) -> None:
        document = parse_metadata(broadworks_origcall())
        self.assertEqual(
            (document.dialect, document.namespace, document.data_mode, document.tolerances),
            (BROADWORKS_DIALECT, SIPREC_NAMESPACE, "complete", [DIALECT_NOTE]),
        )
        (group,) = document.groups
        (session,) = document.sessions
        self.assertEqual(group.group_id, bw_uuid("2002"))
        self.assertEqual(session.group_ref, bw_uuid("2002"))
        self.assertEqual(session.start_time, datetime(2023, 9, 14, 8, 31, 5, tzinfo=timezone(timedelta(hours=1))))
        first, second = document.participants
        self.assertEqual(first.aor, "sip:2125550140@hosted.example.com")
        self.assertEqual(second.aor_normalized, "sip:+13125550187@198.51.100.9;user=phone")
        self.assertEqual(first.send, second.send)
        self.assertEqual(first.send, (bw_uuid("6006"),))
        self.assertEqual(first.session_ids, (bw_uuid("3003"),))
        (stream,) = document.streams
        self.assertEqual((stream.label, stream.mode, stream.session_id), ("1", "mixed", bw_uuid("3003")))

    def test_origcall_caller_is_recorded_user(self) -> None:
        """origCall: the recorded user (the group's initiator) placed the call."""
        live = model(broadworks_origcall())
        self.assertEqual(live.caller().participant_id, bw_uuid("4004"))
        self.assertEqual(live.participant_for_label("1").participant_id, bw_uuid("4004"))
        self.assertEqual(live.ordered_labels(), ["1"])
        self.assertEqual(live.group_id(), bw_uuid("2002"))

    def test_mixed_stream_lists_both_senders(self) -> None:
        view = model(broadworks_origcall()).to_dict()
        json.dumps(view)
        (stream,) = view["streams"]
        self.assertEqual(stream["senders"], [bw_uuid("4004"), bw_uuid("5005")])
        self.assertEqual(
            stream["sender_aors"], ["sip:2125550140@hosted.example.com", "sip:+13125550187@198.51.100.9;user=phone"]
        )
        self.assertEqual(stream["sender"], bw_uuid("4004"))
        self.assertEqual([p["send_labels"] for p in view["participants"]], [["1"], ["1"]])
        self.assertEqual([p["calling"] for p in view["participants"]], [True, False])
        self.assertEqual((view["dialect"], view["caller"]), (BROADWORKS_DIALECT, bw_uuid("4004")))

    def test_vendor_data_kept(self) -> None:
        """The BroadWorks block goes to the session it names; <recording> and <initiator> are kept."""
        view = model(broadworks_origcall()).to_dict()
        (block,) = view["sessions"][0]["extensions"]
        parsed = SafeET.fromstring(block)
        self.assertEqual(parsed.tag, f"{BW}broadWorksRecordingMetadata")
        self.assertEqual(parsed.findtext(f"{BW}extTrackingID"), "51337:1")
        self.assertEqual(parsed.findtext(f"{BW}callType/{BW}origCall/{BW}calledPartyNumber"),
                         "sip:+13125550187@198.51.100.9;user=phone")
        self.assertEqual(parsed.findtext(f"{BW}acd/{BW}acdName"), "Sales queue")
        (recording,) = view["extensions"]
        self.assertEqual(SafeET.fromstring(recording).findtext(f"{{{SIPREC_NAMESPACE}}}requestor"), "SRC")
        (initiator,) = view["groups"][0]["extensions"]
        self.assertIn(">sip:2125550140@hosted.example.com</initiator>", initiator)

    def test_termcall_caller_is_far_end(self) -> None:
        """termCall: the caller is the callingPartyNumber; a send to an undescribed stream is kept."""
        document = parse_metadata(fixture("broadworks_termcall.xml"))
        self.assertEqual(
            document.tolerances,
            [DIALECT_NOTE, "a participant names a stream the document does not describe; kept as stated"],
        )
        recorded, far_end = document.participants
        self.assertEqual(recorded.aor, "sip:4045550163")
        self.assertEqual((recorded.calling, far_end.calling), (False, True))
        self.assertEqual(far_end.send, ("urn:uuid:7a41c2d0-0000-4e1f-8b11-00000000aa99",))
        live = model(fixture("broadworks_termcall.xml"))
        self.assertEqual(live.caller().aor, "sip:+16785550111@carrier.example.net;user=phone")
        self.assertEqual(live.participant_for_label("1").aor, "sip:4045550163")
        self.assertEqual(live.to_dict()["streams"][0]["senders"], [recorded.participant_id])
        self.assertEqual(live.sessions_in_group("urn:uuid:7a41c2d0-0000-4e1f-8b11-00000000aa02")[0].start_time,
                         datetime(2022, 3, 8, 21, 2, 44, tzinfo=UTC))
        self.assertIn("<numOfRedirections>1</numOfRedirections>", live.to_dict()["sessions"][0]["extensions"][0])

    def test_conference_update_adds_participant_without_scheme(self) -> None:
        """A complete UPDATE with a third party (AOR without scheme) on the same mixed stream."""
        live = model(broadworks_origcall(), fixture("broadworks_conference_update.xml"))
        self.assertEqual(live.documents_applied, 2)
        self.assertIn(NO_SCHEME_NOTE, live.tolerances)
        joined = live.participant(bw_uuid("8008"))
        self.assertEqual((joined.aor, joined.aor_normalized),
                         ("2125550177@hosted.example.com", "sip:2125550177@hosted.example.com"))
        self.assertEqual(len(live.senders_of(bw_uuid("6006"))), 3)
        self.assertEqual(live.participant_for_label("1").participant_id, bw_uuid("4004"))
        self.assertEqual(live.to_dict()["history"]["participants"], [])

    def test_partial_hold_empties_one_send_list(self) -> None:
        """A partial restating a participant with an empty <send> takes it off the mixed stream."""
        live = model(broadworks_origcall())
        live.apply(parse_metadata(recording_metadata(
            f'<participant id="{bw_uuid("5005")}"><send/><recv><id>{bw_uuid("6006")}</id></recv></participant>',
            mode="partial",
        )))
        held = live.participant(bw_uuid("5005"))
        self.assertEqual((held.send, held.recv, held.aor), ((), (bw_uuid("6006"),), "sip:+13125550187@198.51.100.9;user=phone"))
        self.assertEqual([p.participant_id for p in live.senders_of(bw_uuid("6006"))], [bw_uuid("4004")])
        self.assertEqual(live.to_dict()["participants"][1]["recv_labels"], ["1"])

    def test_bare_send_text_and_names(self) -> None:
        document = parse_metadata(recording_metadata(
            '<participant id="p" session="s"><aor>alice@example.com</aor><name>Alice</name><send>t</send></participant>'
            '<stream id="t" session="s"><label>7</label></stream>'
        ))
        (participant,) = document.participants
        self.assertEqual((participant.send, participant.name, participant.aor_normalized),
                         (("t",), "Alice", "sip:alice@example.com"))
        self.assertEqual(model(recording_metadata(
            '<participant id="p"><aor>alice@example.com</aor><send>t</send></participant>'
            '<stream id="t"><label>7</label></stream>'
        )).participant_for_label("7").aor, "alice@example.com")

    def test_extension_parents(self) -> None:
        """extensiondata goes to the participant/stream/group its parent names, else to the document."""
        document = parse_metadata(recording_metadata(
            '<recording id="r"/><group id="g"/><participant id="p"><aor>sip:p@h</aor><send><id>t</id></send></participant>'
            '<stream id="t"><label>1</label></stream>'
            '<extensiondata parent="p"><x:a xmlns:x="urn:x">1</x:a></extensiondata>'
            '<extensiondata parent="t"><x:b xmlns:x="urn:x"/></extensiondata>'
            '<extensiondata parent="g"><x:c xmlns:x="urn:x"/><x:d xmlns:x="urn:x"/></extensiondata>'
            '<extensiondata parent="r"><x:e xmlns:x="urn:x"/></extensiondata>'
            '<extensiondata id="x">plain text</extensiondata>'
        ))
        self.assertEqual(document.participants[0].extensions, ('<x:a xmlns:x="urn:x">1</x:a>',))
        self.assertEqual(document.streams[0].extensions, ('<x:b xmlns:x="urn:x"/>',))
        self.assertEqual(len(document.groups[0].extensions), 2)
        self.assertEqual(document.extensions[1:], [
            '<x:e xmlns:x="urn:x"/>',
            f'<extensiondata xmlns="{SIPREC_NAMESPACE}" id="x">plain text</extensiondata>',
        ])
        self.assertEqual(document.tolerances, [DIALECT_NOTE])
        orphan = parse_metadata(recording_metadata('<extensiondata parent="nobody"><y/></extensiondata>'))
        self.assertEqual(orphan.extensions, [f'<y xmlns="{SIPREC_NAMESPACE}"/>'])
        self.assertIn("<extensiondata> names a parent the document does not describe; kept with the document",
                      orphan.tolerances)

    def test_calling_number_matched_by_user_part(self) -> None:
        """termCall numbers written with another host still find their participant."""
        document = parse_metadata(recording_metadata(
            '<group id="g"><initiator>sip:100@pbx.example.com</initiator></group>'
            '<participant id="a"><aor>sip:100@pbx.example.com</aor></participant>'
            '<participant id="b"><aor>sip:+15550001@trunk.example.net;user=phone</aor></participant>'
            '<participant id="c"><aor>sip:200@pbx.example.com</aor></participant>'
            '<extensiondata parent="g"><b:broadWorksRecordingMetadata xmlns:b="urn:b"><b:callType><b:termCall>'
            "<b:callingPartyNumber>sip:+15550001@10.0.0.9</b:callingPartyNumber>"
            "</b:termCall></b:callType></b:broadWorksRecordingMetadata></extensiondata>"
        ))
        self.assertEqual([p.calling for p in document.participants], [False, True, False])
        unknown = parse_metadata(recording_metadata(
            '<group id="g"><initiator>sip:100@pbx.example.com</initiator></group>'
            '<participant id="a"><aor>sip:100@pbx.example.com</aor></participant>'
            '<participant id="c"><aor>sip:200@pbx.example.com</aor></participant>'
            '<extensiondata parent="g"><broadWorksRecordingMetadata><callType><termCall/></callType>'
            "</broadWorksRecordingMetadata></extensiondata>"
        ))
        self.assertEqual([p.calling for p in unknown.participants], [False, True])

    def test_tolerances(self) -> None:
        document = parse_metadata(
            b'<Recording_Metadata xmlns="urn:other"><participant><aor>sip:a@b</aor></participant>'
            b'<stream id=" "><label>1</label></stream></Recording_Metadata>'
        )
        self.assertEqual(document.tolerances, [
            DIALECT_NOTE,
            "root element <Recording_Metadata> read as <recording_metadata>",
            "unexpected namespace 'urn:other'; elements read by local name",
            "<participant> without id tolerated",
            "empty stream id tolerated",
            "no datamode element; complete assumed",
        ])
        self.assertEqual(model(recording_metadata("", ns="")).tolerances,
                         [DIALECT_NOTE, "metadata without XML namespace accepted"])


class WebexCallingTests(SynchronousTestCase):
    """Webex Calling: the BroadWorks schema with one separate stream per participant."""

    def test_separate_streams_termcall(self) -> None:
        """The metadata part comes before the SDP; the far-end caller's leg goes first."""
        live = model(webex_body())
        self.assertEqual(live.dialect, BROADWORKS_DIALECT)
        self.assertEqual(live.tolerances, [DIALECT_NOTE])
        self.assertEqual(live.participant_for_label("1").aor, "sip:q7xk2mze4d@1234567.int.calling.example.com")
        self.assertEqual(live.participant_for_label("2").aor, "sip:6021@203.0.113.48;user=phone")
        self.assertEqual(live.caller().aor, "sip:6021@203.0.113.48;user=phone")
        self.assertEqual(live.ordered_labels(), ["2", "1"])
        self.assertEqual(live.group_id(), "urn:uuid:5b0e2f11-aaaa-4f00-b000-000000000002")
        (session,) = live.sessions.values()
        self.assertEqual(session.start_time, datetime(2024, 6, 3, 14, 20, 31, tzinfo=UTC))
        self.assertEqual([s["mode"] for s in live.to_dict()["streams"]], ["separate", "separate"])

    def test_conference_two_senders_on_one_leg(self) -> None:
        live = model(fixture("webex_calling_conference.xml"))
        self.assertIn(NO_SCHEME_NOTE, live.tolerances)
        self.assertEqual(live.caller().aor, "sip:h3pw9sdl0a@1234567.int.calling.example.com")
        self.assertEqual(live.ordered_labels(), ["1", "2"])
        self.assertEqual(live.participant_for_label("2").aor, "sip:6044@203.0.113.48;user=phone")
        leg_two = live.to_dict()["streams"][1]
        self.assertEqual(leg_two["sender_aors"],
                         ["sip:6044@203.0.113.48;user=phone", "m1zq8tnw5c@1234567.int.calling.example.com"])

    def test_participants_without_stream_lists(self) -> None:
        """Some Webex releases list no <send>: streams are taken in participant order."""
        document = parse_metadata(fixture("webex_calling_no_streams.xml"))
        self.assertEqual(document.tolerances, [
            DIALECT_NOTE,
            "<extensiondata> names a parent the document does not describe; kept with the document",
            "no participant states its streams; the n-th participant taken as the sender of the n-th stream",
        ])
        self.assertFalse(any(p.streams_given for p in document.participants))
        live = model(fixture("webex_calling_no_streams.xml"))
        self.assertEqual(live.participant_for_label("1").aor, "sip:v8rj3kqp2x@1234567.int.calling.example.com")
        self.assertEqual(live.participant_for_label("2").aor, "sip:6077@203.0.113.48;user=phone")
        self.assertEqual(live.ordered_labels(), ["2", "1"])
        self.assertIn("callhalf-7700301:0", live.extensions[1])

    def test_stated_streams_replace_the_guess(self) -> None:
        live = model(fixture("webex_calling_no_streams.xml"))
        live.apply(parse_metadata(recording_metadata(
            '<participant id="urn:uuid:e4f0a9c1-cccc-4b00-9000-000000000004"><send><id>'
            "urn:uuid:e4f0a9c1-cccc-4b00-9000-000000000007</id></send></participant>",
            mode="partial",
        )))
        self.assertEqual(live.participant_for_label("2").aor, "sip:6077@203.0.113.48;user=phone")
        self.assertEqual(len(live.senders_of("urn:uuid:e4f0a9c1-cccc-4b00-9000-000000000007")), 2)
        self.assertIsNone(live.participant_for_label("1"))


class OtherDialectTests(SynchronousTestCase):
    def test_metaswitch(self) -> None:
        """Metaswitch CFS: draft namespace, bare-number AORs, one stream sent and received by both."""
        document = parse_metadata(fixture("metaswitch_cfs.xml"))
        self.assertEqual(document.dialect, DRAFT_DIALECT)
        self.assertEqual(document.tolerances, [
            "pre-RFC namespace 'urn:ietf:params:xml:ns:recording' (without ':1') accepted",
            NO_SCHEME_NOTE,
            "draft-era 'id' attribute read as stream_id",
        ])
        first, second = document.participants
        self.assertEqual((first.aor, first.aor_normalized), ("5035550121", "sip:5035550121"))
        self.assertEqual(first.send, first.recv)
        self.assertEqual(second.send, first.send)
        self.assertEqual(second.associate_time, datetime(2021, 10, 19, 15, 40, 27, tzinfo=UTC))
        self.assertEqual((first.calling, second.calling), (False, True))  # callingPartyNumber
        live = model(fixture("metaswitch_cfs.xml"))
        self.assertEqual(live.participant_for_label("1").aor, "5035550188")
        self.assertEqual(live.ordered_labels(), ["1"])
        self.assertIsNone(live.group_id())
        self.assertEqual(live.sessions["bWV0YVNlc3MwMDAwMDAwMQ=="].start_time, datetime(2021, 10, 19, 15, 40, 27, tzinfo=UTC))
        self.assertIn("<businessGroup>Example Dental - 0001</businessGroup>", live.extensions[0])

    def test_intrado_role(self) -> None:
        """Intrado VIPER: <role>calling</role>, a <channel>, an AOR with port and no scheme."""
        document = parse_metadata(fixture("intrado_viper.xml"))
        self.assertEqual(document.dialect, RFC_DIALECT)
        self.assertIn("non-standard <role> in <participant> read as the calling-party mark", document.tolerances)
        (participant,) = document.participants
        self.assertEqual(participant.aor_normalized, "sip:9185550134@198.51.100.36:5060")
        self.assertIsNone(participant.name)
        self.assertTrue(participant.calling)
        self.assertEqual(len(participant.extensions), 2)  # <channel> and <role> kept as sent
        central = timezone(timedelta(hours=-6))
        self.assertEqual(document.sessions[0].start_time, datetime(2022, 11, 30, 7, 12, 48, tzinfo=central))
        live = model(fixture("intrado_viper.xml"))
        self.assertEqual(live.participant_for_label("1").participant_id, participant.participant_id)
        self.assertEqual(live.group_id(), "aW50cmFkb0dyb3VwMDAwMDAwMDAwMDAwMDAx")
        self.assertEqual(live.to_dict()["groups"][0]["associate_time"], "2022-11-30T07:12:48-06:00")

    def test_connectel_without_associations(self) -> None:
        live = model(fixture("connectel_no_associations.xml"))
        self.assertEqual(live.tolerances,
                         ["no participant states its streams; the n-th participant taken as the sender of the n-th stream"])
        self.assertEqual(live.participant_for_label("1").name, "agent_7;lang=en-US")
        self.assertEqual(live.participant_for_label("2").aor, "sip:0709876543@trunk.example.se")
        self.assertEqual(live.ordered_labels(), ["1", "2"])
        self.assertEqual(live.sessions["Y29ubmVjdGVsU2Vzc2lvbjE="].sip_session_ids,
                         ("6b1f0c2e9d3a47b8a5c4e3f2d1b0a998@192.0.2.77",))

    def test_sems_leg_labels(self) -> None:
        live = model(fixture("sems_leg_labels.xml"))
        self.assertEqual(live.tolerances, [NO_SCHEME_NOTE])
        self.assertEqual(live.ordered_labels(), ["a_leg", "b_leg"])
        self.assertEqual(live.participant_for_label("b_leg").aor_normalized, "sip:Extension-015550900@pbx.example.ie")
        self.assertEqual(live.participant_for_label("b_leg").name, "Main Line 015550900")
        self.assertEqual(live.to_dict()["participants"][0]["recv_labels"], ["b_leg"])


class DialectChoiceTests(SynchronousTestCase):
    def test_rfc_namespace_with_draft_shapes_uses_the_draft_reader(self) -> None:
        document = parse_metadata(
            f'<recording xmlns="{RFC_NAMESPACE}"><datamode>complete</datamode>'
            '<participant id="p" session="s"><nameID aor="sip:p@h"/><send>t</send></participant>'
            '<stream id="t" session="s"><label>1</label></stream></recording>'.encode()
        )
        self.assertEqual(document.dialect, DRAFT_DIALECT)
        self.assertEqual(document.participants[0].send, ("t",))
        self.assertEqual(document.streams[0].session_id, "s")
        plain = parse_metadata(
            f'<recording xmlns="{RFC_NAMESPACE}"><datamode>complete</datamode></recording>'.encode()
        )
        self.assertEqual((plain.dialect, plain.tolerances), (RFC_DIALECT, []))

    def test_sender_guesses(self) -> None:
        """One stream: everyone sends it; counts that differ, or a partial: no guess."""
        def rfc(body: str, mode: str = "complete") -> bytes:
            return f'<recording xmlns="{RFC_NAMESPACE}"><datamode>{mode}</datamode>{body}</recording>'.encode()

        two = '<participant participant_id="a"/><participant participant_id="b"/>'
        one_stream = '<stream stream_id="s"><label>1</label></stream>'
        self.assertEqual([p.send for p in parse_metadata(rfc(two + one_stream)).participants], [("s",), ("s",)])
        three_streams = one_stream + '<stream stream_id="t"/><stream stream_id="u"/>'
        self.assertEqual([p.send for p in parse_metadata(rfc(two + three_streams)).participants], [(), ()])
        self.assertEqual([p.send for p in parse_metadata(rfc(two + one_stream, "partial")).participants], [(), ()])

"""Participants from X-Cisco-Recording-Participant headers (Cisco network-based
recording sends a plain SDP offer and no rs-metadata)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from siprec.recording.metadata import RecordingMetadata, parse_metadata
from siprec.recording.vendor_headers import participants_from_headers
from tests.recording.test_session import Harness, M

HEADERS = {"X-Cisco-Recording-Participant": [
    'sip:2164485925@cust.example.org;media-index="0"',
    'sip:20053@10.144.106.41;media-index="1"']}


class HeaderParticipantTests(SynchronousTestCase):
    def test_parties_and_the_streams_they_send(self) -> None:
        model = RecordingMetadata()
        model.apply(parse_metadata(participants_from_headers(HEADERS, {0: "0", 1: "1"})))
        self.assertEqual(model.participant_for_label("0").aor, "sip:2164485925@cust.example.org")
        self.assertEqual(model.participant_for_label("1").aor, "sip:20053@10.144.106.41")

    def test_no_headers_no_document(self) -> None:
        self.assertIsNone(participants_from_headers({"User-Agent": ["x"]}, {0: "0"}))
        self.assertIsNone(participants_from_headers({}, {}))

    def test_hostile_values_stay_well_formed(self) -> None:
        headers = {"x-cisco-recording-participant": ['<sip:a"&b@x>;media-index="0"',
                                                     ";media-index=1", "sip:c@x;media-index=99"]}
        model = RecordingMetadata()
        model.apply(parse_metadata(participants_from_headers(headers, {0: "l<0>"})))
        self.assertEqual(model.participant_for_label("l<0>").aor, 'sip:a"&b@x')

    def test_a_cube_call_shows_its_participants(self) -> None:
        """One m-line (no a=label) sent by the first party: the API names it."""
        h = Harness(self)
        session, _ = h.call([M(None)], sip_info={"headers": HEADERS})
        [stream] = session.summary()["streams"]
        self.assertEqual(stream["participant"]["aor"], "sip:2164485925@cust.example.org")
        self.assertEqual(len(session.summary()["participants"]), 2)
        self.assertIn("X-Cisco-Recording-Participant", " ".join(session.tolerances))
        self.assertEqual(session.metadata_documents, [])  # nothing was received as metadata

"""Tests for siprec.recording.session: offer/answer, re-offers, pauses, metadata,
the call record and finalisation, with a fake media service and a Clock."""

from __future__ import annotations

import base64
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from siprec.recording import session as session_module
from siprec.recording.manager import ManagerSettings, RecordingManager
from siprec.media.events import DtmfDigit
from siprec.recording.files import write_atomically
from siprec.recording.session import RecordingSession, safe_filename
from siprec.sip.sdp import SessionDescription, parse_sdp
from siprec.sip.errors import CallRejected

START = 1_700_000_000.0
SRC_HOST = "198.51.100.7"
OUR_ADDRESS = "192.0.2.10"
# 98 and 99: names no decoder will ever have (the codec registry grows).
CODEC_NAMES = {0: "PCMU/8000", 8: "PCMA/8000", 96: "opus/48000/2",
               98: "X-VENDOR-A/8000", 99: "X-VENDOR-B/16000"}


# -- fakes -------------------------------------------------------------------------


class FakeStream:
    """A stream handle as MediaService.open_stream returns it: port, stats(),
    pause/resume, set_remote, last_packet_at, close(); ``emit`` plays the media's events."""

    def __init__(self, media: "FakeMedia", spec, on_event, call_start: float, port: int,
                 channels: int = 1, deliver_audio: bool = False) -> None:
        self.media = media
        self.spec = spec
        self.on_event = on_event
        self.call_start = call_start
        self.port = port
        self.paused = spec.paused
        self.remote = spec.remote_address
        self.deliver_audio = deliver_audio
        self.calls: List[str] = []
        self.packets = 0
        self.last_packet_at: Optional[float] = None
        self.start_offset_samples = 0
        self.channels = channels
        self.closed = False

    def receive(self, count: int, now: float) -> None:
        self.packets += count
        self.last_packet_at = now

    def emit(self, event) -> None:
        self.on_event(event)

    def stats(self) -> dict:
        return {"packets": self.packets, "bytes": self.packets * 172,
                "last_packet_at": self.last_packet_at,
                "start_offset_samples": self.start_offset_samples,
                "channels": self.channels, "sample_rate": 8000, "paused": self.paused,
                "late_dropped": 0, "bad_packets": 0, "foreign_packets": 0,
                "overflow_dropped": 0}

    def pause(self) -> None:
        self.calls.append("pause")
        self.paused = True

    def resume(self) -> None:
        self.calls.append("resume")
        self.paused = False

    def set_remote(self, address) -> None:
        self.calls.append("set_remote")
        self.remote = address

    def close(self):
        self.closed = True
        self.media.closed.append(self)
        if self.media.close_result is not None:
            return self.media.close_result(self)
        return succeed(self.stats())


class FakeMedia:
    """open_stream() like MediaService, without sockets.

    Opening creates the (empty) WAV file as the real stream does, so the
    combine step sees which legs have a file.
    """

    def __init__(self, first_port: int = 40000) -> None:
        self.next_port = first_port
        self.opened: List[FakeStream] = []
        self.closed: List[FakeStream] = []
        self.fail_after: Optional[int] = None  # open this many, then refuse
        self.close_result = None  # None: succeed with stats; else a callable(stream) -> Deferred
        self.channels = 1

    def open_stream(self, spec, on_event, call_start, deliver_audio=False):
        if self.fail_after is not None and len(self.opened) >= self.fail_after:
            raise RuntimeError("no bindable RTP port pair left in 40000-40010")
        stream = FakeStream(self, spec, on_event, call_start, self.next_port, self.channels,
                            deliver_audio)
        self.next_port += 2
        with open(spec.wav_path, "ab"):
            pass
        self.opened.append(stream)
        return stream


class FakeMetrics:
    def __init__(self) -> None:
        self.started = 0
        self.ended: List[str] = []
        self.metadata_warnings = 0

    def call_started(self) -> None:
        self.started += 1

    def call_ended(self, reason: str) -> None:
        self.ended.append(reason)

    def metadata_warning(self) -> None:
        self.metadata_warnings += 1


class FakeCombine:
    """Records what would be combined; writes nothing."""

    def __init__(self) -> None:
        self.calls: List[Tuple[list, str, int]] = []
        self.error: Optional[Exception] = None

    def __call__(self, legs, out_path, sample_rate):
        self.calls.append((list(legs), out_path, sample_rate))
        if self.error is not None:
            raise self.error
        return 8000


def run_now(f, *args):
    """The thread-pool runner, synchronous."""
    return maybeDeferred(f, *args)


class Harness:
    """A manager on a Clock with fake media, combine and metrics."""

    def __init__(self, test: SynchronousTestCase, runner=run_now, transcription=None,
                 events=None, **settings) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.dir = os.path.abspath(test.mktemp())
        os.makedirs(self.dir)
        self.media = FakeMedia()
        self.metrics = FakeMetrics()
        self.combine = FakeCombine()
        self.manager = RecordingManager(
            self.clock, self.media,
            ManagerSettings(recording_dir=self.dir, media_address=OUR_ADDRESS, **settings),
            metrics=self.metrics, run_blocking=runner, combine=self.combine,
            transcription=transcription, events=events)

    def session(self, call_id: str = "call-1@src.example.com", sip_info: Optional[dict] = None
                ) -> RecordingSession:
        return self.manager.create_session(call_id, sip_info or {})

    def call(self, streams: Sequence["M"], metadata: Optional[bytes] = None,
             call_id: str = "call-1@src.example.com", sip_info: Optional[dict] = None
             ) -> Tuple[RecordingSession, SessionDescription]:
        session = self.session(call_id, sip_info)
        answer = session.offer(offer(streams), [metadata] if metadata else [])
        return session, answer


# -- SDP and metadata builders -------------------------------------------------------


@dataclass
class M:
    """One offered m-line."""

    label: Optional[str]
    pts: Tuple[int, ...] = (0, 8)
    direction: Optional[str] = "sendonly"
    port: int = 20000
    hold: bool = False  # c=0.0.0.0 on this m-line
    media: str = "audio"
    telephone_event: bool = True


def offer(streams: Sequence[M], version: int = 1) -> SessionDescription:
    lines = ["v=0", f"o=src 4242 {version} IN IP4 {SRC_HOST}", "s=-",
             f"c=IN IP4 {SRC_HOST}", "t=0 0"]
    for n, m in enumerate(streams):
        pts = list(m.pts) + ([101] if m.telephone_event and m.media == "audio" else [])
        lines.append(f"m={m.media} {m.port and m.port + 2 * n} RTP/AVP {' '.join(map(str, pts))}")
        if m.hold:
            lines.append("c=IN IP4 0.0.0.0")
        for pt in m.pts:
            lines.append(f"a=rtpmap:{pt} {CODEC_NAMES.get(pt, 'H264/90000')}")
        if m.telephone_event and m.media == "audio":
            lines.append("a=rtpmap:101 telephone-event/8000")
        if m.label is not None:
            lines.append(f"a=label:{m.label}")
        if m.direction:
            lines.append(f"a={m.direction}")
    return parse_sdp(("\r\n".join(lines) + "\r\n").encode())


NS = "urn:ietf:params:xml:ns:recording:1"


def metadata(streams: Sequence[Tuple[str, str]],
             parties: Sequence[Tuple[str, str, str, Sequence[str]]],
             data_mode: str = "complete") -> bytes:
    """RFC 7865 metadata: streams (stream_id, label); parties (id, aor, name, sent stream ids).
    The first party listed is the caller."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', f'<recording xmlns="{NS}">',
           f"<datamode>{data_mode}</datamode>",
           '<group group_id="grp-1"><associate-time>2026-01-05T09:00:00Z</associate-time></group>',
           '<session session_id="sess-1"><group-ref>grp-1</group-ref></session>']
    for pid, aor, name, _ in parties:
        out.append(f'<participant participant_id="{pid}"><nameID aor="{aor}">'
                   f"<name>{name}</name></nameID></participant>")
    for stream_id, label in streams:
        out.append(f'<stream stream_id="{stream_id}" session_id="sess-1"><label>{label}</label></stream>')
    for pid, _, _, sends in parties:
        recvs = [sid for sid, _ in streams if sid not in sends]
        out.append(f'<participantstreamassoc participant_id="{pid}">'
                   + "".join(f"<send>{s}</send>" for s in sends)
                   + "".join(f"<recv>{r}</recv>" for r in recvs)
                   + "</participantstreamassoc>")
    out.append("</recording>")
    return "\n".join(out).encode()


ALICE = ("p-alice", "sip:alice@example.com", "Alice")
BOB = ("p-bob", "sip:bob@example.net", "Bob")


def two_party_metadata(alice_label: str = "leg0", bob_label: str = "leg1",
                       caller_first: bool = True) -> bytes:
    streams = [("st-a", alice_label), ("st-b", bob_label)]
    alice = (*ALICE, ["st-a"])
    bob = (*BOB, ["st-b"])
    return metadata(streams, [alice, bob] if caller_first else [bob, alice])


def two_legs() -> List[M]:
    return [M("leg0"), M("leg1")]


def read_json(path: str) -> dict:
    with open(path, "rb") as f:
        return json.loads(f.read())


def actions(stream: FakeStream) -> List[str]:
    """pause/resume calls on a stream (set_remote comes with every re-offer)."""
    return [c for c in stream.calls if c != "set_remote"]


def pauses_of(session: RecordingSession, label: Optional[str],
              reasons=("api", "sdp-inactive", "hold")) -> List[dict]:
    """Pause intervals of a leg (None: the whole call), without the flag fields."""
    return [{k: v for k, v in p.items() if k not in ("recording", "transcription")}
            for p in session.pauses if p["label"] == label and p["reason"] in reasons]


# -- offer / answer ----------------------------------------------------------------


class InitialOfferTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)

    def test_answer_has_a_port_and_label_per_mline(self) -> None:
        """Each accepted m-line is answered recvonly on its own stream's port, label echoed."""
        session, answer = self.h.call(two_legs())
        self.assertEqual([m.port for m in answer.media], [s.port for s in self.h.media.opened])
        self.assertEqual(len(set(m.port for m in answer.media)), 2)
        self.assertEqual([m.label for m in answer.media], ["leg0", "leg1"])
        self.assertEqual([m.own_direction for m in answer.media], ["recvonly", "recvonly"])
        self.assertEqual(answer.connection.address, OUR_ADDRESS)
        self.assertEqual(session.state, "active")
        self.assertEqual(session.started_at, START)
        self.assertIs(self.h.manager.get(session.id), session)
        self.assertEqual(self.h.metrics.started, 1)

    def test_stream_spec_carries_the_plan(self) -> None:
        """The media layer gets the label, formats (answered codec first) and the file name."""
        session, _ = self.h.call([M("leg0", pts=(8, 0))])
        spec = self.h.media.opened[0].spec
        self.assertEqual(spec.label, "leg0")
        self.assertEqual([f.encoding for f in spec.formats], ["PCMA", "PCMU"])
        self.assertEqual(spec.wav_path, os.path.join(self.h.dir, "call-1@src.example.com_leg0.wav"))
        self.assertEqual(spec.remote_address, (SRC_HOST, 20000))
        self.assertFalse(spec.paused)
        self.assertEqual(self.h.media.opened[0].call_start, session.created)
        self.assertFalse(self.h.media.opened[0].deliver_audio)  # no STT, no analysis

    def test_media_events_reach_the_session(self) -> None:
        """What the stream reports (a DTMF digit here) arrives through on_event."""
        session, _ = self.h.call([M("leg0")])
        self.h.media.opened[0].emit(DtmfDigit("leg0", "5", START + 1, 0.1, True))
        self.assertEqual([(d["leg"], d["digit"]) for d in session.dtmf], [("leg0", "5")])

    def test_rejected_mlines_answered_at_port_zero(self) -> None:
        """Video and an undecodable audio m-line get port 0; the good one is recorded."""
        session, answer = self.h.call([M("v", pts=(97,), media="video"), M("odd", pts=(98,)),
                                       M("leg0")])
        self.assertEqual([m.port for m in answer.media][:2], [0, 0])
        self.assertNotEqual(answer.media[2].port, 0)
        self.assertEqual(len(self.h.media.opened), 1)
        self.assertEqual([s.label for s in session.slots.values()], ["leg0"])

    def test_488_names_the_offered_codecs(self) -> None:
        """No decodable codec: 488 with a Warning naming what was offered; nothing opened."""
        session = self.h.session()
        with self.assertRaises(CallRejected) as caught:
            session.offer(offer([M("leg0", pts=(98, 99), telephone_event=False)]), [])
        rejected = caught.exception
        self.assertEqual(rejected.status, 488)
        warning = dict(rejected.headers)["Warning"]
        self.assertTrue(warning.startswith("304 siprec "), warning)
        self.assertIn("X-VENDOR-A/8000", warning)
        self.assertIn("X-VENDOR-B/16000", warning)
        self.assertEqual(warning.count('"'), 2)  # one quoted text, nothing breaking out of it
        self.assertEqual(self.h.media.opened, [])
        self.assertEqual(session.state, "setup")
        self.assertEqual(self.h.manager.active_count, 0)

    def test_503_when_media_cannot_bind(self) -> None:
        """The second stream cannot bind: 503 with Retry-After and the first is closed again."""
        self.h.media.fail_after = 1
        session = self.h.session()
        with self.assertRaises(CallRejected) as caught:
            session.offer(offer(two_legs()), [])
        self.assertEqual(caught.exception.status, 503)
        self.assertIn(("Retry-After", "5"), caught.exception.headers)
        self.assertEqual(self.h.media.closed, self.h.media.opened)
        self.assertEqual(session.state, "setup")
        self.assertEqual(self.h.manager.active_count, 0)

    def test_all_streams_inactive_at_start(self) -> None:
        """An initial offer with every stream a=inactive opens them paused, answered inactive."""
        session, answer = self.h.call([M("leg0", direction="inactive"), M("leg1", direction="inactive")])
        self.assertEqual([m.own_direction for m in answer.media], ["inactive", "inactive"])
        self.assertTrue(all(s.spec.paused for s in self.h.media.opened))
        self.assertEqual([(p["label"], p["reason"], p["start"]) for p in session.pauses],
                         [("leg0", "sdp-inactive", START), ("leg1", "sdp-inactive", START)])
        self.assertIsNone(session.last_activity())

    def test_offer_after_end_is_481(self) -> None:
        session, _ = self.h.call(two_legs())
        session.end("bye")
        with self.assertRaises(CallRejected) as caught:
            session.offer(offer(two_legs(), version=2), [])
        self.assertEqual(caught.exception.status, 481)


class ReofferTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)
        self.session, self.first = self.h.call(two_legs())

    def reoffer(self, streams: Sequence[M], version: int = 2) -> SessionDescription:
        return self.session.offer(offer(streams, version=version), [])

    def test_same_label_keeps_port_and_stream(self) -> None:
        """A re-offer of the same labels keeps each stream's port and MediaStream."""
        streams = [self.session.slots[k].media for k in ("leg0", "leg1")]
        answer = self.reoffer([M("leg0", port=30000), M("leg1", port=30000)])
        self.assertEqual([m.port for m in answer.media], [m.port for m in self.first.media])
        self.assertEqual([self.session.slots[k].media for k in ("leg0", "leg1")], streams)
        self.assertEqual(len(self.h.media.opened), 2)
        self.assertEqual(streams[0].remote, (SRC_HOST, 30000))
        self.assertGreater(answer.origin.session_version, self.first.origin.session_version)
        self.assertEqual(answer.origin.session_id, self.first.origin.session_id)

    def test_new_label_opens_a_stream(self) -> None:
        answer = self.reoffer([M("leg0"), M("leg1"), M("leg2")])
        self.assertEqual(len(answer.media), 3)
        self.assertEqual(len(self.h.media.opened), 3)
        self.assertEqual(answer.media[2].port, self.h.media.opened[2].port)
        self.assertEqual(self.session.files["leg2"],
                         os.path.join(self.h.dir, "call-1@src.example.com_leg2.wav"))

    def test_port_zero_closes_a_stream(self) -> None:
        answer = self.reoffer([M("leg0"), M("leg1", port=0)])
        self.assertEqual([m.port == 0 for m in answer.media], [False, True])
        self.assertEqual(self.h.media.closed, [self.h.media.opened[1]])
        states = {s["label"]: s["state"] for s in self.session.summary()["streams"]}
        self.assertEqual(states, {"leg0": "active", "leg1": "closed"})

    def test_label_back_after_removal_continues_its_file(self) -> None:
        """leg1 removed then offered again, twice: the same leg, file and key each
        time, the new media told to continue the file where it ended."""
        self.h.media.opened[1].receive(50, START)
        self.reoffer([M("leg0"), M("leg1", port=0)], version=2)
        self.reoffer([M("leg0"), M("leg1")], version=3)
        self.h.media.opened[2].receive(20, START + 1)
        self.reoffer([M("leg0"), M("leg1", port=0)], version=4)
        self.reoffer([M("leg0"), M("leg1")], version=5)
        base = os.path.join(self.h.dir, "call-1@src.example.com")
        self.assertEqual(len(self.h.media.opened), 4)
        self.assertEqual({s.spec.wav_path for s in self.h.media.opened[1:]}, {f"{base}_leg1.wav"})
        self.assertIsNone(self.h.media.opened[1].spec.continue_from)
        self.assertIsNotNone(self.h.media.opened[2].spec.continue_from)
        self.assertIsNotNone(self.h.media.opened[3].spec.continue_from)
        self.assertEqual(sorted(self.session.files), ["leg0", "leg1"])
        self.assertEqual(list(self.session.slots), ["leg0", "leg1"])
        leg1 = self.session.slots["leg1"]
        self.assertFalse(leg1.closed)
        self.assertEqual(leg1.final_stats()["packets"], 70)
        self.assertEqual(leg1.port, self.h.media.opened[3].port)

    def test_empty_or_duplicate_label_is_488_and_changes_nothing(self) -> None:
        """An offer with an empty a=label, or two m-lines with one label, is refused
        with a reason; the call goes on exactly as it was."""
        before = self.session.summary()
        for streams in ([M("leg0"), M("")], [M("leg0"), M("leg0")],
                        [M("leg0"), M("leg1"), M("leg1")]):
            with self.assertRaises(CallRejected) as caught:
                self.reoffer(streams, version=2)
            self.assertEqual(caught.exception.status, 488)
            self.assertIn("label", caught.exception.reason)
        self.assertEqual(len(self.h.media.opened), 2)
        self.assertEqual(self.h.media.closed, [])
        self.assertEqual(self.session.summary(), before)

    def test_offer_leaving_no_stream_is_488(self) -> None:
        with self.assertRaises(CallRejected) as caught:
            self.reoffer([M("leg0", port=0), M("leg1", port=0)], version=2)
        self.assertEqual(caught.exception.status, 488)
        self.assertEqual(self.h.media.closed, [])
        self.assertEqual([s["state"] for s in self.session.summary()["streams"]],
                         ["active", "active"])

    def test_failed_initial_offer_leaves_no_pause_behind(self) -> None:
        """The first leg is inactive, the second cannot be opened: 503, and neither
        a pause interval nor a file of the leg that did open remains."""
        h = Harness(self)
        h.media.fail_after = 1
        session = h.session()
        with self.assertRaises(CallRejected) as caught:
            session.offer(offer([M("leg0", direction="inactive"), M("leg1")]), [])
        self.assertEqual(caught.exception.status, 503)
        self.assertEqual(session.pauses, [])
        self.assertEqual(h.media.closed, h.media.opened)
        self.successResultOf(session.end("rejected"))
        self.assertEqual(os.listdir(h.dir), [])

    def test_failed_reoffer_applies_none_of_its_metadata(self) -> None:
        """A re-INVITE refused for want of ports leaves metadata and streams untouched."""
        self.h.media.fail_after = 2
        with self.assertRaises(CallRejected):
            self.session.offer(offer([M("leg0"), M("leg1"), M("leg2")], version=2),
                               [two_party_metadata("leg2", "leg0")])
        self.assertEqual(self.session.metadata_documents, [])
        self.assertEqual(list(self.session.slots), ["leg0", "leg1"])
        self.assertFalse(os.path.exists(os.path.join(self.h.dir, "call-1@src.example.com_leg2.wav")))

    def test_labels_sanitised_alike_get_their_own_files(self) -> None:
        """Two labels that become the same file name (x/1, x:1) keep apart."""
        h = Harness(self)
        session, answer = h.call([M("x/1"), M("x:1")])
        self.assertEqual(len(set(m.port for m in answer.media)), 2)
        self.assertEqual(len(set(s.wav_path for s in session.slots.values())), 2)
        self.successResultOf(session.end("bye"))
        self.assertEqual(len(h.media.closed), 2)

    def test_dropped_mline_closes_and_is_tolerated(self) -> None:
        """A re-offer that simply leaves an m-line out closes it (and says so once)."""
        answer = self.reoffer([M("leg0")])
        self.assertEqual(len(answer.media), 1)
        self.assertTrue(self.session.slots["leg1"].closed)
        self.assertIn("re-offer dropped m-lines instead of setting port 0", self.session.tolerances)

    def test_reoffer_keeps_the_answered_codec(self) -> None:
        """The SRC now lists PCMA first; we keep answering PCMU, which the stream decodes."""
        answer = self.reoffer([M("leg0", pts=(8, 0)), M("leg1", pts=(8, 0))])
        self.assertEqual(answer.media[0].formats[0], "0")
        self.assertEqual(self.session.slots["leg0"].codec, "PCMU/8000")

    def test_reoffer_that_cannot_bind_changes_nothing(self) -> None:
        """A re-offer adding a stream with no port left gets 503 and the call stays as it was."""
        self.h.media.fail_after = 2
        with self.assertRaises(CallRejected) as caught:
            self.reoffer([M("leg0", direction="inactive"), M("leg1", port=0), M("leg2")])
        self.assertEqual(caught.exception.status, 503)
        self.assertEqual(self.h.media.closed, [])
        self.assertEqual([s.label for s in self.session.slots.values() if not s.closed], ["leg0", "leg1"])
        self.assertFalse(self.session.slots["leg0"].paused_by_sdp)
        self.assertEqual(self.session.pauses, [])


class PauseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)
        self.session, _ = self.h.call(two_legs())
        self.leg0, self.leg1 = self.h.media.opened

    def reoffer(self, streams, version):
        return self.session.offer(offer(streams, version=version), [])

    def test_inactive_pauses_and_sendonly_resumes(self) -> None:
        """a=inactive pauses the stream with an interval; sendonly resumes and closes it."""
        self.h.clock.advance(10)
        answer = self.reoffer([M("leg0", direction="inactive"), M("leg1")], 2)
        self.assertEqual(answer.media[0].own_direction, "inactive")
        self.assertEqual(actions(self.leg0), ["pause"])
        self.assertEqual(self.session.slots["leg0"].paused_by_sdp, True)
        self.h.clock.advance(5)
        answer = self.reoffer(two_legs(), 3)
        self.assertEqual(answer.media[0].own_direction, "recvonly")
        self.assertEqual(actions(self.leg0), ["pause", "resume"])
        self.assertEqual(pauses_of(self.session, "leg0"),
                         [{"label": "leg0", "stream": "leg0", "reason": "sdp-inactive",
                           "start": START + 10, "end": START + 15}])
        self.assertEqual(pauses_of(self.session, "leg1"), [])
        self.assertNotIn("pause", self.leg1.calls)

    def test_hold_with_zero_address_is_held_not_muted(self) -> None:
        """c=0.0.0.0 marks the stream held: not paused (what arrives is kept), no RTP expected."""
        self.reoffer([M("leg0", hold=True), M("leg1", hold=True)], 2)
        states = {s["label"]: s["state"] for s in self.session.summary()["streams"]}
        self.assertEqual(states, {"leg0": "held", "leg1": "held"})
        self.assertNotIn("pause", self.leg0.calls)
        self.assertFalse(self.session.slots["leg0"].paused_by_sdp)
        self.assertIsNone(self.session.last_activity())
        self.assertEqual({p["reason"] for p in self.session.pauses}, {"hold"})
        self.h.clock.advance(3)
        self.reoffer(two_legs(), 3)
        states = {s["label"]: s["state"] for s in self.session.summary()["streams"]}
        self.assertEqual(states, {"leg0": "active", "leg1": "active"})
        self.assertEqual([p["end"] for p in self.session.pauses], [START + 3, START + 3])

    def test_hold_then_inactive_then_resume(self) -> None:
        """Hold to pause to active: one interval per state, each closed when it changes."""
        self.reoffer([M("leg0", hold=True), M("leg1")], 2)
        self.h.clock.advance(1)
        self.reoffer([M("leg0", direction="inactive"), M("leg1")], 3)
        self.h.clock.advance(1)
        self.reoffer(two_legs(), 4)
        self.assertEqual([(p["reason"], p["start"] - START, p["end"] - START)
                          for p in pauses_of(self.session, "leg0")],
                         [("hold", 0, 1), ("sdp-inactive", 1, 2)])
        self.assertEqual(actions(self.leg0), ["pause", "resume"])

    def test_api_pause_and_resume(self) -> None:
        """API pause: every stream paused, one 'api' interval; resume leaves the SRC's
        a=inactive streams paused."""
        self.reoffer([M("leg0", direction="inactive"), M("leg1")], 2)
        self.h.clock.advance(2)
        self.session.pause()
        self.session.pause()  # twice: still one interval
        self.assertTrue(self.session.api_paused)
        self.assertTrue(self.leg1.paused)
        self.assertEqual(pauses_of(self.session, None),
                         [{"label": None, "stream": None, "reason": "api",
                           "start": START + 2, "end": None}])
        self.assertIsNone(self.session.last_activity())
        self.assertEqual(self.session.summary()["paused"], True)
        self.h.clock.advance(3)
        self.session.resume()
        self.assertFalse(self.session.api_paused)
        self.assertEqual(pauses_of(self.session, None)[0]["end"], START + 5)
        self.assertTrue(self.leg0.paused)
        self.assertNotIn("resume", self.leg0.calls)
        self.assertFalse(self.leg1.paused)
        self.assertEqual(actions(self.leg1), ["pause", "resume"])

    def test_pause_transcription_only(self) -> None:
        """pause(recording=False) keeps recording and records an 'api-transcription' interval."""
        self.session.pause(recording=False, transcription=True)
        self.assertFalse(self.session.recording_paused)
        self.assertTrue(self.session.transcription_paused)
        self.assertFalse(self.leg1.paused)
        self.assertEqual([p["reason"] for p in self.session.pauses], ["api-transcription"])
        self.session.resume(recording=False, transcription=True)
        self.assertFalse(self.session.transcription_paused)
        self.assertIsNotNone(self.session.pauses[0]["end"])

    def test_sdp_resume_during_api_pause_stays_paused(self) -> None:
        """The SRC resumes a stream while the operator has paused the call: still muted."""
        self.reoffer([M("leg0", direction="inactive"), M("leg1")], 2)
        self.session.pause()
        self.reoffer(two_legs(), 3)
        self.assertTrue(self.leg0.paused)
        self.session.resume()
        self.assertFalse(self.leg0.paused)

    def test_stream_added_during_api_pause_is_paused(self) -> None:
        self.session.pause()
        self.reoffer([M("leg0"), M("leg1"), M("leg2")], 2)
        self.assertTrue(self.h.media.opened[2].paused)

    def test_resume_restarts_the_rtp_clock(self) -> None:
        """After a long pause, the RTP timeout counts from the resume, not from the last packet."""
        self.leg0.receive(10, START + 1)
        self.reoffer([M("leg0", direction="inactive"), M("leg1", direction="inactive")], 2)
        self.h.clock.advance(600)
        self.reoffer(two_legs(), 3)
        self.assertEqual(self.session.last_activity(), START + 600)
        self.session.pause()
        self.h.clock.advance(600)
        self.session.resume()
        self.assertEqual(self.session.last_activity(), START + 1200)

    def test_last_activity_is_newest_packet(self) -> None:
        self.assertEqual(self.session.last_activity(), START)
        self.leg0.receive(1, START + 4)
        self.leg1.receive(1, START + 7)
        self.assertEqual(self.session.last_activity(), START + 7)


# -- metadata ----------------------------------------------------------------------


def read_metadata_log(path: str) -> List[bytes]:
    """The documents of a ``.metadata.xml`` log, as bytes, via a real XML parser."""
    root = ET.parse(path).getroot()
    out = []
    for element in root.findall("document"):
        if element.get("encoding") == "base64":
            out.append(base64.b64decode(element.text or ""))
        else:
            out.append((element.text or "").encode("utf-8"))
    return out


class MetadataTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)

    def test_broken_xml_warns_and_keeps_the_model(self) -> None:
        """A broken document gives a warning; the call goes on with the model it had."""
        session, _ = self.h.call(two_legs(), two_party_metadata())
        session.metadata_received([b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'><oops"])
        self.assertEqual(len(session.warnings), 1)
        self.assertIn("Unusable rs-metadata", session.warnings[0])
        self.assertEqual(self.h.metrics.metadata_warnings, 1)
        self.assertEqual([p["aor"] for p in session.summary()["participants"]],
                         ["sip:alice@example.com", "sip:bob@example.net"])
        self.assertEqual(session.state, "active")

    def test_broken_xml_in_the_invite_still_records(self) -> None:
        session, answer = self.h.call(two_legs(), b"\x00\xffnot xml at all")
        self.assertEqual(session.state, "active")
        self.assertEqual(len(answer.media), 2)
        self.assertEqual(len(session.warnings), 1)
        self.assertEqual(session.summary()["participants"], [])

    def test_documents_written_verbatim(self) -> None:
        """Every document, broken or not, comes back byte for byte from the log."""
        first = two_party_metadata()
        tricky = (b'<?xml version="1.0"?>\r\n<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
                  b"<datamode>partial</datamode><![CDATA[ x ]]>]]></recording>\r\n")
        latin1 = "<recording>caf\xe9</recording>".encode("latin-1")
        control = b"<recording>\x01\x00</recording>"
        lone_cr = b"<a>\r</a>\r\r\n]]]]>>"
        session, _ = self.h.call(two_legs(), first)
        session.metadata_received([tricky, latin1], source="UPDATE")
        session.metadata_received([control, lone_cr])
        path = os.path.join(self.h.dir, "call-1@src.example.com.metadata.xml")
        self.assertEqual(session.files["metadata"], path)
        self.assertEqual(read_metadata_log(path), [first, tricky, latin1, control, lone_cr])
        root = ET.parse(path).getroot()
        self.assertEqual(root.tag, "siprec-metadata-log")
        self.assertEqual(root.get("call-id"), "call-1@src.example.com")
        self.assertEqual([d.get("seq") for d in root], ["1", "2", "3", "4", "5"])
        self.assertEqual([d.get("source") for d in root][:3], ["INVITE", "UPDATE", "UPDATE"])
        self.assertEqual([d.get("encoding") for d in root], [None, None, "base64", "base64", None])

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.one_of(st.binary(max_size=64),
                              st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")),
                              st.sampled_from([b"]]>", b"\r\n", b"\r", b"<![CDATA[", b"]]]]>"])),
                    min_size=1, max_size=4),
           st.text(max_size=20))
    def test_any_documents_round_trip(self, documents: List[bytes], call_id: str) -> None:
        """Whatever bytes arrive (and whatever the Call-ID), the log is well-formed XML
        that gives every document back exactly."""
        h = Harness(self)
        session, _ = h.call(two_legs(), call_id=call_id)
        session.metadata_received(documents)
        self.assertEqual(read_metadata_log(session.files["metadata"]), documents)
        self.assertEqual(os.path.dirname(session.files["metadata"]), h.dir)

    def test_log_well_formed_with_hostile_call_id(self) -> None:
        call_id = 'x"><evil a="\x00\r\n\t&'
        session, _ = self.h.call(two_legs(), two_party_metadata(), call_id=call_id)
        root = ET.parse(session.files["metadata"]).getroot()
        self.assertEqual(root.get("call-id"), 'x"><evil a="\ufffd\r\n\t&')

    def test_parser_crash_is_a_warning(self) -> None:
        """Even an unexpected parser exception only costs the document."""
        def boom(data):
            raise KeyError("bug")
        self.patch(session_module, "parse_metadata", boom)
        session, _ = self.h.call(two_legs(), two_party_metadata())
        self.assertEqual(session.state, "active")
        self.assertEqual(len(session.warnings), 1)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)


# -- the call record ---------------------------------------------------------------


SIP_INFO = {"from": "<sip:src@sbc.example.com>;tag=9", "to": "<sip:srs@rec.example.com>",
            "p_asserted_identity": "<sip:+15551230000@example.com>", "user_agent": "SBC/9",
            "x_headers": {"X-Call-Ref": "abc"}}


class RecordTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)

    def record(self, session: RecordingSession) -> dict:
        return read_json(os.path.join(self.h.dir, "call-1@src.example.com.json"))

    def test_record_content(self) -> None:
        """Participants, streams in metadata order (caller first although its m-line is
        second), SIP headers, pauses and tolerances."""
        meta = two_party_metadata(alice_label="leg1", bob_label="leg0")
        session, _ = self.h.call(two_legs(), meta, sip_info=SIP_INFO)
        session.tolerate("INVITE without Contact; using the source address")
        self.h.clock.advance(2)
        session.offer(offer([M("leg0", direction="inactive"), M("leg1")], version=2), [])
        record = self.record(session)
        self.assertEqual(record["schema"], "siprec.call-record/1")
        self.assertEqual(record["call_id"], "call-1@src.example.com")
        self.assertEqual([(p["aor"], p["name"]) for p in record["participants"]],
                         [("sip:alice@example.com", "Alice"), ("sip:bob@example.net", "Bob")])
        streams = record["streams"]
        self.assertEqual([s["label"] for s in streams], ["leg1", "leg0"])
        self.assertEqual([s["channel"] for s in streams], [0, 1])
        self.assertEqual([s["participant"]["aor"] for s in streams],
                         ["sip:alice@example.com", "sip:bob@example.net"])
        by_label = {s["label"]: s for s in streams}
        opened = {s.spec.label: s for s in self.h.media.opened}
        for label in ("leg0", "leg1"):
            self.assertEqual(by_label[label]["codec"], "PCMU/8000")
            self.assertEqual(by_label[label]["port"], opened[label].port)
            self.assertEqual(by_label[label]["file"], opened[label].spec.wav_path)
        self.assertEqual(by_label["leg0"]["state"], "paused")
        self.assertEqual(record["sip"], SIP_INFO)
        self.assertEqual(record["group_id"], "grp-1")
        self.assertEqual([(p["label"], p["reason"], p["end"]) for p in record["pauses"]],
                         [("leg0", "sdp-inactive", None)])
        self.assertTrue(record["pauses"][0]["start"].endswith("Z"))
        self.assertEqual(record["tolerances"], ["INVITE without Contact; using the source address"])
        self.assertEqual(record["state"], "active")

    def test_participants_arriving_later_update_the_record(self) -> None:
        session, _ = self.h.call(two_legs())
        self.assertEqual(self.record(session)["participants"], [])
        session.metadata_received([two_party_metadata()])
        self.assertEqual(len(self.record(session)["participants"]), 2)

    def test_tolerate_logs_once(self) -> None:
        events: List[dict] = []
        self.patch(session_module, "log", Logger(observer=events.append))
        session = self.h.session()
        for _ in range(3):
            session.tolerate("Proxy-Require ignored (it is meant for proxies)")
        session.tolerate("another quirk")
        self.assertEqual(session.tolerances, ["Proxy-Require ignored (it is meant for proxies)",
                                              "another quirk"])
        self.assertEqual(len([e for e in events if e.get("note")]), 2)

    def test_record_write_failure_does_not_break_the_call(self) -> None:
        """write_file raising (not only OSError) is logged; the offer is still answered."""
        def runner(f, *args):
            if f is write_atomically:
                raise ValueError("disk on fire")
            return maybeDeferred(f, *args)

        h = Harness(self, runner=runner)
        session, answer = h.call(two_legs(), two_party_metadata())
        self.assertEqual(len(answer.media), 2)
        d = session.end("bye")
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(session.state, "ended")
        self.assertEqual(h.manager.active_count, 0)
        self.assertGreater(h.manager.files.write_errors, 1)


# -- ending and combining ----------------------------------------------------------


class EndTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)

    def test_end_is_idempotent(self) -> None:
        """end() twice returns the same Deferred and closes every stream once."""
        session, _ = self.h.call(two_legs())
        first = session.end("bye")
        second = session.end("api")
        self.assertIs(first, second)
        self.assertEqual(session.end_reason, "bye")
        self.assertEqual(len(self.h.media.closed), 2)
        self.successResultOf(first)
        self.assertEqual(session.state, "ended")
        self.assertEqual(session.ended_at, START)
        self.assertEqual(self.h.metrics.ended, ["bye"])

    def test_ending_until_combined(self) -> None:
        """While the combine runs in the pool the session is 'ending', then 'ended'."""
        pending: List[Deferred] = []

        def later(f, *args):
            d = Deferred()
            pending.append(d)
            d.addCallback(lambda _: f(*args))
            return d

        h = Harness(self, runner=later)
        session, _ = h.call(two_legs())
        for stream in h.media.opened:
            stream.receive(5, START)
        d = session.end("bye")
        self.assertNoResult(d)
        self.assertEqual(session.state, "ending")
        self.assertTrue(session.ended)
        self.assertIs(session.end("again"), d)
        while pending:  # the sidecar writes and the combine, in order
            pending.pop(0).callback(None)
        self.successResultOf(d)
        self.assertEqual(session.state, "ended")
        self.assertEqual(session.files["combined"], session.base_path + ".wav")
        self.assertEqual(h.manager.active_count, 0)

    def test_combine_inputs_caller_first_with_silent_leg(self) -> None:
        """Caller's leg first even as the second m-line; a leg without audio is (None, 0)."""
        meta = two_party_metadata(alice_label="leg1", bob_label="leg0")
        session, _ = self.h.call([M("leg0"), M("leg1"), M("leg2")], meta)
        leg0, leg1, leg2 = self.h.media.opened
        leg1.receive(10, START)
        leg1.start_offset_samples = 160
        leg2.receive(10, START)
        self.successResultOf(session.end("bye"))
        [(legs, out, rate)] = self.h.combine.calls
        self.assertEqual(legs, [(leg1.spec.wav_path, 160), (None, 0), (leg2.spec.wav_path, 0)])
        self.assertEqual(out, session.base_path + ".wav")
        self.assertEqual(rate, 8000)
        streams = read_json(session.base_path + ".json")["streams"]
        self.assertEqual([(s["label"], s["channel"]) for s in streams],
                         [("leg1", 0), ("leg0", 1), ("leg2", 2)])
        self.assertEqual(read_json(session.base_path + ".json")["files"]["combined"], out)

    def test_no_combine_without_audio_or_when_disabled(self) -> None:
        session, _ = self.h.call(two_legs())
        self.successResultOf(session.end("bye"))
        self.assertEqual(self.h.combine.calls, [])
        h = Harness(self, combine_legs=False)
        session, _ = h.call(two_legs())
        h.media.opened[0].receive(3, START)
        self.successResultOf(session.end("bye"))
        self.assertEqual(h.combine.calls, [])
        self.assertNotIn("combined", session.files)

    def test_combine_failure_still_ends(self) -> None:
        """A combine that raises: logged, session ended, record written, manager forgets it."""
        self.h.combine.error = ValueError("leg file is not a WAV")
        session, _ = self.h.call(two_legs())
        self.h.media.opened[0].receive(3, START)
        self.successResultOf(session.end("bye"))
        self.assertEqual(session.state, "ended")
        self.assertNotIn("combined", session.files)
        self.assertEqual(read_json(session.base_path + ".json")["state"], "ended")
        self.assertEqual(self.h.manager.active_count, 0)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_stream_close_failure_still_ends(self) -> None:
        """close_stream failing: stats come from the stream itself and the call ends."""
        self.h.media.close_result = lambda stream: fail(OSError("port already gone"))
        session, _ = self.h.call(two_legs())
        self.h.media.opened[0].receive(7, START)
        self.successResultOf(session.end("bye"))
        self.assertEqual(session.state, "ended")
        self.assertEqual(session.slots["leg0"].final_stats()["packets"], 7)
        self.assertEqual(self.h.manager.stream_totals()["packets"], 7)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)

    def test_manager_bookkeeping_failure_still_ends(self) -> None:
        def broken(session):
            raise RuntimeError("bookkeeping bug")
        session, _ = self.h.call(two_legs())
        self.h.manager.context.ended = broken
        self.successResultOf(session.end("bye"))
        self.assertEqual(session.state, "ended")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_end_during_setup_writes_no_record(self) -> None:
        session = self.h.session()
        self.successResultOf(session.end("cancelled"))
        self.assertEqual(session.state, "ended")
        self.assertEqual(os.listdir(self.h.dir), [])
        self.assertEqual(self.h.metrics.ended, [])

    def test_end_closes_open_intervals(self) -> None:
        session, _ = self.h.call(two_legs())
        session.offer(offer([M("leg0", direction="inactive"), M("leg1")], version=2), [])
        session.pause()
        self.h.clock.advance(4)
        self.successResultOf(session.end("bye"))
        self.assertEqual([p["end"] for p in session.pauses], [START + 4] * 3)
        record = read_json(session.base_path + ".json")
        self.assertTrue(all(p["end"] for p in record["pauses"]))


class ChannelOrderTests(SynchronousTestCase):
    """The combined file's channels are fixed when the call starts."""

    def setUp(self) -> None:
        self.h = Harness(self)

    def channels(self, session: RecordingSession) -> Dict[str, int]:
        return {s["label"]: s["channel"] for s in session.summary()["streams"]}

    def test_later_metadata_does_not_move_channels(self) -> None:
        """The caller (leg1) goes on hold and new metadata lists Bob first: channels stay,
        and the record agrees with what was combined."""
        session, _ = self.h.call(two_legs(), two_party_metadata("leg1", "leg0"))
        self.assertEqual(self.channels(session), {"leg1": 0, "leg0": 1})
        session.offer(offer([M("leg0"), M("leg1", hold=True)], version=2),
                      [two_party_metadata("leg1", "leg0", caller_first=False)])
        self.assertEqual(session.metadata.ordered_labels(), ["leg0", "leg1"])  # it did reorder
        self.assertEqual(self.channels(session), {"leg1": 0, "leg0": 1})
        for stream in self.h.media.opened:
            stream.receive(4, START)
        self.successResultOf(session.end("bye"))
        [(legs, _, _)] = self.h.combine.calls
        by_path = {s.spec.wav_path: s.spec.label for s in self.h.media.opened}
        self.assertEqual([by_path[path] for path, _ in legs], ["leg1", "leg0"])
        record = read_json(session.base_path + ".json")
        self.assertEqual([(s["label"], s["channel"]) for s in record["streams"]],
                         [("leg1", 0), ("leg0", 1)])

    def test_streams_added_later_go_last(self) -> None:
        session, _ = self.h.call(two_legs(), two_party_metadata("leg1", "leg0"))
        meta = metadata([("st-c", "leg2"), ("st-a", "leg1"), ("st-b", "leg0")],
                        [("p-carol", "sip:carol@example.org", "Carol", ["st-c"]),
                         (*ALICE, ["st-a"]), (*BOB, ["st-b"])])
        session.offer(offer([M("leg0"), M("leg1"), M("leg2")], version=2), [meta])
        self.assertEqual(self.channels(session), {"leg1": 0, "leg0": 1, "leg2": 2})

    def test_order_settles_when_first_metadata_arrives_late(self) -> None:
        """A call that started without metadata is ordered caller-first once, by the first
        metadata that names its streams, and then stays."""
        session, _ = self.h.call(two_legs())
        self.assertEqual(self.channels(session), {"leg0": 0, "leg1": 1})
        session.metadata_received([two_party_metadata("leg1", "leg0")])
        self.assertEqual(self.channels(session), {"leg1": 0, "leg0": 1})
        session.metadata_received([two_party_metadata("leg1", "leg0", caller_first=False)])
        self.assertEqual(self.channels(session), {"leg1": 0, "leg0": 1})

    def test_reappearing_label_keeps_its_channel(self) -> None:
        session, _ = self.h.call(two_legs())
        self.h.media.opened[1].receive(2, START)
        session.offer(offer([M("leg0"), M("leg1", port=0)], version=2), [])
        session.offer(offer(two_legs(), version=3), [])
        self.h.media.opened[0].receive(2, START)
        self.h.media.opened[2].receive(2, START)
        self.successResultOf(session.end("bye"))
        [(legs, _, _)] = self.h.combine.calls
        self.assertEqual([path for path, _ in legs],
                         [s.spec.wav_path for s in self.h.media.opened[:2]])
        streams = read_json(session.base_path + ".json")["streams"]
        self.assertEqual([(s["key"], s["channel"], s["packets"]) for s in streams],
                         [("leg0", 0, 2), ("leg1", 1, 4)])

    def test_stereo_and_silent_legs_match_the_combined_layout(self) -> None:
        """A stereo leg takes two channels, a silent one a single channel: the record
        numbers channels as the combined file has them."""
        self.h.manager.context.can_decode = lambda fmt: True
        self.h.media.channels = 2
        session, _ = self.h.call([M("a", pts=(96,)), M("b", pts=(96,)), M("c", pts=(96,))])
        self.assertEqual([s["channels"] for s in session.summary()["streams"]], [2, 2, 2])
        a, b, c = self.h.media.opened
        a.receive(1, START)
        c.receive(1, START)
        self.successResultOf(session.end("bye"))
        streams = read_json(session.base_path + ".json")["streams"]
        self.assertEqual([(s["label"], s["channel"], s["channels"]) for s in streams],
                         [("a", 0, 2), ("b", 2, 1), ("c", 3, 2)])


    def test_opus_announced_stereo_but_decoded_mono_is_one_channel_live(self) -> None:
        """opus/48000/2 (always "/2", RFC 7587) decoded mono: the live view numbers
        channels as the combined file will, not as the rtpmap says."""
        self.h.manager.context.can_decode = lambda fmt: True
        session, _ = self.h.call([M("a", pts=(96,)), M("b", pts=(96,))])
        self.assertEqual([(s["channel"], s["channels"]) for s in session.summary()["streams"]],
                         [(0, 1), (1, 1)])

class UnsafeCallIdTests(SynchronousTestCase):
    HOSTILE = ["../../etc/passwd", "/etc/passwd", "a/b/c", "a\\b", "x\x00y", "..", ".", "",
               "A" * 5000, ".hidden", "\u00e9\u4e2d", "a_b"]

    def test_files_stay_inside_recording_dir(self) -> None:
        h = Harness(self)
        for n, call_id in enumerate(self.HOSTILE):
            session, _ = h.call([M("../leg/0"), M("leg1")], two_party_metadata(), call_id=call_id)
            self.successResultOf(session.end("bye"))
        root = os.path.realpath(h.dir)
        paths = [s.spec.wav_path for s in h.media.opened]
        for name in os.listdir(h.dir):
            paths.append(os.path.join(h.dir, name))
        for path in paths:
            self.assertEqual(os.path.dirname(os.path.realpath(path)), root, path)
            self.assertLessEqual(len(os.path.basename(path)), 255)
        self.assertEqual(len([n for n in os.listdir(h.dir) if n.endswith(".json")]), len(self.HOSTILE))

    def test_distinct_call_ids_never_share_files(self) -> None:
        names = {safe_filename(c) for c in self.HOSTILE + ["a/b", "a_b", "A" * 5000 + "x"]}
        self.assertEqual(len(names), len(self.HOSTILE) + 2)

    def test_safe_names_unchanged_and_long_ones_capped(self) -> None:
        self.assertEqual(safe_filename("f81d4fae-7dec@198.51.100.7"), "f81d4fae-7dec@198.51.100.7")
        for text in ["A" * 5000, "../" * 100, ""]:
            name = safe_filename(text, 60)
            self.assertLessEqual(len(name), 60)
            self.assertNotIn("/", name)
            self.assertFalse(name.startswith("."))
            self.assertTrue(name)

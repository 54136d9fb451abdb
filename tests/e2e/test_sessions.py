"""End to end: call life cycle on the real service (127.0.0.1), beyond the basic call."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import treq
from twisted.web.client import HTTPConnectionPool
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from siprec.testing.src import SrcClient, StreamOffer, metadata_xml, multipart_body, sdp_offer, tone
from tests.e2e.harness import (_sleep, dominant_frequency, frames, packets_arrived, read_wav,
                               start_server, wait_for)


def assert_close(test, actual, expected, delta):
    test.assertLessEqual(abs(actual - expected), delta,
                         f"{actual} is not within {delta} of {expected}")


def two_streams():
    return [StreamOffer("leg0", payload_type=0), StreamOffer("leg1", payload_type=8)]


class CallLifecycleTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.service = start_server(self, **getattr(self, "env", {}))
        self.client = SrcClient(reactor, ("127.0.0.1", self.service.config.ports[0]))
        yield self.client.start()
        self.addCleanup(self.client.stop)

    def files(self, call):
        return os.path.join(self.service.config.recording_dir, call.call_id)

    @defer.inlineCallbacks
    def finished(self, call):
        session = self.service.manager.get(call.call_id)
        yield session.end("test")
        return session

    def api(self, path, method="GET"):
        url = f"http://127.0.0.1:{self.service.config.http_port}{path}"
        return treq.request(method, url, pool=HTTPConnectionPool(reactor, persistent=False))

    @defer.inlineCallbacks
    def test_retransmitted_invite_is_one_call(self):
        """The same INVITE sent three times creates one session and gets the same answer."""
        call = yield self.client.invite(two_streams())
        self.assertEqual(call.final.status, 200)
        self.client.send_raw(call.invite_bytes)
        self.client.send_raw(call.invite_bytes)

        def oks():
            return [r for r in call.responses if r.status == 200 and r.cseq.method == "INVITE"]
        yield wait_for(lambda: len(oks()) >= 3, 5, "an answer to each retransmission")
        oks = oks()
        self.assertEqual(len(oks), 3)
        self.assertEqual({r.body for r in oks}, {oks[0].body})
        self.assertEqual({r.to.tag for r in oks}, {call.to_tag})
        self.assertEqual(len([s for s in self.service.manager.sessions()
                              if s.call_id == call.call_id]), 1)
        response = yield self.client.bye(call)
        self.assertEqual(response.status, 200)

    @defer.inlineCallbacks
    def test_reinvite_pause_resume_writes_silence(self):
        """a=inactive pauses the legs; the pause becomes silence of about its length and
        is listed in the call record."""
        call = yield self.client.invite(two_streams())
        signals = {"leg0": tone(440, 1.0), "leg1": tone(1000, 1.0)}
        yield self.client.send_audio(call, signals)
        response = yield self.client.reinvite(call, {"leg0": "inactive", "leg1": "inactive"})
        self.assertEqual(response.status, 200)
        self.assertIn(b"a=inactive", response.body)
        # real time on purpose: the pause's length is what the WAV is checked for
        yield _sleep(1.5)
        response = yield self.client.reinvite(call, {"leg0": "sendonly", "leg1": "sendonly"})
        self.assertEqual(response.status, 200)
        self.assertIn(b"a=recvonly", response.body)
        yield self.client.send_audio(call, signals)
        session = self.service.manager.get(call.call_id)
        yield wait_for(packets_arrived(session, {k: 2 * frames(v) for k, v in signals.items()}), 5,
                       "every RTP packet sent to reach the server before the BYE")
        yield self.client.bye(call)
        yield self.finished(call)

        rate, _, data = read_wav(self.files(call) + "_leg0.wav")
        total = len(data) / rate
        assert_close(self, total, 3.5, 0.3)
        level = np.abs(data[:, 0].astype(np.int32))
        # loud first and last second, quiet in the middle
        self.assertGreater(level[: rate // 2].mean(), 1000)
        self.assertLess(level[int(1.3 * rate): int(2.3 * rate)].mean(), 50)
        self.assertGreater(level[-rate // 2:].mean(), 1000)
        with open(self.files(call) + ".json") as f:
            record = json.load(f)
        pauses = [p for p in record["pauses"] if p["label"] == "leg0"]
        self.assertEqual(len(pauses), 1)
        self.assertIsNotNone(pauses[0]["end"])

    @defer.inlineCallbacks
    def test_options_out_of_dialog(self):
        """OPTIONS gets 200 with Allow, Accept and Supported."""
        call = self.client.calls.setdefault("opt@test", _bare_call(self.client, "opt@test"))
        response = yield self.client.request(call, "OPTIONS", to_tag=None)
        self.assertEqual(response.status, 200)
        self.assertIn("INVITE", response.headers.get("Allow"))
        self.assertIn("application/rs-metadata+xml", response.headers.get("Accept"))
        self.assertIn("siprec", response.headers.get("Supported"))

    @defer.inlineCallbacks
    def test_api_lists_and_terminates(self):
        """GET /api/sessions shows the live call; DELETE sends BYE to the SRC and finalises."""
        call = yield self.client.invite(two_streams())
        yield self.client.send_audio(call, {"leg0": tone(440, 0.4), "leg1": tone(1000, 0.4)})
        response = yield self.api("/api/sessions")
        self.assertEqual(response.code, 200)
        listing = yield response.json()
        item = [s for s in listing["sessions"] if s["call_id"] == call.call_id][0]
        self.assertEqual(item["state"], "active")
        self.assertEqual([s["label"] for s in item["streams"]], ["leg0", "leg1"])
        self.assertEqual(item["streams"][0]["codec"], "PCMU/8000")
        self.assertGreater(item["streams"][0]["packets"], 10)
        self.assertEqual(item["participants"][0]["aor"], "sip:alice@example.com")

        response = yield self.api(f"/api/sessions/{item['id']}", "DELETE")
        self.assertIn(response.code, (200, 202))
        yield response.content()
        yield wait_for(lambda: [r for r in call.requests if r.method == "BYE"], 5,
                       "the BYE the API sends to the SRC")
        byes = [r for r in call.requests if r.method == "BYE"]
        self.assertEqual(len(byes), 1)
        session = yield self.finished(call)
        self.assertEqual(session.state, "ended")
        self.assertEqual(session.end_reason, "api")
        self.assertTrue(os.path.exists(self.files(call) + ".wav"))
        response = yield self.api(f"/api/sessions/{call.call_id}")
        detail = yield response.json()
        self.assertEqual(detail["state"], "ended")

    @defer.inlineCallbacks
    def test_metadata_only_update_merges(self):
        """A metadata-only UPDATE is answered 200 without a body and merged into the model;
        every document lands verbatim in <Call-ID>.metadata.xml."""
        streams = two_streams()
        call = yield self.client.invite(streams)
        update = metadata_xml("s1", streams, parties=(("sip:alice@example.com", "Alice"),
                                                      ("sip:carol@example.com", "Carol")),
                              data_mode="complete")
        response = yield self.client.reinvite(call, sdp=None, metadata=update, method="UPDATE")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")
        yield self.client.bye(call)
        yield self.finished(call)
        with open(self.files(call) + ".json") as f:
            record = json.load(f)
        aors = [p["aor"] for p in record["participants"]]
        self.assertIn("sip:carol@example.com", aors)
        with open(self.files(call) + ".metadata.xml", "rb") as f:
            log = f.read()
        self.assertEqual(log.count(b"<document "), 2)
        self.assertIn(b"sip:carol@example.com", log)

    @defer.inlineCallbacks
    def test_broken_metadata_still_recorded(self):
        """Broken XML does not cost the call: 200, audio recorded, a warning kept."""
        streams = two_streams()
        sdp = sdp_offer("127.0.0.1", streams)
        call = yield self.client.invite(streams, metadata=b"<recording><participant></recording")
        self.assertEqual(call.final.status, 200)
        yield self.client.send_audio(call, {"leg0": tone(440, 0.5)})
        yield self.client.bye(call)
        session = yield self.finished(call)
        self.assertTrue(any("metadata" in w for w in session.warnings))
        rate, _, data = read_wav(self.files(call) + "_leg0.wav")
        assert_close(self, dominant_frequency(data[:, 0], rate), 440, 10)
        del sdp

    @defer.inlineCallbacks
    def test_plain_sdp_invite_recorded(self):
        """An INVITE with only SDP (no metadata) is recorded as a plain call."""
        call = yield self.client.invite([StreamOffer("1")], metadata=None)
        self.assertEqual(call.final.status, 200)
        yield self.client.send_audio(call, {"1": tone(700, 0.5)})
        yield self.client.bye(call)
        yield self.finished(call)
        rate, _, data = read_wav(self.files(call) + "_1.wav")
        assert_close(self, dominant_frequency(data[:, 0], rate), 700, 10)

    @defer.inlineCallbacks
    def test_undecodable_offer_488(self):
        """An offer with only EVS (no decoder exists here) is answered 488 with a Warning."""
        streams = [StreamOffer("1")]
        sdp = (b"v=0\r\no=src 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               b"m=audio 40000 RTP/AVP 96\r\na=rtpmap:96 EVS/16000\r\na=label:1\r\na=sendonly\r\n")
        call = yield self.client.invite(streams, body_override=multipart_body(
            sdp, metadata_xml("s", streams)))
        self.assertEqual(call.final.status, 488)
        self.assertIn("EVS", call.final.headers.get("Warning") or "")
        self.assertEqual(self.service.manager.active_count, 0)

    @defer.inlineCallbacks
    def test_garbage_does_not_kill_listeners(self):
        """Garbage on UDP and TCP is dropped or answered; the server still answers OPTIONS."""
        port = self.service.config.ports[0]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for junk in (b"\x00\xff" * 50, b"INVITE\r\n\r\n", b"SIP/2.0 200\r\n", os.urandom(1400)):
            udp.sendto(junk, ("127.0.0.1", port))
        udp.close()
        tcp = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(tcp.close)
        tcp.sendall(b"GARBAGE garbage garbage\r\nContent-Length: x\r\n\r\n")
        tcp.setblocking(False)

        def tcp_answered():
            try:
                return tcp.recv(65536, socket.MSG_PEEK) or "closed"
            except BlockingIOError:
                return None
            except ConnectionError as e:
                return repr(e)
        yield wait_for(tcp_answered, 5, "the server to answer or close the garbage TCP connection")
        # The UDP junk sits in the listener's queue ahead of this OPTIONS (same
        # socket, read in order): its answer means the junk was dealt with too.
        call = _bare_call(self.client, "after-garbage@test")
        self.client.calls[call.call_id] = call
        response = yield self.client.request(call, "OPTIONS", to_tag=None)
        self.assertEqual(response.status, 200)

    @defer.inlineCallbacks
    def test_malformed_request_gets_400_with_reason(self):
        """A request with a bad CSeq is answered 400 with a reason naming the problem."""
        call = _bare_call(self.client, "bad-cseq@test")
        self.client.calls[call.call_id] = call
        request = self.client.build_request(call, "OPTIONS", to_tag=None)
        request.headers.set("CSeq", "1 INVITE")
        waiter = self.client.wait_response(call.call_id, "1 INVITE")
        self.client.send(request)
        response = yield waiter
        self.assertEqual(response.status, 400)
        self.assertIn("CSeq", response.reason)

    @defer.inlineCallbacks
    def test_graceful_shutdown_sends_bye(self):
        """Stopping the service sends BYE for every call and finalises the files."""
        call = yield self.client.invite(two_streams())
        yield self.client.send_audio(call, {"leg0": tone(440, 0.4), "leg1": tone(1000, 0.4)})
        yield self.service.stopService()
        yield wait_for(lambda: call.requests, 5, "the BYE sent on shutdown")
        self.assertEqual([r.method for r in call.requests], ["BYE"])
        rate, channels, data = read_wav(self.files(call) + ".wav")
        self.assertEqual(channels, 2)
        assert_close(self, len(data) / rate, 0.4, 0.1)


class RtpTimeoutTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_silent_call_ends(self):
        """RTP_TIMEOUT ends a call that sends no RTP, with a BYE to the SRC."""
        service = start_server(self, RTP_TIMEOUT="2s")
        client = SrcClient(reactor, ("127.0.0.1", service.config.ports[0]))
        yield client.start()
        self.addCleanup(client.stop)
        call = yield client.invite(two_streams())
        yield client.send_audio(call, {"leg0": tone(440, 0.2)})
        silent_since = reactor.seconds()
        yield wait_for(lambda: call.requests, 6, "the RTP timeout's BYE")
        # not before the timeout: 2 s without RTP (silent_since is a tick after the last packet)
        self.assertGreaterEqual(reactor.seconds() - silent_since, 1.9)
        self.assertEqual([r.method for r in call.requests], ["BYE"])
        session = service.manager.get(call.call_id)
        yield session.end("x")
        self.assertEqual(session.end_reason, "rtp-timeout")


class RequireMetadataTests(TestCase):
    @defer.inlineCallbacks
    def test_plain_invite_forbidden(self):
        """SIPREC_REQUIRE_METADATA=true answers an SDP-only INVITE 403."""
        service = start_server(self, SIPREC_REQUIRE_METADATA="true")
        client = SrcClient(reactor, ("127.0.0.1", service.config.ports[0]))
        yield client.start()
        self.addCleanup(client.stop)
        call = yield client.invite([StreamOffer("1")], metadata=None)
        self.assertEqual(call.final.status, 403)


def _bare_call(client, call_id):
    from siprec.testing.src import SrcCall
    return SrcCall(client, call_id, [])


class MidCallTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.service = start_server(self)
        self.client = SrcClient(reactor, ("127.0.0.1", self.service.config.ports[0]))
        yield self.client.start()
        self.addCleanup(self.client.stop)

    def files(self, call):
        return os.path.join(self.service.config.recording_dir, call.call_id)

    @defer.inlineCallbacks
    def test_reinvite_without_sdp(self):
        """A re-INVITE without SDP gets our recvonly offer; the ACK carries the answer."""
        call = yield self.client.invite(two_streams())
        answer = (sdp_offer("127.0.0.1", call.streams, version=5)
                  .replace(b"a=sendonly", b"a=sendonly"))
        response = yield self.client.reinvite(call, sdp=None, ack_body=answer)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get("Content-Type"), "application/sdp")
        offer = response.body.decode()
        self.assertEqual(offer.count("m=audio"), 2)
        self.assertEqual(offer.count("a=recvonly"), 2)
        self.assertIn("a=label:leg0", offer)
        # the ACK with the answer went first on the same socket: once an OPTIONS
        # sent after it is answered, the ACK has been handled
        ping = _bare_call(self.client, "after-ack@test")
        self.client.calls[ping.call_id] = ping
        pong = yield self.client.request(ping, "OPTIONS", to_tag=None)
        self.assertEqual(pong.status, 200)
        session = self.service.manager.get(call.call_id)
        self.assertEqual(session.state, "active")
        yield self.client.send_audio(call, {"leg0": tone(440, 0.4)})
        yield self.client.bye(call)
        yield session.end("test")
        rate, _, data = read_wav(self.files(call) + "_leg0.wav")
        assert_close(self, dominant_frequency(data[:, 0], rate), 440, 10)

    @defer.inlineCallbacks
    def test_hold_with_zero_address(self):
        """c=0.0.0.0 (old-style hold) marks the streams held and is recorded as a hold."""
        call = yield self.client.invite(two_streams())
        held = sdp_offer("127.0.0.1", call.streams, version=2, hold=True)
        response = yield self.client.reinvite(call, sdp=held)
        self.assertEqual(response.status, 200)
        session = self.service.manager.get(call.call_id)
        states = {s["label"]: s["state"] for s in session.summary()["streams"]}
        self.assertEqual(states, {"leg0": "held", "leg1": "held"})
        self.assertIsNone(session.last_activity())  # no RTP timeout while held
        self.assertEqual({p["reason"] for p in session.pauses}, {"hold"})
        response = yield self.client.reinvite(call)
        states = {s["label"]: s["state"] for s in session.summary()["streams"]}
        self.assertEqual(states, {"leg0": "active", "leg1": "active"})
        yield self.client.bye(call)

    @defer.inlineCallbacks
    def test_stream_added_and_removed(self):
        """A re-INVITE that adds a third m-line opens a third recorded stream; port 0 closes it."""
        call = yield self.client.invite(two_streams())
        self.client.calls[call.call_id] = call
        from siprec.testing.src import _RtpSender
        third = StreamOffer("leg2", payload_type=0)
        port = reactor.listenUDP(0, _RtpSender(), interface="127.0.0.1")
        third.rtp_port = port.getHost().port
        call.rtp_ports["leg2"] = port
        call.streams.append(third)
        response = yield self.client.reinvite(call)
        self.assertEqual(response.status, 200)
        answer = parse_sdp_bytes(response.body)
        self.assertEqual(len(answer.media), 3)
        self.assertNotEqual(answer.media[2].port, 0)
        call.remote_media["leg2"] = ("127.0.0.1", answer.media[2].port)
        yield self.client.send_audio(call, {"leg2": tone(1500, 0.4)})
        removed = sdp_offer("127.0.0.1", call.streams, version=9).replace(
            f"m=audio {third.rtp_port} ".encode(), b"m=audio 0 ")
        response = yield self.client.reinvite(call, sdp=removed)
        self.assertEqual(response.status, 200)
        answer = parse_sdp_bytes(response.body)
        self.assertEqual([m.port == 0 for m in answer.media], [False, False, True])
        session = self.service.manager.get(call.call_id)
        states = {s["label"]: s["state"] for s in session.summary()["streams"]}
        self.assertEqual(states["leg2"], "closed")
        yield self.client.bye(call)
        yield session.end("test")
        rate, _, data = read_wav(self.files(call) + "_leg2.wav")
        assert_close(self, dominant_frequency(data[:, 0], rate), 1500, 10)
        rate, channels, _ = read_wav(self.files(call) + ".wav")
        self.assertEqual(channels, 3)


def parse_sdp_bytes(body):
    from siprec.sip.sdp import parse_sdp
    return parse_sdp(body)

"""A small SIPREC recording client (SRC) for tests, tools and the load generator.

It places recording calls over UDP, TCP or TLS with a multipart
SDP + rs-metadata body, sends real RTP per stream, and ends calls with BYE.
It speaks through the same sans-IO message layer as the server, but it
builds every request by hand so tests can also send what real SRCs send.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from twisted.internet import defer, protocol, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from siprec.media.codecs.g711 import encode_alaw, encode_ulaw
from siprec.sip.framing import Frame, StreamFramer
from siprec.sip.message import Request, Response, parse_message
from siprec.sip.sdp import parse_sdp

log = Logger()

__all__ = ["SrcClient", "SrcCall", "StreamOffer", "tone", "metadata_xml", "multipart_body",
           "rtp_packet"]

BOUNDARY = "siprec-test-boundary"


def tone(freq: float, seconds: float, rate: int = 8000, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@dataclass
class StreamOffer:
    label: str
    payload_type: int = 0  # 0 PCMU, 8 PCMA
    direction: str = "sendonly"
    rtp_port: int = 0  # filled by the client when it binds its RTP socket
    srtp_key: Optional[bytes] = None  # 30 bytes (AES_CM_128 key + salt): offer RTP/SAVP


def sdp_offer(host: str, streams: Sequence[StreamOffer], version: int = 1,
              hold: bool = False, extra_formats: bool = True) -> bytes:
    names = {0: "PCMU/8000", 8: "PCMA/8000"}
    lines = ["v=0", f"o=src 4242 {version} IN IP4 {host}", "s=siprec-test",
             f"c=IN IP4 {'0.0.0.0' if hold else host}", "t=0 0"]
    for stream in streams:
        pts = [stream.payload_type]
        if extra_formats:
            pts += [pt for pt in (0, 8) if pt != stream.payload_type]
        proto = "RTP/SAVP" if stream.srtp_key else "RTP/AVP"
        lines.append(f"m=audio {stream.rtp_port or 9} {proto} {' '.join(map(str, pts))} 101")
        if stream.srtp_key:
            inline = base64.b64encode(stream.srtp_key).decode()
            lines.append(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}")
        for pt in pts:
            lines.append(f"a=rtpmap:{pt} {names[pt]}")
        lines.append("a=rtpmap:101 telephone-event/8000")
        lines.append("a=fmtp:101 0-16")
        lines.append("a=ptime:20")
        lines.append(f"a=label:{stream.label}")
        lines.append(f"a={stream.direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


def metadata_xml(session_id: str, streams: Sequence[StreamOffer],
                 parties: Sequence[Tuple[str, str]] = (("sip:alice@example.com", "Alice"),
                                                       ("sip:bob@example.com", "Bob")),
                 data_mode: str = "complete") -> bytes:
    """RFC 7865 metadata: participant i sends stream i and receives the others."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<recording xmlns="urn:ietf:params:xml:ns:recording:1">',
           f"<datamode>{data_mode}</datamode>",
           f'<group group_id="grp-{session_id}"><associate-time>2026-11-28T10:00:00Z</associate-time></group>',
           f'<session session_id="{session_id}"><group-ref>grp-{session_id}</group-ref>'
           "<start-time>2026-11-28T10:00:00Z</start-time></session>"]
    for i, stream in enumerate(streams):
        out.append(f'<stream stream_id="st-{i}" session_id="{session_id}"><label>{stream.label}</label></stream>')
    for i, (aor, name) in enumerate(parties):
        out.append(f'<participant participant_id="p-{i}"><nameID aor="{aor}"><name>{name}</name></nameID></participant>')
        sends = f"<send>st-{i}</send>" if i < len(streams) else ""
        recvs = "".join(f"<recv>st-{j}</recv>" for j in range(len(streams)) if j != i)
        out.append(f'<participantstreamassoc participant_id="p-{i}">{sends}{recvs}</participantstreamassoc>')
    out.append("</recording>")
    return "\n".join(out).encode()


def multipart_body(sdp: bytes, metadata: Optional[bytes]) -> Tuple[str, bytes]:
    if metadata is None:
        return "application/sdp", sdp
    body = (f"--{BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n").encode() + sdp + (
        f"\r\n--{BOUNDARY}\r\nContent-Type: application/rs-metadata+xml\r\n"
        "Content-Disposition: recording-session\r\n\r\n").encode() + metadata + (
        f"\r\n--{BOUNDARY}--\r\n").encode()
    return f'multipart/mixed;boundary="{BOUNDARY}"', body


def rtp_packet(seq: int, timestamp: int, ssrc: int, payload: bytes, pt: int = 0,
               marker: bool = False) -> bytes:
    header = bytes([0x80, (0x80 if marker else 0) | pt]) + (seq & 0xFFFF).to_bytes(2, "big") + \
        (timestamp & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
    return header + payload


class _RtpSender(protocol.DatagramProtocol):
    def datagramReceived(self, data, addr):
        pass


class _SipUdp(protocol.DatagramProtocol):
    def __init__(self, client: "SrcClient"):
        self.client = client

    def datagramReceived(self, data, addr):
        self.client._incoming(data)


class _SipStream(protocol.Protocol):
    def __init__(self, client: "SrcClient"):
        self.client = client
        self.framer = StreamFramer(1 << 20)
        self.closed = Deferred()

    def connectionLost(self, reason=None):
        self.closed.callback(None)

    def dataReceived(self, data):
        for item in self.framer.feed(data):
            if isinstance(item, Frame):
                self.client._incoming(item.data)


class SrcCall:
    """One recording call placed by :class:`SrcClient`."""

    def __init__(self, client: "SrcClient", call_id: str, streams: List[StreamOffer]):
        self.client = client
        self.call_id = call_id
        self.streams = streams
        self.from_tag = secrets.token_hex(4)
        self.to_tag: Optional[str] = None
        self.cseq = 100
        self.final: Optional[Response] = None
        self.answer = None
        self.responses: List[Response] = []
        self.rtp_ports: Dict[str, object] = {}
        self.remote_media: Dict[str, Tuple[str, int]] = {}
        self.requests: List[Request] = []
        self._srtp: Dict[str, object] = {}
        self.rtp_state: Dict[str, List[int]] = {}  # label -> [next seq, next timestamp]
        self.invite_branch = ""
        self.invite_bytes = b""

    def protect(self, stream: StreamOffer, packet: bytes) -> bytes:
        """SRTP-protect with the key we offered (SDES: each side sends with its own key)."""
        if not stream.srtp_key:
            return packet
        session = self._srtp.get(stream.label)
        if session is None:
            import pylibsrtp
            policy = pylibsrtp.Policy(key=stream.srtp_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                      srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
            session = self._srtp[stream.label] = pylibsrtp.Session(policy)
        return session.protect(packet)

    @property
    def answered(self) -> bool:
        return self.final is not None and 200 <= self.final.status < 300


class SrcClient:
    def __init__(self, reactor, server: Tuple[str, int], transport: str = "UDP",
                 local_host: str = "127.0.0.1", tls_options=None):
        self.reactor = reactor
        self.server = server
        self.transport_name = transport
        self.local_host = local_host
        self.tls_options = tls_options
        self._sip = None
        self._port = None
        self._waiters: Dict[Tuple[str, str], List[Deferred]] = {}
        self.calls: Dict[str, SrcCall] = {}
        self.received: List[Response | Request] = []
        self.on_request: Optional[Callable[[Request], Optional[Response]]] = None

    # -- connection ----------------------------------------------------------------
    @defer.inlineCallbacks
    def start(self):
        from twisted.internet import endpoints
        if self.transport_name == "UDP":
            proto = _SipUdp(self)
            self._port = self.reactor.listenUDP(0, proto, interface=self.local_host,
                                                maxPacketSize=65535)
            self._sip = proto
            self.local_port = self._port.getHost().port
        else:
            if self.transport_name == "TLS":
                endpoint = endpoints.SSL4ClientEndpoint(self.reactor, self.server[0], self.server[1],
                                                        self.tls_options)
            else:
                endpoint = endpoints.TCP4ClientEndpoint(self.reactor, self.server[0], self.server[1])
            proto = yield endpoint.connect(protocol.Factory.forProtocol(lambda: _SipStream(self)))
            self._sip = proto
            self.local_port = proto.transport.getHost().port
        return self

    def stop(self):
        ds = []
        for call in self.calls.values():
            for port in call.rtp_ports.values():
                ds.append(defer.maybeDeferred(port.stopListening))
        if self.transport_name == "UDP" and self._port is not None:
            ds.append(defer.maybeDeferred(self._port.stopListening))
        elif self._sip is not None and self._sip.transport is not None:
            if not self._sip.closed.called:
                ds.append(self._sip.closed)
            self._sip.transport.loseConnection()
        return defer.DeferredList(ds)

    def send_raw(self, data: bytes) -> None:
        if self.transport_name == "UDP":
            self._sip.transport.write(data, self.server)
        else:
            self._sip.transport.write(data)

    # -- messages ------------------------------------------------------------------
    def _via(self, branch: str) -> str:
        return f"SIP/2.0/{self.transport_name} {self.local_host}:{self.local_port};branch={branch};rport"

    def _contact(self) -> str:
        t = "" if self.transport_name == "UDP" else f";transport={self.transport_name.lower()}"
        return f"<sip:src@{self.local_host}:{self.local_port}{t}>;+sip.src"

    def build_request(self, call: SrcCall, method: str, body: bytes = b"",
                      content_type: Optional[str] = None, cseq: Optional[int] = None,
                      extra: Sequence[Tuple[str, str]] = (), branch: Optional[str] = None,
                      to_tag: Optional[str] = "dialog") -> Request:
        branch = branch or "z9hG4bK" + secrets.token_hex(8)
        request = Request(method, f"sip:srs@{self.server[0]}:{self.server[1]}")
        h = request.headers
        h.add("Via", self._via(branch))
        h.add("Max-Forwards", "70")
        h.add("From", f"<sip:src@{self.local_host}>;tag={call.from_tag}")
        tag = call.to_tag if to_tag == "dialog" else to_tag
        h.add("To", f"<sip:srs@{self.server[0]}>" + (f";tag={tag}" if tag else ""))
        h.add("Call-ID", call.call_id)
        if cseq is None:
            if method not in ("ACK", "CANCEL"):
                call.cseq += 1
            cseq = call.cseq
        h.add("CSeq", f"{cseq} {method}")
        h.add("Contact", self._contact())
        for name, value in extra:
            h.add(name, value)
        if content_type:
            h.add("Content-Type", content_type)
        request.body = body
        return request

    def send(self, request: Request) -> None:
        self.send_raw(request.to_bytes())

    def _incoming(self, data: bytes) -> None:
        try:
            message = parse_message(data)
        except Exception as e:
            log.warn("test SRC got unparseable message: {e}", e=e)
            return
        self.received.append(message)
        if isinstance(message, Request):
            self._server_request(message)
            return
        key = (message.headers.get("Call-ID"), message.headers.get("CSeq"))
        call = self.calls.get(message.headers.get("Call-ID"))
        if call is not None:
            call.responses.append(message)
        if message.status < 200:
            return
        waiters = self._waiters.pop(key, [])
        for d in waiters:
            d.callback(message)

    def _server_request(self, request: Request) -> None:
        """Answer requests from the SRS (BYE, UPDATE) with 200."""
        call = self.calls.get(request.headers.get("Call-ID"))
        if call is not None:
            call.requests.append(request)
        if request.method == "ACK":
            return
        response = None
        if self.on_request is not None:
            response = self.on_request(request)
        if response is None:
            from siprec.sip.message import make_response
            response = make_response(request, 200)
        self.send_raw(response.to_bytes())

    def wait_response(self, call_id: str, cseq: str, timeout: float = 5.0) -> Deferred:
        d = Deferred()
        self._waiters.setdefault((call_id, cseq), []).append(d)
        timer = self.reactor.callLater(timeout, lambda: (not d.called) and d.errback(
            TimeoutError(f"no final response to {cseq} for {call_id}")))
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d

    # -- calls -----------------------------------------------------------------------
    @defer.inlineCallbacks
    def invite(self, streams: Sequence[StreamOffer], call_id: Optional[str] = None,
               metadata: Optional[bytes] = b"auto", extra: Sequence[Tuple[str, str]] = (),
               ack: bool = True, body_override: Optional[Tuple[str, bytes]] = None):
        call = SrcCall(self, call_id or f"{secrets.token_hex(8)}@src.test", list(streams))
        self.calls[call.call_id] = call
        for stream in call.streams:
            port = self.reactor.listenUDP(0, _RtpSender(), interface=self.local_host)
            stream.rtp_port = port.getHost().port
            call.rtp_ports[stream.label] = port
        sdp = sdp_offer(self.local_host, call.streams)
        if metadata == b"auto":
            metadata = metadata_xml("sess-" + secrets.token_hex(4), call.streams)
        content_type, body = body_override or multipart_body(sdp, metadata)
        request = self.build_request(call, "INVITE", body, content_type,
                                     extra=[("Require", "siprec"), ("Supported", "timer")] + list(extra),
                                     to_tag=None)
        call.invite_branch = request.top_via.branch
        call.invite_bytes = request.to_bytes()
        waiter = self.wait_response(call.call_id, f"{call.cseq} INVITE")
        self.send(request)
        response = yield waiter
        call.final = response
        if response.status >= 200:
            call.to_tag = response.to.tag
            self._ack(call, response, branch=None if response.status < 300 else call.invite_branch)
        if 200 <= response.status < 300 and response.body:
            call.answer = parse_sdp(response.body)
            for stream, media in zip(call.streams, call.answer.media):
                conn = media.effective_connection(call.answer)
                call.remote_media[stream.label] = (conn.host if conn else self.server[0], media.port)
        return call

    def _ack(self, call: SrcCall, response: Response, branch: Optional[str] = None,
             body: bytes = b"", content_type: Optional[str] = None) -> None:
        cseq = response.cseq.number
        request = self.build_request(call, "ACK", body, content_type, cseq=cseq, branch=branch)
        self.send(request)

    @defer.inlineCallbacks
    def reinvite(self, call: SrcCall, directions: Optional[Dict[str, str]] = None,
                 metadata: Optional[bytes] = None, sdp: Optional[bytes] = b"auto",
                 method: str = "INVITE", ack_body: Optional[bytes] = None):
        for stream in call.streams:
            if directions and stream.label in directions:
                stream.direction = directions[stream.label]
        if sdp == b"auto":
            sdp = sdp_offer(self.local_host, call.streams, version=call.cseq)
        if sdp is None and metadata is not None:
            content_type, body = "application/rs-metadata+xml", metadata
        elif sdp is None:
            content_type, body = None, b""
        else:
            content_type, body = multipart_body(sdp, metadata)
        request = self.build_request(call, method, body, content_type)
        waiter = self.wait_response(call.call_id, f"{call.cseq} {method}")
        self.send(request)
        response = yield waiter
        if method == "INVITE" and response.status >= 200:
            self._ack(call, response, body=ack_body or b"",
                      content_type="application/sdp" if ack_body else None)
        return response

    @defer.inlineCallbacks
    def bye(self, call: SrcCall, body: bytes = b"", content_type: Optional[str] = None):
        request = self.build_request(call, "BYE", body, content_type)
        waiter = self.wait_response(call.call_id, f"{call.cseq} BYE")
        self.send(request)
        response = yield waiter
        return response

    @defer.inlineCallbacks
    def request(self, call: SrcCall, method: str, **kw):
        request = self.build_request(call, method, **kw)
        cseq = request.headers.get("CSeq")
        waiter = self.wait_response(call.call_id, cseq)
        self.send(request)
        response = yield waiter
        return response

    # -- media -----------------------------------------------------------------------
    def send_dtmf(self, call: SrcCall, label: str, digit: str, duration: float = 0.1,
                  ptime: float = 0.02) -> Deferred:
        """RFC 4733 telephone-event packets for one digit (three end packets), paced."""
        event = "0123456789*#ABCD".index(digit)
        stream = next(s for s in call.streams if s.label == label)
        state = call.rtp_state.setdefault(label, [1000, 160000])
        start_ts = state[1]
        steps = max(1, int(duration / ptime))
        packets = []
        for n in range(1, steps + 1):
            end = n == steps
            dur = int(n * ptime * 8000)
            payload = bytes([event, (0x80 if end else 0) | 10]) + dur.to_bytes(2, "big")
            for _ in range(3 if end else 1):
                packets.append(rtp_packet(state[0], start_ts, 0x1000 + call.streams.index(stream),
                                          payload, pt=101, marker=(n == 1)))
                state[0] += 1
        state[1] += steps * int(ptime * 8000)
        port = call.rtp_ports[label]
        done = Deferred()

        def tick(i=[0]):
            if i[0] >= len(packets):
                loop.stop()
                return
            port.write(call.protect(stream, packets[i[0]]), call.remote_media[label])
            i[0] += 1

        loop = task.LoopingCall(tick)
        loop.clock = self.reactor
        loop.start(ptime / 2, now=True).chainDeferred(done)
        return done

    def send_audio(self, call: SrcCall, signals: Dict[str, np.ndarray], ptime: float = 0.02,
                   realtime: bool = True, ssrc_base: int = 0x1000,
                   drop: Callable[[str, int], bool] = lambda label, i: False) -> Deferred:
        """Send each label's 8 kHz int16 signal as RTP in its stream's codec.

        Returns a Deferred that fires when every packet is sent. Packets are
        paced at ``ptime`` when ``realtime``; ``drop(label, index)`` can
        simulate loss (the sequence number and timestamp still advance).
        """
        samples = int(8000 * ptime)
        plans = []
        for n, stream in enumerate(call.streams):
            if stream.label not in signals:
                continue
            signal = signals[stream.label]
            encode = encode_ulaw if stream.payload_type == 0 else encode_alaw
            payload = encode(signal)
            frames = [payload[i:i + samples] for i in range(0, len(payload), samples)]
            # RTP state continues across calls, as a real SRC's would.
            state_ = call.rtp_state.setdefault(stream.label, [1000, 160000])
            plans.append((stream, frames, ssrc_base + n, state_[0], state_[1]))
            state_[0] += len(frames)
            state_[1] += len(frames) * samples
        total = max((len(p[1]) for p in plans), default=0)
        state = {"i": 0}
        done = Deferred()

        def send_index(i):
            for stream, frames, ssrc, seq0, ts0 in plans:
                if i < len(frames) and not drop(stream.label, i):
                    packet = rtp_packet(seq0 + i, ts0 + i * samples, ssrc, bytes(frames[i]),
                                        pt=stream.payload_type, marker=(i == 0))
                    packet = call.protect(stream, packet)
                    port = call.rtp_ports[stream.label]
                    port.write(packet, call.remote_media[stream.label])

        def tick():
            i = state["i"]
            if i >= total:
                loop.stop()
                return
            send_index(i)
            state["i"] = i + 1

        if realtime:
            loop = task.LoopingCall(tick)
            loop.clock = self.reactor
            loop.start(ptime, now=True).chainDeferred(done)
        else:
            for i in range(total):
                send_index(i)
            done.callback(None)
        return done

"""SIPREC offer/answer for a receive-only recorder (RFC 3264, RFC 7866 §8).

Sans-IO: :func:`plan_answer` decides, m= line by m= line, what the SRS will
accept; :func:`build_answer` turns that plan into the answer SDP. For a
re-INVITE without SDP the SRS must offer instead: :func:`build_offer`, then
:func:`apply_answer` on the SDP that comes back in the ACK.

The SRS never sends media, so every accepted stream is answered ``recvonly``
(or ``inactive`` when the SRC is not sending), and the codec answered is the
first offered one we can decode.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Callable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from siprec.media.spec import PayloadFormat
from siprec.sip.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
)

RTP_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})
SRTP_PROTOS = frozenset({"RTP/SAVP", "RTP/SAVPF"})
# Offered formats that carry something other than the audio itself; never
# answered as "the" codec, though CN may ride along if it can be decoded.
_NOT_A_CODEC = frozenset({"TELEPHONE-EVENT", "CN", "RED"})
# How we spell an encoding name we have to write without an offered rtpmap.
_WIRE_SPELLING = {"TELEPHONE-EVENT": "telephone-event", "OPUS": "opus"}
EMPTY_EXTRAS: Mapping[int, Sequence[Attribute]] = MappingProxyType({})


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


class OfferAnswerError(ValueError):
    """An answer that does not fit the offer it answers (RFC 3264 §6)."""


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What we do with one offered m= line, and what the media layer needs to know."""

    index: int
    media: str
    label: Optional[str]
    accepted: bool
    reject_reason: Optional[str]
    # The answered codec, then every other offered format we can decode:
    # some SRCs send with another offered payload type than the answered one.
    codec: Optional[PayloadFormat]
    formats: Tuple[PayloadFormat, ...]
    telephone_event: Optional[PayloadFormat]
    offered_direction: str
    answer_direction: str  # 'recvonly' or 'inactive'
    # None when the SRC holds with 0.0.0.0, disabled the stream, or gave no c=.
    remote_address: Optional[Tuple[str, int]]
    proto: str
    rtcp_mux: bool
    crypto: Tuple[str, ...]
    ptime: Optional[int]
    on_hold: bool = False

    @property
    def receiving(self) -> bool:
        """True when the SRC is expected to send media on this stream now."""
        return self.accepted and self.answer_direction == "recvonly"


class OfferStream(NamedTuple):
    """One m= line of an offer we make (a re-INVITE that came without SDP)."""

    label: Optional[str]
    port: int
    formats: Sequence[PayloadFormat]
    telephone_event: Optional[PayloadFormat] = None


# ---------------------------------------------------------------- planning


def _answer_direction(offered: str) -> str:
    """A receive-only SRS: receive what the SRC sends, otherwise stay inactive."""
    return "recvonly" if offered in ("sendonly", "sendrecv") else "inactive"


def _remote_address(media: MediaDescription,
                    session: SessionDescription) -> Optional[Tuple[str, int]]:
    conn = media.effective_connection(session)
    if media.port == 0 or conn is None or conn.is_unspecified:
        return None
    return (conn.host.strip("[]"), media.port)


def _describe(fmt: PayloadFormat) -> str:
    text = f"{fmt.encoding}/{fmt.clock_rate}"
    return text + (f"/{fmt.channels}" if fmt.channels != 1 else "")


def _pick_telephone_event(offered: Sequence[PayloadFormat],
                          codec: Optional[PayloadFormat]) -> Optional[PayloadFormat]:
    events = [f for f in offered if f.is_telephone_event]
    if not events:
        return None
    if codec is not None:
        for event in events:
            if event.clock_rate == codec.clock_rate:
                return event
    return events[0]


def _choose_formats(offered: Sequence[PayloadFormat],
                    can_decode: Callable[[PayloadFormat], bool]
                    ) -> Tuple[Optional[PayloadFormat], Tuple[PayloadFormat, ...]]:
    """(answered codec, every decodable offered format with the codec first)."""
    decodable = [f for f in offered if not f.is_telephone_event and can_decode(f)]
    codecs = [f for f in decodable if f.encoding not in _NOT_A_CODEC]
    if not codecs:
        return None, ()
    codec = codecs[0]
    return codec, (codec, *[f for f in decodable if f is not codec])


def _unsupported_proto_reason(proto: str, accept_savp: bool) -> Optional[str]:
    if proto in RTP_PROTOS:
        return None
    if proto in SRTP_PROTOS:
        return None if accept_savp else f"{proto} offered but SRTP is disabled"
    if "TLS" in proto.upper() or "DTLS" in proto.upper():
        return f"{proto} (DTLS-SRTP) is not supported"
    return f"transport {proto} is not supported"


def plan_answer(offer: SessionDescription,
                can_decode: Callable[[PayloadFormat], bool],
                *, accept_savp: bool = False,
                max_streams: Optional[int] = None) -> List[StreamPlan]:
    """One :class:`StreamPlan` per offered m= line, in offer order.

    ``max_streams`` (optional) caps how many audio streams are accepted, so a
    hostile offer cannot make us allocate a port per m= line without bound.
    """
    plans: List[StreamPlan] = []
    accepted_count = 0
    for index, media in enumerate(offer.media):
        offered_direction = media.direction(offer)
        mapped = media.rtpmaps()
        offered = list(mapped.values())
        is_audio = media.media.lower() == "audio"
        codec, formats = _choose_formats(offered, can_decode) if is_audio else (None, ())
        reason: Optional[str] = None
        if not is_audio:
            reason = f"{media.media} streams are not recorded"
        elif media.port == 0:
            reason = "stream disabled by the offerer (port 0)"
        else:
            reason = _unsupported_proto_reason(media.proto, accept_savp)
            if reason is None and media.proto in SRTP_PROTOS and not media.crypto:
                reason = f"{media.proto} offered without a=crypto keys (only SDES is supported)"
            if reason is None and codec is None:
                names = ", ".join(_describe(f) for f in offered) or "none we know"
                unknown = [f for f in media.formats
                           if not (_is_number(f) and int(f) in mapped)]
                if unknown:
                    names += f"; unmapped payload types {' '.join(unknown)}"
                reason = f"no decodable codec offered ({names})"
            if reason is None and max_streams is not None and accepted_count >= max_streams:
                reason = f"more than {max_streams} audio streams offered"
        accepted = reason is None
        accepted_count += accepted
        plans.append(StreamPlan(
            index=index,
            media=media.media,
            label=media.label,
            accepted=accepted,
            reject_reason=reason,
            codec=codec if accepted else None,
            formats=formats if accepted else (),
            telephone_event=_pick_telephone_event(offered, codec) if accepted else None,
            offered_direction=offered_direction,
            answer_direction=_answer_direction(offered_direction) if accepted else "inactive",
            remote_address=_remote_address(media, offer),
            proto=media.proto,
            rtcp_mux=media.rtcp_mux,
            crypto=tuple(media.crypto),
            ptime=media.ptime,
            on_hold=media.is_hold(offer),
        ))
    return plans


def acceptable(plans: Sequence[StreamPlan]) -> bool:
    """At least one audio stream accepted; otherwise the UAS answers 488."""
    return any(p.accepted and p.media.lower() == "audio" for p in plans)


def rejection_summary(plans: Sequence[StreamPlan]) -> str:
    """Why nothing was accepted, one clause per m= line (for a 488 reason/warning)."""
    return "; ".join(f"m-line {p.index} ({p.media}): {p.reject_reason}"
                     for p in plans if not p.accepted)


# ---------------------------------------------------------------- writing SDP


def connection_for(address: str) -> Connection:
    """``c=IN IP4|IP6 <address>``; a host name is written as IP4 (RFC 8866 §5.7)."""
    host = address.strip().strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return Connection("IN", "IP4", host)
    return Connection("IN", "IP6" if ip.version == 6 else "IP4", host)


def make_origin(address: str, session_id: int, session_version: int = 0,
                username: str = "-") -> Origin:
    """An RFC-valid ``o=`` line for our own descriptions (numeric ids)."""
    conn = connection_for(address)
    return Origin(username, str(session_id), session_version, conn.nettype,
                  conn.addrtype, conn.address)


def _check_origin(origin: Origin) -> None:
    if not _is_number(origin.session_id):
        raise ValueError(f"o= session id must be numeric, got {origin.session_id!r}")


def _check_port(port: int, index: int) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} for m-line {index} is not a usable RTP port")


def _rtpmap_value(fmt: PayloadFormat, offered: Optional[MediaDescription]) -> str:
    """The offer's own spelling when there is one (some SRCs compare case)."""
    if offered is not None:
        raw = offered.raw_rtpmap(fmt.payload_type)
        if raw is not None:
            return raw
    name = _WIRE_SPELLING.get(fmt.encoding, fmt.encoding)
    value = f"{fmt.payload_type} {name}/{fmt.clock_rate}"
    return value + (f"/{fmt.channels}" if fmt.channels != 1 else "")


def _format_attributes(formats: Sequence[PayloadFormat],
                       offered: Optional[MediaDescription]) -> List[Attribute]:
    attributes: List[Attribute] = []
    for fmt in formats:
        attributes.append(("rtpmap", _rtpmap_value(fmt, offered)))
        if offered is not None and offered.raw_fmtp(fmt.payload_type) is not None:
            attributes.append(("fmtp", offered.raw_fmtp(fmt.payload_type)))
        elif fmt.fmtp:
            attributes.append(("fmtp", f"{fmt.payload_type} {fmt.fmtp}"))
    return attributes


def _session(origin: Origin, address: str, media: Sequence[MediaDescription],
             session_name: str) -> SessionDescription:
    _check_origin(origin)
    return SessionDescription(origin=origin, session_name=session_name,
                              connection=connection_for(address),
                              timing=(Timing(0, 0),), media=tuple(media))


def build_answer(offer: SessionDescription, plans: Sequence[StreamPlan],
                 ports: Mapping[int, int], address: str, origin: Origin,
                 *, extra_attributes: Mapping[int, Sequence[Attribute]] = EMPTY_EXTRAS,
                 session_name: str = "siprec") -> SessionDescription:
    """The RFC 3264 answer: same m= lines in the same order, rejected ones at port 0.

    ``ports`` maps m-line index to our RTP port for every accepted stream;
    ``extra_attributes`` adds lines per m-line (an accepted SRTP stream must
    get its answer ``a=crypto`` there: keys are the SRTP layer's business).
    """
    if len(plans) != len(offer.media):
        raise ValueError(f"{len(plans)} plans for an offer of {len(offer.media)} m-lines")
    answered: List[MediaDescription] = []
    for position, (plan, offered) in enumerate(zip(plans, offer.media)):
        if plan.index != position:
            raise ValueError(f"plan for m-line {plan.index} found at position {position}")
        extras = tuple(extra_attributes.get(plan.index, ()))
        if not plan.accepted or plan.codec is None:
            answered.append(MediaDescription(
                media=offered.media, port=0, proto=offered.proto,
                formats=offered.formats or ("0",), attributes=extras))
            continue
        if plan.index not in ports:
            raise ValueError(f"no port given for accepted m-line {plan.index}")
        _check_port(ports[plan.index], plan.index)
        if plan.proto in SRTP_PROTOS and not any(n.lower() == "crypto" for n, _ in extras):
            raise ValueError(f"accepted {plan.proto} m-line {plan.index} needs an "
                             "a=crypto answer line in extra_attributes")
        sent = [plan.codec] + ([plan.telephone_event] if plan.telephone_event else [])
        attributes = _format_attributes(sent, offered)
        if plan.label is not None:
            attributes.append(("label", plan.label))
        attributes.append((plan.answer_direction, None))
        if plan.rtcp_mux:
            attributes.append(("rtcp-mux", None))
        if plan.ptime is not None:
            attributes.append(("ptime", str(plan.ptime)))
        answered.append(MediaDescription(
            media=offered.media, port=ports[plan.index], proto=offered.proto,
            formats=tuple(str(f.payload_type) for f in sent),
            attributes=tuple(attributes) + extras))
    return _session(origin, address, answered, session_name)


def build_offer(streams: Sequence[Tuple[Optional[str], int, Sequence[PayloadFormat],
                                        Optional[PayloadFormat]]],
                address: str, origin: Origin,
                *, extra_attributes: Mapping[int, Sequence[Attribute]] = EMPTY_EXTRAS,
                session_name: str = "siprec") -> SessionDescription:
    """Our offer for a re-INVITE without SDP: every stream ``recvonly`` over RTP/AVP.

    ``streams`` holds (label, port, formats, telephone_event) per m-line, e.g.
    :class:`OfferStream` values built from the streams we already record.
    """
    media: List[MediaDescription] = []
    for index, stream in enumerate(streams):
        label, port, formats, telephone_event = OfferStream(*stream)
        _check_port(port, index)
        if not formats:
            raise ValueError(f"stream {index} has no formats to offer")
        sent = list(formats) + ([telephone_event] if telephone_event else [])
        if len({f.payload_type for f in sent}) != len(sent):
            raise ValueError(f"stream {index} offers one payload type twice")
        attributes = _format_attributes(sent, None)
        if label is not None:
            attributes.append(("label", label))
        attributes.append(("recvonly", None))
        media.append(MediaDescription(
            media="audio", port=port, proto="RTP/AVP",
            formats=tuple(str(f.payload_type) for f in sent),
            attributes=tuple(attributes) + tuple(extra_attributes.get(index, ()))))
    return _session(origin, address, media, session_name)


def apply_answer(our_offer: SessionDescription,
                 answer: SessionDescription) -> List[StreamPlan]:
    """Read the SRC's answer to our offer (the SDP in the ACK).

    The answered codec is the answer's first format that we offered; the
    direction follows what the SRC says it does (sendonly → we receive).
    """
    if len(answer.media) != len(our_offer.media):
        raise OfferAnswerError(f"answer has {len(answer.media)} m-lines, "
                               f"our offer had {len(our_offer.media)}")
    plans: List[StreamPlan] = []
    for index, (ours, theirs) in enumerate(zip(our_offer.media, answer.media)):
        if theirs.media != ours.media:
            raise OfferAnswerError(f"m-line {index} answered as {theirs.media}, "
                                   f"offered as {ours.media}")
        their_direction = theirs.direction(answer)
        ours_map = ours.rtpmaps()
        theirs_map = theirs.rtpmaps()
        chosen: List[PayloadFormat] = []
        for fmt in theirs.formats:
            if not _is_number(fmt) or int(fmt) not in ours_map:
                continue
            # Their rtpmap if present, else what we offered; our fmtp if they gave none.
            offered = ours_map[int(fmt)]
            answered = theirs_map.get(int(fmt), offered)
            if answered.fmtp is None and offered.fmtp is not None:
                answered = replace(answered, fmtp=offered.fmtp)
            chosen.append(answered)
        codecs = [f for f in chosen if f.encoding not in _NOT_A_CODEC]
        reason: Optional[str] = None
        if ours.port == 0:
            reason = "we offered this stream disabled"
        elif theirs.port == 0:
            reason = "the SRC rejected the stream (port 0)"
        elif theirs.proto != ours.proto:
            reason = f"the SRC answered {theirs.proto} to our {ours.proto}"
        elif not codecs:
            reason = "the SRC answered no codec that we offered"
        accepted = reason is None
        codec = codecs[0] if accepted else None
        formats: Tuple[PayloadFormat, ...] = ()
        if codec is not None:
            formats = (codec, *[f for f in chosen if f is not codec and not f.is_telephone_event])
        plans.append(StreamPlan(
            index=index,
            media=ours.media,
            label=ours.label if ours.label is not None else theirs.label,
            accepted=accepted,
            reject_reason=reason,
            codec=codec,
            formats=formats,
            telephone_event=_pick_telephone_event(chosen, codec) if accepted else None,
            offered_direction=their_direction,
            answer_direction=_answer_direction(their_direction) if accepted else "inactive",
            remote_address=_remote_address(theirs, answer),
            proto=theirs.proto,
            rtcp_mux=theirs.rtcp_mux and ours.rtcp_mux,
            crypto=tuple(theirs.crypto),
            ptime=theirs.ptime,
            on_hold=theirs.is_hold(answer),
        ))
    return plans

"""Codec registry, looked up by rtpmap encoding name (never payload number).

G.711 is decoded here with numpy; everything else by FFmpeg through PyAV
(see docs/codecs.md for the list and for what is not supported, EVS among
them).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

from siprec.media.codecs import avcodec
from siprec.media.codecs.base import DEFAULT_OPTIONS, DecodeError, Decoder, DecoderOptions
from siprec.media.codecs.g711 import PcmaDecoder, PcmuDecoder
from siprec.media.spec import PayloadFormat
from siprec.sip.sdp import STATIC_PAYLOAD_TYPES

__all__ = [
    "DecodeError",
    "Decoder",
    "DecoderOptions",
    "NOT_SUPPORTED",
    "TOLERATED_STATIC_TYPES",
    "can_decode",
    "get_decoder",
    "register_decoder",
    "static_format",
    "supported_encodings",
]

# A factory gets the negotiated format and the options and returns a fresh
# decoder, or None when it cannot handle that clock rate / channel count /
# fmtp.
DecoderFactory = Callable[[PayloadFormat, DecoderOptions], Optional[Decoder]]

# Names we know of and deliberately never accept, with the reason.
NOT_SUPPORTED: Dict[str, str] = {
    "EVS": "no EVS decoder can be installed from PyPI, Debian or npm (docs/codecs.md)",
    "SPEEX": "FFmpeg decodes Speex, but no encoder here can produce test vectors for it",
}


# RFC 3551 static audio types an SRC may send although it did not offer
# them (Cisco CUBE and Webex send PCMA on a PCMU answer): they are decoded
# by their static mapping. The other static numbers are video or codecs
# nobody sends any more.
TOLERATED_STATIC_TYPES = (0, 3, 4, 8, 9, 13, 18)


def static_format(payload_type: int) -> Optional[PayloadFormat]:
    """The RFC 3551 format of a tolerated static payload type, else None."""
    if payload_type not in TOLERATED_STATIC_TYPES:
        return None
    encoding, clock_rate, channels = STATIC_PAYLOAD_TYPES[payload_type]
    return PayloadFormat(payload_type, encoding, clock_rate, channels)


def _g711(cls: type) -> DecoderFactory:
    def make(fmt: PayloadFormat, options: DecoderOptions) -> Optional[Decoder]:
        if fmt.clock_rate != 8000 or fmt.channels != 1:
            return None
        return cls()

    return make


_REGISTRY: Dict[str, DecoderFactory] = {
    "PCMU": _g711(PcmuDecoder),
    "PCMA": _g711(PcmaDecoder),
}


def _register_ffmpeg_codecs() -> None:
    """Add the PyAV-backed codecs this FFmpeg build has decoders for."""
    from siprec.media.codecs.amr import AMR_NB, AMR_WB, make_amr
    from siprec.media.codecs.cn import make_cn
    from siprec.media.codecs.g722 import make_g722
    from siprec.media.codecs.g723 import make_g723
    from siprec.media.codecs.g726 import BITS_PER_RATE, make_g726
    from siprec.media.codecs.g729 import make_g729
    from siprec.media.codecs.gsm import make_gsm
    from siprec.media.codecs.ilbc import make_ilbc
    from siprec.media.codecs.opus import make_opus

    _REGISTRY["CN"] = make_cn
    table = [
        ("G722", "g722", make_g722),
        ("OPUS", "libopus", make_opus),
        ("G729", "g729", make_g729),
        ("G729D", "g729", make_g729),
        ("AMR", "amrnb", make_amr(AMR_NB)),
        ("AMR-WB", "amrwb", make_amr(AMR_WB)),
        ("GSM", "gsm", make_gsm),
        ("ILBC", "ilbc", make_ilbc),
        ("G723", "g723_1", make_g723),
    ]
    for rate in BITS_PER_RATE:
        table.append((f"G726-{rate}", "g726le", make_g726))
        table.append((f"AAL2-G726-{rate}", "g726", make_g726))
    for encoding, ffmpeg_name, factory in table:
        if avcodec.has_decoder(ffmpeg_name):
            _REGISTRY[encoding] = factory


_register_ffmpeg_codecs()


def register_decoder(encoding: str, factory: DecoderFactory) -> None:
    """Add (or replace) the decoder for an rtpmap encoding name."""
    _REGISTRY[encoding.upper()] = factory


def get_decoder(fmt: PayloadFormat, options: DecoderOptions = DEFAULT_OPTIONS) -> Optional[Decoder]:
    """A fresh decoder for ``fmt``, or None when nothing here decodes it."""
    encoding = fmt.encoding.upper()
    if encoding in NOT_SUPPORTED:
        return None
    factory = _REGISTRY.get(encoding)
    if factory is None:
        return None
    try:
        return factory(fmt, options)
    except DecodeError:
        return None  # the FFmpeg decoder would not open: not decodable here


def can_decode(fmt: PayloadFormat) -> bool:
    """Whether a stream offering ``fmt`` can be recorded (used to plan answers)."""
    return get_decoder(fmt) is not None


def supported_encodings() -> Dict[str, bool]:
    """Every registered rtpmap name (for docs, health and tests)."""
    return {name: True for name in sorted(_REGISTRY)}

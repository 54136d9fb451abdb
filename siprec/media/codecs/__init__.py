"""Codec registry, looked up by rtpmap encoding name (never payload number)."""

from __future__ import annotations

from typing import Callable, Dict, Optional

from siprec.media.codecs.base import Decoder
from siprec.media.codecs.g711 import PcmaDecoder, PcmuDecoder
from siprec.media.spec import PayloadFormat

__all__ = ["Decoder", "can_decode", "get_decoder", "register_decoder"]

# A factory gets the negotiated format and returns a fresh decoder, or None
# when it cannot handle that clock rate / channel count.
DecoderFactory = Callable[[PayloadFormat], Optional[Decoder]]


def _g711(cls: type) -> DecoderFactory:
    def make(fmt: PayloadFormat) -> Optional[Decoder]:
        if fmt.clock_rate != 8000 or fmt.channels != 1:
            return None
        return cls()

    return make


_REGISTRY: Dict[str, DecoderFactory] = {
    "PCMU": _g711(PcmuDecoder),
    "PCMA": _g711(PcmaDecoder),
}


def register_decoder(encoding: str, factory: DecoderFactory) -> None:
    """Add (or replace) the decoder for an rtpmap encoding name."""
    _REGISTRY[encoding.upper()] = factory


def get_decoder(fmt: PayloadFormat) -> Optional[Decoder]:
    """A fresh decoder for ``fmt``, or None when nothing here decodes it."""
    factory = _REGISTRY.get(fmt.encoding.upper())
    return factory(fmt) if factory is not None else None


def can_decode(fmt: PayloadFormat) -> bool:
    return get_decoder(fmt) is not None

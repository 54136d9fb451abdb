"""SDP decisions of a recording session that need its streams but no I/O.

SDES keys per m-line (RFC 4568) kept stable across re-offers, the codec
an open stream keeps answering (RFC 3264 lets us), and the 488 an offer
with nothing we can record deserves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

from siprec.media.spec import PayloadFormat
from siprec.media.srtp import negotiate_sdes
from siprec.recording.streams import StreamSlot, line_key
from siprec.sip.errors import CallRejected
from siprec.sip.offer_answer import StreamPlan, acceptable, rejection_summary

__all__ = ["SrtpChoice", "negotiate_srtp", "sticky_codec", "require_media"]


@dataclass
class SrtpChoice:
    """Per m-line index: the SRC's keys (None when kept from an open stream) and our a=crypto."""

    keys: Dict[int, Tuple[object, str]] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    def srtp_keys(self, index: int):
        return self.keys.get(index, (None, None))[0]

    def answer_crypto(self, index: int) -> Optional[str]:
        return self.keys.get(index, (None, None))[1]


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")[:200]


def require_media(plans: Sequence[StreamPlan], warning_agent: str) -> None:
    """488 with a Warning naming why, unless at least one audio stream is acceptable."""
    if not acceptable(plans):
        summary = rejection_summary(plans) or "no audio stream offered"
        raise CallRejected(488, "No acceptable media",
                           headers=[("Warning", f'304 {warning_agent} "{_quoted(summary)}"')])


def negotiate_srtp(plans: Sequence[StreamPlan],
                   slots: Dict[str, StreamSlot]) -> Tuple[List[StreamPlan], SrtpChoice]:
    """SDES keys for every accepted RTP/SAVP m-line; a line whose crypto suites
    we cannot use is answered with port 0.

    An open stream keeps its keys across re-offers; if the SRC changes its
    key mid-call the old one is kept and a warning raised (re-keying an
    open stream is not supported).
    """
    choice = SrtpChoice()
    out: List[StreamPlan] = []
    for plan in plans:
        if not plan.accepted or "SAVP" not in plan.proto.upper():
            out.append(plan)
            continue
        current = slots.get(line_key(plan))
        if current is not None and current.media is not None and current.srtp_answer:
            if tuple(plan.crypto) != current.srtp_offered:
                choice.warnings.append(
                    f"SRC changed the SRTP key of stream {current.label} in a re-offer; "
                    "keeping the key negotiated first")
            choice.keys[plan.index] = (None, current.srtp_answer)
            out.append(plan)
            continue
        negotiated = negotiate_sdes(plan.crypto)
        if negotiated is None:
            out.append(replace(plan, accepted=False,
                               reject_reason="no usable SRTP crypto suite offered"))
            continue
        choice.keys[plan.index] = negotiated
        out.append(plan)
    return out, choice


def _same_format(a: PayloadFormat, b: PayloadFormat) -> bool:
    return (a.payload_type, a.encoding, a.clock_rate, a.channels) == \
        (b.payload_type, b.encoding, b.clock_rate, b.channels)


def sticky_codec(slot: StreamSlot, plan: StreamPlan) -> Tuple[StreamPlan, Optional[str]]:
    """Keep answering the codec a stream was opened with while the SRC still offers it
    (the open media stream is set up for it); returns the plan and a warning, if any."""
    old = slot.plan.codec
    if old is None or plan.codec is None or _same_format(plan.codec, old):
        return plan, None
    for fmt in plan.formats:
        if _same_format(fmt, old):
            formats = (fmt, *[f for f in plan.formats if f is not fmt])
            return replace(plan, codec=fmt, formats=formats), None
    if not any(_same_format(plan.codec, f) for f in slot.formats):
        return plan, (f"Re-offer moved stream {slot.label} to {plan.codec.encoding}/"
                      f"{plan.codec.clock_rate}, which its open stream was not set up to decode")
    return plan, None

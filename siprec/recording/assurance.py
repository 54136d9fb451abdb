"""Recording assurance: every INVITE accounted for.

A compliance officer must be able to say, for every call an SRC offered,
whether it was recorded, and if not why; and for every recorded call,
whether its recording is whole. This ledger keeps the recent refusals and
their counts by reason, the number of calls recorded, and the recorded
calls whose recording has a gap or a silent leg, each with the reason.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any, Deque, Dict, List, Optional

from siprec.timefmt import iso_time

__all__ = ["Assurance", "refusal_reason", "recording_problems"]

#: How many refusals and problem calls the API lists (counts are kept forever).
RECENT = 200


def refusal_reason(status: int, reason: Optional[str]) -> str:
    """A short, bounded label for a refusal: the reason phrase before any detail.

    Our phrases are like ``Malformed SDP: line 3 ...`` or ``No RTP port
    available``; the part before ``:`` names the kind, the rest is detail
    that must not become a metric label of its own.
    """
    phrase = (reason or "").split(":", 1)[0].strip()
    if not phrase:
        phrase = {487: "Request Terminated"}.get(status, f"status {status}")
    return phrase[:60]


def recording_problems(session: Any) -> List[str]:
    """Why a recorded call is not whole: silent legs, lost or dropped packets."""
    problems: List[str] = []
    for slot in session.slots.values():
        stats = slot.final_stats()
        audio = (stats.get("packets", 0) - stats.get("telephone_events", 0)
                 - stats.get("comfort_noise", 0))
        if audio <= 0:
            problems.append(f"leg {slot.label}: no audio received")
            continue
        if stats.get("undecodable", 0) or stats.get("unknown_payload_type", 0):
            count = stats.get("undecodable", 0) + stats.get("unknown_payload_type", 0)
            problems.append(f"leg {slot.label}: {count} packet(s) in a codec that could "
                            "not be decoded")
        for key, what in (("lost", "lost in the network (gap filled with silence)"),
                          ("overflow_dropped", "dropped by the recorder under load"),
                          ("late_dropped", "arrived too late to place"),
                          ("decode_errors", "could not be decoded")):
            if stats.get(key, 0):
                problems.append(f"leg {slot.label}: {stats[key]} packet(s) {what}")
        if stats.get("wav_error"):
            problems.append(f"leg {slot.label}: file error: {stats['wav_error']}")
        if stats.get("wav_full"):
            problems.append(f"leg {slot.label}: file reached the WAV size limit")
    if session.ctx.settings.combine_legs and "combined" not in session.files \
            and any(s.final_stats().get("packets") for s in session.slots.values()):
        problems.append("combined recording missing (the combine failed; see the log)")
    return problems


class Assurance:
    def __init__(self, metrics: Any = None) -> None:
        self.metrics = metrics
        self.refusals: Deque[Dict[str, Any]] = deque(maxlen=RECENT)
        self.refused_by_reason: Counter = Counter()
        self.recorded = 0
        self.incomplete: Deque[Dict[str, Any]] = deque(maxlen=RECENT)
        self.incomplete_total = 0

    def refused(self, call_id: str, status: int, reason: Optional[str], at: float,
                source: Optional[str] = None) -> None:
        """An INVITE that will not be recorded, and why (our final response)."""
        label = refusal_reason(status, reason)
        self.refused_by_reason[label] += 1
        self.refusals.append({"call_id": call_id, "status": status, "reason": reason or label,
                              "at": iso_time(at), "source": source})
        if self.metrics is not None:
            self.metrics.call_refused(status, label)

    def ended(self, session: Any) -> None:
        """A recorded call's files are final: count it, and list it if it is not whole."""
        self.recorded += 1
        problems = recording_problems(session)
        if problems:
            self.incomplete_total += 1
            self.incomplete.append({"id": session.id, "call_id": session.call_id,
                                    "ended_at": iso_time(session.ended_at),
                                    "end_reason": session.end_reason, "problems": problems})

    def view(self) -> Dict[str, Any]:
        return {
            "calls_recorded": self.recorded,
            "calls_refused": sum(self.refused_by_reason.values()),
            "refused_by_reason": dict(self.refused_by_reason.most_common()),
            "recent_refusals": list(reversed(self.refusals)),
            "calls_incomplete": self.incomplete_total,
            "recent_incomplete": list(reversed(self.incomplete)),
        }

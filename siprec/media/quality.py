"""Per-stream reception quality and a MOS estimate (sans-IO).

Counting follows RFC 3550 appendix A: extended sequence numbers and
source restarts (A.1), expected/lost packets (A.3) and the interarrival
jitter filter (A.8). On top: out-of-order and duplicate counts, the loss
burst ratio, and the ITU-T G.107 E-model with the codec's equipment
impairment Ie and packet-loss robustness Bpl from ITU-T G.113 appendix I,
turned into a MOS.

The E-model here is the transmission-planning simplification commonly
used for VoIP monitoring: the G.107 default basic signal-to-noise ratio
with simultaneous impairment already subtracted (Ro - Is = 93.2 for all
default parameters), the delay impairment Idd, the effective equipment
impairment Ie-eff, and no advantage factor. The SRS sees no mouth-to-ear
delay, so ``delay_ms`` is whatever the caller estimates (0 by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

# -- E-model ------------------------------------------------------------------

DEFAULT_R = 93.2  # G.107 with every parameter at its default value


@dataclass(frozen=True, slots=True)
class CodecImpairment:
    """G.113 appendix I values for one codec mode."""

    ie: float  # equipment impairment factor
    bpl: float  # packet-loss robustness factor
    source: str  # where the numbers come from


# G.113 appendix I (narrowband values). Wideband codecs (G.722, AMR-WB,
# Opus) are scored on the same narrowband scale as no worse than G.711,
# which is what a narrowband E-model can say about them.
_G113 = "ITU-T G.113 appendix I"
_NB_SCALE = "no narrowband G.113 value: scored as G.711 on the narrowband scale"
IMPAIRMENTS: Dict[str, CodecImpairment] = {
    "PCMU": CodecImpairment(0.0, 25.1, _G113 + " (G.711 with PLC)"),
    "PCMA": CodecImpairment(0.0, 25.1, _G113 + " (G.711 with PLC)"),
    "G722": CodecImpairment(0.0, 25.1, _NB_SCALE),
    "OPUS": CodecImpairment(0.0, 25.1, _NB_SCALE),
    "AMR-WB": CodecImpairment(0.0, 25.1, _NB_SCALE),
    "G729": CodecImpairment(11.0, 19.0, _G113 + " (G.729A + VAD)"),
    "G729D": CodecImpairment(15.0, 19.0, _G113 + " (G.729 family, 6.4 kbit/s taken as G.729A + 4)"),
    "G723": CodecImpairment(15.0, 16.1, _G113 + " (G.723.1 6.3 kbit/s)"),
    "AMR": CodecImpairment(5.0, 10.0, _G113 + " (AMR 12.2 kbit/s)"),
    "GSM": CodecImpairment(20.0, 10.0, _G113 + " (GSM 06.10 full rate)"),
    "ILBC": CodecImpairment(11.0, 32.0, _G113 + " (iLBC 15.2 kbit/s)"),
    "G726-40": CodecImpairment(2.0, 4.3, _G113),
    "G726-32": CodecImpairment(7.0, 4.3, _G113),
    "G726-24": CodecImpairment(25.0, 4.3, _G113),
    "G726-16": CodecImpairment(50.0, 4.3, _G113),
}
UNKNOWN_CODEC = CodecImpairment(0.0, 4.3, "unknown codec: no codec impairment, no loss robustness")


def impairment_for(encoding: Optional[str]) -> CodecImpairment:
    if not encoding:
        return UNKNOWN_CODEC
    name = encoding.upper()
    if name.startswith("AAL2-"):
        name = name[5:]
    return IMPAIRMENTS.get(name, UNKNOWN_CODEC)


def delay_impairment(delay_ms: float) -> float:
    """G.107 Idd: the impairment of a one-way (absolute) delay Ta in ms."""
    if delay_ms <= 100:
        return 0.0
    x = math.log10(delay_ms / 100) / math.log10(2)
    return 25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)


def effective_equipment_impairment(ie: float, bpl: float, loss_percent: float, burst_ratio: float = 1.0) -> float:
    """G.107 Ie-eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)."""
    if loss_percent <= 0:
        return ie
    burst_ratio = max(burst_ratio, 1.0)
    return ie + (95 - ie) * loss_percent / (loss_percent / burst_ratio + bpl)


def r_factor(
    encoding: Optional[str],
    loss_percent: float = 0.0,
    burst_ratio: float = 1.0,
    delay_ms: float = 0.0,
    base_r: float = DEFAULT_R,
) -> float:
    """Transmission rating R for a stream."""
    codec = impairment_for(encoding)
    ie_eff = effective_equipment_impairment(codec.ie, codec.bpl, loss_percent, burst_ratio)
    return base_r - delay_impairment(delay_ms) - ie_eff


def mos_from_r(r: float) -> float:
    """G.107 Annex B: R to estimated MOS (conversational quality)."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    # The cubic dips just below 1 for R under about 6.5: clamp it.
    return max(1.0, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6)


# -- RFC 3550 reception statistics -------------------------------------------

MAX_DROPOUT = 3000
MAX_MISORDER = 100
SEQ_MOD = 1 << 16
_RECENT = 1024  # sequence numbers remembered for duplicate detection


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Plain data for the API, metrics and the call record."""

    ssrc: Optional[int]
    expected: int
    received: int
    lost: int
    loss_percent: float
    jitter_ms: float
    max_jitter_ms: float
    out_of_order: int
    duplicates: int
    burst_ratio: float
    source_restarts: int
    r_factor: float
    mos: float
    codec: Optional[str]

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class ReceptionStats:
    """One source's counters (RFC 3550 A.1, A.3, A.8), fed in arrival order."""

    def __init__(self, clock_rate: int, ssrc: Optional[int] = None) -> None:
        if clock_rate <= 0:
            raise ValueError("clock rate must be positive")
        self.clock_rate = clock_rate
        self.ssrc = ssrc
        self.received = 0
        self.out_of_order = 0
        self.duplicates = 0
        self.restarts = 0
        self.jitter = 0.0  # timestamp units
        self.max_jitter = 0.0
        self.loss_bursts = 0  # gaps in the sequence
        self._base: Optional[int] = None  # extended, first sequence number
        self._max: int = 0  # extended highest sequence number
        self._bad_seq: Optional[int] = None
        self._recent = 0  # bit i set: _max - i was received
        self._transit: Optional[float] = None

    @property
    def expected(self) -> int:
        return 0 if self._base is None else self._max - self._base + 1

    @property
    def lost(self) -> int:
        """Expected minus received, never below zero (duplicates are not counted as received)."""
        return max(0, self.expected - self.received)

    @property
    def highest(self) -> Optional[int]:
        return None if self._base is None else self._max

    def update(self, sequence: int, timestamp: int, arrival: float, timing: bool = True) -> None:
        """One packet. ``timing`` False (telephone-events, CN) skips the jitter filter."""
        if self._base is None:
            self._base = self._max = sequence
            self._recent = 1
            self.received = 1
            if timing:
                self._transit = arrival * self.clock_rate - timestamp
            return
        delta = (sequence - (self._max & 0xFFFF)) % SEQ_MOD
        if delta == 0:
            self.duplicates += 1
            return
        if delta < MAX_DROPOUT:
            # In order, possibly with a gap.
            if delta > 1:
                self.loss_bursts += 1
            self._max += delta
            self._recent = ((self._recent << delta) | 1) & ((1 << _RECENT) - 1)
            self._bad_seq = None
        elif delta <= SEQ_MOD - MAX_MISORDER:
            # A big jump: a restart if the next packet follows it (A.1).
            if self._bad_seq is not None and sequence == self._bad_seq:
                self.restarts += 1
                lost_before, received_before = self.lost, self.received
                self._base = self._max = sequence
                self._recent = 1
                # keep the counts: shift the base so earlier loss stays counted
                self._base -= lost_before + received_before
                self.received = received_before  # this packet is added below
                self._bad_seq = None
                self._transit = None
            else:
                self._bad_seq = (sequence + 1) & 0xFFFF
                return
        else:
            # Late (reordered) packet, or a duplicate of one.
            back = SEQ_MOD - delta
            if back < _RECENT and (self._recent >> back) & 1:
                self.duplicates += 1
                return
            self.out_of_order += 1
            if back < _RECENT:
                self._recent |= 1 << back
            if self._max - back < self._base:
                self._base = self._max - back
        self.received += 1
        if timing:
            transit = arrival * self.clock_rate - timestamp
            if self._transit is not None:
                d = abs(transit - self._transit)
                if d < 0x80000000:  # timestamp wrap shows as a huge jump: skip it
                    self.jitter += (d - self.jitter) / 16
                    if self.jitter > self.max_jitter:
                        self.max_jitter = self.jitter
            self._transit = transit

    def update_run(self, sequence: int, timestamp: int, step: int, arrivals: Sequence[float]) -> bool:
        """``len(arrivals)`` packets that directly follow the newest one, in order,
        with timestamps ``timestamp``, ``timestamp + step`` ...

        The same counts and jitter as calling :meth:`update` for each;
        returns False, changing nothing, when the run does not directly
        follow the newest packet.
        """
        count = len(arrivals)
        if self._base is None or count == 0 or sequence != (self._max + 1) & 0xFFFF:
            return False
        self._max += count
        self.received += count
        self._recent = ((self._recent << count) | ((1 << min(count, _RECENT)) - 1)) & ((1 << _RECENT) - 1)
        self._bad_seq = None
        rate = self.clock_rate
        jitter = self.jitter
        peak = self.max_jitter
        previous = self._transit
        stamp = timestamp
        for arrival in arrivals:
            transit = arrival * rate - stamp
            if previous is not None:
                d = transit - previous
                if d < 0:
                    d = -d
                if d < 0x80000000:
                    jitter += (d - jitter) / 16
                    if jitter > peak:
                        peak = jitter
            previous = transit
            stamp = (stamp + step) & 0xFFFFFFFF
        self.jitter = jitter
        self.max_jitter = peak
        self._transit = previous
        return True

    @property
    def burst_ratio(self) -> float:
        """Observed mean loss-burst length over what random loss would give (>= 1)."""
        lost = self.lost
        expected = self.expected
        if lost == 0 or self.loss_bursts == 0 or expected == 0:
            return 1.0
        p = lost / expected
        if p >= 1:
            return 1.0
        return max(1.0, (lost / self.loss_bursts) * (1 - p))


class StreamQuality:
    """Quality of one stream across its sources (SSRC changes start new counters)."""

    def __init__(self, clock_rate: int, codec: Optional[str] = None, delay_ms: float = 0.0) -> None:
        self.clock_rate = clock_rate
        self.codec = codec
        self.delay_ms = delay_ms
        self.current: Optional[ReceptionStats] = None
        self._done_expected = 0
        self._done_received = 0
        self._done_lost = 0
        self._done_ooo = 0
        self._done_dups = 0
        self._done_bursts = 0
        self._done_restarts = 0
        self._max_jitter = 0.0

    def update(self, ssrc: int, sequence: int, timestamp: int, arrival: float, timing: bool = True) -> None:
        current = self.current
        if current is None or current.ssrc != ssrc:
            if current is not None:
                self._retire(current)
            current = self.current = ReceptionStats(self.clock_rate, ssrc)
        current.update(sequence, timestamp, arrival, timing)

    def update_run(self, ssrc: int, sequence: int, timestamp: int, step: int, arrivals: Sequence[float]) -> bool:
        """Fast path for an in-order run of the current source (see ReceptionStats.update_run)."""
        current = self.current
        if current is None or current.ssrc != ssrc:
            return False
        return current.update_run(sequence, timestamp, step, arrivals)

    def _retire(self, stats: ReceptionStats) -> None:
        self._done_expected += stats.expected
        self._done_received += stats.received
        self._done_lost += stats.lost
        self._done_ooo += stats.out_of_order
        self._done_dups += stats.duplicates
        self._done_bursts += stats.loss_bursts
        self._done_restarts += stats.restarts
        self._max_jitter = max(self._max_jitter, stats.max_jitter)

    def report(self) -> QualityReport:
        c = self.current
        expected = self._done_expected + (c.expected if c else 0)
        received = self._done_received + (c.received if c else 0)
        lost = self._done_lost + (c.lost if c else 0)
        bursts = self._done_bursts + (c.loss_bursts if c else 0)
        loss_percent = 100.0 * lost / expected if expected else 0.0
        p = lost / expected if expected else 0.0
        burst_ratio = max(1.0, (lost / bursts) * (1 - p)) if lost and bursts and p < 1 else 1.0
        to_ms = 1000.0 / self.clock_rate
        r = r_factor(self.codec, loss_percent, burst_ratio, self.delay_ms)
        return QualityReport(
            ssrc=c.ssrc if c else None,
            expected=expected,
            received=received,
            lost=lost,
            loss_percent=round(loss_percent, 3),
            jitter_ms=round((c.jitter if c else 0.0) * to_ms, 3),
            max_jitter_ms=round(max(self._max_jitter, c.max_jitter if c else 0.0) * to_ms, 3),
            out_of_order=self._done_ooo + (c.out_of_order if c else 0),
            duplicates=self._done_dups + (c.duplicates if c else 0),
            burst_ratio=round(burst_ratio, 3),
            source_restarts=self._done_restarts + (c.restarts if c else 0),
            r_factor=round(r, 2),
            mos=round(mos_from_r(r), 2),
            codec=self.codec,
        )

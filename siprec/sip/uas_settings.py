"""How the SRS user agent server behaves; read at each use, so a reload takes effect."""

from __future__ import annotations

from dataclasses import dataclass, field

from siprec.sip.transaction import Timers

__all__ = ["UasSettings"]


@dataclass
class UasSettings:
    host: str  # address we put in Contact and Via
    user_agent: str = "siprec"
    require_metadata: bool = False
    session_expires: float = 1800.0
    min_se: float = 90.0
    timers: Timers = field(default_factory=Timers)
    #: Retry-After (seconds) on the 503 to new INVITEs and OPTIONS while draining.
    drain_retry_after: int = 30

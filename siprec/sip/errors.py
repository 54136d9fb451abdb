"""Errors the SIP core understands, raised by whoever it calls.

They live here, not beside the recording layer, so that the generic SIP
stack never has to import what sits above it.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

__all__ = ["CallRejected"]


class CallRejected(Exception):
    """Raised by a call handler to refuse an offer with a SIP status.

    The UAS turns it into the final response: ``status``, ``reason`` (the
    reason phrase; the default for the status when None) and ``headers``
    (e.g. Retry-After, Warning, Unsupported).
    """

    def __init__(self, status: int, reason: Optional[str] = None,
                 headers: Sequence[Tuple[str, str]] = ()):
        super().__init__(f"{status} {reason or ''}".strip())
        self.status = status
        self.reason = reason
        self.headers = list(headers)

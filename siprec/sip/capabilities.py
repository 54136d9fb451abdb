"""What the SRS says it can do, in every 2xx and OPTIONS answer (RFC 3261 §11, §20)."""

from __future__ import annotations

from typing import List, Tuple

__all__ = ["ALLOWED_METHODS", "SUPPORTED_OPTIONS", "ACCEPTED_TYPES", "capability_headers"]

ALLOWED_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "PRACK")
SUPPORTED_OPTIONS = ("siprec", "timer", "100rel")
ACCEPTED_TYPES = "application/sdp, application/rs-metadata+xml, application/rs-metadata"


def capability_headers() -> List[Tuple[str, str]]:
    """Allow, Accept and Supported, in that order."""
    return [
        ("Allow", ", ".join(ALLOWED_METHODS)),
        ("Accept", ACCEPTED_TYPES),
        ("Supported", ", ".join(SUPPORTED_OPTIONS)),
    ]

"""``a=fmtp`` parameter strings as dictionaries (RFC 8866 leaves the syntax to each format)."""

from __future__ import annotations

from typing import Dict, Optional


def fmtp_params(fmtp: Optional[str]) -> Dict[str, str]:
    """``"mode=30; octet-align=1"`` -> ``{"mode": "30", "octet-align": "1"}``.

    Keys are lower-cased; a bare token maps to an empty string; anything
    unparseable is skipped (fmtp is advisory for a receiver).
    """
    params: Dict[str, str] = {}
    if not fmtp:
        return params
    for part in fmtp.split(";"):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        params[key.strip().lower()] = value.strip()
    return params


def flag(params: Dict[str, str], key: str) -> bool:
    """True for ``key=1`` (RFC 4867 / RFC 7587 boolean parameters)."""
    return params.get(key, "0").strip() == "1"

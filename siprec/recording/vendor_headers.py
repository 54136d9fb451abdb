"""Participants from SIP headers, for SRCs that send no rs-metadata.

Cisco network-based recording (CUBE or CUCM forking a call to a recorder)
sends a plain SDP offer and names the parties in headers, one per leg:

    X-Cisco-Recording-Participant: sip:2164485925@example.org;media-index="0"

``media-index`` is the m-line the party sends on. This module turns such
headers into an RFC 7865 document, so the call's participants reach the
API and the record like any SIPREC call's, through the one metadata model.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple
from xml.sax.saxutils import escape, quoteattr

from siprec.sip.headers import HeaderError, parse_params, split_unquoted

__all__ = ["participants_from_headers", "CISCO_PARTICIPANT"]

CISCO_PARTICIPANT = "x-cisco-recording-participant"
_NS = "urn:ietf:params:xml:ns:recording:1"
_MAX_PARTIES = 16


def _values(headers: Mapping[str, Sequence[str]], name: str) -> List[str]:
    out: List[str] = []
    for key, values in headers.items():
        if key.lower() == name:
            for value in values:
                out.extend(v.strip() for v in split_unquoted(value, ",") if v.strip())
    return out


def _party(value: str) -> Optional[Tuple[str, Optional[int]]]:
    """(AOR, m-line index) of one header value; None when it has no AOR."""
    text = value.strip()
    if text.startswith("<") and ">" in text:
        aor, _, rest = text[1:].partition(">")
    else:
        aor, _, rest = text.partition(";")
        rest = ";" + rest if rest else ""
    aor = aor.strip()
    if not aor:
        return None
    index: Optional[int] = None
    try:
        raw = parse_params(rest.lstrip(";")).get("media-index") if rest.strip(";") else None
    except HeaderError:
        raw = None
    if raw is not None:
        raw = raw.strip('"')
        if raw.isdigit() and len(raw) < 4:
            index = int(raw)
    return aor, index


def participants_from_headers(headers: Mapping[str, Sequence[str]],
                              labels_by_index: Mapping[int, str]) -> Optional[bytes]:
    """An RFC 7865 document naming the parties of ``X-Cisco-Recording-Participant``
    headers and the stream each sends (by ``media-index``); None without such headers."""
    parties = [p for p in (_party(v) for v in _values(headers, CISCO_PARTICIPANT)) if p]
    if not parties:
        return None
    parties = parties[:_MAX_PARTIES]
    streams: Dict[int, str] = {i: label for i, label in labels_by_index.items()}
    out = [f'<recording xmlns="{_NS}"><datamode>complete</datamode>',
           '<session session_id="hdr-session"></session>']
    for n, (aor, _) in enumerate(parties):
        out.append(f'<participant participant_id="hdr-p{n}">'
                   f"<nameID aor={quoteattr(aor)}></nameID></participant>")
    for index, label in sorted(streams.items()):
        out.append(f'<stream stream_id="hdr-s{index}" session_id="hdr-session">'
                   f"<label>{escape(label)}</label></stream>")
    for n, (_, index) in enumerate(parties):
        sends = f"<send>hdr-s{index}</send>" if index in streams else ""
        out.append(f'<participantstreamassoc participant_id="hdr-p{n}">{sends}'
                   "</participantstreamassoc>")
    out.append("</recording>")
    return "".join(out).encode("utf-8")

"""The call record and the metadata log: what a session writes beside its recordings.

Views only: building a record reads the session and changes nothing.
``<Call-ID>.json`` is the record (participants, streams ↔ labels ↔ files ↔
channels, quality, DTMF, pauses, SIP headers, tolerated quirks, warnings,
transcription status); ``<Call-ID>.metadata.xml`` keeps every rs-metadata
document verbatim, in arrival order.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Dict, List, Optional

from twisted.logger import Logger

from siprec.recording.streams import StreamSlot, aggregate_stats
from siprec.timefmt import iso_time

log = Logger()

__all__ = ["summary", "detail", "record_json", "transcript_view", "transcript_json",
           "metadata_log", "stream_stats", "stream_entry", "participant_brief",
           "RECORD_SCHEMA", "TRANSCRIPT_SCHEMA"]

RECORD_SCHEMA = "siprec.call-record/1"
TRANSCRIPT_SCHEMA = "siprec.transcript/1"
# Characters XML 1.0 cannot carry at all, not even as character references.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def stream_stats(slot: StreamSlot) -> dict:
    """Everything the leg received so far, the open piece included."""
    pieces = list(slot.pieces)
    if slot.media is not None:
        try:
            pieces.append(slot.media.stats())
        except Exception:
            log.failure("Reading stream statistics failed")
    return aggregate_stats(pieces)


def _slot_state(slot: StreamSlot, api_paused: bool) -> str:
    if slot.media is None:
        return "closed"
    if slot.paused_by_sdp or api_paused:
        return "paused"
    return "held" if slot.held else "active"


def participant_brief(participant) -> Optional[dict]:
    if participant is None:
        return None
    return {"id": participant.participant_id, "aor": participant.aor, "name": participant.name}


def _jsonable(stats: dict) -> dict:
    out = {}
    for key, value in stats.items():
        if isinstance(value, (tuple, list)):
            value = list(value)
        elif isinstance(value, float) and key.endswith("_at"):
            value = iso_time(value)
        out[key] = value
    return out


def stream_entry(session, slot: StreamSlot, first: int, count: int) -> dict:
    stats = stream_stats(slot)
    participant = participant_brief(session.metadata.participant_for_label(slot.label))
    return {
        "label": slot.label,
        "key": slot.key,
        "index": slot.index,
        "codec": slot.codec,
        "port": slot.port,
        "state": _slot_state(slot, session.recording_paused),
        "direction": slot.plan.offered_direction,
        "remote_address": list(slot.plan.remote_address) if slot.plan.remote_address else None,
        "file": slot.wav_path,
        "channel": first,
        "channels": count,
        "participant": participant or slot.participant,
        "packets": stats.get("packets", 0),
        "bytes": stats.get("bytes", 0),
        "srtp": bool(slot.srtp_answer),
        "quality": stats.get("quality"),
        "stats": _jsonable({k: v for k, v in stats.items() if k != "quality"}),
    }


def streams(session) -> List[dict]:
    layout = session.channels.channel_of(session.slots)
    return [stream_entry(session, slot, *layout[slot.key])
            for slot in session.channels.ordered(session.slots)]


def summary(session) -> dict:
    metadata = session.metadata
    applied = metadata.documents_applied
    return {
        "id": session.id,
        "call_id": session.call_id,
        "state": str(session.state),
        "paused": session.recording_paused or session.transcription_paused,
        "recording_paused": session.recording_paused,
        "transcription_paused": session.transcription_paused,
        "started_at": iso_time(session.started_at or session.created),
        "ended_at": iso_time(session.ended_at),
        "end_reason": session.end_reason,
        "streams": streams(session),
        "participants": metadata.to_dict().get("participants", []) if applied else [],
        "group_id": metadata.group_id() if applied else None,
    }


def detail(session) -> dict:
    out = summary(session)
    metadata = session.metadata
    out.update({
        "sip": session.sip_info,
        "metadata": metadata.to_dict() if metadata.documents_applied else None,
        "metadata_documents": len(session.metadata_documents),
        "pauses": [{**p, "start": iso_time(p["start"]), "end": iso_time(p["end"])}
                   for p in session.pauses],
        "files": dict(session.files),
        "dtmf": list(session.dtmf),
        "analysis": session.analysis_view(),
        "transcription": {"status": session.transcript.status,
                          "segments": len(session.transcript.segments),
                          "legs": dict(session.transcript.outcomes)},
        "tolerances": list(session.tolerances),
        "warnings": list(session.warnings),
    })
    return out


def _encode(document: dict) -> bytes:
    """Compact JSON: the C encoder (an indented document takes the pure-Python one,
    about ten times slower, and records are written on the reactor at every change).
    ``jq . <Call-ID>.json`` shows it indented."""
    return json.dumps(document, default=str, ensure_ascii=False).encode("utf-8")


def record_json(session) -> bytes:
    record = detail(session)
    record["schema"] = RECORD_SCHEMA
    return _encode(record)


def transcript_view(session) -> dict:
    return {"id": session.id, "call_id": session.call_id, "state": str(session.state),
            "status": session.transcript.status,
            "segments": session.transcript.ordered(),
            "partials": list(session.transcript.partials.values()),
            "legs": {slot.label: (slot.feed.status() if slot.feed is not None else
                                  {"state": "closed" if slot.media is None else "off"})
                     for slot in session.slots.values()}}


def transcript_json(session) -> bytes:
    view = transcript_view(session)
    view.pop("partials", None)
    view["schema"] = TRANSCRIPT_SCHEMA
    return _encode(view)


# -- the metadata log ------------------------------------------------------------


def metadata_log(call_id: str, documents: List[Dict[str, Any]]) -> bytes:
    """Every document as the text of a ``<document>`` element.

    CDATA, with ``]]>`` and carriage returns (which XML parsers would
    otherwise turn into line feeds) written outside it, so a parser reads
    back exactly what was received. A document that is not UTF-8 text XML
    can carry is kept as base64 (``encoding="base64"``).
    """
    parts = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<siprec-metadata-log call-id="{_xml_attr(call_id)}">']
    for n, doc in enumerate(documents, 1):
        attributes = (f'seq="{n}" received="{iso_time(doc["received_at"])}" '
                      f'source="{_xml_attr(doc["source"])}"')
        text = _xml_text(doc["body"])
        if text is None:
            encoded = base64.b64encode(doc["body"]).decode("ascii")
            parts.append(f'<document {attributes} encoding="base64">{encoded}</document>')
        else:
            parts.append(f"<document {attributes}>{_cdata(text)}</document>")
    parts.append("</siprec-metadata-log>\n")
    return "\n".join(parts).encode("utf-8")


def _xml_attr(text: str) -> str:
    """An attribute value that survives parsing unchanged (what XML can carry of it)."""
    text = _NOT_XML.sub("\ufffd", text)
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;").replace("\t", "&#9;").replace("\n", "&#10;")
            .replace("\r", "&#13;"))


def _xml_text(body: bytes) -> Optional[str]:
    """The document as text XML can carry verbatim, or None (then it goes as base64)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _NOT_XML.search(text) else text


def _cdata(text: str) -> str:
    inner = text.replace("]]>", "]]]]><![CDATA[>").replace("\r", "]]>&#13;<![CDATA[")
    return f"<![CDATA[{inner}]]>"

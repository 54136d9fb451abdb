"""The pre-RFC draft schema (draft-ietf-siprec-metadata), as Acme and others send it.

Oracle/Acme, Avaya-behind-Acme, Sonus/Ribbon and Metaswitch still use the
draft namespace ``urn:ietf:params:xml:ns:recording`` (without ``:1``), and
several of them the draft's shapes too: an ``id`` attribute instead of
``participant_id``/``stream_id``/``session_id``, a ``session`` attribute on
``<participant>`` and ``<stream>``, and ``<send>``/``<recv>`` directly in
``<participant>`` instead of a ``participantstreamassoc``.  Real documents
mix these with RFC shapes, so this reader is the RFC reader plus the draft
forms, each noted once when used.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element

from siprec.recording.metadata.model import DRAFT_DIALECT, RFC_NAMESPACE
from siprec.recording.metadata.reading import add_unique, text
from siprec.recording.metadata.rfc import RfcReader
from siprec.recording.metadata.safexml import split_tag

__all__ = ["DraftReader", "uses_draft_schema"]

#: The RFC id attribute of each object the draft gave a plain ``id``.
_RFC_IDS = {"group": "group_id", "session": "session_id", "participant": "participant_id", "stream": "stream_id"}


def uses_draft_schema(root: Element) -> bool:
    """Whether a ``<recording>`` document needs the draft reader.

    Anything outside the RFC namespace does (draft namespace, none, unknown);
    so does an RFC-namespace document using one of the draft's shapes.
    """
    if split_tag(root.tag)[0] != RFC_NAMESPACE:
        return True
    for child in root:
        local = split_tag(child.tag)[1].lower()
        rfc_id = _RFC_IDS.get(local)
        if rfc_id is not None and rfc_id not in child.attrib and "id" in child.attrib:
            return True
        if local in ("participant", "stream", "sessionrecordingassoc") and "session" in child.attrib:
            return True
        if local == "participant" and any(split_tag(g.tag)[1].lower() in ("send", "recv") for g in child):
            return True
    return False


class DraftReader(RfcReader):
    """The RFC reader, also reading the draft schema's attributes and shapes."""

    dialect = DRAFT_DIALECT

    def _id(self, element: Element, attribute: str, what: str) -> str:
        if element.get(attribute) is None and element.get("id") is not None:
            self.notes.add(f"draft-era 'id' attribute read as {attribute}")
            value = element.get("id", "").strip()
            if not value:
                self.notes.add(f"empty {attribute} tolerated")
            return value
        return super()._id(element, attribute, what)

    def _participant_attributes(self, element: Element, found: dict[str, Any]) -> None:
        session = (element.get("session") or "").strip()
        if session:
            self.notes.add("draft-era 'session' attribute on <participant> read as its session")
            add_unique(found, "session_ids", [session])

    def _participant_child(self, name: str | None, child: Element, found: dict[str, Any]) -> bool:
        if name not in ("send", "recv"):
            return False
        self.notes.add("draft-era <send>/<recv> inside <participant> accepted")
        found["streams_given"] = True
        add_unique(found, name, [text(child)])
        return True

    def _stream_session(self, element: Element) -> str | None:
        session_id = element.get("session_id")
        if session_id is None and element.get("session") is not None:
            self.notes.add("draft-era 'session' attribute on <stream> read as session_id")
            session_id = element.get("session")
        return session_id

    def _assoc_session(self, element: Element) -> str:
        return (element.get("session_id") or element.get("session") or "").strip()

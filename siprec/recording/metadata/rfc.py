"""The RFC 7865 reader: ``<recording xmlns="urn:ietf:params:xml:ns:recording:1">``.

Two passes: the objects (group, session, participant, stream) first, then
the association elements folded into the objects they name, so documents
with associations before their objects (Cisco, Metaswitch) read the same.
Tolerated along the way, each noted once: element names in another case
(``dataMode``), a missing or unknown namespace, a missing dataMode, empty
ids, AORs without scheme, times without zone, and complete documents that
state no stream associations at all (see :func:`.reading.infer_senders`).
The calling party is read from Acme's ``callingParty``, Intrado's ``<role>``
or Metaswitch's ``callingPartyNumber`` when the SRC sends one of them.
The pre-RFC draft schema is a subclass (:mod:`.draft`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from xml.etree.ElementTree import Element

from siprec.recording.metadata.model import (
    DRAFT_NAMESPACE,
    RFC_DIALECT,
    RFC_NAMESPACE,
    XML_NAMESPACE,
    MetadataDocument,
    MetadataError,
    NameID,
)
from siprec.recording.metadata.reading import (
    Reader,
    Entries,
    add_unique,
    build_document,
    calling_flag,
    entry,
    infer_senders,
    make_name_id,
    mark_calling,
    metaswitch_calling_number,
    read_data_mode,
    set_stated,
    text,
)
from siprec.recording.metadata.safexml import split_tag

__all__ = ["RfcReader"]

_ASSOCIATIONS = ("sessionrecordingassoc", "participantsessionassoc", "participantstreamassoc")
_PRIMARY = ("group", "session", "participant", "stream")
#: Schema names as the RFC spells them, by lower-cased local name.
_CANONICAL = {
    name.lower(): name
    for name in (
        "datamode", *_PRIMARY, *_ASSOCIATIONS, "associate-time", "disassociate-time", "sipSessionID",
        "group-ref", "start-time", "stop-time", "nameID", "name", "send", "recv", "label", "mode",
    )
}
#: Intrado VIPER's non-standard ``<role>`` values.
_ROLES = {"calling": True, "caller": True, "called": False, "callee": False}


class RfcReader(Reader):
    """Builds a MetadataDocument from a parsed ``<recording>`` tree."""

    dialect = RFC_DIALECT
    NAMESPACES = frozenset({RFC_NAMESPACE, DRAFT_NAMESPACE, ""})

    def __init__(self, root: Element, prefixes: dict[str, str]) -> None:
        super().__init__(root, prefixes)
        self.calling_number: str | None = None

    # -- element helpers

    def _name(self, element: Element) -> str | None:
        """Lower-cased local name of a schema element, None for extensions."""
        uri, local = split_tag(element.tag)
        if not local or uri not in self.namespaces:
            return None
        lowered = local.lower()
        canonical = _CANONICAL.get(lowered)
        if canonical is not None and local != canonical:
            self.notes.add(f"element <{local}> read as <{canonical}>")
        return lowered

    def _children(self, element: Element) -> Iterator[tuple[str | None, Element]]:
        for child in element:
            if isinstance(child.tag, str):
                yield self._name(child), child

    def _id(self, element: Element, attribute: str, what: str) -> str:
        value = element.get(attribute)
        if value is None:
            self.notes.add(f"<{what}> without {attribute} tolerated")
            return ""
        value = value.strip()
        if not value:
            self.notes.add(f"empty {attribute} tolerated")
        return value

    # -- document

    def read(self) -> MetadataDocument:
        uri, local = split_tag(self.root.tag)
        if local.lower() != "recording":
            raise MetadataError(f"metadata root element is <{local}>, expected <recording>")
        if local != "recording":
            self.notes.add(f"root element <{local}> read as <recording>")
        if uri == DRAFT_NAMESPACE:
            self.notes.add(f"pre-RFC namespace {DRAFT_NAMESPACE!r} (without ':1') accepted")
        elif uri == "":
            self.notes.add("metadata without XML namespace accepted")
        elif uri != RFC_NAMESPACE:
            self.notes.add(f"unexpected namespace {uri!r}; elements read by local name")
            self.namespaces.add(uri)

        deferred: list[tuple[str, Element]] = []
        for name, child in self._children(self.root):
            if name == "datamode":
                self.data_mode = read_data_mode(text(child), self.data_mode, self.notes)
            elif name in _PRIMARY:
                getattr(self, f"_read_{name}")(child)
            elif name in _ASSOCIATIONS:
                deferred.append((name, child))
            else:
                self.extensions.append(self._extension(child))
                self.calling_number = self.calling_number or metaswitch_calling_number(child)
        if self.data_mode is None:
            self.notes.add("no datamode element; complete assumed")
            self.data_mode = "complete"
        for name, child in deferred:
            getattr(self, f"_read_{name}")(child)
        if self.data_mode == "complete":
            infer_senders(self.participants, self.streams, self.notes)
        if self.calling_number and all(p.get("calling") is None for p in self.participants.values()):
            mark_calling(self.participants, self.calling_number)
        return build_document(self, uri)

    # -- objects

    def _read_group(self, element: Element) -> None:
        group_id = self._id(element, "group_id", "group")
        found = entry(self.groups, group_id, group_id=group_id)
        for name, child in self._children(element):
            if not self._read_times(name, child, found):
                self._add_extension(found, child)

    def _read_session(self, element: Element) -> None:
        session_id = self._id(element, "session_id", "session")
        found = entry(self.sessions, session_id, session_id=session_id)
        for name, child in self._children(element):
            if self._read_times(name, child, found):
                continue
            if name == "sipsessionid":
                value = re.sub(r"\s+", "", text(child))
                if value:
                    found["sip_session_ids"] = (*found.get("sip_session_ids", ()), value)
            elif name == "group-ref":
                set_stated(found, "group_ref", text(child) or None)
            elif name == "start-time":
                set_stated(found, "start_time", self._time(child))
            elif name == "stop-time":
                set_stated(found, "stop_time", self._time(child))
            else:
                self._add_extension(found, child)

    def _read_participant(self, element: Element) -> None:
        participant_id = self._id(element, "participant_id", "participant")
        key = participant_id
        if not participant_id:
            # Without an id, the AOR is the only thing telling participants apart.
            aors = [child.get("aor", "") for name, child in self._children(element) if name == "nameid"]
            key = "\0aor:" + (aors[0] if aors else str(len(self.participants)))
        found = entry(self.participants, key, participant_id=participant_id)
        self._participant_attributes(element, found)
        for name, child in self._children(element):
            if self._read_times(name, child, found) or self._participant_child(name, child, found):
                continue
            if name == "nameid":
                found["name_ids"] = (*found.get("name_ids", ()), self._read_name_id(child))
                continue
            if name == "role":
                self._read_role(child, found)
            else:
                set_stated(found, "calling", calling_flag(child))
            self._add_extension(found, child)

    def _participant_attributes(self, element: Element, found: dict[str, Any]) -> None:
        """Hook for attributes other schemas put on ``<participant>``."""

    def _participant_child(self, name: str | None, child: Element, found: dict[str, Any]) -> bool:
        """Hook for children other schemas put in ``<participant>``; True when consumed."""
        return False

    def _read_role(self, child: Element, found: dict[str, Any]) -> None:
        value = text(child).lower()
        if value in _ROLES:
            self.notes.add("non-standard <role> in <participant> read as the calling-party mark")
            found["calling"] = _ROLES[value]

    def _read_name_id(self, element: Element) -> NameID:
        names: list[tuple[str, str | None]] = []
        for name, child in self._children(element):
            if name == "name":
                names.append((text(child), child.get(f"{{{XML_NAMESPACE}}}lang")))
        return make_name_id(element.get("aor", ""), names, self.notes)

    def _stream_session(self, element: Element) -> str | None:
        return element.get("session_id")

    def _read_stream(self, element: Element) -> None:
        stream_id = self._id(element, "stream_id", "stream")
        key = stream_id
        if not stream_id:
            labels = [text(child) for name, child in self._children(element) if name == "label"]
            key = "\0label:" + (labels[0] if labels else str(len(self.streams)))
        found = entry(self.streams, key, stream_id=stream_id)
        set_stated(found, "session_id", (self._stream_session(element) or "").strip() or None)
        for name, child in self._children(element):
            if self._read_times(name, child, found):
                continue
            if name == "label":
                set_stated(found, "label", text(child) or None)
            elif name == "mode":
                set_stated(found, "mode", text(child) or None)
            else:
                self._add_extension(found, child)

    # -- associations

    def _referenced(self, table: Entries, key: str, what: str, via: str) -> dict[str, Any]:
        if key not in table and self.data_mode == "complete":
            self.notes.add(f"<{via}> names a {what} the document does not describe")
        return entry(table, key, **{f"{what}_id": key})

    def _assoc_session(self, element: Element) -> str:
        return (element.get("session_id") or "").strip()

    def _read_sessionrecordingassoc(self, element: Element) -> None:
        found = self._referenced(self.sessions, self._assoc_session(element), "session", "sessionrecordingassoc")
        for name, child in self._children(element):
            if not self._read_times(name, child, found):
                self._add_extension(found, child)

    def _read_participantsessionassoc(self, element: Element) -> None:
        participant_id = (element.get("participant_id") or "").strip()
        session_id = (element.get("session_id") or "").strip()
        found = self._referenced(self.participants, participant_id, "participant", "participantsessionassoc")
        add_unique(found, "session_ids", [session_id])
        for name, child in self._children(element):
            if not self._read_times(name, child, found):
                self._add_extension(found, child)

    def _read_participantstreamassoc(self, element: Element) -> None:
        participant_id = (element.get("participant_id") or "").strip()
        found = self._referenced(self.participants, participant_id, "participant", "participantstreamassoc")
        found["streams_given"] = True
        found.setdefault("send", ())
        found.setdefault("recv", ())
        for name, child in self._children(element):
            if name in ("send", "recv"):
                add_unique(found, name, [text(child)])
            elif name in ("associate-time", "disassociate-time"):
                continue  # participant times come from participantsessionassoc
            else:
                self._add_extension(found, child)

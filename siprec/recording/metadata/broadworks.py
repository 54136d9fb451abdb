"""The ``<recording_metadata>`` dialect of Cisco BroadWorks and Webex Calling.

A pre-RFC shape in the namespace ``urn:ietf:params:xml:ns:siprec``::

    <recording_metadata xmlns="urn:ietf:params:xml:ns:siprec">
      <dataMode>complete</dataMode>
      <recording id=R><requestor>SRC</requestor><type>selective</type></recording>
      <group id=G recording=R><initiator>sip:recorded-user</initiator></group>
      <session id=S group=G><start-time>…</start-time></session>
      <participant id=P session=S><aor>sip:…</aor><send><id>T</id></send></participant>
      <stream id=T session=S><label>1</label><mode>mixed</mode></stream>
      <extensiondata id=X parent=S><broadWorksRecordingMetadata xmlns=…>…</extensiondata>
    </recording_metadata>

References are attributes on the child (``session=``, ``group=``) rather than
association elements.  BroadWorks sends one *mixed* stream that every
participant lists in ``<send>``; Webex Calling sends one stream per
participant (``separate``).  The vendor block's ``callType`` says whether the
recorded user (the group's ``<initiator>``) placed the call (``origCall``) or
received it (``termCall``, with the far end as ``callingPartyNumber``); that
marks the calling participant.  ``<recording>`` and ``<initiator>`` are kept as
extensions; an ``<extensiondata>`` block goes to the element its ``parent``
names, or to the document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from xml.etree.ElementTree import Element

from siprec.recording.metadata.model import (
    BROADWORKS_DIALECT,
    DRAFT_NAMESPACE,
    RFC_NAMESPACE,
    SIPREC_NAMESPACE,
    MetadataDocument,
    MetadataError,
)
from siprec.recording.metadata.reading import (
    Reader,
    add_unique,
    build_document,
    entry,
    infer_senders,
    make_name_id,
    mark_calling,
    read_data_mode,
    same_party,
    set_stated,
    text,
)
from siprec.recording.metadata.safexml import split_tag

__all__ = ["BroadWorksReader"]

_OBJECTS = ("group", "session", "participant", "stream")


class BroadWorksReader(Reader):
    """Builds a MetadataDocument from a parsed ``<recording_metadata>`` tree."""

    dialect = BROADWORKS_DIALECT
    NAMESPACES = frozenset({SIPREC_NAMESPACE, RFC_NAMESPACE, DRAFT_NAMESPACE, ""})

    def __init__(self, root: Element, prefixes: dict[str, str]) -> None:
        super().__init__(root, prefixes)
        self.recording_ids: set[str] = set()
        self.initiator: str | None = None
        self.call_type: tuple[str, str | None] | None = None

    def _children(self, element: Element) -> Iterator[tuple[str | None, Element]]:
        """(lower-cased local name or None for foreign elements, child)."""
        for child in element:
            uri, local = split_tag(child.tag)
            if local:
                yield (local.lower() if uri in self.namespaces else None), child

    def _id(self, element: Element, what: str) -> str:
        value = element.get("id")
        if value is None:
            self.notes.add(f"<{what}> without id tolerated")
            return ""
        value = value.strip()
        if not value:
            self.notes.add(f"empty {what} id tolerated")
        return value

    # -- document

    def read(self) -> MetadataDocument:
        uri, local = split_tag(self.root.tag)
        if local.lower() != "recording_metadata":
            raise MetadataError(f"metadata root element is <{local}>, expected <recording_metadata>")
        self.notes.add("pre-RFC <recording_metadata> schema (BroadWorks, Webex Calling) read as RFC 7865")
        if local != "recording_metadata":
            self.notes.add(f"root element <{local}> read as <recording_metadata>")
        if uri == "":
            self.notes.add("metadata without XML namespace accepted")
        elif uri not in self.namespaces:
            self.notes.add(f"unexpected namespace {uri!r}; elements read by local name")
            self.namespaces.add(uri)
        blocks: list[Element] = []
        for name, child in self._children(self.root):
            if name == "datamode":
                self.data_mode = read_data_mode(text(child), self.data_mode, self.notes)
            elif name in _OBJECTS:
                getattr(self, f"_read_{name}")(child)
            elif name == "extensiondata":
                blocks.append(child)
            else:
                if name == "recording":
                    self.recording_ids.add((child.get("id") or "").strip())
                self.extensions.append(self._extension(child))
        if self.data_mode is None:
            self.notes.add("no datamode element; complete assumed")
            self.data_mode = "complete"
        for block in blocks:
            self._read_extensiondata(block)
        if self.data_mode == "complete":
            self._check_streams()
            infer_senders(self.participants, self.streams, self.notes)
        self._mark_caller()
        return build_document(self, uri)

    # -- objects

    def _read_group(self, element: Element) -> None:
        group_id = self._id(element, "group")
        found = entry(self.groups, group_id, group_id=group_id)
        for name, child in self._children(element):
            if self._read_times(name, child, found):
                continue
            if name == "initiator" and self.initiator is None:
                self.initiator = text(child) or None
            self._add_extension(found, child)

    def _read_session(self, element: Element) -> None:
        session_id = self._id(element, "session")
        found = entry(self.sessions, session_id, session_id=session_id)
        set_stated(found, "group_ref", (element.get("group") or "").strip() or None)
        for name, child in self._children(element):
            if self._read_times(name, child, found):
                continue
            if name in ("start-time", "stop-time"):
                set_stated(found, name.replace("-", "_"), self._time(child))
            else:
                self._add_extension(found, child)

    def _read_participant(self, element: Element) -> None:
        participant_id = self._id(element, "participant")
        aors = [text(child) for name, child in self._children(element) if name == "aor"]
        key = participant_id or "\0aor:" + (aors[0] if aors else str(len(self.participants)))
        found = entry(self.participants, key, participant_id=participant_id)
        add_unique(found, "session_ids", [(element.get("session") or "").strip()])
        names: list[tuple[str, str | None]] = []
        for name, child in self._children(element):
            if self._read_times(name, child, found):
                continue
            if name == "aor":
                continue
            if name == "name":
                names.append((text(child), None))
            elif name in ("send", "recv"):
                found["streams_given"] = True
                found.setdefault("send", ())
                found.setdefault("recv", ())
                add_unique(found, name, self._stream_refs(child))
            else:
                self._add_extension(found, child)
        name_ids = [make_name_id(aor, names if n == 0 else (), self.notes) for n, aor in enumerate(aors)]
        if names and not name_ids:
            name_ids.append(make_name_id("", names, self.notes))
        if name_ids:
            found["name_ids"] = (*found.get("name_ids", ()), *name_ids)

    def _stream_refs(self, element: Element) -> list[str]:
        """``<send><id>T</id>…</send>``; a bare ``<send>T</send>`` is read too."""
        ids = [text(child) for name, child in self._children(element) if name == "id"]
        if ids:
            return ids
        return [text(element)]

    def _read_stream(self, element: Element) -> None:
        stream_id = self._id(element, "stream")
        labels = [text(child) for name, child in self._children(element) if name == "label"]
        key = stream_id or "\0label:" + (labels[0] if labels else str(len(self.streams)))
        found = entry(self.streams, key, stream_id=stream_id)
        set_stated(found, "session_id", (element.get("session") or "").strip() or None)
        for name, child in self._children(element):
            if self._read_times(name, child, found):
                continue
            if name in ("label", "mode"):
                set_stated(found, name, text(child) or None)
            else:
                self._add_extension(found, child)

    # -- extension data and what it tells

    def _read_extensiondata(self, block: Element) -> None:
        parent = (block.get("parent") or "").strip()
        target: dict[str, Any] | None = None
        for table in (self.sessions, self.participants, self.streams, self.groups):
            if parent and parent in table:
                target = table[parent]
                break
        if target is None and parent and parent not in self.recording_ids:
            self.notes.add("<extensiondata> names a parent the document does not describe; kept with the document")
        contents = [child for child in block if split_tag(child.tag)[1]]
        for child in contents or [block]:
            if target is None:
                self.extensions.append(self._extension(child))
            else:
                self._add_extension(target, child)
            self._read_vendor_block(child)

    def _read_vendor_block(self, element: Element) -> None:
        """``broadWorksRecordingMetadata/callType/(origCall|termCall)/callingPartyNumber``."""
        if self.call_type is not None or split_tag(element.tag)[1].lower() != "broadworksrecordingmetadata":
            return
        for child in element:
            if split_tag(child.tag)[1].lower() != "calltype":
                continue
            for leg in child:
                kind = split_tag(leg.tag)[1].lower()
                if kind in ("origcall", "termcall"):
                    calling = [text(n) for n in leg if split_tag(n.tag)[1].lower() == "callingpartynumber"]
                    self.call_type = (kind, calling[0] if calling else None)
                    return

    def _check_streams(self) -> None:
        described = {found.get("stream_id") for found in self.streams.values()}
        for found in self.participants.values():
            if any(stream_id not in described for stream_id in (*found.get("send", ()), *found.get("recv", ()))):
                self.notes.add("a participant names a stream the document does not describe; kept as stated")
                return

    def _mark_caller(self) -> None:
        """The calling participant, from callType (see the module docstring)."""
        if self.call_type is None or not self.participants:
            return
        kind, calling_number = self.call_type
        people = list(self.participants.values())
        recorded = [p for p in people if any(same_party(n.aor, self.initiator) for n in p.get("name_ids", ()))]
        if kind == "termcall" and mark_calling(self.participants, calling_number):
            return
        if kind == "origcall":
            caller = recorded[0] if recorded else people[0]
        else:
            others = [p for p in people if all(p is not r for r in recorded)]
            if not others:
                return
            caller = others[0]
        for person in people:
            person["calling"] = person is caller

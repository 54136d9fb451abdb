"""The merged metadata of one recording session, across complete and partial documents.

Sans-IO: documents go in through :meth:`RecordingMetadata.apply`; the rest
of the server asks this object who speaks on a label, who called, and for a
JSON view.  It never reads XML itself and does not care which dialect a
document was read from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import fields, replace
from datetime import datetime
from typing import Any, TypeVar

from siprec.recording.metadata.model import (
    Group,
    MetadataDocument,
    Participant,
    Session,
    Stream,
    Timestamp,
)
from siprec.recording.metadata.reading import Notes

__all__ = ["RecordingMetadata"]

_Element = TypeVar("_Element", Group, Session, Participant, Stream)
_UNION_FIELDS = frozenset({"session_ids", "sip_session_ids"})


def _key(element: Group | Session | Participant | Stream) -> str:
    if isinstance(element, Group):
        return element.group_id
    if isinstance(element, Session):
        return element.session_id
    if isinstance(element, Participant):
        return element.participant_id or "\0aor:" + (element.aor or "")
    return element.stream_id or "\0label:" + (element.label or "")


def _merge(old: _Element, new: _Element) -> _Element:
    """Field-by-field update: what the new element states wins, the rest is kept."""
    changes: dict[str, Any] = {}
    for spec in fields(new):
        name = spec.name
        before, after = getattr(old, name), getattr(new, name)
        if name in ("send", "recv"):
            value = after if isinstance(new, Participant) and new.streams_given else before
        elif name == "streams_given":
            value = before or after
        elif name in _UNION_FIELDS:
            value = tuple(dict.fromkeys((*before, *after)))
        elif isinstance(after, tuple):
            value = after or before
        else:
            value = before if after is None or after == "" else after
        changes[name] = value
    merged = replace(old, **changes)
    reassociated = getattr(new, "associate_time", None)
    previous_end = getattr(old, "disassociate_time", None)
    if (
        getattr(new, "disassociate_time", None) is None
        and isinstance(reassociated, datetime)
        and isinstance(previous_end, datetime)
        and reassociated > previous_end
    ):
        merged = replace(merged, disassociate_time=None)
    return merged


def _iso(value: Timestamp | None) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class RecordingMetadata:
    """The merged metadata of one recording session.

    How documents combine (RFC 7865 ``dataMode``; RFC 7866 metadata
    procedures): a *complete* document is the SRC's whole current view, so
    it replaces the snapshot.  The RFC has the SRC signal departures with
    ``disassociate-time``; it neither tells the SRS to keep elements that a
    complete snapshot leaves out, nor to invent a disassociate-time for them.
    So they leave the live view (queries, labels, senders) but are kept in
    ``history``, unchanged, because the call record must still name everyone
    who was recorded.  A *partial* document updates by id: new elements are
    added, known ones updated field by field (a stated send/recv list
    replaces the old one, as in the RFC 7866 hold example), and
    disassociate-times are recorded; an element found in history comes back.
    """

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.sessions: dict[str, Session] = {}
        self.participants: dict[str, Participant] = {}
        self.streams: dict[str, Stream] = {}
        self.history: dict[str, dict[str, Any]] = {
            "groups": {},
            "sessions": {},
            "participants": {},
            "streams": {},
        }
        self.extensions: list[str] = []
        self.documents_applied = 0
        self.complete_documents = 0
        self.partial_documents = 0
        self.data_mode: str | None = None
        self.dialect: str | None = None
        self._notes = Notes()

    @property
    def tolerances(self) -> list[str]:
        """Every quirk tolerated in any applied document, once each."""
        return self._notes.as_list()

    def _tables(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield "groups", self.groups
        yield "sessions", self.sessions
        yield "participants", self.participants
        yield "streams", self.streams

    def apply(self, doc: MetadataDocument) -> None:
        """Fold one parsed document into the model (see the class docstring)."""
        self.documents_applied += 1
        self.data_mode = doc.data_mode
        self.dialect = doc.dialect
        self._notes.extend(doc.tolerances)
        if doc.data_mode == "complete":
            self.complete_documents += 1
            self._replace(doc)
        else:
            if self.complete_documents == 0 and self.partial_documents == 0:
                self._notes.add("partial metadata arrived before any complete snapshot")
            self.partial_documents += 1
            self._update(doc)

    def _replace(self, doc: MetadataDocument) -> None:
        for kind, table in self._tables():
            fresh = {_key(element): element for element in getattr(doc, kind)}
            history = self.history[kind]
            for key, element in table.items():
                if key not in fresh:
                    history[key] = element
            for key in fresh:
                history.pop(key, None)
            table.clear()
            table.update(fresh)
        self.extensions = list(doc.extensions)

    def _update(self, doc: MetadataDocument) -> None:
        for kind, table in self._tables():
            history = self.history[kind]
            for element in getattr(doc, kind):
                key = _key(element)
                known = table.get(key)
                if known is None:
                    known = history.pop(key, None)
                table[key] = element if known is None else _merge(known, element)
        self.extensions.extend(ext for ext in doc.extensions if ext not in self.extensions)

    # -- queries

    def stream(self, stream_id: str) -> Stream | None:
        return self.streams.get(stream_id)

    def participant(self, participant_id: str) -> Participant | None:
        return self.participants.get(participant_id)

    def stream_by_label(self, label: str) -> Stream | None:
        """The live stream with this SDP label, an associated one first."""
        matches = [stream for stream in self.streams.values() if stream.label == str(label)]
        matches.sort(key=lambda stream: stream.disassociate_time is not None)
        return matches[0] if matches else None

    def senders_of(self, stream_id: str) -> tuple[Participant, ...]:
        """Participants sending the stream: those still associated first, then the caller.

        A mixed stream (BroadWorks, Metaswitch) has several senders; the
        caller first makes the leg's one named participant a stable choice.
        """
        caller = self.caller()
        found = [p for p in self.participants.values() if stream_id in p.send]
        found.sort(key=lambda p: (p.disassociate_time is not None, p is not caller))
        return tuple(found)

    def receivers_of(self, stream_id: str) -> tuple[Participant, ...]:
        found = [p for p in self.participants.values() if stream_id in p.recv]
        found.sort(key=lambda participant: participant.disassociate_time is not None)
        return tuple(found)

    def participant_for_label(self, label: str) -> Participant | None:
        """Who speaks on the stream with this label (None if unknown).

        For a stream several participants send, the first of
        :meth:`senders_of`; ``to_dict()`` lists them all.
        """
        stream = self.stream_by_label(label)
        if stream is None:
            return None
        senders = self.senders_of(stream.stream_id)
        return senders[0] if senders else None

    def caller(self) -> Participant | None:
        """The calling participant: the one the SRC marked calling if exactly
        one is (Acme ``callingParty``, ``<role>``, BroadWorks ``callType``),
        otherwise the first participant listed."""
        participants = list(self.participants.values())
        marked = [p for p in participants if p.calling]
        if len(marked) == 1:
            return marked[0]
        return participants[0] if participants else None

    def ordered_labels(self) -> list[str]:
        """Stream labels in metadata order with the caller's streams first.

        This is the channel order of combined recordings: whatever the SRC
        numbered its labels, the caller's leg comes first.
        """
        streams = [stream for stream in self.streams.values() if stream.label]
        caller = self.caller()
        sent = set(caller.send) if caller else set()
        first = [stream for stream in streams if stream.stream_id in sent]
        rest = [stream for stream in streams if stream.stream_id not in sent]
        return list(dict.fromkeys(stream.label for stream in [*first, *rest] if stream.label))

    def group_id(self) -> str | None:
        """The group of this recording: sessions before and after a transfer share it."""
        for session in self.sessions.values():
            if session.group_ref:
                return session.group_ref
        for group_id in self.groups:
            if group_id:
                return group_id
        return None

    def sessions_in_group(self, group_id: str) -> tuple[Session, ...]:
        """Live and earlier sessions that belong to one group."""
        every = [*self.sessions.values(), *self.history["sessions"].values()]
        return tuple(session for session in every if session.group_ref == group_id)

    # -- export

    def _labels(self, stream_ids: Iterable[str]) -> list[str]:
        labels = []
        for stream_id in stream_ids:
            stream = self.streams.get(stream_id) or self.history["streams"].get(stream_id)
            if stream is not None and stream.label:
                labels.append(stream.label)
        return labels

    def _participant_dict(self, participant: Participant) -> dict[str, Any]:
        return {
            "participant_id": participant.participant_id,
            "aor": participant.aor,
            "aor_normalized": participant.aor_normalized,
            "name": participant.name,
            "name_ids": [
                {
                    "aor": name_id.aor,
                    "aor_normalized": name_id.aor_normalized,
                    "names": [{"name": text, "lang": lang} for text, lang in name_id.names],
                }
                for name_id in participant.name_ids
            ],
            "calling": participant.calling,
            "send": list(participant.send),
            "recv": list(participant.recv),
            "send_labels": self._labels(participant.send),
            "recv_labels": self._labels(participant.recv),
            "session_ids": list(participant.session_ids),
            "associate_time": _iso(participant.associate_time),
            "disassociate_time": _iso(participant.disassociate_time),
            "extensions": list(participant.extensions),
        }

    def _stream_dict(self, stream: Stream) -> dict[str, Any]:
        senders = self.senders_of(stream.stream_id)
        sender = senders[0] if senders else None
        return {
            "stream_id": stream.stream_id,
            "label": stream.label,
            "session_id": stream.session_id,
            "mode": stream.mode,
            "sender": sender.participant_id if sender else None,
            "sender_aor": sender.aor if sender else None,
            "senders": [p.participant_id for p in senders],
            "sender_aors": [p.aor for p in senders],
            "associate_time": _iso(stream.associate_time),
            "disassociate_time": _iso(stream.disassociate_time),
            "extensions": list(stream.extensions),
        }

    @staticmethod
    def _session_dict(session: Session) -> dict[str, Any]:
        return {
            "session_id": session.session_id,
            "group_ref": session.group_ref,
            "sip_session_ids": list(session.sip_session_ids),
            "start_time": _iso(session.start_time),
            "stop_time": _iso(session.stop_time),
            "associate_time": _iso(session.associate_time),
            "disassociate_time": _iso(session.disassociate_time),
            "extensions": list(session.extensions),
        }

    @staticmethod
    def _group_dict(group: Group) -> dict[str, Any]:
        return {
            "group_id": group.group_id,
            "associate_time": _iso(group.associate_time),
            "disassociate_time": _iso(group.disassociate_time),
            "extensions": list(group.extensions),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (ISO 8601 times) for records, events and the API."""
        history = self.history
        caller = self.caller()
        return {
            "documents_applied": self.documents_applied,
            "data_mode": self.data_mode,
            "dialect": self.dialect,
            "group_id": self.group_id(),
            "caller": caller.participant_id if caller else None,
            "ordered_labels": self.ordered_labels(),
            "groups": [self._group_dict(g) for g in self.groups.values()],
            "sessions": [self._session_dict(s) for s in self.sessions.values()],
            "participants": [self._participant_dict(p) for p in self.participants.values()],
            "streams": [self._stream_dict(s) for s in self.streams.values()],
            "extensions": list(self.extensions),
            "history": {
                "groups": [self._group_dict(g) for g in history["groups"].values()],
                "sessions": [self._session_dict(s) for s in history["sessions"].values()],
                "participants": [self._participant_dict(p) for p in history["participants"].values()],
                "streams": [self._stream_dict(s) for s in history["streams"].values()],
            },
            "tolerances": self.tolerances,
        }

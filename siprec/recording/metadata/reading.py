"""What every metadata reader shares: tolerance notes, times, AORs, entries.

A reader collects each group, session, participant and stream as a plain
dict of the fields the document stated (an *entry*), because an element may
be described in pieces (an object, then its associations, in any order);
:func:`build_document` turns the entries into frozen values at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

from siprec.recording.metadata.model import (
    Group,
    MetadataDocument,
    NameID,
    Participant,
    Session,
    Stream,
    Timestamp,
    normalize_aor,
)
from siprec.recording.metadata.safexml import split_tag
from siprec.recording.metadata.serialize import serialize_extension

__all__ = [
    "Reader",
    "Entries",
    "Notes",
    "add_unique",
    "build_document",
    "calling_flag",
    "entry",
    "infer_senders",
    "make_name_id",
    "mark_calling",
    "metaswitch_calling_number",
    "parse_time",
    "read_data_mode",
    "same_party",
    "set_stated",
    "text",
]

#: One table per kind, keyed by id (or a stand-in key when the id is missing).
Entries = dict[str, dict[str, Any]]


class Notes:
    """Tolerance sentences, each kept once, in the order first noticed."""

    def __init__(self) -> None:
        self._seen: dict[str, None] = {}

    def add(self, sentence: str) -> None:
        self._seen.setdefault(sentence, None)

    def extend(self, sentences: Iterable[str]) -> None:
        for sentence in sentences:
            self.add(sentence)

    def as_list(self) -> list[str]:
        return list(self._seen)


def text(element: Element) -> str:
    return "".join(element.itertext()).strip()


def parse_time(value: str, notes: Notes) -> Timestamp | None:
    """ISO 8601 / xs:dateTime; no zone means UTC; unparseable text is kept."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.upper())
    except (ValueError, OverflowError):
        notes.add(f"unparseable timestamp {value[:64]!r} kept as text")
        return value
    if parsed.tzinfo is None:
        notes.add("timestamps without a time zone were read as UTC")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def read_data_mode(value: str, current: str | None, notes: Notes) -> str:
    """The document's dataMode; only the first one counts."""
    mode = value.lower()
    if mode not in ("complete", "partial"):
        notes.add(f"unknown datamode {value[:32]!r}; complete assumed")
        mode = "complete"
    elif value != mode:
        notes.add(f"datamode value {value!r} read as {mode!r}")
    if current is not None and current != mode:
        notes.add("more than one datamode; the first one was used")
        return current
    return mode


def make_name_id(aor: str, names: Iterable[tuple[str, str | None]], notes: Notes) -> NameID:
    aor = aor.strip()
    normalized = normalize_aor(aor)
    if normalized is not None and normalized != aor:
        notes.add("AORs without URI scheme were normalised with 'sip:'")
    return NameID(aor=aor, aor_normalized=normalized, names=tuple(names))


def calling_flag(extension: Element) -> bool | None:
    """Acme's ``<apkt:callingParty>true|false`` anywhere in an extension subtree."""
    for node in extension.iter():
        if split_tag(node.tag)[1].lower() == "callingparty":
            value = text(node).lower()
            if value in ("true", "false"):
                return value == "true"
    return None


_URI_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _address(uri: str | None) -> str:
    """``user@host`` of a SIP/tel URI (scheme and parameters dropped), lower-cased."""
    value = (uri or "").strip().strip("<>").strip()
    if _URI_SCHEME.match(value) and not value.lower().startswith(("sip:", "sips:", "tel:")):
        return value.lower()
    value = _URI_SCHEME.sub("", value, count=1)
    return re.split(r"[;?]", value, maxsplit=1)[0].lower()


def same_party(aor: str | None, other: str | None, *, by_user: bool = False) -> bool:
    """Whether two AORs or numbers name the same party (the user parts, when ``by_user``)."""
    first, second = _address(aor), _address(other)
    if by_user:
        first, second = first.partition("@")[0], second.partition("@")[0]
    return bool(first) and first == second


def _aor_of(found: dict[str, Any]) -> str | None:
    name_ids = found.get("name_ids", ())
    return name_ids[0].aor if name_ids else None


def mark_calling(participants: Entries, number: str | None) -> bool:
    """Mark the participant a vendor block names as calling party; False if none matches.

    The whole address is compared first, then the user part (vendors write
    ``sip:+1555…@trunk`` against an AOR of ``+1555…`` or another host).
    """
    people = list(participants.values())
    for by_user in (False, True):
        matches = [p for p in people if same_party(_aor_of(p), number, by_user=by_user)]
        if matches:
            for person in people:
                person["calling"] = person is matches[0]
            return True
    return False


def metaswitch_calling_number(extension: Element) -> str | None:
    """``metaswitchRecordingMetadata/callingPartyNumber`` in a document-level extension."""
    for node in extension.iter():
        if split_tag(node.tag)[1].lower() == "metaswitchrecordingmetadata":
            for child in node:
                if split_tag(child.tag)[1].lower() == "callingpartynumber":
                    return text(child) or None
    return None


def entry(table: Entries, key: str, **defaults: Any) -> dict[str, Any]:
    found = table.get(key)
    if found is None:
        found = table[key] = dict(defaults)
    return found


def set_stated(target: dict[str, Any], name: str, value: Any) -> None:
    """Stated values win over earlier ones (an element may be described twice)."""
    if value is not None:
        target[name] = value


def add_unique(target: dict[str, Any], name: str, values: Iterable[str]) -> None:
    merged = dict.fromkeys(target.get(name, ()))
    merged.update(dict.fromkeys(value for value in values if value))
    target[name] = tuple(merged)


def infer_senders(participants: Entries, streams: Entries, notes: Notes) -> None:
    """Guess who sends what when a complete document says nothing about it.

    Some SRCs (Connectel, Webex Calling in some releases) list participants
    and streams without any stream association.  One stream then carries
    everyone; as many streams as participants are taken in document order,
    the order those SRCs use.  Anything else stays unresolved.  The guess is
    not marked as stated, so a later partial update replaces it.
    """
    if not participants or not streams:
        return
    if any(found.get("streams_given") or found.get("send") for found in participants.values()):
        return
    stream_ids = [found.get("stream_id") for found in streams.values()]
    if not all(stream_ids):
        return
    people = list(participants.values())
    if len(stream_ids) == 1:
        for person in people:
            person["send"] = (stream_ids[0],)
        notes.add("no participant states its streams; every participant taken as a sender of the one stream")
    elif len(stream_ids) == len(people):
        for person, stream_id in zip(people, stream_ids):
            person["send"] = (stream_id,)
        notes.add("no participant states its streams; the n-th participant taken as the sender of the n-th stream")


def build_document(reader: Any, namespace: str) -> MetadataDocument:
    """The frozen document from what a reader collected (its data_mode, dialect,
    groups, sessions, participants, streams, extensions and notes)."""
    return MetadataDocument(
        data_mode=reader.data_mode,
        namespace=namespace,
        groups=[Group(**found) for found in reader.groups.values()],
        sessions=[Session(**found) for found in reader.sessions.values()],
        participants=[Participant(**found) for found in reader.participants.values()],
        streams=[Stream(**found) for found in reader.streams.values()],
        extensions=reader.extensions,
        tolerances=reader.notes.as_list(),
        dialect=reader.dialect,
    )


class Reader:
    """What every dialect's reader shares: the tables it fills, notes, extensions
    and times. Subclasses set ``dialect`` and ``NAMESPACES`` and read the tree."""

    dialect = ""
    NAMESPACES: frozenset[str] = frozenset()

    def __init__(self, root: Element, prefixes: dict[str, str]) -> None:
        self.root = root
        self.prefixes = prefixes
        self.notes = Notes()
        self.namespaces = set(self.NAMESPACES)
        self.data_mode: str | None = None
        self.groups: Entries = {}
        self.sessions: Entries = {}
        self.participants: Entries = {}
        self.streams: Entries = {}
        self.extensions: list[str] = []

    def _extension(self, element: Element) -> str:
        return serialize_extension(element, self.prefixes)

    def _add_extension(self, target: dict[str, Any], child: Element) -> None:
        target["extensions"] = (*target.get("extensions", ()), self._extension(child))

    def _time(self, element: Element) -> Timestamp | None:
        return parse_time(text(element), self.notes)

    def _read_times(self, name: str | None, child: Element, target: dict[str, Any]) -> bool:
        """associate-time / disassociate-time of any object; False for other children."""
        if name in ("associate-time", "disassociate-time"):
            set_stated(target, name.replace("-", "_"), self._time(child))
            return True
        return False

"""RFC 7865 recording metadata: a tolerant parser and the merged live model.

Sans-IO: :func:`parse_metadata` takes the bytes of one metadata document and
returns a :class:`MetadataDocument`; :class:`RecordingMetadata` folds the
documents of one recording session (complete snapshots and partial updates)
into the view the rest of the server asks questions of.

Metadata comes from the network, so XML is parsed with ``defusedxml`` (no
DTDs, no entity expansion, no external references), size and depth are
capped, and every failure is a :class:`MetadataError`.  Recording clients
deviate from the RFC in many small ways (pre-RFC draft schema, camelCase
element names, missing time zones, AORs without scheme); each accepted
deviation is described in ``tolerances`` instead of failing the call.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, TypeVar
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml import ExternalReferenceForbidden, NotSupportedError
from defusedxml.ElementTree import iterparse

__all__ = [
    "DRAFT_NAMESPACE",
    "RFC_NAMESPACE",
    "Group",
    "MetadataDocument",
    "MetadataError",
    "NameID",
    "Participant",
    "RecordingMetadata",
    "Session",
    "Stream",
    "Timestamp",
    "normalize_aor",
    "parse_metadata",
]

RFC_NAMESPACE = "urn:ietf:params:xml:ns:recording:1"
#: Used by pre-RFC drafts and still sent by Oracle/Acme and Sonus/Ribbon.
DRAFT_NAMESPACE = "urn:ietf:params:xml:ns:recording"
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
#: Far above any real document (a few KB); guards memory and CPU.
MAX_METADATA_BYTES = 1 << 20
#: Real documents nest 4 deep; extensions a little more.
MAX_DEPTH = 64

#: A parsed time, or the original text when it could not be parsed.
Timestamp = datetime | str


class MetadataError(ValueError):
    """A metadata document that cannot be read at all (or is refused)."""


# ---------------------------------------------------------------------------
# values


@dataclass(frozen=True, slots=True)
class Group:
    """A communication session group: sessions of one conversation (RFC 7865 §4.2)."""

    group_id: str
    associate_time: Timestamp | None = None
    disassociate_time: Timestamp | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Session:
    """A recorded communication session, with its sessionrecordingassoc times."""

    session_id: str
    group_ref: str | None = None
    sip_session_ids: tuple[str, ...] = ()
    start_time: Timestamp | None = None
    stop_time: Timestamp | None = None
    associate_time: Timestamp | None = None
    disassociate_time: Timestamp | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NameID:
    """An AOR as given, the same with a URI scheme, and its display names."""

    aor: str
    aor_normalized: str | None = None
    names: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant with its session and stream associations folded in.

    ``streams_given`` says whether the document stated the participant's
    send/recv lists (an empty ``participantstreamassoc`` states "none"); a
    partial update without it leaves the lists learnt earlier untouched.
    """

    participant_id: str
    name_ids: tuple[NameID, ...] = ()
    send: tuple[str, ...] = ()
    recv: tuple[str, ...] = ()
    session_ids: tuple[str, ...] = ()
    associate_time: Timestamp | None = None
    disassociate_time: Timestamp | None = None
    extensions: tuple[str, ...] = ()
    streams_given: bool = False

    @property
    def aor(self) -> str | None:
        """The first AOR as given."""
        return self.name_ids[0].aor if self.name_ids else None

    @property
    def aor_normalized(self) -> str | None:
        return self.name_ids[0].aor_normalized if self.name_ids else None

    @property
    def name(self) -> str | None:
        """The first non-blank display name."""
        for name_id in self.name_ids:
            for text, _lang in name_id.names:
                if text:
                    return text
        return None


@dataclass(frozen=True, slots=True)
class Stream:
    """A media stream; ``label`` ties it to the SDP ``a=label``."""

    stream_id: str
    session_id: str | None = None
    label: str | None = None
    mode: str | None = None
    associate_time: Timestamp | None = None
    disassociate_time: Timestamp | None = None
    extensions: tuple[str, ...] = ()


@dataclass
class MetadataDocument:
    """One parsed metadata document, elements in document order.

    Association elements are folded into the objects they name.  Elements
    only referenced by associations (typical of partial updates) appear with
    just the fields the document stated.
    """

    data_mode: str
    namespace: str
    groups: list[Group] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    participants: list[Participant] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    tolerances: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# small helpers

_SCHEME = re.compile(r"^(?:sips?|tel|urn|mailto|h323|im|pres|https?):", re.IGNORECASE)


def normalize_aor(aor: str) -> str | None:
    """The AOR with a URI scheme: ``1234@host`` and ``1234`` get ``sip:``."""
    text = aor.strip()
    if not text:
        return None
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if _SCHEME.match(text):
        return text
    return f"sip:{text}"


def _split_tag(tag: Any) -> tuple[str, str]:
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        return uri, local
    return "", tag


def _text(element: Element) -> str:
    return "".join(element.itertext()).strip()


def _parse_time(text: str, notes: "_Notes") -> Timestamp | None:
    """ISO 8601 / xs:dateTime; no zone means UTC; unparseable text is kept."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.upper())
    except (ValueError, OverflowError):
        notes.add(f"unparseable timestamp {text[:64]!r} kept as text")
        return text
    if value.tzinfo is None:
        notes.add("timestamps without a time zone were read as UTC")
        value = value.replace(tzinfo=timezone.utc)
    return value


def _iso(value: Timestamp | None) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class _Notes:
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


# ---------------------------------------------------------------------------
# extension serialisation (keeps prefixes the sender chose where possible)


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _escape_attr(text: str) -> str:
    return (
        _escape_text(text)
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\t", "&#9;")
    )


def _serialize(element: Element, doc_prefixes: dict[str, str]) -> str:
    """Serialise an extension element as standalone XML.

    Namespace declarations needed by the subtree are put on its top element,
    reusing the prefixes of the received document, so ``<callData xmlns=...>``
    or ``<extensiondata xmlns:apkt=...>`` come out as they were sent.
    """
    element_uris: dict[str, None] = {}
    attribute_uris: dict[str, None] = {}
    for node in element.iter():
        if not isinstance(node.tag, str):
            continue
        element_uris.setdefault(_split_tag(node.tag)[0], None)
        for key in node.attrib:
            attribute_uris.setdefault(_split_tag(key)[0], None)
    top_uri = _split_tag(element.tag)[0]
    declared: dict[str, str] = {XML_NAMESPACE: "xml"}
    taken = {"xml"}
    counter = 0
    for uri in [*element_uris, *attribute_uris]:
        if not uri or uri in declared:
            continue
        wanted = doc_prefixes.get(uri)
        if wanted == "" and uri == top_uri and uri not in attribute_uris:
            declared[uri] = ""
            continue
        if not wanted or wanted in taken or wanted.lower().startswith("xml"):
            while f"ns{counter}" in taken:
                counter += 1
            wanted = f"ns{counter}"
        declared[uri] = wanted
        taken.add(wanted)
    out: list[str] = []
    _write(element, declared, "", True, out)
    return "".join(out)


def _write(element: Element, declared: dict[str, str], default: str, top: bool, out: list[str]) -> None:
    uri, local = _split_tag(element.tag)
    if not local:
        return
    attributes: list[tuple[str, str]] = []
    if top:
        for ns_uri, prefix in declared.items():
            if ns_uri == XML_NAMESPACE:
                continue
            if prefix == "":
                attributes.append(("xmlns", ns_uri))
                default = ns_uri
            else:
                attributes.append((f"xmlns:{prefix}", ns_uri))
    if not uri:
        qname = local
        if default:
            attributes.append(("xmlns", ""))
            default = ""
    elif declared[uri] == "":
        qname = local
        if default != uri:
            attributes.append(("xmlns", uri))
            default = uri
    else:
        qname = f"{declared[uri]}:{local}"
    for key, value in element.attrib.items():
        key_uri, key_local = _split_tag(key)
        attributes.append((f"{declared[key_uri]}:{key_local}" if key_uri else key_local, value))
    out.append("<" + qname)
    for key, value in attributes:
        out.append(f' {key}="{_escape_attr(value)}"')
    children = [child for child in element if isinstance(child.tag, str)]
    if not children and not element.text:
        out.append("/>")
        return
    out.append(">")
    if element.text:
        out.append(_escape_text(element.text))
    for child in element:
        if isinstance(child.tag, str):
            _write(child, declared, default, False, out)
        if child.tail:
            out.append(_escape_text(child.tail))
    out.append(f"</{qname}>")


# ---------------------------------------------------------------------------
# XML reading


def _parse_xml(data: bytes) -> tuple[Element, dict[str, str]]:
    """Parse safely; return the root and the first prefix seen for each namespace."""
    prefixes: dict[str, str] = {}
    root: Element | None = None
    depth = 0
    try:
        events = iterparse(
            io.BytesIO(data),
            events=("start", "end", "start-ns"),
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=True,
        )
        for event, item in events:
            if event == "start-ns":
                prefix, uri = item
                prefixes.setdefault(uri, prefix)
            elif event == "start":
                depth += 1
                if depth > MAX_DEPTH:
                    raise MetadataError(f"metadata nests deeper than {MAX_DEPTH} elements; refused")
                if root is None:
                    root = item
            else:
                depth -= 1
    except MetadataError:
        raise
    except DTDForbidden:
        raise MetadataError("metadata contains a document type declaration (<!DOCTYPE>); refused") from None
    except EntitiesForbidden as error:
        raise MetadataError(f"metadata declares entity {error.name!r}; entity expansion refused") from None
    except ExternalReferenceForbidden as error:
        raise MetadataError(
            f"metadata references external resource {error.sysid!r}; refused"
        ) from None
    except (DefusedXmlException, NotSupportedError) as error:
        raise MetadataError(f"metadata refused: {error}") from None
    except ParseError as error:
        raise MetadataError(f"metadata is not well-formed XML: {error}") from None
    except (ValueError, LookupError, UnicodeError) as error:
        raise MetadataError(f"metadata could not be decoded: {error}") from None
    if root is None:
        raise MetadataError("metadata has no root element")
    return root, prefixes


_ASSOCIATIONS = ("sessionrecordingassoc", "participantsessionassoc", "participantstreamassoc")
_PRIMARY = ("group", "session", "participant", "stream")
_CANONICAL = {
    "datamode": "datamode",
    "group": "group",
    "session": "session",
    "participant": "participant",
    "stream": "stream",
    "sessionrecordingassoc": "sessionrecordingassoc",
    "participantsessionassoc": "participantsessionassoc",
    "participantstreamassoc": "participantstreamassoc",
    "associate-time": "associate-time",
    "disassociate-time": "disassociate-time",
    "sipsessionid": "sipSessionID",
    "group-ref": "group-ref",
    "start-time": "start-time",
    "stop-time": "stop-time",
    "nameid": "nameID",
    "name": "name",
    "send": "send",
    "recv": "recv",
    "label": "label",
    "mode": "mode",
}


class _Reader:
    """Builds a MetadataDocument from a parsed tree (two passes: objects, then associations)."""

    def __init__(self, root: Element, prefixes: dict[str, str]) -> None:
        self.root = root
        self.prefixes = prefixes
        self.notes = _Notes()
        self.namespaces = {RFC_NAMESPACE, DRAFT_NAMESPACE, ""}
        self.data_mode: str | None = None
        self.groups: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.participants: dict[str, dict[str, Any]] = {}
        self.streams: dict[str, dict[str, Any]] = {}
        self.extensions: list[str] = []

    # -- element helpers

    def _name(self, element: Element) -> str | None:
        """Lower-cased local name of a schema element, None for extensions."""
        uri, local = _split_tag(element.tag)
        if not local or uri not in self.namespaces:
            return None
        lowered = local.lower()
        canonical = _CANONICAL.get(lowered)
        if canonical is None:
            return lowered
        if local != canonical:
            self.notes.add(f"element <{local}> read as <{canonical}>")
        return lowered

    def _children(self, element: Element) -> Iterator[tuple[str | None, Element]]:
        for child in element:
            if isinstance(child.tag, str):
                yield self._name(child), child

    def _extension(self, element: Element) -> str:
        return _serialize(element, self.prefixes)

    def _id(self, element: Element, attribute: str, what: str) -> str:
        value = element.get(attribute)
        if value is None:
            value = element.get("id")
            if value is None:
                self.notes.add(f"<{what}> without {attribute} tolerated")
                return ""
            self.notes.add(f"draft-era 'id' attribute read as {attribute}")
        value = value.strip()
        if not value:
            self.notes.add(f"empty {attribute} tolerated")
        return value

    def _time(self, element: Element) -> Timestamp | None:
        return _parse_time(_text(element), self.notes)

    def _entry(self, table: dict[str, dict[str, Any]], key: str, **defaults: Any) -> dict[str, Any]:
        entry = table.get(key)
        if entry is None:
            entry = table[key] = dict(defaults)
        return entry

    @staticmethod
    def _set(entry: dict[str, Any], name: str, value: Any) -> None:
        """Stated values win over earlier ones (an element may be described twice)."""
        if value is not None:
            entry[name] = value

    # -- document

    def read(self) -> MetadataDocument:
        uri, local = _split_tag(self.root.tag)
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
                self._read_data_mode(child)
            elif name in _PRIMARY:
                getattr(self, f"_read_{name}")(child)
            elif name in _ASSOCIATIONS:
                deferred.append((name, child))
            else:
                self.extensions.append(self._extension(child))
        if self.data_mode is None:
            self.notes.add("no datamode element; complete assumed")
            self.data_mode = "complete"
        for name, child in deferred:
            getattr(self, f"_read_{name}")(child)
        return MetadataDocument(
            data_mode=self.data_mode,
            namespace=uri,
            groups=[Group(**entry) for entry in self.groups.values()],
            sessions=[Session(**entry) for entry in self.sessions.values()],
            participants=[Participant(**entry) for entry in self.participants.values()],
            streams=[Stream(**entry) for entry in self.streams.values()],
            extensions=self.extensions,
            tolerances=self.notes.as_list(),
        )

    def _read_data_mode(self, element: Element) -> None:
        text = _text(element)
        value = text.lower()
        if value not in ("complete", "partial"):
            self.notes.add(f"unknown datamode {text[:32]!r}; complete assumed")
            value = "complete"
        elif text != value:
            self.notes.add(f"datamode value {text!r} read as {value!r}")
        if self.data_mode is not None and self.data_mode != value:
            self.notes.add("more than one datamode; the first one was used")
            return
        self.data_mode = value

    # -- objects

    def _read_times(self, name: str | None, child: Element, entry: dict[str, Any]) -> bool:
        if name == "associate-time":
            self._set(entry, "associate_time", self._time(child))
        elif name == "disassociate-time":
            self._set(entry, "disassociate_time", self._time(child))
        else:
            return False
        return True

    def _add_extension(self, entry: dict[str, Any], child: Element) -> None:
        entry["extensions"] = (*entry.get("extensions", ()), self._extension(child))

    def _read_group(self, element: Element) -> None:
        group_id = self._id(element, "group_id", "group")
        entry = self._entry(self.groups, group_id, group_id=group_id)
        for name, child in self._children(element):
            if not self._read_times(name, child, entry):
                self._add_extension(entry, child)

    def _read_session(self, element: Element) -> None:
        session_id = self._id(element, "session_id", "session")
        entry = self._entry(self.sessions, session_id, session_id=session_id)
        for name, child in self._children(element):
            if self._read_times(name, child, entry):
                continue
            if name == "sipsessionid":
                value = re.sub(r"\s+", "", _text(child))
                if value:
                    entry["sip_session_ids"] = (*entry.get("sip_session_ids", ()), value)
            elif name == "group-ref":
                self._set(entry, "group_ref", _text(child) or None)
            elif name == "start-time":
                self._set(entry, "start_time", self._time(child))
            elif name == "stop-time":
                self._set(entry, "stop_time", self._time(child))
            else:
                self._add_extension(entry, child)

    def _participant_entry(self, participant_id: str) -> dict[str, Any]:
        return self._entry(self.participants, participant_id, participant_id=participant_id)

    def _read_participant(self, element: Element) -> None:
        participant_id = self._id(element, "participant_id", "participant")
        key = participant_id
        if not participant_id:
            # Without an id, the AOR is the only thing telling participants apart.
            aors = [child.get("aor", "") for name, child in self._children(element) if name == "nameid"]
            key = "\0aor:" + (aors[0] if aors else str(len(self.participants)))
        entry = self._entry(self.participants, key, participant_id=participant_id)
        draft_session = element.get("session")
        if draft_session is not None and draft_session.strip():
            self.notes.add("draft-era 'session' attribute on <participant> read as its session")
            self._add_unique(entry, "session_ids", [draft_session.strip()])
        for name, child in self._children(element):
            if self._read_times(name, child, entry):
                continue
            if name == "nameid":
                entry["name_ids"] = (*entry.get("name_ids", ()), self._read_name_id(child))
            elif name in ("send", "recv"):
                self.notes.add("draft-era <send>/<recv> inside <participant> accepted")
                entry["streams_given"] = True
                self._add_unique(entry, name, [_text(child)])
            else:
                self._add_extension(entry, child)

    def _read_name_id(self, element: Element) -> NameID:
        aor = element.get("aor", "").strip()
        normalized = normalize_aor(aor)
        if normalized is not None and normalized != aor:
            self.notes.add("AORs without URI scheme were normalised with 'sip:'")
        names: list[tuple[str, str | None]] = []
        for name, child in self._children(element):
            if name == "name":
                names.append((_text(child), child.get(f"{{{XML_NAMESPACE}}}lang")))
        return NameID(aor=aor, aor_normalized=normalized, names=tuple(names))

    def _read_stream(self, element: Element) -> None:
        stream_id = self._id(element, "stream_id", "stream")
        entry_key = stream_id
        if not stream_id:
            labels = [_text(child) for name, child in self._children(element) if name == "label"]
            entry_key = "\0label:" + (labels[0] if labels else str(len(self.streams)))
        entry = self._entry(self.streams, entry_key, stream_id=stream_id)
        session_id = element.get("session_id")
        if session_id is None and element.get("session") is not None:
            self.notes.add("draft-era 'session' attribute on <stream> read as session_id")
            session_id = element.get("session")
        self._set(entry, "session_id", (session_id or "").strip() or None)
        for name, child in self._children(element):
            if self._read_times(name, child, entry):
                continue
            if name == "label":
                self._set(entry, "label", _text(child) or None)
            elif name == "mode":
                self._set(entry, "mode", _text(child) or None)
            else:
                self._add_extension(entry, child)

    # -- associations

    def _referenced(self, table: dict[str, dict[str, Any]], key: str, what: str, via: str) -> dict[str, Any]:
        if key not in table and self.data_mode == "complete":
            self.notes.add(f"<{via}> names a {what} the document does not describe")
        return self._entry(table, key, **{f"{what}_id": key})

    @staticmethod
    def _add_unique(entry: dict[str, Any], name: str, values: Iterable[str]) -> None:
        merged = dict.fromkeys(entry.get(name, ()))
        merged.update(dict.fromkeys(value for value in values if value))
        entry[name] = tuple(merged)

    def _read_sessionrecordingassoc(self, element: Element) -> None:
        session_id = (element.get("session_id") or element.get("session") or "").strip()
        entry = self._referenced(self.sessions, session_id, "session", "sessionrecordingassoc")
        for name, child in self._children(element):
            if not self._read_times(name, child, entry):
                self._add_extension(entry, child)

    def _read_participantsessionassoc(self, element: Element) -> None:
        participant_id = (element.get("participant_id") or "").strip()
        session_id = (element.get("session_id") or "").strip()
        entry = self._referenced(self.participants, participant_id, "participant", "participantsessionassoc")
        self._add_unique(entry, "session_ids", [session_id])
        for name, child in self._children(element):
            if not self._read_times(name, child, entry):
                self._add_extension(entry, child)

    def _read_participantstreamassoc(self, element: Element) -> None:
        participant_id = (element.get("participant_id") or "").strip()
        entry = self._referenced(self.participants, participant_id, "participant", "participantstreamassoc")
        entry["streams_given"] = True
        entry.setdefault("send", ())
        entry.setdefault("recv", ())
        for name, child in self._children(element):
            if name in ("send", "recv"):
                self._add_unique(entry, name, [_text(child)])
            elif name in ("associate-time", "disassociate-time"):
                continue  # participant times come from participantsessionassoc
            else:
                self._add_extension(entry, child)


def parse_metadata(data: bytes) -> MetadataDocument:
    """Parse one RFC 7865 metadata document (or its draft-era variants).

    Raises :class:`MetadataError`, and only that, for anything that is not a
    readable ``<recording>`` document: not well-formed, wrong root, DTDs and
    entities (refused), too large or too deep.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MetadataError(f"metadata must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(f"metadata of {len(data)} bytes exceeds the {MAX_METADATA_BYTES}-byte limit")
    if not data.strip():
        raise MetadataError("metadata document is empty")
    root, prefixes = _parse_xml(data)
    return _Reader(root, prefixes).read()


# ---------------------------------------------------------------------------
# the merged model

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
            value = after if getattr(new, "streams_given") else before
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


_CALLING_PARTY = re.compile(r"<(?:[\w.-]+:)?callingParty(?:\s[^>]*)?>\s*true\s*<", re.IGNORECASE)


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
        self._notes = _Notes()

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
        """Participants sending the stream, those still associated first."""
        found = [p for p in self.participants.values() if stream_id in p.send]
        found.sort(key=lambda participant: participant.disassociate_time is not None)
        return tuple(found)

    def receivers_of(self, stream_id: str) -> tuple[Participant, ...]:
        found = [p for p in self.participants.values() if stream_id in p.recv]
        found.sort(key=lambda participant: participant.disassociate_time is not None)
        return tuple(found)

    def participant_for_label(self, label: str) -> Participant | None:
        """Who speaks on the stream with this label (None if unknown)."""
        stream = self.stream_by_label(label)
        if stream is None:
            return None
        senders = self.senders_of(stream.stream_id)
        return senders[0] if senders else None

    def caller(self) -> Participant | None:
        """The calling participant: the one Oracle/Acme marks ``callingParty``
        true if exactly one is, otherwise the first participant listed."""
        participants = list(self.participants.values())
        marked = [p for p in participants if any(_CALLING_PARTY.search(ext) for ext in p.extensions)]
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
        return {
            "documents_applied": self.documents_applied,
            "data_mode": self.data_mode,
            "group_id": self.group_id(),
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

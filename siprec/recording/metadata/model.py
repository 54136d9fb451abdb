"""The values a metadata document is read into (RFC 7865 §6 model).

Every reader, whatever dialect it reads, produces these; the merged model
(:mod:`.merged`) only ever sees these.  Values are frozen: a later document
yields new values, it never edits old ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "BROADWORKS_DIALECT",
    "DRAFT_DIALECT",
    "DRAFT_NAMESPACE",
    "RFC_DIALECT",
    "RFC_NAMESPACE",
    "SIPREC_NAMESPACE",
    "Group",
    "MetadataDocument",
    "MetadataError",
    "NameID",
    "Participant",
    "Session",
    "Stream",
    "Timestamp",
    "normalize_aor",
]

RFC_NAMESPACE = "urn:ietf:params:xml:ns:recording:1"
#: Used by pre-RFC drafts and still sent by Oracle/Acme, Sonus/Ribbon and Metaswitch.
DRAFT_NAMESPACE = "urn:ietf:params:xml:ns:recording"
#: The ``<recording_metadata>`` schema of BroadWorks and Webex Calling.
SIPREC_NAMESPACE = "urn:ietf:params:xml:ns:siprec"
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"

#: Names of the dialects, as found in ``MetadataDocument.dialect``.
RFC_DIALECT = "rfc7865"
DRAFT_DIALECT = "draft"
BROADWORKS_DIALECT = "broadworks"

#: A parsed time, or the original text when it could not be parsed.
Timestamp = datetime | str


class MetadataError(ValueError):
    """A metadata document that cannot be read at all (or is refused)."""


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
    ``calling`` is what the SRC said about this participant being the
    calling party (Acme ``callingParty``, a ``<role>``, BroadWorks
    ``callType``), None when it said nothing.
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
    calling: bool | None = None

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
    just the fields the document stated.  ``dialect`` names the schema the
    document was read as (``rfc7865``, ``draft`` or ``broadworks``).
    """

    data_mode: str
    namespace: str
    groups: list[Group] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    participants: list[Participant] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    tolerances: list[str] = field(default_factory=list)
    dialect: str = RFC_DIALECT


_SCHEME = re.compile(r"^(?:sips?|tel|urn|mailto|h323|im|pres|https?):", re.IGNORECASE)


def normalize_aor(aor: str) -> str | None:
    """The AOR with a URI scheme: ``1234@host`` and ``1234`` get ``sip:``.

    SRCs that leave the scheme out (Sonus, Metaswitch, BroadWorks, SEMS)
    mean a SIP AOR; the AOR as sent is kept next to this one.
    """
    text = aor.strip()
    if not text:
        return None
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if _SCHEME.match(text):
        return text
    return f"sip:{text}"

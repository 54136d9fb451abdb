"""Recording metadata (RFC 7865 and the dialects SRCs actually send).

Sans-IO: :func:`parse_metadata` takes the bytes of one metadata document and
returns a :class:`MetadataDocument`; :class:`RecordingMetadata` folds the
documents of one recording session (complete snapshots and partial updates)
into the view the rest of the server asks questions of.

One module per reason to change:

- ``model``: the frozen values every reader produces;
- ``safexml``: the safe parse (defusedxml, size and depth caps);
- ``rfc``, ``draft``, ``broadworks``: one reader per dialect, with
  ``reading`` holding what they share and ``parser`` picking one by root;
- ``serialize``: vendor extensions written back as standalone XML;
- ``merged``: the live model across documents.

Recording clients deviate from the RFC in many small ways; each accepted
deviation is described in ``tolerances`` instead of failing the call.
"""

from siprec.recording.metadata.merged import RecordingMetadata
from siprec.recording.metadata.model import (
    BROADWORKS_DIALECT,
    DRAFT_DIALECT,
    DRAFT_NAMESPACE,
    RFC_DIALECT,
    RFC_NAMESPACE,
    SIPREC_NAMESPACE,
    Group,
    MetadataDocument,
    MetadataError,
    NameID,
    Participant,
    Session,
    Stream,
    Timestamp,
    normalize_aor,
)
from siprec.recording.metadata.parser import parse_metadata
from siprec.recording.metadata.safexml import MAX_DEPTH, MAX_METADATA_BYTES

__all__ = [
    "BROADWORKS_DIALECT",
    "DRAFT_DIALECT",
    "DRAFT_NAMESPACE",
    "MAX_DEPTH",
    "MAX_METADATA_BYTES",
    "RFC_DIALECT",
    "RFC_NAMESPACE",
    "SIPREC_NAMESPACE",
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

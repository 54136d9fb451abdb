"""``parse_metadata``: bytes in, a MetadataDocument out, whatever the dialect.

The root element picks the reader: ``<recording>`` is RFC 7865 (or, when it
uses the pre-RFC draft's namespace or shapes, the draft reader),
``<recording_metadata>`` is the BroadWorks / Webex Calling dialect.
"""

from __future__ import annotations

from siprec.recording.metadata.broadworks import BroadWorksReader
from siprec.recording.metadata.draft import DraftReader, uses_draft_schema
from siprec.recording.metadata.model import MetadataDocument, MetadataError
from siprec.recording.metadata.rfc import RfcReader
from siprec.recording.metadata.safexml import parse_xml, split_tag

__all__ = ["parse_metadata"]


def parse_metadata(data: bytes) -> MetadataDocument:
    """Parse one metadata document in any supported dialect.

    Raises :class:`MetadataError`, and only that, for anything that is not a
    readable document: not well-formed, unknown root, DTDs and entities
    (refused), too large or too deep.
    """
    root, prefixes = parse_xml(data)
    local = split_tag(root.tag)[1].lower()
    reader: RfcReader | BroadWorksReader
    if local == "recording_metadata":
        reader = BroadWorksReader(root, prefixes)
    elif local == "recording":
        reader = DraftReader(root, prefixes) if uses_draft_schema(root) else RfcReader(root, prefixes)
    else:
        raise MetadataError(
            f"metadata root element is <{split_tag(root.tag)[1]}>, expected <recording> or <recording_metadata>"
        )
    return reader.read()

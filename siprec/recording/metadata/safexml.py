"""Network XML, read safely: the one place metadata bytes become a tree.

``defusedxml`` refuses DTDs, entity declarations and external references;
size and nesting are capped here so a hostile or broken document costs
little, and every way of failing ends as :class:`MetadataError`.
"""

from __future__ import annotations

import io
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
    NotSupportedError,
)
from defusedxml.ElementTree import iterparse

from siprec.recording.metadata.model import MetadataError

__all__ = ["MAX_DEPTH", "MAX_METADATA_BYTES", "parse_xml", "split_tag"]

#: Far above any real document (a few KB); guards memory and CPU.
MAX_METADATA_BYTES = 1 << 20
#: Real documents nest 4 deep; extensions a little more.
MAX_DEPTH = 64


def split_tag(tag: Any) -> tuple[str, str]:
    """``{uri}local`` as (uri, local); comments and PIs give ("", "")."""
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        return uri, local
    return "", tag


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MetadataError(f"metadata must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(f"metadata of {len(data)} bytes exceeds the {MAX_METADATA_BYTES}-byte limit")
    if not data.strip():
        raise MetadataError("metadata document is empty")
    return data


def parse_xml(data: Any) -> tuple[Element, dict[str, str]]:
    """Parse safely; return the root and the first prefix seen for each namespace.

    The prefixes let extensions be written back with the names the sender chose.
    """
    data = _as_bytes(data)
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
        raise MetadataError(f"metadata references external resource {error.sysid!r}; refused") from None
    except (DefusedXmlException, NotSupportedError) as error:
        raise MetadataError(f"metadata refused: {error}") from None
    except ParseError as error:
        raise MetadataError(f"metadata is not well-formed XML: {error}") from None
    except (ValueError, LookupError, UnicodeError) as error:
        raise MetadataError(f"metadata could not be decoded: {error}") from None
    if root is None:
        raise MetadataError("metadata has no root element")
    return root, prefixes

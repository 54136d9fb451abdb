"""Extension elements written back as standalone XML strings.

Vendor data (Acme ``extensiondata``, Sonus ``callData``, BroadWorks
``broadWorksRecordingMetadata`` …) is kept verbatim in the call record, so
each extension subtree is serialised on its own, declaring the namespaces it
uses on its top element and reusing the prefixes of the received document:
``<callData xmlns=...>`` comes out as it was sent.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from siprec.recording.metadata.model import XML_NAMESPACE
from siprec.recording.metadata.safexml import split_tag

__all__ = ["serialize_extension"]


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _escape_attr(text: str) -> str:
    return (
        _escape_text(text)
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\t", "&#9;")
    )


def _declarations(element: Element, doc_prefixes: dict[str, str]) -> dict[str, str]:
    """The prefix for every namespace the subtree uses ("" for a default namespace)."""
    element_uris: dict[str, None] = {}
    attribute_uris: dict[str, None] = {}
    for node in element.iter():
        if not isinstance(node.tag, str):
            continue
        element_uris.setdefault(split_tag(node.tag)[0], None)
        for key in node.attrib:
            attribute_uris.setdefault(split_tag(key)[0], None)
    top_uri = split_tag(element.tag)[0]
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
    return declared


def serialize_extension(element: Element, doc_prefixes: dict[str, str]) -> str:
    """Serialise one extension subtree as a well-formed standalone document."""
    out: list[str] = []
    _write(element, _declarations(element, doc_prefixes), "", True, out)
    return "".join(out)


def _write(element: Element, declared: dict[str, str], default: str, top: bool, out: list[str]) -> None:
    uri, local = split_tag(element.tag)
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
        key_uri, key_local = split_tag(key)
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

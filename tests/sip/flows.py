"""Vendor call flows stored as text fixtures (tests/sip/fixtures/*.sip).

A flow file holds one message per ``==== LABEL`` section, written with LF
line ends and placeholders: ``{length}`` becomes the body length, other
``{name}``s are given by the test (``{to_tag}`` once our 200 has named it).
The facts come from vendors' published call flows; the text is our own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

FIXTURES = Path(__file__).parent / "fixtures"


def load_flow(name: str) -> Dict[str, str]:
    """Label -> message template, in file order."""
    flow: Dict[str, str] = {}
    label = None
    lines = []
    for line in (FIXTURES / name).read_text(encoding="utf-8").split("\n"):
        if line.startswith("==== "):
            if label is not None:
                flow[label] = "\n".join(lines)
            label, lines = line[5:].strip(), []
        else:
            lines.append(line)
    if label is not None:
        flow[label] = "\n".join(lines)
    return flow


def render(template: str, **values: str) -> bytes:
    """The message on the wire: CRLF line ends, placeholders filled, Content-Length counted."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    head, sep, body = template.partition("\n\n")
    if not sep:
        head, body = template.rstrip("\n"), ""
    elif body and not body.endswith("\n"):
        body += "\n"
    data = body.replace("\n", "\r\n").encode("utf-8")
    head = head.replace("{length}", str(len(data)))
    return head.replace("\n", "\r\n").encode("utf-8") + b"\r\n\r\n" + data

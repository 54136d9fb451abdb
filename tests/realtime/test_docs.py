"""docs/realtime-transcription.md shows a valid example of every message."""

from __future__ import annotations

import json
import os
import re

from twisted.trial.unittest import SynchronousTestCase

from siprec.realtime.events import EVENT_TYPES, SCHEMA, Event
from siprec.realtime.websocket import CONTROL_SCHEMA, parse_client_message

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "realtime-transcription.md")


def json_blocks() -> list:
    with open(DOC, encoding="utf-8") as handle:
        text = handle.read()
    return re.findall(r"```json\n(.*?)```", text, re.S)


class DocExampleTests(SynchronousTestCase):
    def test_every_event_type_has_a_valid_example(self):
        types = set()
        for block in json_blocks():
            if SCHEMA in block:
                event = Event.from_json(block.encode("utf-8"))
                types.add(event.type)
        self.assertEqual(types, set(EVENT_TYPES))

    def test_control_and_client_messages(self):
        controls = set()
        for block in json_blocks():
            doc = json.loads(block)
            if doc.get("schema") == CONTROL_SCHEMA:
                controls.add(doc["type"])
            elif doc.get("type") == "subscribe":
                self.assertEqual(parse_client_message(block.encode())[0], "subscribe")
        self.assertEqual(controls, {"welcome", "subscribed", "error", "pong"})

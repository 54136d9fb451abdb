"""LOG_LEVEL / LOG_FORMAT applied to a publisher's observers."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from siprec.logs import install_log_filter


class LogFilterTests(SynchronousTestCase):
    def setUp(self):
        self.publisher = LogPublisher()
        self.seen = []
        self.publisher.addObserver(self.seen.append)
        self.log = Logger(observer=self.publisher, namespace="siprec.test")

    def test_level_filters(self):
        """LOG_LEVEL=warn drops info and keeps warnings and errors."""
        install_log_filter("warn", publisher=self.publisher)
        self.log.info("quiet")
        self.log.warn("loud")
        self.log.error("louder")
        self.assertEqual([e["log_format"] for e in self.seen], ["loud", "louder"])

    def test_reinstall_changes_level(self):
        """Installing again (reload) changes the level instead of stacking filters."""
        install_log_filter("error", publisher=self.publisher)
        install_log_filter("debug", publisher=self.publisher)
        self.log.debug("now visible")
        self.assertEqual([e["log_format"] for e in self.seen], ["now visible"])

    def test_json_format(self):
        """LOG_FORMAT=json writes one JSON object per line instead of the text observers."""
        out = io.StringIO()
        install_log_filter("info", "json", publisher=self.publisher, stream=out)
        self.log.info("call {call_id} started", call_id="abc")
        self.assertEqual(self.seen, [])
        record = json.loads(out.getvalue().strip().strip("\x1e"))
        self.assertEqual(record["call_id"], "abc")
        self.assertEqual(record["log_namespace"], "siprec.test")

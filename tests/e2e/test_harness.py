"""The end-to-end harness itself: a traceback in the server's log fails the test."""

from __future__ import annotations

from twisted.logger import Logger
from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.harness import TracebackWatch

log = Logger()


def run_watched(body) -> TestResult:
    """Run ``body`` as a test of its own under a TracebackWatch."""

    class Watched(SynchronousTestCase):  # local: not collected by trial
        def test_body(self) -> None:
            TracebackWatch().install(self)
            body()

    result = TestResult()
    Watched("test_body").run(result)
    return result


class TracebackWatchTests(SynchronousTestCase):
    def test_quiet_test_passes(self) -> None:
        result = run_watched(lambda: log.info("a call was recorded"))
        self.assertTrue(result.wasSuccessful(), result.failures + result.errors)

    def test_logged_traceback_text_fails(self) -> None:
        result = run_watched(lambda: log.error(
            "stderr of a helper:\nTraceback (most recent call last):\n  File \"x\"\n"
            "ValueError: boom"))
        problems = result.failures + result.errors  # trial counts a failing cleanup as an error
        self.assertEqual(len(problems), 1)
        self.assertIn("1 traceback(s) logged", str(problems[0][1].value))

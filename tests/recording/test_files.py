"""Tests for siprec.recording.files: names, ordered off-reactor writes, cleanup."""

from __future__ import annotations

import os
from typing import List

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import SynchronousTestCase

from siprec.recording.files import RecordingFiles, safe_filename, write_atomically


class Pool:
    """A worker pool whose jobs run when the test says so, in order."""

    def __init__(self) -> None:
        self.jobs: List[Deferred] = []

    def __call__(self, f, *args):
        d = Deferred()
        self.jobs.append(d)
        return d.addCallback(lambda _: f(*args))

    def run_all(self) -> None:
        while self.jobs:
            self.jobs.pop(0).callback(None)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class WriteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.pool = Pool()
        self.files = RecordingFiles(self.dir, self.pool, combine=None)
        self.path = os.path.join(self.dir, "call.json")

    def test_write_happens_in_the_pool(self) -> None:
        """Nothing touches the disk until the worker runs; then the file is whole."""
        d = self.files.write(self.path, b"one")
        self.assertNoResult(d)
        self.assertFalse(os.path.exists(self.path))
        self.pool.run_all()
        self.successResultOf(d)
        self.assertEqual(read(self.path), b"one")
        self.assertFalse(os.path.exists(self.path + ".tmp"))

    def test_latest_content_wins_and_writes_never_overlap(self) -> None:
        """Three writes while one is in flight: one more job, with the last content;
        every caller's Deferred fires once it is on disk."""
        first = self.files.write(self.path, b"1")
        second = self.files.write(self.path, b"2")
        third = self.files.write(self.path, b"3")
        self.assertEqual(len(self.pool.jobs), 1)
        self.pool.jobs.pop(0).callback(None)
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertEqual(read(self.path), b"1")
        self.assertEqual(len(self.pool.jobs), 1)
        self.pool.run_all()
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual(read(self.path), b"3")

    def test_idle_waits_for_every_write(self) -> None:
        self.files.write(self.path, b"a")
        self.files.write(self.path + "2", b"b")
        idle = self.files.idle()
        self.assertNoResult(idle)
        self.pool.run_all()
        self.successResultOf(idle)
        self.successResultOf(self.files.idle())  # nothing in flight: at once

    def test_failed_write_is_counted_and_does_not_fail_the_caller(self) -> None:
        files = RecordingFiles(os.path.join(self.dir, "missing", "dir"), maybeDeferred, None)
        d = files.write(os.path.join(self.dir, "missing", "dir", "x.json"), b"x")
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(files.write_errors, 1)
        self.successResultOf(files.write(self.path, b"ok"))  # the queue is not stuck

    def test_remove_deletes_what_exists(self) -> None:
        write_atomically(self.path, b"x")
        d = self.files.remove([self.path, self.path + ".absent"])
        self.pool.run_all()
        self.assertEqual(self.successResultOf(d), [self.path])
        self.assertFalse(os.path.exists(self.path))


class ClaimTests(SynchronousTestCase):
    """Recordings are never overwritten by a call reusing a Call-ID."""

    def test_claims_are_unique_and_released(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        files = RecordingFiles(directory, maybeDeferred, None)
        first = files.claim("abc")
        self.assertEqual(files.claim("abc"), os.path.join(directory, "abc~2"))
        files.release(first)
        self.assertEqual(files.claim("abc"), first)
        write_atomically(os.path.join(directory, "old.transcript.json"), b"{}")
        self.assertEqual(files.claim("old"), os.path.join(directory, "old~2"))

    def test_unsafe_call_ids_become_safe_distinct_names(self) -> None:
        self.assertEqual(safe_filename("abc@host"), "abc@host")
        a, b = safe_filename("../a/b"), safe_filename("../a_b")
        self.assertNotEqual(a, b)
        self.assertNotIn("/", a)
        self.assertFalse(a.startswith("."))
        self.assertLessEqual(len(safe_filename("x" * 500)), 120)


class TrackTests(SynchronousTestCase):
    def test_idle_waits_for_tracked_cleanups(self) -> None:
        """A cleanup that starts with a close (a refused call's file) holds idle()."""
        files = RecordingFiles(self.mktemp(), maybeDeferred, None)
        cleanup = Deferred()
        self.assertIs(files.track(cleanup), cleanup)
        idle = files.idle()
        self.assertNoResult(idle)
        cleanup.callback("done")
        self.successResultOf(idle)
        self.assertEqual(self.successResultOf(cleanup), "done")  # result passed through

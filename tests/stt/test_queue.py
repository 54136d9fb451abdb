"""Post-call queue: persistence across restarts, retries with backoff, spooling, the handler."""

from __future__ import annotations

import os
import wave

import numpy as np
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import Clock, deferLater
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from siprec.stt.audio import wav_bytes
from siprec.stt.base import Hypothesis, SttAuthError, SttError
from siprec.stt.queue import (
    FatalJobError, JobQueueError, PostCallQueue, PostCallTranscriber, SpoolFile, make_deferrer,
)
from siprec.stt.router import RouterSettings, SttRouter


class QueueTestCase(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.pool = ThreadPool(1, 2, name="stt-queue-test")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.clock = Clock()
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.db = os.path.join(self.dir, "jobs.sqlite3")

    def queue(self, handler, **options) -> PostCallQueue:
        queue = PostCallQueue(self.db, reactor, self.pool, handler, clock=self.clock, **options)
        self.addCleanup(lambda: queue.stop())
        return queue

    @inlineCallbacks
    def until(self, predicate, what: str = "condition"):
        for _ in range(400):
            if predicate():
                return
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail(f"timed out waiting for {what}")


class QueueTests(QueueTestCase):
    @inlineCallbacks
    def test_job_runs_and_is_done(self) -> None:
        seen = []
        queue = self.queue(lambda job: seen.append(job) or succeed(None))
        yield queue.start()
        job_id = yield queue.enqueue("transcribe", {"call_id": "c1", "n": 1})
        yield self.until(lambda: queue.stats()["jobs_done"] == 1, "job done")
        self.assertEqual([(j.id, j.kind, j.payload["call_id"], j.attempts) for j in seen],
                         [(job_id, "transcribe", "c1", 1)])
        jobs = yield queue.jobs()
        self.assertEqual(jobs[0]["state"], "done")
        self.assertEqual(queue.stats()["completed_total"], 1)

    @inlineCallbacks
    def test_retries_back_off_exponentially(self) -> None:
        """Failures are retried after backoff, 2x backoff ...; success ends it."""
        attempts = []

        def handler(job):
            attempts.append((job.attempts, self.clock.seconds()))
            if len(attempts) < 3:
                raise SttError("deepgram", "503")
            return succeed(None)

        queue = self.queue(handler, backoff=30.0, max_attempts=5)
        yield queue.start()
        yield queue.enqueue("transcribe", {})
        yield self.until(lambda: queue.next_wake == 30.0, "retry scheduled")
        jobs = yield queue.jobs()
        self.assertEqual(jobs[0]["next_run"], 30.0)
        self.assertIn("503", jobs[0]["last_error"])
        self.clock.advance(29)
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(attempts), 1)
        self.clock.advance(1)
        yield self.until(lambda: len(attempts) == 2, "second attempt")
        yield self.until(lambda: queue.next_wake == 90.0, "second retry scheduled")
        self.clock.advance(60)
        yield self.until(lambda: queue.stats()["jobs_done"] == 1, "done")
        self.assertEqual(attempts, [(1, 0.0), (2, 30.0), (3, 90.0)])

    @inlineCallbacks
    def test_gives_up_after_max_attempts(self) -> None:
        queue = self.queue(lambda job: 1 / 0, backoff=1.0, max_attempts=2)
        yield queue.start()
        yield queue.enqueue("transcribe", {})
        yield self.until(lambda: queue.next_wake == 1.0, "retry scheduled")
        self.clock.advance(1)
        yield self.until(lambda: queue.stats()["jobs_failed"] == 1, "failed")
        jobs = yield queue.jobs("failed")
        self.assertEqual(jobs[0]["attempts"], 2)
        self.assertIn("division", jobs[0]["last_error"])

    @inlineCallbacks
    def test_permanent_errors_fail_at_once(self) -> None:
        for error in (SttAuthError("openai", "401"), FatalJobError("post-call", "no file")):
            queue = self.queue(lambda job, error=error: (_ for _ in ()).throw(error))
            yield queue.start()
            yield queue.enqueue("transcribe", {})
            yield self.until(lambda: queue.stats()["jobs_failed"] >= 1)
            self.assertEqual(queue.stats()["retried_total"], 0)
            yield queue.stop()
            os.remove(self.db)

    @inlineCallbacks
    def test_jobs_survive_a_restart(self) -> None:
        """A job running when the process stops runs again at the next start."""
        hanging = Deferred()
        first = self.queue(lambda job: hanging, workers=1)
        yield first.start()
        yield first.enqueue("transcribe", {"call_id": "keep"})
        yield first.enqueue("transcribe", {"call_id": "later"})
        yield self.until(lambda: first.stats()["jobs_running"] == 1, "running")
        yield first.stop()

        seen = []
        second = self.queue(lambda job: seen.append(job) or succeed(None), workers=1)
        yield second.start()
        yield self.until(lambda: second.stats()["jobs_done"] == 2, "both done")
        self.assertEqual([(j.payload["call_id"], j.attempts) for j in seen],
                         [("keep", 2), ("later", 1)])

    @inlineCallbacks
    def test_workers_limit_concurrency(self) -> None:
        running = []
        release = [Deferred() for _ in range(3)]
        queue = self.queue(lambda job: running.append(job.id) or release[len(running) - 1],
                           workers=2)
        yield queue.start()
        for n in range(3):
            yield queue.enqueue("transcribe", {"n": n})
        yield self.until(lambda: len(running) == 2)
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(running), 2)
        release[0].callback(None)
        yield self.until(lambda: len(running) == 3, "third job")

    @inlineCallbacks
    def test_unusable_database_path(self) -> None:
        """A database path that is a directory is a JobQueueError naming the setting."""
        queue = PostCallQueue(self.dir, reactor, self.pool, None)
        with self.assertRaises(JobQueueError) as raised:
            yield queue.start()
        self.assertIn("STT_QUEUE_DB", str(raised.exception))


class SpoolTests(QueueTestCase):
    @inlineCallbacks
    def test_spool_writes_a_wav_with_gaps_as_silence(self) -> None:
        path = os.path.join(self.dir, "spool", "c_l.wav")
        closed = []
        spool = SpoolFile(path, 8000, reactor, self.pool,
                          lambda p, start: closed.append((p, start)) or succeed(None))
        tone = np.full(4000, 1000, dtype=np.int16)
        spool.write(tone, 16000)
        spool.write(tone, 24000)  # a 0.5 s hole
        spool.write(tone[:100], 27950)  # overlaps: 50 samples dropped
        yield spool.close()
        with wave.open(path) as reader:
            self.assertEqual(reader.getframerate(), 8000)
            frames = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
        self.assertEqual(len(frames), 4000 + 4000 + 4000 + 50)
        self.assertTrue((frames[4000:8000] == 0).all())
        self.assertEqual(closed, [(path, 2.0)])


class FileProvider:
    """Emits one final per stream: how many samples it got and where they started."""

    name = "whisper"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.legs = []

    def supports_language(self, language):
        return True

    def open_stream(self, leg, listener):
        self.legs.append(leg)
        provider = self

        class Stream:
            fed = []

            def feed(self, pcm, offset):
                self.fed.append((len(pcm), offset))

            def finish(self):
                if provider.fail:
                    listener.failed(SttError("whisper", "server went away"))
                else:
                    first = self.fed[0][1]
                    total = sum(n for n, _ in self.fed)
                    listener.hypothesis(Hypothesis(f"{total} samples", True, first / leg.sample_rate,
                                                   (first + total) / leg.sample_rate, 0.8, "en"))
                return succeed(None)

            def abort(self):
                pass

        return Stream()


class HandlerTests(QueueTestCase):
    def router(self, provider) -> SttRouter:
        self.results = []
        return SttRouter({"whisper": provider}, self.results.append, self.clock,
                         RouterSettings(default_vendor="whisper"))

    @inlineCallbacks
    def test_transcribes_a_queued_recording(self) -> None:
        """Finals of a post-call job carry the job's leg and the file's call offset."""
        path = os.path.join(self.dir, "leg.wav")
        with open(path, "wb") as handle:
            handle.write(wav_bytes(np.ones(22050, dtype=np.int16), 22050))
        provider = FileProvider()
        router = self.router(provider)
        queue = self.queue(PostCallTranscriber(router, reactor, self.pool))
        yield queue.start()
        yield queue.enqueue_recording("call-7", "callee", path, participant={"name": "Bob"},
                                      language="en-GB", start=12.0, delete_after=True)
        yield self.until(lambda: queue.stats()["jobs_done"] == 1, "job done")
        self.assertEqual(provider.legs[0].sample_rate, 16000)
        self.assertFalse(provider.legs[0].live)
        [result] = self.results
        self.assertEqual((result.call_id, result.leg, result.participant["name"],
                          result.post_call, result.provider), ("call-7", "callee", "Bob", True,
                                                               "whisper"))
        self.assertEqual(result.start, 12.0)
        self.assertEqual(result.text, "16000 samples")
        yield self.until(lambda: not os.path.exists(path), "spool file removed")

    @inlineCallbacks
    def test_provider_failure_retries_and_publishes_nothing(self) -> None:
        path = os.path.join(self.dir, "leg.wav")
        with open(path, "wb") as handle:
            handle.write(wav_bytes(np.ones(8000, dtype=np.int16), 8000))
        router = self.router(FileProvider(fail=True))
        queue = self.queue(PostCallTranscriber(router, reactor, self.pool))
        yield queue.start()
        yield queue.enqueue_recording("c", "l", path)
        yield self.until(lambda: queue.stats()["retried_total"] == 1, "retry")
        self.assertEqual(self.results, [])
        self.assertEqual(router.breakers["whisper"].snapshot()["failures_total"], 1)

    @inlineCallbacks
    def test_missing_or_garbage_files_fail_for_good(self) -> None:
        garbage = os.path.join(self.dir, "garbage.wav")
        with open(garbage, "wb") as handle:
            handle.write(b"RIFF\x00\x00garbage")
        router = self.router(FileProvider())
        queue = self.queue(PostCallTranscriber(router, reactor, self.pool))
        yield queue.start()
        yield queue.enqueue_recording("c", "l", os.path.join(self.dir, "missing.wav"))
        yield queue.enqueue_recording("c", "l", garbage)
        yield queue.enqueue("transcribe", {"call_id": 3})
        yield self.until(lambda: queue.stats()["jobs_failed"] == 3, "three failures")
        errors = [job["last_error"] for job in (yield queue.jobs())]
        self.assertIn("does not exist", errors[0])
        self.assertIn("not a readable WAV", errors[1])
        self.assertIn("has no call_id", errors[2])

    @inlineCallbacks
    def test_overloaded_leg_is_spooled_and_queued(self) -> None:
        """The router's deferrer spools the leg and queues it when the leg closes."""
        router = self.router(FileProvider())
        queue = self.queue(None)
        yield queue.start()
        router._deferrer = make_deferrer(queue, os.path.join(self.dir, "spool"), reactor,
                                         self.pool)
        leg = router.open_leg("call/1", "caller", None, "en-US", 8000)
        leg.feed(np.ones(8000, dtype=np.int16), 8000, 800)
        leg._attempt.overloaded("behind")
        leg.feed(np.ones(8000, dtype=np.int16), 8000, 8800)
        yield leg.close()
        yield self.until(lambda: queue.stats()["jobs_pending"] == 1, "queued")
        [job] = yield queue.jobs()
        payload = job["payload"]
        self.assertEqual((payload["call_id"], payload["leg"], payload["start"],
                          payload["delete_after"]), ("call/1", "caller", 0.1, True))
        self.assertTrue(payload["path"].endswith("call_1_caller.wav"))
        with wave.open(payload["path"]) as reader:
            self.assertEqual(reader.getnframes(), 16000)

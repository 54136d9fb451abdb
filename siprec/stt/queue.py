"""The post-call transcription queue: persisted jobs, workers, retries.

Jobs live in an SQLite file (stdlib ``sqlite3``), so they survive a restart:
a job that was running when the process died is pending again at the next
start. Every database call runs in the thread pool handed to the queue,
never on the reactor thread. ``workers`` jobs run at once; a failed job is
retried after ``backoff`` seconds, doubling per attempt up to
``backoff_max``, until ``max_attempts``; errors that cannot get better
(a missing file, bad credentials) fail the job at once.

Two producers: the router, for legs whose live transcription was overloaded
(their audio is spooled to a WAV file first, ``SpoolFile``), and whoever
wants a finished recording re-transcribed (``enqueue_recording``).
``PostCallTranscriber`` is the standard job handler.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import cooperate
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from siprec.stt.audio import AudioError, StreamResampler, read_wav
from siprec.stt.base import Hypothesis, LegSpec, SttError, TranscriptResult
from siprec.stt.router import LegTranscriber, Spool, SttRouter, default_spool_path
from siprec.stt.vad import WEBRTC_RATES

__all__ = [
    "FatalJobError",
    "Job",
    "JobQueueError",
    "PostCallQueue",
    "PostCallTranscriber",
    "SpoolFile",
    "TRANSCRIBE",
    "make_deferrer",
]

log = Logger()

TRANSCRIBE = "transcribe"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS stt_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_run REAL NOT NULL,
    last_error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stt_jobs_due ON stt_jobs (state, next_run);
"""
STATES = ("pending", "running", "done", "failed")


class JobQueueError(Exception):
    """The queue database cannot be used (path, permissions, corruption)."""


class FatalJobError(SttError):
    """A job that can never succeed (its audio is gone or unreadable)."""

    retryable = False


@dataclass(frozen=True, slots=True)
class Job:
    """One queued job as stored."""

    id: int
    kind: str
    payload: Mapping[str, Any]
    attempts: int


Handler = Callable[[Job], Deferred]


class PostCallQueue:
    """See the module docstring."""

    def __init__(
        self,
        path: str,
        reactor: IReactorTime,
        threadpool: ThreadPool,
        handler: Handler | None = None,
        workers: int = 1,
        max_attempts: int = 5,
        backoff: float = 30.0,
        backoff_max: float = 3600.0,
        clock: IReactorTime | None = None,
    ) -> None:
        self.path = path
        self._reactor = reactor  # runs the thread pool's results
        self._clock = clock or reactor  # timers and job times
        self._pool = threadpool
        self.handler = handler
        self.workers = workers
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._running: dict[int, Deferred] = {}
        self._claiming = False
        self._again = False
        self._timer: Any = None
        self._started = False
        self._stopping = False
        self._counts = dict.fromkeys(STATES, 0)
        self.completed_total = 0
        self.failed_total = 0
        self.retried_total = 0

    # -- life cycle ----------------------------------------------------------

    def start(self) -> Deferred:
        """Open (or create) the database and resume pending jobs."""
        d = self._db_call(self._open)
        d.addCallback(self._opened)
        return d

    def _open(self) -> dict[str, int]:
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
            resumed = db.execute(
                "UPDATE stt_jobs SET state='pending' WHERE state='running'").rowcount
        except (OSError, sqlite3.Error) as err:
            raise JobQueueError(f"STT_QUEUE_DB {self.path!r}: {err}") from None
        self._db = db
        if resumed:
            log.info("Post-call STT queue: {count} interrupted job(s) pending again",
                     count=resumed)
        return self._count_states()

    def _opened(self, counts: dict[str, int]) -> None:
        self._counts = counts
        self._started = True
        self._wake()

    def stop(self) -> Deferred:
        """Stop taking jobs; running ones are left to resume at the next start."""
        self._stopping = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        d = self._db_call(self._close)
        return d

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- producers -----------------------------------------------------------

    def enqueue(self, kind: str, payload: Mapping[str, Any], delay: float = 0.0) -> Deferred:
        """Persist a job; fires with its id once it is on disk."""
        text = json.dumps(dict(payload), sort_keys=True)
        now = self._clock.seconds()
        d = self._db_call(self._insert, kind, text, now + delay, now)
        d.addCallback(self._inserted)
        return d

    def enqueue_recording(
        self, call_id: str, leg: str, path: str, *, participant: Mapping[str, Any] | None = None,
        language: str | None = None, vendor: str | None = None, start: float = 0.0,
        delete_after: bool = False,
    ) -> Deferred:
        """Queue a WAV file of one leg (``start`` = its call-timeline offset, seconds)."""
        return self.enqueue(TRANSCRIBE, {
            "call_id": call_id, "leg": leg, "path": path,
            "participant": dict(participant) if participant is not None else None,
            "language": language, "vendor": vendor, "start": start,
            "delete_after": delete_after,
        })

    def _insert(self, kind: str, text: str, due: float, now: float) -> tuple[int, dict]:
        db = self._need_db()
        cursor = db.execute(
            "INSERT INTO stt_jobs (kind, payload, next_run, created, updated) "
            "VALUES (?, ?, ?, ?, ?)", (kind, text, due, now, now))
        return int(cursor.lastrowid), self._count_states()

    def _inserted(self, result: tuple[int, dict]) -> int:
        job_id, self._counts = result
        self._wake()
        return job_id

    # -- scheduling ----------------------------------------------------------

    def _wake(self) -> None:
        if not self._started or self._stopping or self.handler is None:
            return
        if self._claiming:
            self._again = True
            return
        free = self.workers - len(self._running)
        if free <= 0:
            return
        self._claiming = True
        self._again = False
        d = self._db_call(self._claim, free, self._clock.seconds())
        d.addCallbacks(self._claimed, self._claim_failed)

    def _claim(self, limit: int, now: float) -> tuple[list[Job], float | None, dict]:
        if self._db is None and self._stopping:
            return [], None, dict(self._counts)  # stopped while this claim waited
        db = self._need_db()
        rows = db.execute(
            "SELECT id, kind, payload, attempts FROM stt_jobs WHERE state='pending' "
            "AND next_run <= ? ORDER BY next_run, id LIMIT ?", (now, limit)).fetchall()
        jobs = []
        for job_id, kind, payload, attempts in rows:
            db.execute("UPDATE stt_jobs SET state='running', attempts=attempts+1, "
                       "updated=? WHERE id=?", (now, job_id))
            try:
                data = json.loads(payload)
            except ValueError:
                data = {}
            jobs.append(Job(job_id, kind, data, attempts + 1))
        due = db.execute("SELECT MIN(next_run) FROM stt_jobs WHERE state='pending'"
                         ).fetchone()[0]
        return jobs, due, self._count_states()

    def _claimed(self, result: tuple[list[Job], float | None, dict]) -> None:
        jobs, due, self._counts = result
        self._claiming = False
        for job in jobs:
            self._run(job)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if due is not None and not self._stopping:
            delay = max(0.0, due - self._clock.seconds())
            self._timer = self._clock.callLater(delay, self._wake)
        if self._again:
            self._wake()

    def _claim_failed(self, failure: Failure) -> None:
        self._claiming = False
        if not self._stopping:
            log.failure("Post-call STT queue cannot claim jobs", failure)

    def _run(self, job: Job) -> None:
        assert self.handler is not None
        try:
            d = self.handler(job)
        except Exception:
            d = Deferred()
            d.errback(Failure())
        self._running[job.id] = d
        d.addCallbacks(self._succeeded, self._failed, callbackArgs=(job,), errbackArgs=(job,))
        d.addErrback(lambda f: log.failure("Post-call STT bookkeeping failed", f))

    def _succeeded(self, _: object, job: Job) -> Deferred:
        self.completed_total += 1
        return self._finish(job, "done", None, None)

    def _failed(self, failure: Failure, job: Job) -> Deferred:
        error = failure.value
        message = failure.getErrorMessage()
        retryable = getattr(error, "retryable", True) and not isinstance(
            error, (AudioError, FileNotFoundError))
        if not retryable or job.attempts >= self.max_attempts:
            self.failed_total += 1
            log.error("Post-call STT job {id} failed for good after {attempts} attempt(s): "
                      "{error}", id=job.id, attempts=job.attempts, error=message)
            return self._finish(job, "failed", message, None)
        self.retried_total += 1
        delay = min(self.backoff * 2 ** (job.attempts - 1), self.backoff_max)
        log.warn("Post-call STT job {id} failed (attempt {attempts}), retrying in "
                 "{delay:g}s: {error}", id=job.id, attempts=job.attempts, delay=delay,
                 error=message)
        return self._finish(job, "pending", message, self._clock.seconds() + delay)

    def _finish(self, job: Job, state: str, error: str | None, due: float | None) -> Deferred:
        def update() -> dict:
            db = self._need_db()
            if due is None:
                db.execute("UPDATE stt_jobs SET state=?, last_error=?, updated=? WHERE id=?",
                           (state, error, self._clock.seconds(), job.id))
            else:
                db.execute("UPDATE stt_jobs SET state=?, last_error=?, next_run=?, updated=? "
                           "WHERE id=?", (state, error, due, self._clock.seconds(), job.id))
            return self._count_states()

        def done(counts: dict) -> None:
            self._counts = counts
            self._running.pop(job.id, None)
            self._wake()

        def lost(failure: Failure) -> None:
            self._running.pop(job.id, None)
            if self._stopping and failure.check(JobQueueError):
                # Stopped meanwhile: the job is still "running" on disk and
                # runs again at the next start.
                return
            log.failure("Post-call STT queue cannot record job {id}", failure, id=job.id)

        return self._db_call(update).addCallbacks(done, lost)

    # -- status --------------------------------------------------------------

    @property
    def next_wake(self) -> float | None:
        """Clock time at which the queue will next look for due jobs (None: not scheduled)."""
        if self._timer is not None and self._timer.active():
            return self._timer.getTime()
        return None

    def jobs(self, state: str | None = None) -> Deferred:
        """Fires with a list of job dicts (for the API and tests)."""
        def query() -> list[dict[str, Any]]:
            db = self._need_db()
            sql = ("SELECT id, kind, payload, state, attempts, next_run, last_error "
                   "FROM stt_jobs")
            rows = (db.execute(sql + " WHERE state=? ORDER BY id", (state,)) if state
                    else db.execute(sql + " ORDER BY id")).fetchall()
            return [
                {"id": r[0], "kind": r[1], "payload": json.loads(r[2]), "state": r[3],
                 "attempts": r[4], "next_run": r[5], "last_error": r[6]}
                for r in rows
            ]

        return self._db_call(query)

    def stats(self) -> dict[str, Any]:
        """Counts by state (as of the last database change) and totals."""
        return {
            **{f"jobs_{state}": count for state, count in self._counts.items()},
            "workers": self.workers,
            "completed_total": self.completed_total,
            "failed_total": self.failed_total,
            "retried_total": self.retried_total,
        }

    # -- database plumbing ---------------------------------------------------

    def _need_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JobQueueError("the post-call queue is not open")
        return self._db

    def _count_states(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, count in self._need_db().execute(
                "SELECT state, COUNT(*) FROM stt_jobs GROUP BY state"):
            counts[state] = count
        return counts

    def _db_call(self, function: Callable[..., Any], *args: Any) -> Deferred:
        def locked() -> Any:
            with self._lock:
                return function(*args)

        return deferToThreadPool(self._reactor, self._pool, locked)


# --------------------------------------------------------------------------
# Spooling a deferred leg to disk.
# --------------------------------------------------------------------------

_MAX_GAP_SECONDS = 600  # longer holes in a spooled leg are shortened to this


def _wav_header(rate: int, samples: int) -> bytes:
    data = samples * 2
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data))


class SpoolFile(Spool):
    """A deferred leg's audio written to a WAV file in the thread pool.

    Writes are batched (a second of audio at a time) and serialised; holes
    in the timeline are written as silence so times in the file stay the
    call's. ``close()`` fixes the header and calls ``on_closed(path, start
    seconds)`` (which queues the job).
    """

    def __init__(self, path: str, sample_rate: int, reactor: Any, threadpool: ThreadPool,
                 on_closed: Callable[[str, float], Deferred] | None = None) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self._reactor = reactor
        self._pool = threadpool
        self._on_closed = on_closed
        self._batch: list[np.ndarray] = []
        self._batched = 0
        self._start: int | None = None
        self._next: int | None = None
        self.samples = 0
        self._chain: Deferred = deferToThreadPool(reactor, threadpool, self._create)
        self._chain.addErrback(self._write_failed)
        self.error: str | None = None

    def _create(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "wb") as handle:
            handle.write(_wav_header(self.sample_rate, 0))

    def write(self, pcm: np.ndarray, offset: int) -> None:
        if self._start is None:
            self._start = self._next = offset
        assert self._next is not None
        if offset > self._next:
            gap = min(offset - self._next, _MAX_GAP_SECONDS * self.sample_rate)
            self._batch.append(np.zeros(gap, dtype=np.int16))
            self._batched += gap
        elif offset < self._next:
            skip = self._next - offset
            pcm = pcm[skip:]
            offset = self._next
        self._batch.append(pcm)
        self._batched += len(pcm)
        self._next = offset + len(pcm)
        if self._batched >= self.sample_rate:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        data = np.concatenate(self._batch).astype("<i2").tobytes()
        self.samples += self._batched
        self._batch, self._batched = [], 0

        def append(_: object) -> None:
            return deferToThreadPool(self._reactor, self._pool, self._append, data)

        self._chain.addCallback(append)
        self._chain.addErrback(self._write_failed)

    def _append(self, data: bytes) -> None:
        with open(self.path, "ab") as handle:
            handle.write(data)

    def _write_failed(self, failure: Failure) -> None:
        self.error = failure.getErrorMessage()
        log.error("Cannot spool audio to {path}: {error}", path=self.path, error=self.error)

    def close(self) -> Deferred:
        self._flush()
        samples = self.samples

        def header(_: object) -> Deferred:
            def fix() -> None:
                with open(self.path, "r+b") as handle:
                    handle.write(_wav_header(self.sample_rate, samples))
            return deferToThreadPool(self._reactor, self._pool, fix)

        def closed(_: object) -> Deferred | None:
            if self.error is not None or self._on_closed is None:
                return None
            start = (self._start or 0) / self.sample_rate
            return self._on_closed(self.path, start)

        self._chain.addCallback(header)
        self._chain.addErrback(self._write_failed)
        self._chain.addCallback(closed)
        self._chain.addErrback(lambda f: log.failure("Cannot queue spooled leg {path}", f,
                                                     path=self.path))
        return self._chain


def make_deferrer(queue: PostCallQueue, spool_dir: str, reactor: Any,
                  threadpool: ThreadPool) -> Callable[[LegTranscriber, str], Spool]:
    """The router's hook for overloaded legs: spool to a file, then queue it."""

    def defer_leg(leg: LegTranscriber, reason: str) -> Spool:
        spec = leg.spec
        path = default_spool_path(spool_dir, spec.call_id, spec.leg)

        def queue_it(spooled: str, start: float) -> Deferred:
            return queue.enqueue_recording(
                spec.call_id, spec.leg, spooled, participant=spec.participant,
                language=spec.language, start=start, delete_after=True)

        return SpoolFile(path, spec.sample_rate, reactor, threadpool, queue_it)

    return defer_leg


# --------------------------------------------------------------------------
# The standard job handler.
# --------------------------------------------------------------------------


class _Collect:
    def __init__(self) -> None:
        self.finals: list[Hypothesis] = []
        self.error: SttError | None = None

    def hypothesis(self, hyp: Hypothesis) -> None:
        if hyp.is_final:
            self.finals.append(hyp)

    def failed(self, error: SttError) -> None:
        self.error = error

    def overloaded(self, reason: str) -> None:
        self.error = SttError("post-call", f"overloaded: {reason}")


class PostCallTranscriber:
    """Transcribes a queued WAV file with one provider, then delivers the finals.

    Results go out only when the whole file succeeded, so a retried job
    never publishes the same final twice. The vendor is the job's, else
    STT_POSTCALL_VENDOR, else the router's default; its breaker is honoured.
    """

    CHUNK_SECONDS = 1.0

    def __init__(self, router: SttRouter, reactor: Any, threadpool: ThreadPool,
                 vendor: str | None = None) -> None:
        self.router = router
        self._reactor = reactor
        self._pool = threadpool
        self.vendor = vendor

    def __call__(self, job: Job) -> Deferred:
        payload = job.payload
        for key in ("call_id", "leg", "path"):
            if not isinstance(payload.get(key), str):
                return _fail(FatalJobError("post-call", f"job {job.id} has no {key}"))
        d = deferToThreadPool(self._reactor, self._pool, self._read, payload["path"])
        d.addCallback(self._transcribe, job)
        return d

    @staticmethod
    def _read(path: str) -> tuple[np.ndarray, int]:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise FatalJobError("post-call", f"{path!r} does not exist") from None
        try:
            return read_wav(data)
        except AudioError as err:
            raise FatalJobError("post-call", f"{path!r}: {err}") from None

    def _transcribe(self, audio: tuple[np.ndarray, int], job: Job) -> Deferred:
        samples, rate = audio
        payload = job.payload
        name = payload.get("vendor") or self.vendor or self.router.settings.default_vendor
        provider = self.router.providers.get(name)
        if provider is None:
            return _fail(FatalJobError("post-call", f"vendor {name!r} is not configured"))
        breaker = self.router.breakers[name]
        if not breaker.allow():
            return _fail(SttError(name, "circuit breaker is open"))
        work = rate if rate in WEBRTC_RATES else 16000
        if work != rate:
            resampler = StreamResampler(rate, work)
            converted = np.concatenate([resampler.feed(samples), resampler.flush()])
            samples = np.clip(np.round(converted), -32768, 32767).astype(np.int16)
        spec = LegSpec(payload["call_id"], payload["leg"], work,
                       payload.get("language") or self.router.settings.default_language,
                       payload.get("participant"), live=False)
        collect = _Collect()
        try:
            stream = provider.open_stream(spec, collect)
        except SttError as err:
            breaker.record_failure()
            return _fail(err)
        start = int(round(float(payload.get("start") or 0.0) * work))
        step = int(self.CHUNK_SECONDS * work)

        def chunks():
            for position in range(0, len(samples), step):
                if collect.error is not None:
                    return
                stream.feed(samples[position:position + step], start + position)
                yield None

        d = cooperate(chunks()).whenDone()
        d.addCallback(lambda _: stream.finish())
        d.addCallback(self._finished, collect, job, name)
        return d

    def _finished(self, _: object, collect: _Collect, job: Job, name: str) -> Deferred | None:
        breaker = self.router.breakers[name]
        if collect.error is not None:
            breaker.record_failure()
            raise collect.error
        breaker.record_success()
        payload = job.payload
        for hyp in collect.finals:
            self.router._deliver(TranscriptResult(
                call_id=payload["call_id"], leg=payload["leg"],
                participant=payload.get("participant"), text=hyp.text, is_final=True,
                start=hyp.start, end=hyp.end, confidence=hyp.confidence,
                language=hyp.language, provider=name, words=hyp.words, post_call=True,
            ))
        if payload.get("delete_after"):
            return deferToThreadPool(self._reactor, self._pool, _remove, payload["path"])
        return None


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _fail(error: Exception) -> Deferred:
    d: Deferred = Deferred()
    d.errback(Failure(error))
    return d


"""Where a call's files go, and how the small ones are written.

Recordings (WAVs) are written by the media layer; this module names them
and writes the sidecars (call record, metadata log, transcript) off the
reactor thread, so a slow disk delays a file, never a SIP answer or an
RTP packet. Writes to one path keep their order and the latest content
wins; each lands atomically (temporary file, then rename), so a reader or
a crash never sees half a record.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger

log = Logger()

__all__ = ["RecordingFiles", "safe_filename", "SIDECAR_SUFFIXES"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")
_DIGEST = 12
#: Files of a call besides its leg WAVs; a base path is taken while any exists.
SIDECAR_SUFFIXES = (".json", ".wav", ".metadata.xml", ".transcript.json")

RunBlocking = Callable[..., Deferred]


def safe_filename(text: str, limit: int = 120) -> str:
    """A Call-ID or label as a file-name component: no separators, no dot-dot.

    A name that had to be changed (unsafe characters, leading dots, too
    long, empty) gets a digest of the original, so two Call-IDs never end
    up sharing files because they were sanitised or cut to the same text.
    """
    cleaned = _UNSAFE.sub("_", text).lstrip(".")
    if cleaned == text and 0 < len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST]
    room = limit - _DIGEST - 1
    if room <= 0:
        return digest[:max(limit, 1)]
    head = cleaned[:room]
    return f"{head}-{digest}" if head else digest


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename (runs in a worker thread)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def remove_files(paths: Iterable[str]) -> List[str]:
    """Delete what exists of ``paths``; returns what was removed (worker thread)."""
    removed = []
    for path in paths:
        try:
            os.remove(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


class _PathQueue:
    """The write in flight for one path and, at most, the next one."""

    __slots__ = ("pending", "waiters")

    def __init__(self) -> None:
        self.pending: Optional[bytes] = None
        self.waiters: List[Deferred] = []


class RecordingFiles:
    """The recording directory: base paths per call, sidecar writes, cleanup.

    ``run_blocking(f, *args)`` runs ``f`` in a worker thread and returns a
    Deferred (tests pass a synchronous runner); ``combine`` is the leg
    combiner, run the same way.
    """

    def __init__(self, directory: str, run_blocking: RunBlocking,
                 combine: Callable[..., Any]) -> None:
        self.directory = directory
        self.run_blocking = run_blocking
        self._combine = combine
        self._claimed: Set[str] = set()
        self._queues: Dict[str, _PathQueue] = {}
        self._jobs: Set[Deferred] = set()
        self.write_errors = 0

    # -- names -----------------------------------------------------------------
    def claim(self, call_id: str) -> str:
        """``RECORDING_DIR/<Call-ID>``, or ``<Call-ID>~2``, ``~3`` … when a live call
        or an earlier call's files use it (a Call-ID reused by a later call, or two
        dialogs sharing one): recordings are never overwritten."""
        name = safe_filename(call_id)
        candidate, n = os.path.join(self.directory, name), 1
        while candidate in self._claimed or any(
                os.path.exists(candidate + ext) for ext in SIDECAR_SUFFIXES):
            n += 1
            candidate = os.path.join(self.directory, f"{name}~{n}")
        self._claimed.add(candidate)
        return candidate

    def release(self, base_path: str) -> None:
        self._claimed.discard(base_path)

    # -- writing -----------------------------------------------------------------
    def write(self, path: str, data: bytes) -> Deferred:
        """Write ``data`` to ``path`` atomically, after any write to it in flight.

        Fires (never fails) once this content, or a later one, is on disk;
        a failure is logged with the path and counted.
        """
        done: Deferred = Deferred()
        queue = self._queues.get(path)
        if queue is not None:
            queue.pending = data  # the newer content supersedes the queued one
            queue.waiters.append(done)
            return done
        queue = self._queues[path] = _PathQueue()
        queue.waiters.append(done)
        self._start(path, data)
        return done

    def _start(self, path: str, data: bytes) -> None:
        queue = self._queues[path]
        waiters, queue.waiters = queue.waiters, []
        d = maybeDeferred(self.run_blocking, write_atomically, path, data)
        d.addErrback(self._write_failed, path)
        d.addBoth(self._written, path, waiters)

    def _write_failed(self, failure, path: str) -> None:
        self.write_errors += 1
        log.error("Could not write {path}: {error}", path=path, error=failure.getErrorMessage())

    def _written(self, _, path: str, waiters: List[Deferred]) -> None:
        queue = self._queues[path]
        if queue.pending is not None:
            data, queue.pending = queue.pending, None
            self._start(path, data)
        else:
            del self._queues[path]
            waiters += queue.waiters  # idle() may have joined meanwhile
        for waiter in waiters:
            waiter.callback(None)

    def idle(self) -> Deferred:
        """Fires when every write, removal and tracked job started so far is done."""
        waiting: List[Deferred] = []
        for job in self._jobs:
            d = Deferred()
            job.addBoth(lambda result, d=d: (d.callback(None), result)[1])
            waiting.append(d)
        for queue in self._queues.values():
            d: Deferred = Deferred()
            queue.waiters.append(d)
            waiting.append(d)
        return DeferredList(waiting) if waiting else succeed(None)

    def remove(self, paths: Iterable[str]) -> Deferred:
        """Delete files a refused call created; fires with the paths removed."""
        paths = list(paths)
        if not paths:
            return succeed([])
        d = maybeDeferred(self.run_blocking, remove_files, paths)

        def failed(failure):
            log.error("Could not remove {paths}: {error}", paths=paths,
                      error=failure.getErrorMessage())
            return []

        return self.track(d.addErrback(failed))

    def track(self, d: Deferred) -> Deferred:
        """Have :meth:`idle` wait for ``d`` too (a cleanup that starts with a close)."""
        if not d.called:
            self._jobs.add(d)
            d.addBoth(lambda result: (self._jobs.discard(d), result)[1])
        return d

    def combine(self, inputs, out_path: str, sample_rate: int) -> Deferred:
        """One WAV, one channel per leg, built in a worker thread."""
        return maybeDeferred(self.run_blocking, self._combine, inputs, out_path, sample_rate)

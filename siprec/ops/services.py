"""Small pieces of the service tree: parts stopped in order, thread pools as services.

Twisted's MultiService stops its children all at once; siprec's parts
depend on each other at shutdown (the publishers must outlive the speech
engines whose last transcripts they carry, the thread pools must outlive
everyone who writes files), so the tree stops them one after another, in
reverse order of starting.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer
from twisted.python.threadpool import ThreadPool

__all__ = ["OrderedMultiService", "ThreadPoolService"]


class OrderedMultiService(service.MultiService):
    """Children stop in reverse order of adding, each after the previous one is done."""

    @defer.inlineCallbacks
    def stopService(self):
        service.Service.stopService(self)
        for child in reversed(list(self)):
            yield defer.maybeDeferred(child.stopService)


class ThreadPoolService(service.Service):
    """A bounded worker pool started and stopped with the tree."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool
        self.setName(pool.name or "threads")

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()  # waits for jobs in progress; the queue was drained by the parts above

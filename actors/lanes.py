"""The storage lanes: single threads that run one account's storage work in order and hand the
results back to the event loop in batches."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("xmppd.lanes")

_STOP = object()


class StorageLanes:
    """`submit(account, call, args, done)` runs `call(storage, *args)` on the account's lane,
    after every job submitted before it for that account, and `done(outcome)` (the value, or
    the exception raised) on the loop, in submission order (routing.work.Lanes).

    Why not a ThreadPoolExecutor per lane: a login makes four or five storage calls, each of
    which took a Future, its lock and callbacks, and one wake-up of the loop through its
    self-pipe. Here a job is a tuple on a queue, and the loop is woken once for however many
    results are waiting: a lane appends its result and schedules one drain only when none is
    scheduled yet."""

    def __init__(self, storage: Any, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.storage = storage
        self.loop = loop
        self._queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(count)]
        self._results: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._drain_scheduled = False
        self._closed = False
        self._threads: list[threading.Thread | None] = [None] * count  # started when first used

    def submit(self, account: str, call: Callable, args: tuple,
               done: Callable[[Any], None]) -> None:  # fmt: skip
        if self._closed:
            raise RuntimeError("the storage lanes are shut down")
        index = hash(account) % len(self._queues)
        if self._threads[index] is None:
            self._start(index)
        self._queues[index].put((call, args, done))

    def depth(self) -> int:
        """Jobs waiting on the lanes (not yet running)."""
        return sum(q.qsize() for q in self._queues)

    def _start(self, index: int) -> None:
        thread = threading.Thread(
            target=self._run, args=(self._queues[index],), name=f"xmppd-lane{index}", daemon=True
        )
        self._threads[index] = thread
        thread.start()

    def _run(self, jobs: queue.SimpleQueue) -> None:
        storage, results = self.storage, self._results
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            call, args, done = job
            try:
                outcome = call(storage, *args)
            except BaseException as exc:  # noqa: BLE001 - the caller decides what it means
                outcome = exc
            # The append comes before the check: a drain that has already cleared the flag
            # either pops this result or is followed by the one scheduled here.
            results.append((done, outcome))
            if not self._drain_scheduled:
                self._drain_scheduled = True
                try:
                    self.loop.call_soon_threadsafe(self._drain)
                except RuntimeError:
                    return  # the loop has closed: the node is gone

    def _drain(self) -> None:
        self._drain_scheduled = False
        results = self._results
        while results:
            done, outcome = results.popleft()
            try:
                done(outcome)
            except Exception:
                log.exception("a storage result's callback failed")

    def shutdown(self) -> None:
        """Run what was submitted, then stop the threads (their last results are not drained
        if the loop has stopped)."""
        self._closed = True
        for jobs, thread in zip(self._queues, self._threads, strict=True):
            if thread is not None:
                jobs.put(_STOP)
                thread.join()

"""Admission control, dynamic batching and worker threads between the event loop and the engine.

One :class:`ModelPool` per model. ``submit`` admits a request or raises :class:`QueueFull` when the
pool already holds ``capacity`` requests (waiting + running; deterministic, whatever the task
scheduling). Worker tasks on the event loop take waiting requests, group student requests into
batches (up to ``max_batch``, waiting at most ``max_delay_s`` for the batch to fill) and run the
engine in a dedicated thread pool, so inference never blocks the loop. Chunks travel back to the
request's coroutine through its :class:`Job` (``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor

from service.metrics import Metrics
from service.types import AudioChunk, InputError, ModelKind, SpeechEngine, SynthesisRequest

log = logging.getLogger(__name__)

_DONE = object()


class QueueFull(Exception):
    """The pool holds as many requests as it may."""


class GenerationTimeout(Exception):
    """The request ran past its wall-clock limit (counted from admission)."""


class Job:
    """One admitted request. The worker thread emits chunks; the request's coroutine awaits them."""

    def __init__(self, request: SynthesisRequest, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.request = request
        self.cancel = threading.Event()
        self.cancel_reason: str | None = None
        self.admitted = time.perf_counter()
        self.deadline = self.admitted + timeout_s
        self.started: float | None = None
        self.first_audio: float | None = None
        self.finished: float | None = None
        self.audio_seconds = 0.0
        self._loop = loop
        self._items: asyncio.Queue[object] = asyncio.Queue()

    def stop(self, reason: str) -> None:
        """Ask the engine to stop this request (no-op once it has finished)."""
        if self.finished is None and not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def _emit(self, item: object) -> None:  # worker thread (or loop) side
        self._loop.call_soon_threadsafe(self._items.put_nowait, item)

    async def next_chunk(self) -> AudioChunk | None:
        """The next chunk, or None once the request is complete (or was stopped).

        Raises the engine's error (``InputError`` or anything else) or :class:`GenerationTimeout`.
        """
        remaining = self.deadline - time.perf_counter()
        try:
            if remaining <= 0:
                raise TimeoutError
            item = await asyncio.wait_for(self._items.get(), remaining)
        except TimeoutError:
            self.stop("timeout")
            limit = self.deadline - self.admitted
            raise GenerationTimeout(f"generation took longer than its limit ({limit:g} s)") from None
        if item is _DONE:
            return None
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, AudioChunk)
        return item


class ModelPool:
    def __init__(
        self,
        model: ModelKind,
        engine: SpeechEngine,
        executor: Executor,
        metrics: Metrics,
        *,
        queue_size: int,
        workers: int,
        max_batch: int = 1,
        max_delay_s: float = 0.0,
        timeout_s: float,
    ) -> None:
        self.model = model
        self.engine = engine
        self.executor = executor
        self.metrics = metrics
        self.workers = workers
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self.capacity = queue_size + workers * max_batch
        self._outstanding: set[Job] = set()
        self._waiting: asyncio.Queue[Job] = asyncio.Queue()
        self._arrived = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- event loop side -------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"parawave-{self.model}-{i}")
            for i in range(self.workers)
        ]

    async def stop(self) -> None:
        for job in list(self._outstanding):
            job.stop("shutdown")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    def submit(self, request: SynthesisRequest) -> Job:
        if len(self._outstanding) >= self.capacity:
            self.metrics.rejected.labels(self.model, "queue_full").inc()
            raise QueueFull(f"{self.model} queue is full ({self.capacity} requests)")
        assert self._loop is not None, "pool not started"
        job = Job(request, self._loop, self.timeout_s)
        self._outstanding.add(job)
        self._waiting.put_nowait(job)
        self._arrived.set()
        self._gauges()
        return job

    def _gauges(self) -> None:
        self.metrics.queue_depth.labels(self.model).set(self._waiting.qsize())
        self.metrics.in_flight.labels(self.model).set(len(self._outstanding))

    async def _next_batch(self) -> list[Job]:
        batch = [await self._waiting.get()]
        if self.max_batch > 1:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_delay_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._waiting.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
        self._gauges()
        return batch

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            live = [j for j in batch if not j.cancelled]
            try:
                if live:
                    await loop.run_in_executor(self.executor, self._run, live)
            finally:
                for job in batch:
                    if job.finished is None:  # skipped (stopped while waiting) or the run died
                        self._finish(job)
                    self._outstanding.discard(job)
                self._gauges()

    # -- worker thread side ----------------------------------------------------------------------

    def _run(self, jobs: list[Job]) -> None:
        start = time.perf_counter()
        for job in jobs:
            job.started = start
            self.metrics.queue_seconds.labels(self.model).observe(start - job.admitted)
        self.metrics.batch_size.labels(self.model).observe(len(jobs))
        try:
            if len(jobs) == 1:
                job = jobs[0]
                it: Iterator = self.engine.synthesize(job.request, job.cancel)
                try:
                    for chunk in it:
                        self._deliver(job, chunk)
                        if job.cancelled:
                            break
                finally:
                    _close(it)
            else:
                it = self.engine.synthesize_batch([j.request for j in jobs], [j.cancel for j in jobs])
                try:
                    for i, item in it:
                        job = jobs[i]
                        if isinstance(item, InputError):
                            self._finish(job, item)
                        elif job.finished is None:
                            self._deliver(job, item)
                        if all(j.finished is not None or j.cancelled for j in jobs):
                            break
                finally:
                    _close(it)
        except Exception as exc:  # handed to every unfinished request, whose handler reports it
            log.debug("%s engine raised %r on a batch of %d", self.model, exc, len(jobs))
            for job in jobs:
                if job.finished is None:
                    self._finish(job, exc)
        for job in jobs:
            if job.finished is None:
                self._finish(job)

    def _deliver(self, job: Job, chunk: AudioChunk) -> None:
        now = time.perf_counter()
        if job.first_audio is None:
            job.first_audio = now
            self.metrics.time_to_first_audio.labels(self.model).observe(now - job.admitted)
        job.audio_seconds += chunk.duration
        self.metrics.audio_seconds.labels(self.model).inc(chunk.duration)
        job._emit(chunk)
        if chunk.is_last:
            self._finish(job)

    def _finish(self, job: Job, error: BaseException | None = None) -> None:
        now = time.perf_counter()
        job.finished = now
        if job.cancelled:
            self.metrics.cancelled.labels(self.model, job.cancel_reason or "unknown").inc()
        elif error is None and job.started is not None and job.audio_seconds > 0:
            self.metrics.inference_seconds.labels(self.model).observe(now - job.started)
            self.metrics.rtf.labels(self.model).observe((now - job.started) / job.audio_seconds)
        try:
            job._emit(_DONE if error is None else error)
        except RuntimeError:  # the event loop has closed (shutdown): nobody is listening any more
            log.debug("dropped the end of a %s request after shutdown", self.model)


def _close(it: Iterator) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()

"""Dynamic batching: concurrent requests are stacked into one model call.

The model costs almost the same for 1 row as for 64, so under concurrency the throughput comes
from here. One asyncio task drains a queue. The window is adaptive: when the model is idle, the
first request is dispatched at once, with whatever else is already queued (no fixed wait that
would only add latency at low load); while a batch is being computed, new requests queue up and
together form the next batch. So batches grow with the load by themselves. ``max_wait_ms`` > 0
adds an optional fixed wait for more requests once a batch has its first one.

The model runs either in one worker thread (the event loop keeps accepting requests meanwhile:
right for models that release the GIL or take long, e.g. torch) or ``inline`` on the event loop
(right for models that answer a batch in a few milliseconds of GIL-holding Python, e.g. a
scikit-learn pipeline: no thread hop, no wake-up of the loop from another thread; requests that
arrive during the call wait in the socket buffers and form the next batch). Such a request takes a
few passes of the loop from its socket to the queue, so before an inline call the batcher yields to
the loop until two passes in a row bring nothing new (``settle``, at most 16 passes: some tens of
microseconds): without that, the first request read after a call started the next call alone and the
others waited for a whole call more — on the trained heart-disease pipeline (about 5 ms a call here)
batches averaged 2.7 rows under 8 concurrent clients instead of 8.
``fn`` may also be a coroutine function (the transformer batches its calls to the predictor). Then
``max_in_flight`` > 1 lets a further call start while earlier ones are still out, so that the remote
model finds its next batch already waiting when it finishes one, instead of idling while a result
travels back and the next request travels out. A model run in worker threads may have as many calls
out as the executor has threads (``max_in_flight`` up to that): the torch predictor on CPU runs two
single-threaded forward passes at once, which keep two cores busy where one pass with two OpenMP
threads waits at its barriers whenever another process on those cores preempts one of them.
When such a further call may go is ``dispatch``: ``"full"`` — only with a full batch (``max_batch_size`` rows), for a model whose calls are expensive
and want big batches (below saturation nothing changes: one call at a time); ``"eager"`` — as soon as
a slot is free, for a model whose calls are cheap next to the caller's own work per request: the
caller prepares the next requests while a call is out, instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from inference import admission, metrics

log = logging.getLogger(__name__)

BatchFn = Callable[[np.ndarray], Sequence[np.ndarray]]
SETTLE_PASSES = 16  # most loop passes an inline batch waits for requests already being handled


class DynamicBatcher:
    """Batch ``submit(rows)`` calls into ``fn(stacked_rows) -> (out_0, out_1, ...)`` calls.

    Every output of ``fn`` must have the batch as its first axis.
    """

    def __init__(self, fn: BatchFn, model_name: str, max_batch_size: int = 64, max_wait_ms: float = 0.0,
                 inline: bool = False, max_in_flight: int = 1, executor: ThreadPoolExecutor | None = None,
                 dispatch: str = "full", max_in_flight_units: int = 0, settle: int = SETTLE_PASSES):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if dispatch not in ("full", "eager"):
            raise ValueError(f"dispatch {dispatch!r}: full or eager")
        self.eager = dispatch == "eager"
        self._fn = fn
        self._is_async = asyncio.iscoroutinefunction(fn)  # e.g. a call to a remote predictor
        self._model = model_name
        self.max_batch_size = max_batch_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.inline = inline
        self.settle = settle if inline else 0
        self.max_in_flight = 1 if inline else max_in_flight  # inline calls block the loop: one at a time
        # ``executor``: share another batcher's worker threads, so that their model calls together never
        # take more threads than it has (the shared executor should have ``max_in_flight`` of them)
        self._executor = None if inline or self._is_async else executor or ThreadPoolExecutor(
            max_workers=self.max_in_flight, thread_name_prefix=f"batch-{model_name}")
        self._in_flight: set[asyncio.Task] = set()
        self._wake: asyncio.Event | None = None  # set on a new request and on a finished call
        self._batch_size = metrics.BATCH_SIZE.labels(model_name)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._carry = None
        self._owns_executor = executor is None
        self.batches: int = 0  # model calls so far (metrics have the distribution)
        # rows (tables) or decoded values (images) queued or in a call; past it a request is refused at once
        self.admission = admission.Admission(model_name, max_in_flight_units)

    def run_now(self, rows: np.ndarray) -> Sequence[np.ndarray]:
        """Call a synchronous model directly (warm-up, tests)."""
        return self._fn(rows)

    async def submit(self, rows: np.ndarray) -> Sequence[np.ndarray]:
        count = admission.units(rows)
        self.admission.enter(count)  # Overloaded (503) past the bound
        try:
            return await self._submit(rows)
        finally:
            self.admission.leave(count)

    async def _submit(self, rows: np.ndarray) -> Sequence[np.ndarray]:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._wake = asyncio.Event()
            # an empty context: the queue outlives the request that started it, and must not keep that
            # request's context variables (its rows, its client request) alive
            self._task = loop.create_task(self._drain(), context=contextvars.Context())
        future = loop.create_future()
        self._queue.put_nowait((rows, future))
        self._wake.set()
        return await future

    def _take_queued(self, batch: list, rows: int) -> int:
        """Move already-queued requests into ``batch`` up to the row limit; returns the new row count."""
        queue = self._queue
        while rows < self.max_batch_size and not queue.empty():
            item = queue.get_nowait()
            if rows + len(item[0]) > self.max_batch_size:
                self._carry = item  # would overflow: it opens the next batch
                break
            batch.append(item)
            rows += len(item[0])
        return rows

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """The next batch: a request carried over (or the first to arrive) plus what is queued behind it."""
        if self._carry is not None:
            first, self._carry = self._carry, None
        else:
            first = await self._queue.get()
        batch = [first]
        rows = self._take_queued(batch, len(first[0]))
        if self.inline and self.settle:
            rows = await self._settle(batch, rows)
        if self.max_wait > 0 and self._carry is None and rows < self.max_batch_size:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_wait
            while self._carry is None and rows < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                if rows + len(item[0]) > self.max_batch_size:
                    self._carry = item
                    break
                batch.append(item)
                rows = self._take_queued(batch, rows + len(item[0]))
        return batch

    async def _settle(self, batch: list, rows: int) -> int:
        """Before an inline call (which blocks the loop), let the requests the loop is already handling reach
        the queue: yield to the loop until two passes in a row add nothing, at most ``settle`` passes."""
        idle = 0
        for _ in range(self.settle):
            if self._carry is not None or rows >= self.max_batch_size:
                break
            await asyncio.sleep(0)
            taken = self._take_queued(batch, rows)
            idle = idle + 1 if taken == rows else 0
            rows = taken
            if idle == 2:
                break
        return rows

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        self._carry = None
        while True:
            batch = await self._collect()
            if self.max_in_flight > 1:
                await self._until_dispatchable(batch)
            batch = [(x, f) for x, f in batch if not f.cancelled()]
            if not batch:
                continue
            stacked = batch[0][0] if len(batch) == 1 else np.concatenate([x for x, _ in batch])
            self._batch_size.observe(len(stacked))
            self.batches += 1
            if self.max_in_flight > 1:
                task = loop.create_task(self._call(batch, stacked))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)
                continue
            await self._call(batch, stacked)

    async def _until_dispatchable(self, batch: list) -> None:
        """Wait until ``batch`` may go: nothing in flight, or a free slot and (unless eager) a full batch,
        topped up meanwhile."""
        rows = sum(len(x) for x, _ in batch)
        while self._in_flight:
            self._wake.clear()
            rows = self._take_queued(batch, rows)
            ready = self.eager or rows >= self.max_batch_size or self._carry is not None
            if ready and len(self._in_flight) < self.max_in_flight:
                return
            await self._wake.wait()
        self._take_queued(batch, rows)  # the slot freed: take what queued meanwhile

    def _finished(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        if self._wake is not None:
            self._wake.set()

    async def _call(self, batch: list, stacked: np.ndarray) -> None:
        """One model call for ``batch``; its results (or its error) go to the batch's futures."""
        try:
            if self._is_async:
                outputs = await self._fn(stacked)
            elif self.inline:
                outputs = self._fn(stacked)
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._fn, stacked)
        except Exception as err:  # one bad batch must not stop the queue
            log.exception("batched model call failed")
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        if len(batch) == 1:
            if not batch[0][1].done():
                batch[0][1].set_result(outputs)
            return
        start = 0
        for x, future in batch:
            end = start + len(x)
            if not future.done():
                future.set_result([out[start:end] for out in outputs])
            start = end

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._in_flight):
            task.cancel()
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

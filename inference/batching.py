"""Dynamic batching: concurrent requests are stacked into one model call.

The model costs almost the same for 1 row as for 64, so under concurrency the throughput comes
from here. One asyncio task drains a queue: it takes the first waiting request, keeps adding
requests until ``max_batch_size`` rows or ``max_wait_ms`` passed, runs the model once in a single
worker thread (the event loop keeps accepting meanwhile) and splits the outputs back by rows.
While a batch runs, new requests queue up and form the next batch. ``fn`` may also be a coroutine
function (the transformer batches its calls to the predictor the same way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from inference import metrics

log = logging.getLogger(__name__)

BatchFn = Callable[[np.ndarray], Sequence[np.ndarray]]


class DynamicBatcher:
    """Batch ``submit(rows)`` calls into ``fn(stacked_rows) -> (out_0, out_1, ...)`` calls.

    Every output of ``fn`` must have the batch as its first axis.
    """

    def __init__(self, fn: BatchFn, model_name: str, max_batch_size: int = 64, max_wait_ms: float = 2.0):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._fn = fn
        self._is_async = asyncio.iscoroutinefunction(fn)  # e.g. a call to a remote predictor
        self._model = model_name
        self.max_batch_size = max_batch_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._carry = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{model_name}")

    def run_now(self, rows: np.ndarray) -> Sequence[np.ndarray]:
        """Call a synchronous model directly (warm-up, tests)."""
        return self._fn(rows)

    async def submit(self, rows: np.ndarray) -> Sequence[np.ndarray]:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._drain())
        future = loop.create_future()
        await self._queue.put((rows, future))
        return await future

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """The next batch: a request carried over (or the first to arrive) plus what follows."""
        loop = asyncio.get_running_loop()
        first, self._carry = (self._carry, None) if self._carry is not None else (await self._queue.get(), None)
        batch, rows = [first], len(first[0])
        deadline = loop.time() + self.max_wait
        while rows < self.max_batch_size:
            if not self._queue.empty():
                item = self._queue.get_nowait()
            else:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if rows + len(item[0]) > self.max_batch_size:
                self._carry = item  # would overflow: it opens the next batch
                break
            batch.append(item)
            rows += len(item[0])
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        self._carry = None
        while True:
            batch = await self._collect()
            batch = [(x, f) for x, f in batch if not f.cancelled()]
            if not batch:
                continue
            stacked = batch[0][0] if len(batch) == 1 else np.concatenate([x for x, _ in batch])
            metrics.BATCH_SIZE.labels(self._model).observe(len(stacked))
            try:
                if self._is_async:
                    outputs = await self._fn(stacked)
                else:
                    outputs = await loop.run_in_executor(self._executor, self._fn, stacked)
            except Exception as err:  # one bad batch must not stop the queue
                log.exception("batched model call failed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            start = 0
            for x, future in batch:
                end = start + len(x)
                if not future.done():
                    future.set_result([out[start:end] for out in outputs])
                start = end

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

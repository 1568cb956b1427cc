import asyncio

import numpy as np
import pytest

from inference.batching import DynamicBatcher

pytestmark = pytest.mark.unit


def test_concurrent_requests_share_a_model_call_and_get_their_own_rows():
    calls = []

    def fn(rows):
        calls.append(len(rows))
        return rows * 2, rows.sum(axis=1)

    async def main():
        batcher = DynamicBatcher(fn, "m", max_batch_size=64, max_wait_ms=20)
        requests = [np.full((1 + i % 3, 2), float(i)) for i in range(20)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        batcher.close()
        return requests, results

    requests, results = asyncio.run(main())
    for rows, (doubled, sums) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(doubled, rows * 2)
        np.testing.assert_array_equal(sums, rows.sum(axis=1))
    assert sum(calls) == sum(len(r) for r in requests)
    assert len(calls) < len(requests)  # batched
    assert max(calls) <= 64


def test_batches_never_exceed_the_maximum():
    calls = []

    async def main():
        batcher = DynamicBatcher(lambda r: (calls.append(len(r)) or r,), "m", max_batch_size=5, max_wait_ms=20)
        out = await asyncio.gather(*(batcher.submit(np.ones((2, 1)) * i) for i in range(9)))
        batcher.close()
        return out

    out = asyncio.run(main())
    assert max(calls) <= 5 and sum(calls) == 18
    assert [float(o[0][0, 0]) for o in out] == [float(i) for i in range(9)]


def test_a_failing_batch_fails_its_requests_and_the_queue_keeps_working():
    state = {"fail": True}

    def fn(rows):
        if state["fail"]:
            state["fail"] = False
            raise RuntimeError("boom")
        return (rows,)

    async def main():
        batcher = DynamicBatcher(fn, "m", max_batch_size=8, max_wait_ms=0)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(np.ones((1, 1)))
        (again,) = await batcher.submit(np.ones((1, 1)) * 3)
        batcher.close()
        return again

    assert float(asyncio.run(main())[0, 0]) == 3.0


def test_an_idle_batcher_dispatches_at_once_and_what_queues_during_a_call_forms_the_next_batch():
    calls, release = [], None

    async def fn(rows):  # a model call that lasts until the test releases it
        calls.append(rows[:, 0].tolist())
        await release.wait()
        release.clear()
        return (rows * 10,)

    async def main():
        nonlocal release
        release = asyncio.Event()
        batcher = DynamicBatcher(fn, "m", max_batch_size=3, max_wait_ms=0)
        first = asyncio.ensure_future(batcher.submit(np.array([[1.0]])))
        for _ in range(3):
            await asyncio.sleep(0)
        assert calls == [[1.0]]  # no wait for company while the model was idle
        later = [asyncio.ensure_future(batcher.submit(np.array([[v]]))) for v in (2.0, 3.0, 4.0, 5.0)]
        for _ in range(3):
            await asyncio.sleep(0)
        assert calls == [[1.0]]  # queued behind the running call
        for _ in range(3):
            release.set()
            await asyncio.sleep(0.01)
        results = [float((await f)[0][0, 0]) for f in [first, *later]]
        batcher.close()
        return results

    assert asyncio.run(main()) == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert calls == [[1.0], [2.0, 3.0, 4.0], [5.0]]


def test_inline_batcher_runs_the_model_on_the_event_loop_thread():
    import threading

    threads = []

    def fn(rows):
        threads.append(threading.get_ident())
        return (rows + 1,)

    async def main():
        batcher = DynamicBatcher(fn, "m", max_batch_size=8, inline=True)
        out = await asyncio.gather(*(batcher.submit(np.full((1, 1), float(i))) for i in range(5)))
        batcher.close()
        return [float(o[0][0, 0]) for o in out]

    assert asyncio.run(main()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert set(threads) == {threading.get_ident()}

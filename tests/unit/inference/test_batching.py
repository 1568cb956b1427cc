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


@pytest.mark.parametrize(("passes", "calls"), [(16, [8]), (0, [2, 2, 2, 2])])
def test_an_inline_call_waits_for_the_requests_the_loop_is_already_handling(passes, calls):
    """Eight requests at once, each some loop passes from its socket to the batcher (0 to 3, as a server's
    request handling takes): with settling they share one call; without, every pass started a call of its own."""
    sizes = []

    def fn(rows):
        sizes.append(len(rows))
        return (rows * 2,)

    async def main():
        batcher = DynamicBatcher(fn, "m", max_batch_size=64, inline=True, settle=passes)

        async def request(i: int):
            for _ in range(i % 4):
                await asyncio.sleep(0)
            return await batcher.submit(np.full((1, 1), float(i)))

        out = await asyncio.gather(*(request(i) for i in range(8)))
        batcher.close()
        return [float(o[0][0, 0]) for o in out]

    assert asyncio.run(main()) == [2.0 * i for i in range(8)]
    assert sizes == calls


class RemoteModel:
    """An async model whose calls finish only when the test releases them."""

    def __init__(self):
        self.calls: list[int] = []  # rows per call, in start order
        self.release: list[asyncio.Event] = []
        self.out = 0
        self.most_out = 0

    async def call(self, rows):
        self.calls.append(len(rows))
        gate = asyncio.Event()
        self.release.append(gate)
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        await gate.wait()
        self.out -= 1
        if (rows < 0).any():
            raise RuntimeError("negative rows")
        return (rows * 10,)


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_second_call_goes_out_only_with_a_full_batch_and_never_more_than_max_in_flight():
    model = RemoteModel()

    async def main():
        batcher = DynamicBatcher(model.call, "m", max_batch_size=4, max_in_flight=2)
        loop = asyncio.get_running_loop()
        first = loop.create_task(batcher.submit(np.full((1, 1), 1.0)))
        await settle()
        assert model.calls == [1]  # idle: dispatched at once
        partial = [loop.create_task(batcher.submit(np.full((1, 1), 2.0 + i))) for i in range(3)]
        await settle()
        assert model.calls == [1]  # 3 rows queued, not a full batch: wait for the call out
        partial.append(loop.create_task(batcher.submit(np.full((1, 1), 5.0))))
        await settle()
        assert model.calls == [1, 4]  # full batch: a second call while the first is out
        third = [loop.create_task(batcher.submit(np.full((2, 1), 6.0 + i))) for i in range(2)]
        await settle()
        assert model.calls == [1, 4]  # full, but two calls out already
        model.release[0].set()
        await settle()
        assert model.calls == [1, 4, 4]
        assert (await first)[0].tolist() == [[10.0]]
        for gate in model.release[1:]:
            gate.set()
        second = [(await t)[0].tolist() for t in partial]
        later = [(await t)[0].tolist() for t in third]
        batcher.close()
        return second, later

    second, later = asyncio.run(main())
    assert second == [[[20.0]], [[30.0]], [[40.0]], [[50.0]]]
    assert later == [[[60.0], [60.0]], [[70.0], [70.0]]]
    assert model.most_out == 2


def test_eager_dispatch_sends_a_partial_batch_into_a_free_slot_but_never_more_than_max_in_flight():
    model = RemoteModel()

    async def main():
        batcher = DynamicBatcher(model.call, "m", max_batch_size=4, max_in_flight=2, dispatch="eager")
        loop = asyncio.get_running_loop()
        first = loop.create_task(batcher.submit(np.full((1, 1), 1.0)))
        await settle()
        assert model.calls == [1]
        second = loop.create_task(batcher.submit(np.full((1, 1), 2.0)))
        await settle()
        assert model.calls == [1, 1]  # a free slot: out at once, without waiting for a full batch
        queued = [loop.create_task(batcher.submit(np.full((1, 1), 3.0 + i))) for i in range(3)]
        await settle()
        assert model.calls == [1, 1]  # both slots taken: these three wait and form one batch
        model.release[0].set()
        await settle()
        assert model.calls == [1, 1, 3]
        for gate in model.release[1:]:
            gate.set()
        results = [(await t)[0].tolist() for t in (first, second, *queued)]
        batcher.close()
        return results

    assert asyncio.run(main()) == [[[10.0]], [[20.0]], [[30.0]], [[40.0]], [[50.0]]]
    assert model.most_out == 2


def test_dispatch_must_be_full_or_eager():
    with pytest.raises(ValueError, match="dispatch"):
        DynamicBatcher(RemoteModel().call, "m", max_in_flight=2, dispatch="sometimes")


def test_one_in_flight_keeps_calls_strictly_sequential():
    model = RemoteModel()

    async def main():
        batcher = DynamicBatcher(model.call, "m", max_batch_size=2, max_in_flight=1)
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(batcher.submit(np.full((1, 1), float(i)))) for i in range(5)]
        while not all(t.done() for t in tasks):
            await settle()
            for gate in model.release:
                gate.set()
        batcher.close()
        return [t.result()[0].tolist() for t in tasks]

    assert asyncio.run(main()) == [[[0.0]], [[10.0]], [[20.0]], [[30.0]], [[40.0]]]
    assert model.most_out == 1
    assert model.calls == [2, 2, 1]  # all five queued before the first call


def test_a_failing_call_in_flight_fails_only_its_own_batch():
    model = RemoteModel()

    async def main():
        batcher = DynamicBatcher(model.call, "m", max_batch_size=2, max_in_flight=2)
        loop = asyncio.get_running_loop()
        bad = loop.create_task(batcher.submit(np.full((1, 1), -1.0)))
        await settle()
        good = loop.create_task(batcher.submit(np.full((2, 1), 3.0)))
        await settle()
        assert model.calls == [1, 2] and model.out == 2
        for gate in model.release:
            gate.set()
        with pytest.raises(RuntimeError, match="negative rows"):
            await bad
        result = (await good)[0].tolist()
        batcher.close()
        return result

    assert asyncio.run(main()) == [[30.0], [30.0]]


def test_max_in_flight_must_be_positive_and_applies_to_async_models_only():
    with pytest.raises(ValueError, match="max_in_flight"):
        DynamicBatcher(RemoteModel().call, "m", max_in_flight=0)
    assert DynamicBatcher(lambda r: (r,), "m", max_in_flight=3, inline=True).max_in_flight == 1
    assert DynamicBatcher(RemoteModel().call, "m", max_in_flight=3).max_in_flight == 3
    threaded = DynamicBatcher(lambda r: (r,), "m", max_in_flight=3)
    assert threaded.max_in_flight == 3 and threaded._executor._max_workers == 3
    threaded.close()


def test_a_threaded_model_runs_full_batches_at_once_on_its_threads_and_a_partial_one_waits():
    import threading
    import time

    both = threading.Barrier(2, timeout=5)  # broken unless two calls are inside the model at the same time
    calls: list[int] = []

    def model(rows):
        calls.append(len(rows))
        if len(rows) == 2:
            both.wait()
        else:
            time.sleep(0.2)
        return (rows * 10,)

    async def main():
        batcher = DynamicBatcher(model, "m", max_batch_size=2, max_in_flight=2)
        loop = asyncio.get_running_loop()
        first = loop.create_task(batcher.submit(np.full((1, 1), 1.0)))  # idle: alone, and the model sleeps
        await settle()
        lone = loop.create_task(batcher.submit(np.full((1, 1), 2.0)))
        await asyncio.sleep(0.05)
        assert calls == [1]  # one row queued, not a full batch: it waits for the call out
        pairs = [loop.create_task(batcher.submit(np.full((1, 1), 3.0 + i))) for i in range(4)]
        results = [(await t)[0].tolist() for t in (first, lone, *pairs)]
        batcher.close()
        return results

    results = asyncio.run(main())
    assert results == [[[10.0]], [[20.0]], [[30.0]], [[40.0]], [[50.0]], [[60.0]]]
    # the lone row goes with the first pair while the first call sleeps; the next pair meets it in the model
    # (the barrier); the last row follows alone
    assert calls == [1, 2, 2, 1] and not both.broken

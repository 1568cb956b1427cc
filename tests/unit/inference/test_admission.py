import asyncio

import numpy as np
import pytest

from inference import admission
from inference.batching import DynamicBatcher


def test_units_are_rows_of_a_table_and_decoded_values_of_images():
    assert admission.units(np.zeros((7, 13))) == 7
    assert admission.units(np.zeros((3, 32, 28, 1))) == 3 * 32 * 28


def test_past_the_bound_a_request_is_refused_and_counted_but_alone_it_is_admitted():
    gate = admission.Admission("unit-test-model", limit=10)
    shed = admission.SHED.labels("unit-test-model", "in_flight_limit")
    before = shed._value.get()
    gate.enter(25)  # alone: admitted although over the bound
    with pytest.raises(admission.Overloaded) as refused:
        gate.enter(1)
    assert refused.value.reason.endswith("25 units of work in flight, the bound is 10: retry after 1 s")
    assert shed._value.get() == before + 1
    gate.leave(25)
    gate.enter(6)
    gate.enter(4)
    assert gate.in_flight == 10
    with pytest.raises(ValueError):
        admission.Admission("m", limit=-1)


def test_the_batcher_releases_its_units_when_a_call_ends_or_is_cancelled():
    release = asyncio.Event()

    async def slow(rows):
        await release.wait()
        return (rows,)

    async def scenario():
        batcher = DynamicBatcher(slow, "unit-test-batcher", max_batch_size=4, dispatch="eager",
                                 max_in_flight_units=3)
        first = asyncio.ensure_future(batcher.submit(np.zeros((2, 13))))
        await asyncio.sleep(0.01)
        with pytest.raises(admission.Overloaded):
            await batcher.submit(np.zeros((2, 13)))
        assert batcher.admission.in_flight == 2
        release.set()
        await first
        assert batcher.admission.in_flight == 0
        release.clear()
        waiting = asyncio.ensure_future(batcher.submit(np.zeros((1, 13))))
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert batcher.admission.in_flight == 0
        batcher.close()

    asyncio.run(scenario())

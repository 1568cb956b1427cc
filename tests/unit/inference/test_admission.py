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


def _post(path: str, length: int | None) -> dict:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


def test_bodies_in_flight_are_bounded_from_their_content_length_before_a_byte_is_read():
    reads: list[str] = []
    sent: dict[str, list] = {}

    async def scenario():
        release = asyncio.Event()

        async def app(scope, receive, send):  # the model server behind: reads the body, holds it until released
            await receive()
            reads.append(scope["path"])
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        async def call(gate, name: str, length: int | None, path: str = "/v2/models/m/infer"):
            async def receive():
                return {"type": "http.request", "body": b"x", "more_body": False}

            async def send(message):
                sent.setdefault(name, []).append(message)

            await gate(_post(path, length), receive, send)

        gate = admission.BodyAdmission(app, limit_bytes=1000, max_body_bytes=800, models=frozenset({"m"}))
        shed = admission.SHED.labels("m", "body_bytes_in_flight")
        before = shed._value.get()
        first = asyncio.create_task(call(gate, "first", 700))
        await asyncio.sleep(0)
        assert gate.in_flight == 700
        await call(gate, "over", 400)  # 700 + 400 > 1000: refused at once, its body never read
        assert sent["over"][0]["status"] == 503
        assert (b"retry-after", b"1") in sent["over"][0]["headers"]
        assert b"700 bytes of request bodies in flight, the bound is 1000" in sent["over"][1]["body"]
        assert reads == ["/v2/models/m/infer"]
        await call(gate, "chunked", None)  # no length: counts as the largest body allowed
        assert sent["chunked"][0]["status"] == 503
        under = asyncio.create_task(call(gate, "under", 300))
        await asyncio.sleep(0)
        assert gate.in_flight == 1000
        health = asyncio.create_task(call(gate, "health", None, path="/v2/health/ready"))  # not an inference body
        await asyncio.sleep(0)
        assert gate.in_flight == 1000
        release.set()
        await asyncio.gather(first, under, health)
        assert gate.in_flight == 0
        assert [sent[k][0]["status"] for k in ("first", "under", "health")] == [200, 200, 200]
        assert shed._value.get() == before + 2
        # a request alone is admitted although over the bound
        await call(admission.BodyAdmission(app, limit_bytes=10, max_body_bytes=800), "alone", 500)
        assert sent["alone"][0]["status"] == 200

    asyncio.run(scenario())

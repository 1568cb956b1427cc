import asyncio

import joblib
import numpy as np
import pytest
import torch
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest
from support import sample_bundles

import bundle
from inference import metrics
from inference.sklearn_predictor.model import SklearnPredictor
from inference.sklearn_predictor.settings import SklearnPredictorSettings
from inference.torch_predictor.model import (
    TorchPredictor,
    autocast_dtype,
    cpu_budget,
    normalise_pixels,
    pick_device,
    precision_gap,
)
from inference.torch_predictor.settings import TorchPredictorSettings
from inference.torch_predictor.staging import PinnedStaging

pytestmark = pytest.mark.unit


def request(name, array, datatype):
    tensor = InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=False)
    return InferRequest(model_name="m", infer_inputs=[tensor], request_id="r1")


async def call(model, payload):
    response, _ = await model(payload)
    return {out.name: out.as_numpy() for out in response.outputs}


def test_sklearn_predictor_batches_and_equals_predict_proba(heart_bundle, heart_schema):
    model = SklearnPredictor(SklearnPredictorSettings(bundle=str(heart_bundle), max_wait_ms=5))
    assert model.load() and model.ready
    rows = sample_bundles.heart_rows(heart_schema, 12, seed=3)
    expected = joblib.load(heart_bundle / "model.joblib").predict_proba(rows)
    before = metrics.BATCH_SIZE.labels("heart-disease")._sum.get()

    async def main():
        return await asyncio.gather(*(call(model, request("features", rows[i:i + 1], "FP64")) for i in range(12)))

    results = asyncio.run(main())
    got = np.concatenate([r["predict_proba"] for r in results])
    np.testing.assert_array_equal(got, expected)
    assert metrics.BATCH_SIZE.labels("heart-disease")._sum.get() - before == 12
    model.stop()


@pytest.mark.parametrize(("array", "datatype", "fragment"), [
    (np.zeros((1, 12)), "FP64", "shape [1, 12] does not match [-1, 13]"),
    (np.full((1, 13), np.inf), "FP64", "contains inf"),
    (np.zeros((1, 13), dtype=object).astype(str).astype(object), "BYTES", "datatype BYTES is not numeric"),
])
def test_sklearn_predictor_rejects_bad_tensors(heart_bundle, array, datatype, fragment):
    model = SklearnPredictor(SklearnPredictorSettings(bundle=str(heart_bundle)))
    model.load()
    with pytest.raises(InvalidInput, match=None) as err:
        asyncio.run(call(model, request("features", array, datatype)))
    assert fragment in str(err.value)
    model.stop()


def test_torch_predictor_returns_the_modules_logits_and_embedding(pneumonia_bundle):
    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu"))
    assert model.load() and model.ready
    x = np.random.default_rng(0).normal(size=(3, 1, 24, 20)).astype(np.float32)
    out = asyncio.run(call(model, request("input", x, "FP32")))
    module = torch.jit.load(str(pneumonia_bundle / "model.pt"))
    with torch.inference_mode():
        logits, embedding = module(torch.from_numpy(x))
    np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["embedding"], embedding.numpy(), rtol=1e-5, atol=1e-6)
    assert out["embedding"].shape == (3, 16)
    with pytest.raises(InvalidInput, match="does not match"):
        asyncio.run(call(model, request("input", np.zeros((1, 3, 24, 20), np.float32), "FP32")))
    model.stop()


def test_torch_predictor_normalises_uint8_pixels_itself(pneumonia_bundle):
    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu"))
    assert model.load()
    pixels = np.random.default_rng(1).integers(0, 256, size=(2, 1, 24, 20), dtype=np.uint8)
    out = asyncio.run(call(model, request("input", pixels, "UINT8")))
    # the bundle's contract written out: mean 0.5, std 0.25
    x = ((pixels.astype(np.float32) / 255.0) - np.float32(0.5)) / np.float32(0.25)
    module = torch.jit.load(str(pneumonia_bundle / "model.pt"))
    with torch.inference_mode():
        logits, embedding = module(torch.from_numpy(x))
    np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["embedding"], embedding.numpy(), rtol=1e-5, atol=1e-6)
    # the same rows as FP32, already normalised, give the same outputs
    same = asyncio.run(call(model, request("input", x, "FP32")))
    np.testing.assert_allclose(same["logits"], out["logits"], rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidInput, match="does not match"):
        asyncio.run(call(model, request("input", np.zeros((1, 3, 24, 20), np.uint8), "UINT8")))
    model.stop()


def test_normalise_pixels_values():
    pixels = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 1, 1, 3)
    out = normalise_pixels(pixels, torch.full((1, 1, 1), 0.5), torch.full((1, 1, 1), 0.25))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.ravel().numpy(), [-2.0, -1.2, 2.0], atol=1e-6)


@pytest.mark.parametrize(("cpu_max", "cores", "expected"), [
    ("max 100000\n", 8, 8), ("200000 100000\n", 8, 2), ("150000 100000\n", 8, 2), ("50000 100000\n", 8, 1),
    ("400000 100000\n", 2, 2), (None, 3, 3), ("garbage\n", 4, 4)])
def test_cpu_budget_is_affinity_capped_by_the_cgroup_quota(tmp_path, monkeypatch, cpu_max, cores, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    assert cpu_budget(path) == expected


def test_torch_predictor_threads_default_to_the_cpu_budget(pneumonia_bundle, monkeypatch):
    previous = torch.get_num_threads()
    monkeypatch.setattr("inference.torch_predictor.model.cpu_budget", lambda: 1)
    try:
        model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu"))
        assert model.load() and model.num_threads == 1 and torch.get_num_threads() == 1
        model.stop()
        model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu", num_threads=2))
        assert model.load() and model.num_threads == 2 and torch.get_num_threads() == 2
        model.stop()
    finally:
        torch.set_num_threads(previous)


def test_device_choice_uses_cuda_only_when_present():
    device = pick_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert autocast_dtype(torch.device("cpu"), "bf16") is None  # CPU serves fp32 unless told otherwise
    assert autocast_dtype(torch.device("cpu"), "bf16", allow_cpu=True) == torch.bfloat16
    assert autocast_dtype(torch.device("cpu"), "fp16", allow_cpu=True) is None
    assert autocast_dtype(torch.device("cuda"), "fp16") == torch.float16
    assert autocast_dtype(torch.device("cuda"), "fp32") is None
    assert TorchPredictorSettings().precision == "fp32"  # the threshold and drift reference are fp32's


def test_a_bundle_of_another_workload_or_framework_is_refused(pneumonia_bundle, heart_bundle):
    with pytest.raises(bundle.MalformedFile, match="bundle.json: a pneumonia bundle, not heart-disease"):
        SklearnPredictor(SklearnPredictorSettings(bundle=str(pneumonia_bundle))).load()
    with pytest.raises(bundle.MalformedFile, match="bundle.json: holds a pytorch model, not sklearn"):
        SklearnPredictor(SklearnPredictorSettings(bundle=str(pneumonia_bundle), workload="pneumonia")).load()
    with pytest.raises(bundle.MalformedFile, match="holds a sklearn model, not pytorch"):
        TorchPredictor(TorchPredictorSettings(bundle=str(heart_bundle), workload="heart-disease", device="cpu")).load()


def test_concurrent_requests_each_get_their_own_rows(pneumonia_bundle):
    """The rows travel from preprocess to predict in a context variable: interleaved requests of both
    datatypes never see each other's."""
    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu"))
    assert model.load()
    rng = np.random.default_rng(2)
    batches = [rng.integers(0, 256, size=(1 + i % 3, 1, 24, 20), dtype=np.uint8) for i in range(8)]

    async def main():
        requests = [request("input", b, "UINT8") if i % 2 else
                    request("input", ((b / 255.0 - 0.5) / 0.25).astype(np.float32), "FP32")
                    for i, b in enumerate(batches)]
        return await asyncio.gather(*(call(model, r) for r in requests))

    results = asyncio.run(main())
    module = torch.jit.load(str(pneumonia_bundle / "model.pt"))
    for pixels, out in zip(batches, results, strict=True):
        x = ((pixels.astype(np.float32) / 255.0) - np.float32(0.5)) / np.float32(0.25)
        with torch.inference_mode():
            logits, _ = module(torch.from_numpy(x))
        np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-4, atol=1e-5)
    model.stop()


def _fp32_answers(bundle_dir, x):
    module = torch.jit.load(str(bundle_dir / "model.pt"))
    with torch.inference_mode():
        logits, embedding = module(torch.from_numpy(x))
    return logits.numpy(), embedding.numpy()


def test_bf16_is_served_only_when_it_matches_fp32_on_the_reference_batch(pneumonia_bundle):
    """The GPU's autocast branch, forced on CPU: bf16 within the tolerance is served (and its answers are
    bf16's, not fp32's); beyond it the predictor serves fp32."""
    x = np.random.default_rng(4).normal(size=(3, 1, 24, 20)).astype(np.float32)
    logits32, embedding32 = _fp32_answers(pneumonia_bundle, x)

    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu", precision="bf16",
                                                  autocast_on_cpu=True, precision_tolerance=0.05))
    assert model.load() and model.precision_served == "bf16" and model.amp_dtype == torch.bfloat16
    check = model.precision_check
    assert check["agrees"] and 0 < check["probability_gap"] <= 0.05 and check["embedding_gap"] <= 0.25
    out = asyncio.run(call(model, request("input", x, "FP32")))
    assert not np.array_equal(out["logits"], logits32)  # bf16 arithmetic ran
    np.testing.assert_allclose(out["logits"], logits32, atol=0.1)
    model.stop()

    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu", precision="bf16",
                                                  autocast_on_cpu=True, precision_tolerance=0.0))
    assert model.load() and model.precision_served == "fp32" and model.amp_dtype is None
    assert model.precision_check["agrees"] is False and model.precision_check["probability_gap"] > 0
    out = asyncio.run(call(model, request("input", x, "FP32")))
    np.testing.assert_allclose(out["logits"], logits32, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["embedding"], embedding32, rtol=1e-5, atol=1e-6)
    model.stop()


def test_precision_gap_measures_probabilities_and_relative_embeddings():
    reference = (np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]))
    candidate = (np.array([[0.0, np.log(3.0)]]), np.array([[3.0, 4.5]]))
    prob, emb = precision_gap(reference, candidate)
    assert prob == pytest.approx(0.25) and emb == pytest.approx(0.1)


def _answers_pixels_as_the_saved_graph(model, bundle_dir, seed: int, rows: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(rows, 1, 24, 20), dtype=np.uint8)
    out = asyncio.run(call(model, request("input", pixels, "UINT8")))
    logits, embedding = _fp32_answers(bundle_dir, ((pixels / 255.0 - 0.5) / 0.25).astype(np.float32))
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["embedding"], embedding, rtol=1e-5, atol=1e-5)


def test_channels_last_module_and_input_give_the_same_answers(pneumonia_bundle):
    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu", channels_last=True))
    assert model.load() and model.channels_last
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.module.parameters() if p.dim() == 4)
    _answers_pixels_as_the_saved_graph(model, pneumonia_bundle, seed=5, rows=2)
    model.stop()


def test_on_cpu_a_checked_frozen_channels_last_graph_is_served_and_cam_keeps_the_saved_one(pneumonia_bundle):
    import warnings

    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert model.load() and model.channels_last
    assert not [w for w in caught if "torch.jit" in str(w.message)]  # the bundle's format: no deprecation noise
    assert model.served_module is not model.module and model.freeze_check["agrees"]
    assert model.freeze_check["probability_gap"] <= 1e-5 and model.freeze_check["embedding_gap"] <= 1e-4
    assert "prim::GetAttr" not in str(model.served_module.graph)  # weights inlined: frozen
    _answers_pixels_as_the_saved_graph(model, pneumonia_bundle, seed=6, rows=5)
    model.stop()

    plain = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu", freeze=False))
    assert plain.load() and plain.served_module is plain.module and not plain.channels_last
    assert plain.freeze_check is None
    plain.stop()


def test_on_cpu_forward_workers_fill_the_cores_and_full_batches_run_at_once(pneumonia_bundle, monkeypatch):
    import threading

    import inference.torch_predictor.model as torch_model

    monkeypatch.setattr(torch_model, "cpu_budget", lambda: 4)
    defaults = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu", num_threads=2))
    assert defaults.load() and defaults.forward_workers == 2 and defaults.batcher.max_in_flight == 2
    defaults.stop()

    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu", num_threads=1,
                                                  forward_workers=2, max_batch_size=2))
    assert model.load() and model.forward_workers == 2
    both = threading.Barrier(2, timeout=10)  # broken unless two full batches are in the model at once
    served, inside = model.served_module, []

    def meeting(x):
        inside.append(threading.current_thread().name)
        if len(x) == 2:
            both.wait()
        return served(x)

    model.served_module = meeting
    pixels = np.random.default_rng(8).integers(0, 256, size=(9, 1, 24, 20), dtype=np.uint8)

    async def main():
        return await asyncio.gather(*(call(model, request("input", pixels[i:i + 1], "UINT8")) for i in range(9)))

    results = asyncio.run(main())
    logits, _ = _fp32_answers(pneumonia_bundle, ((pixels / 255.0 - 0.5) / 0.25).astype(np.float32))
    np.testing.assert_allclose(np.concatenate([r["logits"] for r in results]), logits, rtol=1e-5, atol=1e-5)
    assert not both.broken and len(set(inside)) == 2  # two worker threads, met in the model
    model.stop()


def _saved_graph_served(model, pneumonia_bundle):
    assert model.load() and model.served_module is model.module and model.freeze_check["agrees"] is False
    x = np.random.default_rng(7).normal(size=(2, 1, 24, 20)).astype(np.float32)
    out = asyncio.run(call(model, request("input", x, "FP32")))
    logits, _ = _fp32_answers(pneumonia_bundle, x)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-6)
    model.stop()


def test_a_frozen_graph_that_answers_otherwise_is_not_served(pneumonia_bundle, monkeypatch):
    def off_by_a_little(module):
        def forward(x):
            logits, embedding = module(x)
            return logits + torch.tensor([0.0, 1e-3]), embedding
        return forward

    monkeypatch.setattr(torch.jit, "freeze", off_by_a_little)
    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu"))
    _saved_graph_served(model, pneumonia_bundle)
    assert 0 < model.freeze_check["probability_gap"] < 1e-3 and model.freeze_check["embedding_gap"] == 0


def test_a_graph_that_cannot_be_frozen_is_served_as_saved(pneumonia_bundle, monkeypatch):
    def refuses(module):
        raise RuntimeError("attribute 'steps' is mutated in forward")

    monkeypatch.setattr(torch.jit, "freeze", refuses)
    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu"))
    _saved_graph_served(model, pneumonia_bundle)
    assert model.freeze_check["error"] == "attribute 'steps' is mutated in forward"


def test_warm_up_runs_sizes_1_and_the_maximum_of_both_inputs_on_the_serving_thread(pneumonia_bundle, monkeypatch):
    import threading

    calls = []
    forward = TorchPredictor._forward

    def recording(self, batch, pixels=False, **kw):
        calls.append((threading.current_thread().name, batch.dtype.name, len(batch)))
        return forward(self, batch, pixels, **kw)

    monkeypatch.setattr(TorchPredictor, "_forward", recording)
    model = TorchPredictor(TorchPredictorSettings(bundle=str(pneumonia_bundle), device="cpu", max_batch_size=6))
    assert model.load()
    # warm-up, after the freeze check's passes of its probe batch (the saved graph once, the frozen copy 3 times)
    assert [(dtype, rows) for _, dtype, rows in calls[:4]] == [("uint8", 6)] * 4
    assert sorted((dtype, rows) for _, dtype, rows in calls[4:]) == [
        ("float32", 1), ("float32", 6), ("uint8", 1), ("uint8", 6)]
    served = []
    model.batcher._executor.submit(lambda: served.append(threading.current_thread().name)).result()
    assert {name for name, _, _ in calls} == set(served) and served[0] != threading.current_thread().name
    model.stop()


def test_pinned_staging_reuses_one_buffer_per_dtype_and_copies_oversize_batches_plainly():
    staging = PinnedStaging(torch.device("cpu"), 4, (1, 2, 2), pin=torch.cuda.is_available())
    assert staging.buffers[np.dtype(np.uint8)].is_pinned() == torch.cuda.is_available()
    first = np.arange(8, dtype=np.uint8).reshape(2, 1, 2, 2)
    first.setflags(write=False)  # wire bytes are read-only: staging copies them, never writes into them
    got = staging.to_device(first)
    assert torch.equal(got, torch.from_numpy(first.copy()))
    assert got.data_ptr() == staging.buffers[np.dtype(np.uint8)].data_ptr()  # the buffer's head, no new memory
    oversize = np.ones((5, 1, 2, 2), dtype=np.float32)
    assert torch.equal(staging.to_device(oversize), torch.ones(5, 1, 2, 2))
    other = np.ones((1, 1, 3, 3), dtype=np.float32)
    assert staging.to_device(other).shape == (1, 1, 3, 3)

"""Every pass the torch predictor makes runs on its one serving thread, warm-up and load-time checks included:
a pass on a second thread (the load-time Grad-CAM check ran on the main thread) gives that thread an OpenMP
team of its own, after which the serving thread's passes ran on 0.8 of 2 cores, at 55% of their speed."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from support import sample_bundles

from inference.torch_predictor import gradcam
from inference.torch_predictor.model import TorchPredictor
from inference.torch_predictor.settings import TorchPredictorSettings

pytestmark = pytest.mark.unit


def test_load_warm_up_checks_predictions_and_cams_all_run_on_the_serving_thread(tmp_path, monkeypatch):
    folder = sample_bundles.write_pneumonia(tmp_path, 32, 28, 1, module=sample_bundles.opacity_net(1, 4),
                                            embedding_dim=4)
    threads: list[tuple[str, int]] = []

    def recorded(name, fn):
        def wrapper(*args, **kwargs):
            threads.append((name, threading.get_ident()))
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(gradcam, "check", recorded("check", gradcam.check))
    monkeypatch.setattr(gradcam, "cam", recorded("cam", gradcam.cam))
    monkeypatch.setattr(TorchPredictor, "_forward", recorded("forward", TorchPredictor._forward))
    model = TorchPredictor(TorchPredictorSettings(model_name="pneumonia", bundle=str(folder), device="cpu",
                                                  max_batch_size=8, precision="bf16", autocast_on_cpu=True))
    model.load()
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 1, 32, 28), dtype=np.uint8)
    tensor = InferInput("input", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels, binary_data=False)
    request = InferRequest(model_name="pneumonia", infer_inputs=[tensor],
                           request_outputs=[RequestedOutput("logits"), RequestedOutput("cam")])
    response, _ = asyncio.run(model(request))
    out = {o.name: o.as_numpy() for o in response.outputs}
    assert out["cam"].shape[0] == 3 and np.isfinite(out["logits"]).all()

    names = {name for name, _ in threads}
    assert names == {"check", "forward", "cam"}, names
    serving = {ident for _, ident in threads}
    assert len(serving) == 1, threads  # one thread for every pass
    assert serving != {threading.main_thread().ident}
    assert serving == {model.batcher._executor._threads.copy().pop().ident}

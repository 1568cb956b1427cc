"""The PyTorch predictor as a ``kserve.Model``.

V2 input: ``input`` FP32 ``[N, C, H, W]``, already normalised (the transformer's job).
V2 outputs: ``logits`` FP32 ``[N, 2]`` and ``embedding`` FP32 ``[N, D]`` (what the drift sidecar needs).
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
from kserve.protocol.infer_type import InferRequest, InferResponse

from inference import bundle_source
from inference.base_model import CountedModel
from inference.batching import DynamicBatcher
from inference.errors import RejectedInput
from inference.predictor_io import response, single_tensor
from inference.torch_predictor.settings import TorchPredictorSettings

log = logging.getLogger(__name__)


def pick_device(requested: str):
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast_dtype(device, precision: str):
    """None on CPU or fp32; bf16/fp16 on GPU."""
    import torch

    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class TorchPredictor(CountedModel):
    def __init__(self, settings: TorchPredictorSettings):
        super().__init__(settings.model_name)
        self.settings = settings
        self.module = None
        self.device = None
        self.amp_dtype = None
        self.config: dict = {}
        self.input_shape: tuple[int, int, int] = (0, 0, 0)
        self.batcher: DynamicBatcher | None = None

    def load(self) -> bool:
        import torch

        folder = bundle_source.resolve(self.settings.bundle, self.settings.workload)
        manifest = bundle_source.manifest(folder)
        if manifest.framework != "pytorch":
            raise ValueError(f"{folder} holds a {manifest.framework} model, not PyTorch")
        self.config = json.loads((folder / "model_config.json").read_text())
        image = json.loads((folder / manifest.schema_file).read_text())["image"]
        self.input_shape = (int(image["channels"]), int(image["height"]), int(image["width"]))
        self._class_labels = [str(c) for c in self.config.get("classes")
                              or range(int(self.config.get("num_classes", 2)))]
        if self.settings.num_threads:
            torch.set_num_threads(self.settings.num_threads)
        self.device = pick_device(self.settings.device)
        self.amp_dtype = autocast_dtype(self.device, self.settings.precision)
        self.module = torch.jit.load(str(folder / manifest.model_file), map_location=self.device).eval()
        self.batcher = DynamicBatcher(self._forward, self.name, self.settings.max_batch_size, self.settings.max_wait_ms)
        logits, embedding = self.batcher.run_now(np.zeros((1, *self.input_shape), dtype=np.float32))
        dim = self.config.get("embedding_dim")
        if logits.shape != (1, self.config.get("num_classes", 2)) or (dim and embedding.shape != (1, dim)):
            raise RuntimeError(f"warm-up gave logits {logits.shape}, embedding {embedding.shape}; "
                               f"model_config.json says {self.config}")
        self.ready = True
        log.info("loaded %s v%s from %s on %s (autocast %s)", manifest.model_name, manifest.model_version, folder,
                 self.device, self.amp_dtype)
        return self.ready

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if not batch.flags.writeable:  # one request's bytes straight from the wire (gRPC or binary REST)
            batch = batch.copy()
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            if self.amp_dtype is not None:
                with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
                    logits, embedding = self.module(x)
            else:
                logits, embedding = self.module(x)
            return (logits.float().cpu().numpy(), embedding.float().cpu().numpy())

    def get_input_types(self) -> list[dict]:
        return [{"name": "input", "datatype": "FP32", "shape": [-1, *self.input_shape]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": "logits", "datatype": "FP32", "shape": [-1, self.config.get("num_classes", 2)]},
                {"name": "embedding", "datatype": "FP32", "shape": [-1, self.config.get("embedding_dim", -1)]}]

    async def preprocess(self, payload: InferRequest, headers=None) -> InferRequest:
        start = time.perf_counter()
        rows = single_tensor(payload, self.name, self.input_shape, self.settings.max_rows_per_request,
                             dtype=np.float32)
        if np.isnan(rows).any():
            raise RejectedInput(self.name, "non_finite", f"input '{payload.inputs[0].name}': contains NaN")
        payload._clinops_rows = rows
        self.metrics.preprocess.observe(time.perf_counter() - start)
        return payload

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        start = time.perf_counter()
        logits, embedding = await self.batcher.submit(payload._clinops_rows)
        done = time.perf_counter()
        self.metrics.predict.observe(done - start)
        self.metrics.count_classes(self._class_labels, logits.argmax(axis=1))
        result = response(payload, self.name, {"logits": logits, "embedding": embedding})
        self.metrics.postprocess.observe(time.perf_counter() - done)
        return result

    def stop(self):
        if self.batcher is not None:
            self.batcher.close()
        super().stop()

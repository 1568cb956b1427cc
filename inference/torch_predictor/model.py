"""The PyTorch predictor as a ``kserve.Model``.

V2 input ``input`` ``[N, C, H, W]``, either
- UINT8 pixels (what the transformer sends by default): the predictor scales them to [0, 1] and
  normalises them by the bundle's image schema mean/std, in torch on the model's device
  (``x / 255``, ``- mean``, ``/ std`` in float32: the same values as the transformer's numpy step), or
- FP32 (other numeric types are cast to FP32) already normalised: passed to the model as is.
UINT8 and FP32 requests are batched separately (never mixed in one forward pass) on the same worker
threads: one on CUDA; on CPU ``forward_workers`` (default: the cores this process may use over its torch
threads), a further pass starting only with a full batch.
V2 outputs: ``logits`` FP32 ``[N, 2]`` and ``embedding`` FP32 ``[N, D]`` (what the drift sidecar needs);
on request (the V2 request's ``outputs``) ``cam`` FP32 ``[N, H, W]``, the Grad-CAM map of the positive
class in [0, 1] (:mod:`inference.torch_predictor.gradcam`; fp32, in batches of its own), computed only
when asked for.

Frozen graph (CPU default, ``freeze``): the predictor serves ``torch.jit.freeze`` of the saved graph in
channels_last (weights inlined, batch norm folded into the convolutions; on the EfficientNet-B0 champion
on 2 CPU cores about 1.7x the images/s of the saved graph at batch 32). It is served only when, at load,
its answers on plausible images (mid-grey with mild noise) match the saved graph's (``freeze_check``:
class probabilities within ``FREEZE_PROBABILITY_GAP``, embeddings within ``FREEZE_EMBEDDING_GAP``
relative to their norm); otherwise the saved graph is served and the gap is logged. Grad-CAM always runs on the saved graph (it needs the
trunk's maps and their gradients).

Precision policy: the decision threshold and the drift reference were computed in fp32, so fp32 is
served by default (on a GPU with TF32 matmuls and convolutions, ``allow_tf32``). bf16 or fp16 autocast
is served only when, at load, its answers on the plausible images the freeze check uses (mid-grey with
mild noise, normalised as served) match fp32's: every class probability within ``precision_tolerance`` (default 0.01) and every
embedding within 5× that relative to its norm. Otherwise the predictor serves fp32 and logs the
measured difference (``precision_served`` and ``precision_check`` hold the outcome).

On a GPU: the module and its input are ``channels_last``; batches reach the device through pinned
host buffers (:mod:`inference.torch_predictor.staging`); warm-up runs batch sizes 1 and
``max_batch_size`` of both input types on the serving thread itself, since CUDA libraries (cuBLAS,
cuDNN) create their handles and workspaces per thread and the first request must not pay for them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
import warnings
from contextvars import ContextVar
from pathlib import Path

import numpy as np
from kserve.protocol.infer_type import InferRequest, InferResponse

from bundle import MalformedFile, TorchModelConfig, layout
from bundle.schema import ImageSchema
from inference import bundle_source
from inference.base_model import CountedModel
from inference.batching import DynamicBatcher
from inference.errors import RejectedInput
from inference.predictor_io import response, single_tensor
from inference.reasons import Reason
from inference.torch_predictor import gradcam
from inference.torch_predictor.settings import TorchPredictorSettings
from inference.torch_predictor.staging import PinnedStaging

log = logging.getLogger(__name__)
# one request's rows and the batcher for their datatype, from preprocess to predict (KServe runs both in
# the request's own task)
_ROWS: ContextVar[tuple[np.ndarray, DynamicBatcher]] = ContextVar("clinops_torch_rows")


FREEZE_PROBABILITY_GAP = 1e-5  # the same answers up to float32 rounding in a different order of operations
FREEZE_EMBEDDING_GAP = 1e-4


@contextlib.contextmanager
def _torchscript_deprecation_quiet():
    """TorchScript is the bundle's model format (the training→serving contract): torch's FutureWarnings that
    ``torch.jit.load``/``freeze`` are deprecated say nothing an operator can act on at every start."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def pick_device(requested: str):
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast_dtype(device, precision: str, allow_cpu: bool = False):
    """The autocast dtype asked for: None for fp32; bf16/fp16 on GPU; on CPU only bf16 and only when
    ``allow_cpu`` (CPU autocast exists to test the GPU path: most CPUs gain nothing from it)."""
    import torch

    if precision == "fp32":
        return None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cuda":
        return dtype
    return dtype if allow_cpu and dtype == torch.bfloat16 else None


def precision_gap(reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray]
                  ) -> tuple[float, float]:
    """(largest class-probability difference, largest embedding difference relative to its norm) between
    two (logits, embedding) answers to the same batch."""
    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    prob = float(np.abs(softmax(candidate[0]) - softmax(reference[0])).max())
    norm = np.maximum(np.linalg.norm(reference[1], axis=1), 1e-12)
    emb = float((np.linalg.norm(candidate[1] - reference[1], axis=1) / norm).max())
    return prob, emb


def cpu_budget(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (``cpu.max``:
    ``"quota period"``, rounded up; ``"max ..."`` is no quota). At least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no cgroup v2 file, or an unexpected format: the affinity alone
        pass
    return max(1, cores)


def normalise_pixels(pixels, mean, std):
    """uint8 ``[N, C, H, W]`` torch tensor → float32 scaled to [0, 1] and normalised (``mean``/``std``:
    float32 tensors of shape ``[C, 1, 1]`` on the same device)."""
    x = pixels.float()
    x.div_(255.0).sub_(mean).div_(std)
    return x


class TorchPredictor(CountedModel):
    platform = "pytorch_torchscript"
    def __init__(self, settings: TorchPredictorSettings):
        super().__init__(settings.model_name)
        self.settings = settings
        self.module = None  # the saved graph (Grad-CAM, and served unless a frozen copy is)
        self.served_module = None  # what forward passes run: the frozen copy or the saved graph
        self.freeze_check: dict | None = None
        self.device = None
        self.amp_dtype = None
        self.config: TorchModelConfig | None = None
        self.input_shape: tuple[int, int, int] = (0, 0, 0)
        self.batcher: DynamicBatcher | None = None  # FP32 input, already normalised
        self.pixel_batcher: DynamicBatcher | None = None  # UINT8 pixels, normalised here
        self.num_threads = 0
        self.forward_workers = 1
        self.channels_last = False
        self.staging: PinnedStaging | None = None
        self.precision_served = "fp32"
        self.precision_check: dict | None = None
        self._mean = self._std = None
        self.cam_batchers: dict[bool, DynamicBatcher] = {}  # by "pixels" (UINT8 input); empty: no cam output
        self.no_cam = ""  # why there is no cam output

    def load(self) -> bool:
        import torch

        served = bundle_source.open_served(self.settings, layout.PYTORCH)  # every file verified first
        manifest, self.config = served.manifest, served.model_config
        self.model_version = manifest.model_version
        if not isinstance(served.schema, ImageSchema):
            raise MalformedFile(served.folder, layout.SCHEMA, f"a {served.schema.kind} schema; the PyTorch "
                                                              f"predictor needs an image schema")
        image = served.schema.image
        self.input_shape = (image.channels, image.height, image.width)
        self._class_labels = list(self.config.classes)
        self.device = pick_device(self.settings.device)
        if self.device.type == "cpu":
            self.num_threads = self.settings.num_threads or cpu_budget()
            torch.set_num_threads(self.num_threads)
            self.forward_workers = self.settings.forward_workers or max(1, cpu_budget() // self.num_threads)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.settings.allow_tf32
            self.staging = PinnedStaging(self.device, self.settings.max_batch_size, self.input_shape)
        freeze = not cuda if self.settings.freeze is None else self.settings.freeze
        # on CPU channels_last pays only in a frozen graph (its folded convolutions take the oneDNN path)
        self.channels_last = (cuda or freeze) if self.settings.channels_last is None else self.settings.channels_last
        self._mean = torch.tensor(image.mean, dtype=torch.float32, device=self.device).reshape(-1, 1, 1)
        self._std = torch.tensor(image.std, dtype=torch.float32, device=self.device).reshape(-1, 1, 1)
        with _torchscript_deprecation_quiet():
            self.module = torch.jit.load(str(served.model_path), map_location=self.device).eval()
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.served_module = self.module
        self.batcher = DynamicBatcher(self._forward, self.name, self.settings.max_batch_size, self.settings.max_wait_ms,
                                      max_in_flight=self.forward_workers,
                                      max_in_flight_units=self.settings.max_in_flight_pixels)
        self.pixel_batcher = DynamicBatcher(self._forward_pixels, self.name, self.settings.max_batch_size,
                                            self.settings.max_wait_ms, executor=self.batcher._executor,
                                            max_in_flight=self.forward_workers,
                                            max_in_flight_units=self.settings.max_in_flight_pixels)
        self._load_cam(served)
        if freeze:
            self.served_module = self._checked_freeze()
        self.amp_dtype = None
        requested = autocast_dtype(self.device, self.settings.precision, self.settings.autocast_on_cpu)
        if requested is not None:
            self.amp_dtype = self._checked_autocast(requested)
        self._warm_up()
        self.ready = True
        log.info("loaded %s v%s from %s on %s (%s, channels_last %s, frozen graph %s, %s torch threads, %d "
                 "forward worker(s))", manifest.model_name, manifest.model_version, served.folder, self.device,
                 self.precision_served, self.channels_last, self.served_module is not self.module,
                 self.num_threads or "-", self.forward_workers)
        return self.ready

    def _load_cam(self, served) -> None:
        import torch

        example = torch.zeros((2, *self.input_shape), device=self.device)
        # on the serving thread, as every pass: a forward pass on a second thread gives that thread an OpenMP
        # team of its own, and the serving thread's passes then ran on 0.8 cores of 2, at 55% of their speed
        self.no_cam = self._on_serving_thread(functools.partial(gradcam.check, self.module), example)
        if self.no_cam:
            log.warning("%s: no cam output (%s)", self.name, self.no_cam)
            return
        self._positive = list(served.schema.classes).index(served.schema.positive_class)
        for pixels in (False, True):
            self.cam_batchers[pixels] = DynamicBatcher(functools.partial(self._cam, pixels=pixels), self.name,
                                                       self.settings.max_batch_size, 0.0,
                                                       executor=self.batcher._executor,
                                                       max_in_flight_units=self.settings.max_in_flight_pixels)

    def _cam(self, batch: np.ndarray, pixels: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return gradcam.cam(self.module, self._input(batch, pixels), self._positive)

    def _on_serving_thread(self, fn, rows: np.ndarray):
        """``fn(rows)`` on a worker thread of the batchers, where requests are served (the only one on CUDA)."""
        return self.batcher._executor.submit(fn, rows).result()

    def _warm_up(self) -> None:
        """Batch sizes 1 and ``max_batch_size`` of both input types, in the served precision."""
        for rows in sorted({1, self.settings.max_batch_size}):
            self._on_serving_thread(self._forward_pixels, np.zeros((rows, *self.input_shape), dtype=np.uint8))
            logits, embedding = self._on_serving_thread(self._forward,
                                                        np.zeros((rows, *self.input_shape), dtype=np.float32))
            if logits.shape != (rows, self.config.num_classes) or embedding.shape != (rows, self.config.embedding_dim):
                raise RuntimeError(f"warm-up gave logits {logits.shape}, embedding {embedding.shape}; "
                                   f"model_config.json says {self.config}")

    def _plausible_pixels(self) -> np.ndarray:
        """Mid-grey images with mild noise (sigma 20 grey levels): activations in the range real images give.
        Uniform noise images drive a trained network's embedding to thousands of times its usual norm, where
        float32 rounding in a different order of operations shows as a 0.1-7 % embedding difference (measured
        on the champion; on phantom X-rays and on these the frozen graph differs by about 1e-6)."""
        rows = min(self.settings.max_batch_size, 16)
        noise = np.random.default_rng(0).normal(0.0, 20.0, size=(rows, *self.input_shape))
        return np.clip(np.round(128 + noise), 0, 255).astype(np.uint8)

    def _checked_freeze(self):
        """A frozen copy of the saved graph when its fp32 answers on plausible images match the saved
        graph's; else the saved graph (a graph that cannot be frozen is served as saved as well)."""
        import torch

        try:
            with _torchscript_deprecation_quiet():
                frozen = torch.jit.freeze(self.module)
        except Exception as err:  # noqa: BLE001 - e.g. a graph that mutates its attributes: served as saved
            self.freeze_check = {"agrees": False, "error": str(err)}
            log.warning("the saved graph cannot be frozen (%s): serving it as saved", err)
            return self.module
        pixels = self._plausible_pixels()
        exact = self._on_serving_thread(functools.partial(self._forward, pixels=True, amp_dtype=None), pixels)
        for _ in range(3):  # TorchScript profiles a graph's first runs and then optimises it: check what is served
            fast = self._on_serving_thread(functools.partial(self._forward, pixels=True, amp_dtype=None,
                                                             module=frozen), pixels)
        prob, emb = precision_gap(exact, fast)
        agrees = prob <= FREEZE_PROBABILITY_GAP and emb <= FREEZE_EMBEDDING_GAP
        self.freeze_check = {"probability_gap": prob, "embedding_gap": emb, "agrees": agrees}
        if not agrees:
            log.warning("the frozen graph's answers differ from the saved graph's on plausible images "
                        "(probability by %.3g, embedding by %.3g relative; tolerance %.3g, %.3g): serving it as saved",
                        prob, emb, FREEZE_PROBABILITY_GAP, FREEZE_EMBEDDING_GAP)
            return self.module
        return frozen

    def _checked_autocast(self, dtype):
        """``dtype`` when its answers on plausible images match fp32's within the tolerance, else None."""
        pixels = self._plausible_pixels()
        exact = self._on_serving_thread(functools.partial(self._forward, pixels=True, amp_dtype=None), pixels)
        low = self._on_serving_thread(functools.partial(self._forward, pixels=True, amp_dtype=dtype), pixels)
        prob, emb = precision_gap(exact, low)
        tolerance = self.settings.precision_tolerance
        name = self.settings.precision
        agrees = prob <= tolerance and emb <= 5 * tolerance
        self.precision_check = {"precision": name, "probability_gap": prob, "embedding_gap": emb,
                                "tolerance": tolerance, "agrees": agrees}
        if not agrees:
            log.warning("%s answers differ from fp32 on plausible images (probability by %.4g, embedding by "
                        "%.4g relative; tolerance %.4g, %.4g): serving fp32", name, prob, emb, tolerance,
                        5 * tolerance)
            return None
        self.precision_served = name
        return dtype

    def _forward_pixels(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._forward(batch, pixels=True)

    _SERVED = object()  # amp_dtype default: the precision being served

    def _forward(self, batch: np.ndarray, pixels: bool = False, amp_dtype=_SERVED, module=None
                 ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        amp_dtype = self.amp_dtype if amp_dtype is TorchPredictor._SERVED else amp_dtype
        module = self.served_module if module is None else module
        with torch.inference_mode():
            x = self._input(batch, pixels)
            with torch.autocast(device_type=self.device.type, dtype=amp_dtype or torch.bfloat16,
                                enabled=amp_dtype is not None):
                logits, embedding = module(x)
            return (logits.float().cpu().numpy(), embedding.float().cpu().numpy())

    def _input(self, batch: np.ndarray, pixels: bool):
        """The model's input tensor on its device: normalised, channels_last when served so."""
        import torch

        if self.staging is not None:  # copied into a pinned buffer: read-only wire bytes are fine
            x = self.staging.to_device(batch)
        else:
            if not batch.flags.writeable:  # one request's bytes straight from the wire (gRPC or binary REST)
                batch = batch.copy()
            x = torch.from_numpy(batch).to(self.device)
        if pixels:
            x = normalise_pixels(x, self._mean, self._std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def get_input_types(self) -> list[dict]:
        # metadata names one datatype per input; UINT8 pixels are accepted as well (see the module's docstring)
        return [{"name": "input", "datatype": "FP32", "shape": [-1, *self.input_shape]}]

    def get_output_types(self) -> list[dict]:
        outputs = [{"name": "logits", "datatype": "FP32", "shape": [-1, self.config.num_classes]},
                   {"name": "embedding", "datatype": "FP32", "shape": [-1, self.config.embedding_dim]}]
        if self.cam_batchers:
            outputs.append({"name": "cam", "datatype": "FP32", "shape": [-1, *self.input_shape[1:]]})
        return outputs

    async def preprocess(self, payload: InferRequest, headers=None) -> InferRequest:
        start = time.perf_counter()
        pixels = isinstance(payload, InferRequest) and len(payload.inputs) == 1 and payload.inputs[0].datatype == "UINT8"
        rows = single_tensor(payload, self.name, self.input_shape, self.settings.max_rows_per_request,
                             dtype=np.uint8 if pixels else np.float32)
        if not pixels and np.isnan(rows).any():
            raise RejectedInput(self.name, Reason.NON_FINITE, f"input '{payload.inputs[0].name}': contains NaN")
        _ROWS.set((rows, self.pixel_batcher if pixels else self.batcher))
        self.metrics.preprocess.observe(time.perf_counter() - start)
        return payload

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        start = time.perf_counter()
        rows, batcher = _ROWS.get()
        if any(output.name == "cam" for output in payload.request_outputs or ()):
            if not self.cam_batchers:
                raise RejectedInput(self.name, Reason.UNKNOWN_OUTPUT, f"this model gives no cam: {self.no_cam}")
            logits, embedding, heat = await self.cam_batchers[batcher is self.pixel_batcher].submit(rows)
            outputs = {"logits": logits, "embedding": embedding, "cam": heat}
        else:
            logits, embedding = await batcher.submit(rows)
            outputs = {"logits": logits, "embedding": embedding}
        done = time.perf_counter()
        self.metrics.predict.observe(done - start)
        self.metrics.count_classes(self._class_labels, logits.argmax(axis=1))
        result = response(payload, self.name, outputs, self.model_version)
        self.metrics.postprocess.observe(time.perf_counter() - done)
        return result

    def stop(self):
        for batcher in (*self.cam_batchers.values(), self.pixel_batcher, self.batcher):  # the last owns the thread
            if batcher is not None:
                batcher.close()
        super().stop()

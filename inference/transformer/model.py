"""The transformer as a ``kserve.Model``: preprocess (validate + build the model tensor), predict (call
the predictor), postprocess (probabilities, labels, risk levels). Stage latencies go to
``clinops_stage_latency_seconds``; rejected requests to ``clinops_rejected_inputs_total``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput

from bundle import workloads
from bundle.schema import IMAGE, TABULAR, Schema
from inference import bundle_source
from inference.base_model import CountedModel
from inference.batching import DynamicBatcher
from inference.envelope import BASE64_PARAMETER, BadRequest
from inference.errors import PredictorUnavailable, RejectedInput
from inference.reasons import Reason
from inference.request_logger import RequestLogger
from inference.responses import JsonInferResponse, json_data
from inference.transformer import v1_explain
from inference.transformer.heart_disease import HeartDiseaseCodec
from inference.transformer.pneumonia import PneumoniaCodec
from inference.transformer.predictor_client import PredictorClient
from inference.transformer.settings import TransformerSettings

log = logging.getLogger(__name__)
WIRE_TYPES = {np.dtype("float32"): "FP32", np.dtype("float64"): "FP64", np.dtype("uint8"): "UINT8"}
# the client's request, kept for postprocess (each request runs in its own task, hence its own context)
_CLIENT_REQUEST: contextvars.ContextVar[InferRequest] = contextvars.ContextVar("clinops_client_request")
# the client outputs of this request that the codec computes only on request (explanations), and its rows
_EXPLAIN: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("clinops_explain", default=())
_ROWS: contextvars.ContextVar[np.ndarray] = contextvars.ContextVar("clinops_rows")


CODECS = {TABULAR: HeartDiseaseCodec, IMAGE: PneumoniaCodec}  # by schema kind
LOG_MODES = {TABULAR: "all", IMAGE: "response"}  # what the drift detector of each kind reads
BASE64_OUTPUTS = {"heatmap"}  # BYTES outputs that are not text: base64 in a JSON answer


def make_codec(workload: str, schema: Schema, settings: TransformerSettings, calibration=None):
    """The codec for the workload's kind (from the catalog), built on its bundle's typed schema."""
    kind = workloads.get(workload).kind
    if schema.kind != kind:
        raise ValueError(f"{workload} is of kind {kind}, but its bundle holds a {schema.kind} schema")
    if kind not in CODECS:
        raise ValueError(f"no transformer codec for {kind} workloads ({workload})")
    return CODECS[kind](schema, settings, calibration)


class Transformer(CountedModel):
    platform = "clinops_transformer"  # validates and encodes, then calls its predictor
    def __init__(self, settings: TransformerSettings, predictor_host: str, predictor_protocol: str = "v2"):
        super().__init__(settings.name)
        self.settings = settings
        self.codec = None
        self._predictor_input = ""  # the predictor's input tensor: the codec's, set at load
        self._decode_pool: ThreadPoolExecutor | None = None
        self.request_logger: RequestLogger | None = None
        self.client = PredictorClient(self.name, predictor_host, predictor_protocol, settings.predictor_timeout_s,
                                      settings.predictor_retries, settings.retry_backoff_ms)

    def load(self) -> bool:
        served = bundle_source.open_served(self.settings, workloads.get(self.settings.workload).framework)
        manifest = served.manifest
        self.model_version = manifest.model_version
        self.codec = make_codec(self.settings.workload, served.schema, self.settings, served.calibration)
        self._predictor_input = self.codec.model_input  # fixed by the schema, the same for every request
        if self.codec.heavy and self._decode_pool is None:  # a small fixed pool, not asyncio's default (cores + 4)
            self._decode_pool = ThreadPoolExecutor(self.settings.decode_threads, thread_name_prefix="decode")
        self.batcher = DynamicBatcher(self._call_predictor, self.name, self.settings.batch_max_size,
                                      self.settings.batch_max_wait_ms,
                                      max_in_flight=self.settings.predictor_max_in_flight,
                                      dispatch=self.settings.predictor_dispatch or self.codec.dispatch,
                                      max_in_flight_units=(self.settings.max_in_flight_pixels if self.codec.heavy
                                                           else self.settings.max_in_flight_rows))
        self._explain_names = tuple(dict.fromkeys(name for parts in self.codec.explain_outputs.values()
                                                  for name in parts))
        self.explain_batcher = None
        if self._explain_names:  # a batch of their own: a plain request never waits for an explanation
            self.explain_batcher = DynamicBatcher(self._call_predictor_explaining, self.name,
                                                  self.settings.batch_max_size, 0.0,
                                                  max_in_flight=self.settings.predictor_max_in_flight,
                                                  max_in_flight_units=(self.settings.max_in_flight_pixels
                                                                       if self.codec.heavy
                                                                       else self.settings.max_in_flight_rows))
        if self.settings.drift_url and self.request_logger is None:
            mode = self.settings.drift_log_mode or LOG_MODES[served.schema.kind]
            self.request_logger = RequestLogger(self.settings.drift_url, self.name, mode,
                                                queue_size=self.settings.drift_queue_size)
            log.info("transformer %s logs predictor calls (%s) to %s", self.name, mode, self.settings.drift_url)
        self.ready = True
        log.info("transformer %s ready with schema of %s v%s; predictor %s (%s)", self.name, manifest.model_name,
                 manifest.model_version, self.client.host, self.client.protocol)
        return self.ready

    def stop(self):
        for batcher in (getattr(self, "batcher", None), getattr(self, "explain_batcher", None)):
            if batcher is not None:
                batcher.close()
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
        if self.request_logger is not None:
            self.request_logger.close()
        super().stop()

    def get_input_types(self) -> list[dict]:
        return self.codec.input_types()

    def get_output_types(self) -> list[dict]:
        return self.codec.output_types()

    async def __call__(self, body, headers=None, verb: InferenceVerb = InferenceVerb.PREDICT):
        if verb != InferenceVerb.EXPLAIN:
            return await super().__call__(body, headers, verb)
        # V1 :explain is the V2 infer request that asks for every output: the same checks, the same 400s
        explained = list(self.codec.explain_outputs)
        if not explained:
            raise RejectedInput(self.name, Reason.UNKNOWN_OUTPUT, f"{self.name} has no explanation to give")
        names = [output["name"] for output in self.codec.output_types()]
        try:
            request = (v1_explain.tabular_request(body, self.codec.order, names) if hasattr(self.codec, "features")
                       else v1_explain.image_request(body, self.codec.input_name, names))
        except BadRequest as err:
            raise RejectedInput(self.name, err.kind, err.message) from None
        request.model_name = self.name
        response, response_headers = await super().__call__(request, headers, InferenceVerb.PREDICT)
        return v1_explain.answer(response, explained), response_headers

    def validate(self, payload):
        return payload  # preprocess has checked the request against the schema; this is the model tensor

    async def preprocess(self, payload, headers=None) -> np.ndarray:
        start = time.perf_counter()
        if not isinstance(payload, InferRequest):
            raise RejectedInput(self.name, Reason.PROTOCOL, "use the V2 protocol: POST /v2/models/<name>/infer")
        _CLIENT_REQUEST.set(payload)
        if payload.request_outputs:  # refused before the predictor is called, not after
            known = {output["name"] for output in self.codec.output_types()}
            unknown = [r.name for r in payload.request_outputs if r.name not in known]
            if unknown:
                raise RejectedInput(self.name, Reason.UNKNOWN_OUTPUT, f"unknown output '{unknown[0]}' requested; "
                                                                      f"outputs are {', '.join(sorted(known))}")
        _EXPLAIN.set(tuple(r.name for r in payload.request_outputs or () if r.name in self.codec.explain_outputs))
        try:
            parsed = self.codec.parse(payload.inputs)
            if self.codec.heavy:
                array = await asyncio.get_running_loop().run_in_executor(self._decode_pool, self.codec.tensor, parsed)
            else:
                array = self.codec.tensor(parsed)
        except BadRequest as err:
            raise RejectedInput(self.name, err.kind, err.message) from None
        self.metrics.preprocess.observe(time.perf_counter() - start)
        return array

    async def _call_predictor(self, rows: np.ndarray, extra_outputs: tuple[str, ...] = ()) -> list[np.ndarray]:
        """One predictor call for the merged rows of concurrent requests: its main output, then
        ``extra_outputs`` (requested from the predictor by name)."""
        tensor = InferInput(name=self._predictor_input, shape=list(rows.shape), datatype=WIRE_TYPES[rows.dtype])
        tensor.set_data_from_numpy(np.ascontiguousarray(rows), binary_data=True)
        requested = ([RequestedOutput(name) for name in (self.codec.predictor_output, *extra_outputs)]
                     if extra_outputs else None)
        request = InferRequest(model_name=self.name, infer_inputs=[tensor], parameters={"binary_data_output": True},
                               request_outputs=requested)
        response = await self.client.infer(request)
        outputs = {out.name: out.as_numpy() for out in response.outputs}
        if self.codec.predictor_output not in outputs:
            raise PredictorUnavailable(self.name, f"the predictor answered without '{self.codec.predictor_output}'")
        if self.request_logger is not None:  # what KServe's logger in front of the predictor would send
            self.request_logger.log({self._predictor_input: rows},
                                    {name: outputs[name] for name in outputs if name not in extra_outputs})
        missing = [name for name in extra_outputs if name not in outputs]
        if missing:
            raise PredictorUnavailable(self.name, f"the predictor answered without '{missing[0]}'")
        return [outputs[name] for name in (self.codec.predictor_output, *extra_outputs)]

    async def _call_predictor_explaining(self, rows: np.ndarray) -> list[np.ndarray]:
        return await self._call_predictor(rows, self._explain_names)

    async def predict(self, payload: np.ndarray, headers=None, response_headers=None) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        if _EXPLAIN.get():
            _ROWS.set(payload)
            outputs = await self.explain_batcher.submit(payload)
            result = dict(zip((self.codec.predictor_output, *self._explain_names), outputs, strict=True))
        else:
            (output,) = await self.batcher.submit(payload)
            result = {self.codec.predictor_output: output}
        self.metrics.predict.observe(time.perf_counter() - start)
        return result

    async def postprocess(self, result: dict[str, np.ndarray], headers=None, response_headers=None) -> InferResponse:
        start = time.perf_counter()
        request = _CLIENT_REQUEST.get()
        tensors, class_index = self.codec.decode(result)
        binary = request.use_binary_outputs
        text = not (binary or getattr(request, "from_grpc", False))  # a JSON answer: image bytes as base64
        if _EXPLAIN.get():
            tensors |= self.codec.explain(_ROWS.get(), result, tensors, _EXPLAIN.get(), text)
        self.metrics.count_classes(self.codec.class_labels, class_index)
        infer_outputs = []
        for name, array in tensors.items():
            datatype = "BYTES" if array.dtype == object else {"float32": "FP32", "int32": "INT32"}[array.dtype.name]
            marked = {BASE64_PARAMETER: True} if text and name in BASE64_OUTPUTS else None
            out = InferOutput(name=name, shape=list(array.shape), datatype=datatype, parameters=marked)
            if name in BASE64_OUTPUTS and not text and not binary:  # gRPC: bytes_contents as they are
                out.data = list(array)
            elif binary:
                out.set_data_from_numpy(array, binary_data=True)
            else:
                out.data = json_data(array)
            infer_outputs.append(out)
        requested = request.request_outputs  # each one known: checked in preprocess
        response = JsonInferResponse(response_id=request.id or "", model_name=self.name, model_version=self.model_version,
                                     infer_outputs=infer_outputs, use_binary_outputs=binary,
                                     requested_outputs=requested)
        self.metrics.postprocess.observe(time.perf_counter() - start)
        return response

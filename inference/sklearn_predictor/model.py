"""The scikit-learn predictor as a ``kserve.Model``.

V2 input: one numeric tensor ``[N, n_features]`` (NaN = missing, the pipeline imputes).
V2 output: ``predict_proba`` FP64 ``[N, n_classes]``.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

import numpy as np
from kserve.protocol.infer_type import InferRequest, InferResponse

from bundle import layout
from inference import bundle_source
from inference.base_model import CountedModel
from inference.batching import DynamicBatcher
from inference.predictor_io import response, single_tensor
from inference.sklearn_predictor.settings import SklearnPredictorSettings

log = logging.getLogger(__name__)
# one request's rows, from preprocess to predict (KServe runs both in the request's own task)
_ROWS: ContextVar[np.ndarray] = ContextVar("clinops_sklearn_rows")


class SklearnPredictor(CountedModel):
    platform = "sklearn"
    def __init__(self, settings: SklearnPredictorSettings):
        super().__init__(settings.model_name)
        self.settings = settings
        self.estimator = None
        self.n_features = 0
        self.batcher: DynamicBatcher | None = None

    def load(self) -> bool:
        import joblib

        served = bundle_source.open_served(self.settings, layout.SKLEARN)  # every file verified first
        manifest = served.manifest
        self.model_version = manifest.model_version
        self.estimator = joblib.load(served.model_path)
        self.n_features = int(self.estimator.n_features_in_)
        self._class_labels = [str(c) for c in self.estimator.classes_]
        self.batcher = DynamicBatcher(self._predict_proba, self.name, self.settings.max_batch_size,
                                      self.settings.max_wait_ms, inline=self.settings.inline_predict,
                                      max_in_flight_units=self.settings.max_in_flight_rows)
        warm = self.batcher.run_now(np.zeros((1, self.n_features)))[0]
        if warm.shape[0] != 1 or not np.isfinite(warm).all():
            raise RuntimeError(f"warm-up prediction gave {warm!r}")
        self.ready = True
        log.info("loaded %s v%s from %s (%d features)", manifest.model_name, manifest.model_version, served.folder,
                 self.n_features)
        return self.ready

    def _predict_proba(self, rows: np.ndarray) -> tuple[np.ndarray]:
        return (np.asarray(self.estimator.predict_proba(rows), dtype=np.float64),)

    def get_input_types(self) -> list[dict]:
        return [{"name": "features", "datatype": "FP64", "shape": [-1, self.n_features]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(self.estimator.classes_)]}]

    async def preprocess(self, payload: InferRequest, headers=None) -> InferRequest:
        start = time.perf_counter()
        _ROWS.set(single_tensor(payload, self.name, (self.n_features,), self.settings.max_rows_per_request))
        self.metrics.preprocess.observe(time.perf_counter() - start)
        return payload

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        start = time.perf_counter()
        (proba,) = await self.batcher.submit(_ROWS.get())
        done = time.perf_counter()
        self.metrics.predict.observe(done - start)
        self.metrics.count_classes(self._class_labels, proba.argmax(axis=1))
        result = response(payload, self.name, {"predict_proba": proba}, self.model_version)
        self.metrics.postprocess.observe(time.perf_counter() - done)
        return result

    def stop(self):
        if self.batcher is not None:
            self.batcher.close()
        super().stop()


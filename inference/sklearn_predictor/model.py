"""The scikit-learn predictor as a ``kserve.Model``.

V2 input: one numeric tensor ``[N, n_features]`` (NaN = missing, the pipeline imputes).
V2 output: ``predict_proba`` FP64 ``[N, n_classes]``; on request (the V2 request's ``outputs``) the SHAP
attributions of each input feature, ``attributions`` FP64 ``[N, n_features]``, with ``base_value`` FP64
``[N]`` and ``attribution_space`` BYTES ``[N]`` (log-odds or probability:
:mod:`inference.sklearn_predictor.explain`). They are computed only when asked for, in batches of their own.
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
from inference.errors import RejectedInput
from inference.predictor_io import response, single_tensor
from inference.reasons import Reason
from inference.sklearn_predictor.settings import SklearnPredictorSettings

log = logging.getLogger(__name__)
# one request's rows, from preprocess to predict (KServe runs both in the request's own task)
_ROWS: ContextVar[np.ndarray] = ContextVar("clinops_sklearn_rows")
EXPLAIN_OUTPUTS = ("attributions", "base_value", "attribution_space")


def _reference_rows(served) -> np.ndarray:
    """The bundle's drift reference rows (features of patients the model did not train on)."""
    from bundle import drift as drift_settings

    name = drift_settings.read(served.folder).reference_array
    with np.load(served.drift_reference_path) as arrays:
        return arrays[name]


class SklearnPredictor(CountedModel):
    platform = "sklearn"
    def __init__(self, settings: SklearnPredictorSettings):
        super().__init__(settings.model_name)
        self.settings = settings
        self.estimator = None
        self.n_features = 0
        self.batcher: DynamicBatcher | None = None
        self.explainer = None  # explain.Explainer, when the model is of a kind it attributes exactly
        self.explain_batcher: DynamicBatcher | None = None
        self.not_explainable = ""
        self._proba = None  # predict_proba: the compiled plan, or the estimator's own

    def load(self) -> bool:
        import joblib

        served = bundle_source.open_served(self.settings, layout.SKLEARN)  # every file verified first
        manifest = served.manifest
        self.model_version = manifest.model_version
        self.estimator = joblib.load(served.model_path)
        self.n_features = int(self.estimator.n_features_in_)
        self._proba = self._plan(served)
        self._class_labels = [str(c) for c in self.estimator.classes_]
        self.batcher = DynamicBatcher(self._predict_proba, self.name, self.settings.max_batch_size,
                                      self.settings.max_wait_ms, inline=self.settings.inline_predict,
                                      max_in_flight_units=self.settings.max_in_flight_rows)
        warm = self.batcher.run_now(np.zeros((1, self.n_features)))[0]
        if warm.shape[0] != 1 or not np.isfinite(warm).all():
            raise RuntimeError(f"warm-up prediction gave {warm!r}")
        self._load_explainer(served)
        self.ready = True
        log.info("loaded %s v%s from %s (%d features)", manifest.model_name, manifest.model_version, served.folder,
                 self.n_features)
        return self.ready

    def _plan(self, served):
        """The pipeline's arithmetic without scikit-learn's per-step checks (:mod:`.compiled`), once it has
        given scikit-learn's answers on the bundle's reference rows; scikit-learn itself otherwise."""
        from inference.sklearn_predictor import compiled

        if not self.settings.compiled_pipeline:
            return self.estimator.predict_proba
        try:
            reference = _reference_rows(served)
        except (OSError, KeyError, AttributeError, ValueError) as err:
            log.info("%s: predict_proba through scikit-learn (no reference rows to check a plan on: %s)", self.name,
                     err)
            return self.estimator.predict_proba
        fast, why_not = compiled.compile_checked(self.estimator, reference)
        if fast is None:
            log.info("%s: predict_proba through scikit-learn (%s)", self.name, why_not)
            return self.estimator.predict_proba
        log.info("%s: predict_proba as a compiled plan, equal to scikit-learn's on %d reference rows", self.name,
                 len(reference))
        return fast

    def _load_explainer(self, served) -> None:
        from inference.sklearn_predictor.explain import Explainer, NotExplainable

        try:
            self.explainer = Explainer(self.estimator, _reference_rows(served), seed=0)
        except (NotExplainable, KeyError, AttributeError) as err:
            self.not_explainable = str(err)
            log.warning("%s: no attributions for this model (%s)", self.name, err)
            return
        self.explain_batcher = DynamicBatcher(self._explain, self.name, self.settings.max_batch_size, 0.0,
                                              max_in_flight_units=self.settings.max_in_flight_rows)
        log.info("%s explains in %s with %s", self.name, self.explainer.space, type(self.explainer._shap).__name__)

    def _explain(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        attributions, base = self.explainer.explain(rows)
        return (np.asarray(self._proba(rows), dtype=np.float64), attributions, base,
                np.full(len(rows), self.explainer.space, dtype=object))

    def _predict_proba(self, rows: np.ndarray) -> tuple[np.ndarray]:
        return (np.asarray(self._proba(rows), dtype=np.float64),)

    def get_input_types(self) -> list[dict]:
        return [{"name": "features", "datatype": "FP64", "shape": [-1, self.n_features]}]

    def get_output_types(self) -> list[dict]:
        outputs = [{"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(self.estimator.classes_)]}]
        if self.explainer is not None:
            outputs += [{"name": "attributions", "datatype": "FP64", "shape": [-1, self.n_features]},
                        {"name": "base_value", "datatype": "FP64", "shape": [-1]},
                        {"name": "attribution_space", "datatype": "BYTES", "shape": [-1]}]
        return outputs

    async def preprocess(self, payload: InferRequest, headers=None) -> InferRequest:
        start = time.perf_counter()
        _ROWS.set(single_tensor(payload, self.name, (self.n_features,), self.settings.max_rows_per_request))
        self.metrics.preprocess.observe(time.perf_counter() - start)
        return payload

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        start = time.perf_counter()
        wanted = {output.name for output in payload.request_outputs or ()}
        if wanted & set(EXPLAIN_OUTPUTS):
            if self.explain_batcher is None:
                raise RejectedInput(self.name, Reason.UNKNOWN_OUTPUT, f"this model gives no attributions: "
                                                                      f"{self.not_explainable}")
            outputs = dict(zip(("predict_proba", *EXPLAIN_OUTPUTS), await self.explain_batcher.submit(_ROWS.get()),
                               strict=True))
        else:
            (proba,) = await self.batcher.submit(_ROWS.get())
            outputs = {"predict_proba": proba}
        done = time.perf_counter()
        self.metrics.predict.observe(done - start)
        self.metrics.count_classes(self._class_labels, outputs["predict_proba"].argmax(axis=1))
        result = response(payload, self.name, outputs, self.model_version)
        self.metrics.postprocess.observe(time.perf_counter() - done)
        return result

    def stop(self):
        for batcher in (self.batcher, self.explain_batcher):
            if batcher is not None:
                batcher.close()
        super().stop()


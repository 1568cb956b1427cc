"""The scorers: one Ray Data actor class per workload (``map_batches(Scorer, concurrency=N)``), each
opening its bundle once, in ``__init__``, through the bundle contract, and scoring one batch per call.

Per batch: the rows are parsed and checked by the transformer's codec as one request; when the codec
refuses that request, each row is checked on its own, so a bad row is answered with its reason (status
``refused``) while the others are scored. The model runs as the predictor runs it (heart-disease:
``predict_proba`` of the sklearn pipeline, SHAP attributions by the predictor's :class:`Explainer`;
pneumonia: the TorchScript module on UINT8 pixels normalised in torch, fp32) and the codec decodes its
output with the bundle's calibration. The same classes are called in-process by the plain loop
(``--engine loop``), the baseline the benchmark compares Ray Data with.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa

import bundle
from bundle.storage import S3Config
from inference.batch import records
from inference.envelope import BadRequest

SCORED, REFUSED = "scored", "refused"
_LOADS = {"count": 0}  # bundles opened in this process: each actor opens its own once


def open_scoring_bundle(uri: str | None, workload: str, store: str | None) -> bundle.Bundle:
    """The verified bundle at ``uri`` (a folder or ``s3://``), else the workload's champion in ``store``."""
    folder = bundle.locate(uri, workload, store, S3Config.from_environ(os.environ))
    return bundle.open_bundle(folder, workload, bundle.workloads.get(workload).framework)


def _actor_id() -> str:
    import sys

    ray = sys.modules.get("ray")  # imported by Ray's worker; never imported here for the in-process loop
    if ray is None or not ray.is_initialized():
        return "local"
    return ray.get_runtime_context().get_actor_id() or "task"


def codec_settings(workload: str, rows: int):
    """The transformer's own settings (its defaults and ``CLINOPS_TRANSFORMER_*`` overrides), taking a
    whole batch as one request."""
    from inference.transformer.settings import TransformerSettings

    settings = TransformerSettings(workload=workload)
    settings.max_rows_per_request = max(settings.max_rows_per_request, rows)
    return settings


class _Scorer:
    workload = ""

    def __init__(self, bundle_uri: str | None = None, store: str | None = None, max_batch_rows: int = 4096):
        from inference.transformer.model import make_codec

        self.served = open_scoring_bundle(bundle_uri, self.workload, store)
        self.codec = make_codec(self.workload, self.served.schema, codec_settings(self.workload, max_batch_rows),
                                self.served.calibration)
        _LOADS["count"] += 1
        # who scored a row: the Ray actor (as Ray names it; "local" outside Ray), host, process, and how many
        # bundles that process had opened (load-1: once per actor)
        self.scorer_id = f"{_actor_id()}:{socket.gethostname()}:{os.getpid()}:load-{_LOADS['count']}"
        self.model_version = self.served.manifest.model_version

    def _checked(self, inputs_for, n: int):
        """``(parsed, kept, errors)``: the codec's parse of the rows it accepts, their indices, and
        ``{index: (reason, message)}`` for the rows it refuses.

        The rows are parsed as one request; a refused part is halved and each half parsed again, down to
        single rows, which are then refused with the codec's own reason. Bad rows cost a few parses of
        the parts around them (they come in runs: one site's export), not one request per row."""
        parsed, kept, errors = [], [], {}
        pending = [(0, n)]
        while pending:
            start, stop = pending.pop()
            try:
                parsed.append(self.codec.tensor(self.codec.parse(inputs_for(slice(start, stop)))))
                kept.append(np.arange(start, stop))
            except BadRequest as err:
                if stop - start == 1:
                    errors[start] = (str(err.kind), records.batch_message(err.message))
                else:
                    middle = (start + stop) // 2
                    pending += [(middle, stop), (start, middle)]  # the first half is parsed next
        if not parsed:
            return None, np.zeros(0, dtype=np.intp), errors
        return np.concatenate(parsed), np.concatenate(kept), errors

    @staticmethod
    def _status(n: int, errors: dict) -> dict[str, list]:
        return {"status": [REFUSED if i in errors else SCORED for i in range(n)],
                "reason": [errors[i][0] if i in errors else None for i in range(n)],
                "error": [errors[i][1] if i in errors else None for i in range(n)]}


def _spread(n: int, kept: np.ndarray, values, fill=None) -> list:
    """``values`` of the kept rows put back at their positions among ``n`` (``fill`` elsewhere)."""
    out = [fill] * n
    for position, value in zip(kept.tolist(), list(values), strict=True):
        out[position] = value
    return out


class HeartDiseaseScorer(_Scorer):
    """Rows of a patient table (text cells by column name) → probability, prediction, risk level and the
    explanation's top features in clinical terms."""

    workload = "heart-disease"

    def __init__(self, bundle_uri: str | None = None, store: str | None = None, explain: bool = True,
                 max_batch_rows: int = 4096, passthrough: tuple[str, ...] = ()):
        import joblib

        super().__init__(bundle_uri, store, max_batch_rows)
        self.model = joblib.load(self.served.model_path)
        self.explainer = self._explainer() if explain else None
        self.passthrough = tuple(passthrough)

    def _explainer(self):
        from inference.sklearn_predictor.explain import Explainer

        reference = bundle.drift.read(self.served.folder).reference_array
        with np.load(self.served.drift_reference_path) as arrays:
            background = arrays[reference]
        return Explainer(self.model, background, seed=0)  # the predictor's own background and seed

    def schema(self) -> pa.Schema:
        fields = [pa.field(name, pa.string()) for name in self.passthrough]
        return pa.schema([*fields, pa.field("row", pa.int64()), pa.field("status", pa.string()),
                          pa.field("reason", pa.string()), pa.field("error", pa.string()),
                          pa.field("probability", pa.float32()), pa.field("prediction", pa.int32()),
                          pa.field("risk_level", pa.string()), pa.field("top_features", pa.list_(pa.string())),
                          pa.field("scorer", pa.string())])

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["row"])
        columns = {feature: list(batch[feature]) for feature in self.codec.order}

        def inputs_for(part: slice):
            return records.tabular_inputs(self.codec.schema, {k: v[part] for k, v in columns.items()})

        rows, kept, errors = self._checked(inputs_for, n)
        out = {name: [None if v is None else str(v) for v in batch[name]] for name in self.passthrough}
        out |= {"row": [int(r) for r in batch["row"]]} | self._status(n, errors)
        probability = prediction = risk = top = []
        if rows is not None:
            outputs = {"predict_proba": np.asarray(self.model.predict_proba(rows), dtype=np.float64)}
            served, _ = self.codec.decode(outputs)
            probability, prediction, risk = (served["probability"].tolist(), served["prediction"].tolist(),
                                             served["risk_level"].tolist())
            if self.explainer is not None:
                attributions, base = self.explainer.explain(rows)
                outputs |= {"attributions": attributions, "base_value": base,
                            "attribution_space": np.full(len(rows), self.explainer.space, dtype=object)}
                documents = self.codec.explain(rows, outputs, served)["explanation"]
                top = [json.loads(document)["top"] for document in documents]
            else:
                top = [None] * len(rows)
        out |= {"probability": _spread(n, kept, probability), "prediction": _spread(n, kept, prediction),
                "risk_level": _spread(n, kept, risk), "top_features": _spread(n, kept, top),
                "scorer": [self.scorer_id] * n}
        return pa.Table.from_pydict(out, schema=self.schema())


class PneumoniaScorer(_Scorer):
    """Image files (paths: local or ``s3://``) → P(pneumonia) and label."""

    workload = "pneumonia"

    def __init__(self, bundle_uri: str | None = None, store: str | None = None, device: str = "cpu",
                 threads: int = 0, max_batch_rows: int = 4096):
        import torch

        from inference.torch_predictor.model import pick_device

        super().__init__(bundle_uri, store, max_batch_rows)
        if threads:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        image = self.served.schema.image
        self.mean = torch.tensor(image.mean, dtype=torch.float32, device=self.device).reshape(-1, 1, 1)
        self.std = torch.tensor(image.std, dtype=torch.float32, device=self.device).reshape(-1, 1, 1)
        self.module = torch.jit.load(str(self.served.model_path), map_location=self.device).eval()
        self._s3 = None

    @staticmethod
    def schema() -> pa.Schema:
        return pa.schema([pa.field("path", pa.string()), pa.field("status", pa.string()),
                          pa.field("reason", pa.string()), pa.field("error", pa.string()),
                          pa.field("probability", pa.float32()), pa.field("label", pa.string()),
                          pa.field("scorer", pa.string())])

    def _read(self, path: str) -> bytes:
        if not bundle.storage.is_s3(path):
            return Path(path).read_bytes()
        if self._s3 is None:
            self._s3 = S3Config.from_environ(os.environ).client()
        bucket, key = bundle.storage.split(path)
        response = self._s3.get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        """The predictor's forward pass on UINT8 pixels: normalised in torch, fp32, logits out."""
        import torch

        from inference.torch_predictor.model import normalise_pixels

        with torch.inference_mode():
            x = normalise_pixels(torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device), self.mean, self.std)
            logits, _ = self.module(x)
        return logits.float().cpu().numpy()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        paths = [str(p) for p in batch["path"]]
        n = len(paths)
        files, unreadable = [], {}
        for i, path in enumerate(paths):
            try:
                files.append(self._read(path))
            except OSError as err:
                files.append(b"")
                unreadable[i] = ("unreadable", f"{type(err).__name__}: {err}")
        name = self.codec.input_name

        def inputs_for(part: slice):
            return records.image_input(name, files[part])

        pixels, kept, errors = self._checked(inputs_for, n)
        errors |= unreadable  # an unreadable file is also empty, so the codec refused it too: say why
        out = {"path": paths} | self._status(n, errors)
        probability = label = []
        if pixels is not None:
            if not self.codec.send_pixels:  # --predictor_input fp32: the transformer normalises in numpy
                raise ValueError("batch scoring sends UINT8 pixels, as the transformer does by default")
            served, _ = self.codec.decode({"logits": self.forward(pixels)})
            probability, label = served["probability"].tolist(), served["label"].tolist()
        out |= {"probability": _spread(n, kept, probability), "label": _spread(n, kept, label),
                "scorer": [self.scorer_id] * n}
        return pa.Table.from_pydict(out, schema=self.schema())


SCORERS = {"heart-disease": HeartDiseaseScorer, "pneumonia": PneumoniaScorer}

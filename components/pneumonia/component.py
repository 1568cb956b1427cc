"""KFP components of the pneumonia pipeline: thin wrappers over this package's modules.

Every component runs in the project image (``base_image``) and imports project code inside its body,
so the compiled YAML carries no installs and ``kfp.local`` runs them in this interpreter.
"""


from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.common.image import CLINOPS_IMAGE


@dsl.component(base_image=CLINOPS_IMAGE, install_kfp_package=False)
def ingest(source: str, phantom_train: int, phantom_val: int, phantom_test: int, phantom_size: int,
           pneumonia_fraction: float, seed: int, raw: Output[Dataset]):
    """Copy the source (Kaggle folder, MedMNIST npz, s3://) or generate the phantom set."""
    from pathlib import Path

    from components.pneumonia import ingest as ingest_lib
    from components.pneumonia.phantom import PhantomSpec

    spec = PhantomSpec(counts={"train": phantom_train, "val": phantom_val, "test": phantom_test},
                       size=phantom_size, pneumonia_fraction=pneumonia_fraction, seed=seed)
    found = ingest_lib.materialise(source, Path(raw.path), spec)
    raw.metadata.update(found)
    print(f"ingest: {found}")


@dsl.component(base_image=CLINOPS_IMAGE, install_kfp_package=False)
def validate(raw: Input[Dataset], allow_cross_split_duplicates: bool, max_corrupt_fraction: float,
             report_md: Output[Markdown], report_html: Output[HTML]):
    """Decodability, sizes/channels, class balance, cross-split duplicates; fails the run on errors."""
    from pathlib import Path

    from components.common.reports import ValidationFailed
    from components.pneumonia.validation import ValidationPolicy
    from components.pneumonia.validation import validate as run_validation

    policy = ValidationPolicy(max_corrupt_fraction=max_corrupt_fraction,
                              allow_cross_split_duplicates=allow_cross_split_duplicates)
    report = run_validation(raw.path, policy)
    Path(report_md.path).write_text(report.to_markdown())
    Path(report_html.path).write_text(report.to_html())
    print(report.to_markdown())
    if not report.ok:
        raise ValidationFailed(report)


@dsl.component(base_image=CLINOPS_IMAGE, install_kfp_package=False)
def split(raw: Input[Dataset], image_size: int, channels: int, val_fraction: float, seed: int,
          splits: Output[Dataset]):
    """Decode, resize to the contract, drop leaked images; write train/val/test arrays + contract."""
    import json
    from pathlib import Path

    from components.pneumonia import split as split_lib

    config = split_lib.SplitConfig(image_size, image_size, channels, val_fraction, seed=seed)
    arrays, summary = split_lib.build_splits(raw.path, config)
    split_lib.save(arrays, summary, Path(splits.path))
    splits.metadata.update({"counts": summary["counts"], "contract": summary["contract"]})
    print(json.dumps(summary, indent=2))


@dsl.component(base_image=CLINOPS_IMAGE, install_kfp_package=False)
def train(splits: Input[Dataset], variant: str, weights_path: str, epochs: int, batch_size: int, lr: float,
          weight_decay: float, dropout: float, schedule: str, patience: int, n_trials: int, num_workers: int,
          use_gpu: bool, compile_model: bool, seed: int, backend: str, rayjob_namespace: str,
          rayjob_image: str, model: Output[Model], train_metrics: Output[Metrics], lr_scaling: str = "none",
          ray_storage: str = ""):
    """Optuna over Ray Train: a local Ray here (``backend=local``) or a KubeRay RayJob (``rayjob``).
    Ray Train checkpoints to ``ray_storage``, default the training settings' one for the backend."""
    import json
    from pathlib import Path

    from components.pneumonia import entrypoint, tuning
    from components.pneumonia.labels import WORKLOAD
    from components.pneumonia.settings import train_settings

    config = {"variant": variant, "weights_path": weights_path or None, "epochs": epochs,
              "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "dropout": dropout,
              "schedule": schedule, "patience": patience, "compile": compile_model, "lr_scaling": lr_scaling}
    out = Path(model.path)
    if backend == "local":
        from components.common.settings import get_settings

        result = entrypoint.train(Path(splits.path), out, config, n_trials, num_workers, use_gpu,
                                  study_name=f"pneumonia-{Path(model.path).parent.name}",
                                  optuna_storage=get_settings().optuna_storage, seed=seed,
                                  ray_storage=ray_storage or train_settings().ray_storage)
    elif backend == "rayjob":
        from components.common import storage
        from components.pneumonia import rayjob

        name = rayjob.job_name(Path(model.path).parent.name)
        spec = rayjob.RayJobSpec(name=name, namespace=rayjob_namespace, image=rayjob_image,
                                 data_uri=splits.uri, output_uri=model.uri, train_config=config,
                                 n_trials=n_trials, num_workers=num_workers, use_gpu=use_gpu, seed=seed,
                                 ray_storage=ray_storage or train_settings().rayjob_storage)
        rayjob.run(spec)
        storage.download_dir(model.uri, out)  # the launcher uploads model.path after this step
        result = json.loads((out / entrypoint.RESULT).read_text())
    else:
        raise ValueError(f"backend must be 'local' or 'rayjob', not {backend!r}")

    best = result["history"][result["best_epoch"] - 1] if result["history"] else {}
    train_metrics.log_metric("best_val_auc", float(result["best_val_auc"]))
    train_metrics.log_metric("best_epoch", int(result["best_epoch"]))
    train_metrics.log_metric("best_trial", int(result["best_trial"]))
    train_metrics.log_metric("n_trials", len(result["trials"]))
    if best:
        train_metrics.log_metric("images_per_s", float(best["images_per_s"]))
    for name, value in result["best_params"].items():
        train_metrics.log_metric(f"best_{name}", float(value))
    run_id = tuning.log_trials(result, WORKLOAD, f"tuning-{Path(model.path).parent.name}")
    model.metadata.update({"framework": "pytorch", "variant": variant, "best_val_auc": result["best_val_auc"],
                           "tuning_run_id": run_id})


@dsl.component(base_image=CLINOPS_IMAGE, install_kfp_package=False)
def evaluate(model: Input[Model], splits: Input[Dataset], metrics: Output[Metrics],
             classification: Output[ClassificationMetrics], plots: Output[HTML], model_card: Output[Markdown],
             gradcam: Output[HTML], evaluation: Output[Artifact], target_sensitivity: float = 0.9,
             bootstrap_resamples: int = 1000, seed: int = 0):
    """Recalibration and the threshold for a target sensitivity on val; test metrics with intervals, calibration,
    operating points and decision curve; ROC/confusion for the KFP UI, plots, the model card and Grad-CAM overlays."""
    import json
    from pathlib import Path

    from bundle.calibration import Calibration
    from components.common import metrics as metrics_lib
    from components.common import plots as plots_lib
    from components.common.clinical import assessment
    from components.common.clinical.thresholds import decision_curve
    from components.pneumonia import evaluation as evaluation_lib
    from components.pneumonia import split as split_lib
    from components.pneumonia.labels import CLASSES

    contract = split_lib.load_contract(Path(splits.path))
    net = evaluation_lib.load_trained(Path(model.path), contract.channels)
    result = evaluation_lib.evaluate(net, Path(splits.path), target_sensitivity, bootstrap_resamples, seed)
    values, threshold = result["metrics"], result["threshold"]
    y, p = result["y_test"], result["p_test"]  # p: the served (recalibrated) probability
    metrics_lib.log_to_kfp(metrics, classification, y, p, threshold, CLASSES,
                           {k: v for k, v in values.items() if k not in {"n"}})
    pngs = plots_lib.evaluation_plots(y, p, threshold, CLASSES) | {
        "reliability.png": plots_lib.reliability_png(y, result["p_test_model"], p),
        "decision_curve.png": plots_lib.decision_curve_png(decision_curve(y, p))}
    headline = {k: values[k] for k in ("roc_auc", "sensitivity", "specificity", "threshold", "ece", "val_roc_auc")}
    Path(plots.path).write_text(plots_lib.html_page("Pneumonia: test evaluation", pngs, headline,
                                                    result["card_html"]))
    card = evaluation_lib.model_card(result, json.loads((Path(model.path) / "train_config.json").read_text()),
                                     json.loads((Path(splits.path) / split_lib.SUMMARY_FILE).read_text()))
    Path(model_card.path).write_text(card)
    Path(gradcam.path).write_text(evaluation_lib.gradcam_html(net, Path(splits.path), threshold,
                                                              Calibration.from_dict(result["calibration"])))
    Path(evaluation.path).mkdir(parents=True, exist_ok=True)
    plots_lib.save_pngs(pngs, Path(evaluation.path) / "plots")
    (Path(evaluation.path) / "gradcam.html").write_text(Path(gradcam.path).read_text())
    (Path(evaluation.path) / "evaluation.json").write_text(json.dumps(result))
    assessment.write_settings(Path(evaluation.path), bootstrap_resamples, seed)  # for the gate's comparison
    (Path(evaluation.path) / "plots" / "model_card.md").write_text(card)  # logged to MLflow
    print(f"evaluate: threshold {threshold:.3f} (target sensitivity on val) · " +
          " · ".join(f"{k} {values[k]:.4f}" for k in ("roc_auc", "accuracy", "sensitivity", "specificity")))


@dsl.component(base_image=CLINOPS_IMAGE, install_kfp_package=False)
def register(model: Input[Model], splits: Input[Dataset], evaluation: Input[Artifact]
             ) -> NamedTuple("Registered", version=str, run_id=str):
    """MLflow: pytorch flavour with a signature, params, test metrics, per-epoch curves, plots, Grad-CAM."""
    import json
    from collections import namedtuple
    from pathlib import Path

    from components.pneumonia import evaluation as evaluation_lib
    from components.pneumonia import register as register_lib
    from components.pneumonia import split as split_lib

    contract = split_lib.load_contract(Path(splits.path))
    net = evaluation_lib.load_trained(Path(model.path), contract.channels)
    result = json.loads((Path(evaluation.path) / "evaluation.json").read_text())
    train_config = json.loads((Path(model.path) / "train_config.json").read_text())
    history = json.loads((Path(model.path) / "history.json").read_text())
    params = {k: v for k, v in train_config.items() if k not in {"data_dir", "trial"}}
    params |= {"image_" + k: v for k, v in contract.to_dict().items()} | {"threshold": result["threshold"]}
    artifacts = [Path(evaluation.path) / "plots", Path(evaluation.path) / "gradcam.html",
                 Path(model.path) / "tuning.json", Path(splits.path) / "summary.json"]
    tags = {"workload": "pneumonia"}
    if model.metadata.get("tuning_run_id"):
        tags["tuning_run_id"] = str(model.metadata["tuning_run_id"])
    registered = register_lib.register_model(net, Path(splits.path), result["metrics"], params, history, artifacts,
                                             tags, run_name=f"pneumonia-{Path(model.path).parent.name}")
    print(f"register: {registered.model_uri} (run {registered.run_id})")
    return namedtuple("Registered", ["version", "run_id"])(registered.version, registered.run_id)


@dsl.component(base_image=CLINOPS_IMAGE, install_kfp_package=False)
def gate(version: str, splits: Input[Dataset], evaluation: Input[Artifact], floors: str
         ) -> NamedTuple("Gate", promoted=bool, reasons=str):
    """Alias ``champion`` moves only above the floors and when a paired comparison with the champion on this test
    split's images says it is better and not worse beyond noise."""
    import json
    from collections import namedtuple
    from pathlib import Path

    from components.common.clinical import assessment
    from components.pneumonia import register as register_lib

    result = json.loads((Path(evaluation.path) / "evaluation.json").read_text())
    bootstrap = assessment.read_settings(Path(evaluation.path))  # as many resamples as evaluate's intervals
    decision = register_lib.gate_model(version, Path(splits.path), result["metrics"], floors, result["p_test_model"],
                                       n_resamples=bootstrap["bootstrap_resamples"], seed=bootstrap["seed"])
    return namedtuple("Gate", ["promoted", "reasons"])(decision.promote, "; ".join(decision.reasons))


@dsl.component(base_image=CLINOPS_IMAGE, install_kfp_package=False)
def export(model: Input[Model], splits: Input[Dataset], evaluation: Input[Artifact], version: str, run_id: str,
           promoted: bool, reasons: str) -> str:
    """Write the serving bundle and publish it; returns the run record (metrics, version, bundle URI)."""
    import json
    import tempfile
    from pathlib import Path

    import numpy as np

    from bundle.calibration import Calibration
    from components.common.publish import publish
    from components.pneumonia import evaluation as evaluation_lib
    from components.pneumonia import export as export_lib
    from components.pneumonia import split as split_lib
    from components.pneumonia.labels import MODEL_NAME, WORKLOAD

    contract = split_lib.load_contract(Path(splits.path))
    net = evaluation_lib.load_trained(Path(model.path), contract.channels)
    config = json.loads((Path(model.path) / "train_config.json").read_text())
    result = json.loads((Path(evaluation.path) / "evaluation.json").read_text())
    # drift reference: images held out from training (val + test), up to 500, like live traffic
    held_out = [split_lib.load(Path(splits.path), name).x for name in ("val", "test")]
    softmax, embedding = evaluation_lib.predict(net, np.concatenate(held_out)[:500], contract)
    with tempfile.TemporaryDirectory() as tmp:
        export_lib.write_bundle(Path(tmp), net, contract, config["variant"], result["threshold"], softmax,
                                embedding, version, result["metrics"], run_id, promoted,
                                calibration=Calibration.from_dict(result["calibration"]))
        uri = publish(Path(tmp), WORKLOAD, version, promoted)
    record = {"metrics": result["metrics"], "threshold": result["threshold"], "model_name": MODEL_NAME,
              "model_version": version, "promoted": promoted, "gate_reasons": reasons, "bundle_uri": uri}
    print(f"export: bundle v{version} at {uri}")
    return json.dumps(record)

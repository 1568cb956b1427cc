"""The pneumonia training pipeline: ingest → validate → split → train (Optuna over Ray Train) →
evaluate → register + gate → export. Its output is the export step's JSON run record."""


from kfp import dsl

from components.common.image import CLINOPS_IMAGE
from components.common.platform import with_platform_env
from components.pneumonia import component as c

PIPELINE_NAME = "pneumonia-training"


@dsl.pipeline(name=PIPELINE_NAME, description="EfficientNet on chest X-rays, trained with Ray Train; "
              "registered in MLflow, gated, exported as a TorchScript serving bundle.")
def pneumonia_pipeline(
    source: str = "phantom",
    phantom_train: int = 320,
    phantom_val: int = 96,
    phantom_test: int = 128,
    phantom_size: int = 128,
    pneumonia_fraction: float = 0.5,
    allow_cross_split_duplicates: bool = False,
    max_corrupt_fraction: float = 0.05,
    image_size: int = 64,
    channels: int = 1,
    val_fraction: float = 0.2,
    variant: str = "efficientnet_b0",
    weights_path: str = "",
    epochs: int = 10,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    dropout: float = 0.2,
    schedule: str = "onecycle",
    patience: int = 4,
    n_trials: int = 1,
    num_workers: int = 2,
    use_gpu: bool = False,
    compile_model: bool = False,
    backend: str = "local",
    rayjob_namespace: str = "kubeflow",
    rayjob_image: str = CLINOPS_IMAGE,
    floors: str = "roc_auc=0.85",
    seed: int = 0,
) -> str:
    raw = c.ingest(source=source, phantom_train=phantom_train, phantom_val=phantom_val, phantom_test=phantom_test,
                   phantom_size=phantom_size, pneumonia_fraction=pneumonia_fraction, seed=seed)
    checked = c.validate(raw=raw.outputs["raw"], allow_cross_split_duplicates=allow_cross_split_duplicates,
                         max_corrupt_fraction=max_corrupt_fraction)
    splits = c.split(raw=raw.outputs["raw"], image_size=image_size, channels=channels, val_fraction=val_fraction,
                     seed=seed).after(checked)
    trained = c.train(splits=splits.outputs["splits"], variant=variant, weights_path=weights_path, epochs=epochs,
                      batch_size=batch_size, lr=lr, weight_decay=weight_decay, dropout=dropout, schedule=schedule,
                      patience=patience, n_trials=n_trials, num_workers=num_workers, use_gpu=use_gpu,
                      compile_model=compile_model, seed=seed, backend=backend, rayjob_namespace=rayjob_namespace,
                      rayjob_image=rayjob_image)
    # local backend: Ray runs inside this pod; rayjob backend: the pod only submits and waits
    trained.set_cpu_limit("4").set_memory_limit("16G")
    evaluated = c.evaluate(model=trained.outputs["model"], splits=splits.outputs["splits"])
    registered = c.register(model=trained.outputs["model"], splits=splits.outputs["splits"],
                            evaluation=evaluated.outputs["evaluation"])
    gated = c.gate(version=registered.outputs["version"], splits=splits.outputs["splits"],
                   evaluation=evaluated.outputs["evaluation"], floors=floors)
    exported = c.export(model=trained.outputs["model"], splits=splits.outputs["splits"],
                        evaluation=evaluated.outputs["evaluation"], version=registered.outputs["version"],
                        run_id=registered.outputs["run_id"], promoted=gated.outputs["promoted"],
                        reasons=gated.outputs["reasons"])
    for task in (raw, checked, splits, trained, evaluated, registered, gated, exported):
        task.set_caching_options(False)  # registration, promotion and export must happen on every run
    # in cluster: MLflow / artifact store settings and S3 credentials from the namespace
    with_platform_env(raw, trained, evaluated, registered, gated, exported)
    return exported.output


PIPELINE = pneumonia_pipeline
DEFAULT_PROFILE = "quick"
PROFILES: dict[str, dict] = {
    # 2 CPU cores, ≤ 5 minutes: a few hundred 64 px phantoms, B0, 2 Ray workers, default + 1 Optuna trial
    "quick": {"n_trials": 2, "epochs": 10, "num_workers": 2},
    # a larger phantom set (or pass --set source=/data/chest_xray), bigger images, a real search
    "full": {"phantom_train": 2000, "phantom_val": 400, "phantom_test": 600, "phantom_size": 256,
             "image_size": 128, "epochs": 30, "patience": 6, "n_trials": 8, "num_workers": 2},
    # the test suite's profile: smallest set that still learns
    "test": {"phantom_train": 192, "phantom_val": 64, "phantom_test": 64, "epochs": 5, "n_trials": 1,
             "num_workers": 2, "patience": 0, "floors": "roc_auc=0.5"},
}

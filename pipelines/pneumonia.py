"""The pneumonia training pipeline: ingest → validate → split → train (Optuna over Ray Train) →
evaluate → register + gate → export → deploy. Its output is the export step's JSON run record.

Run arguments come in profiles (:data:`PROFILES`; ``gpu`` is the GPU training setup). What the train
step's pod asks Kubernetes for (CPU, memory, an accelerator) is fixed when the pipeline compiles, since
KFP reads resources from the compiled spec and never from run parameters: :data:`COMPILE_PROFILES`,
``python -m pipelines.compile pneumonia --profile gpu`` → ``pipelines/compiled/pneumonia-gpu.yaml``.
"""

from dataclasses import dataclass, field

from kfp import dsl, kubernetes

from components.common.image import TRAIN_GPU_IMAGE
from components.common.platform import with_platform_env
from components.deploy.component import deploy_after
from components.deploy.step import DEFAULT_LIMITS, DEFAULT_PROMETHEUS_URL
from components.pneumonia import component as c

PIPELINE_NAME = "pneumonia-training"


@dataclass(frozen=True)
class TrainStepResources:
    """Requests and limits of the train step's pod. With ``backend=local`` Ray trains inside that pod, so
    a GPU run needs the accelerator there; with ``backend=rayjob`` the pod only submits and waits (the
    RayJob's worker pods request the GPUs), and the CPU profile is the right one."""

    cpu: str = "4"
    memory: str = "16G"
    accelerator: str | None = None  # a Kubernetes extended resource, e.g. nvidia.com/gpu
    accelerator_count: int = 1
    # where the pod may run: node labels it needs, and taints it tolerates (key, effect; operator Exists)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[tuple[str, str], ...] = ()


COMPILE_PROFILES: dict[str, TrainStepResources] = {
    "cpu": TrainStepResources(),
    # GPU nodes carry NVIDIA GPU feature discovery's label and, usually, a taint that keeps other pods away
    "gpu": TrainStepResources(cpu="8", memory="64G", accelerator="nvidia.com/gpu", accelerator_count=1,
                              node_selector={"nvidia.com/gpu.present": "true"},
                              tolerations=(("nvidia.com/gpu", "NoSchedule"),)),
}
DEFAULT_COMPILE_PROFILE = "cpu"  # what PIPELINE is compiled with


def request_resources(task, resources: TrainStepResources):
    """Requests equal to limits (the pod is not evicted before others), plus the accelerator if any."""
    task.set_cpu_request(resources.cpu).set_cpu_limit(resources.cpu)
    task.set_memory_request(resources.memory).set_memory_limit(resources.memory)
    if resources.accelerator:
        task.set_accelerator_type(resources.accelerator).set_accelerator_limit(resources.accelerator_count)
    for label, value in resources.node_selector.items():
        kubernetes.add_node_selector(task, label_key=label, label_value=value)
    for key, effect in resources.tolerations:
        kubernetes.add_toleration(task, key=key, operator="Exists", effect=effect)
    return task


def build_pipeline(train_resources: TrainStepResources = COMPILE_PROFILES["cpu"]):
    """The pipeline with its train step asking for ``train_resources``."""

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
        batch_size: int = 16,  # global; 0 = per GPU sized for the variant
        lr: float = 1e-3,
        lr_scaling: str = "none",  # linear | sqrt: lr scaled by the global batch over 16
        weight_decay: float = 1e-4,
        dropout: float = 0.2,
        schedule: str = "onecycle",
        patience: int = 4,
        n_trials: int = 1,
        num_workers: int = 2,
        use_gpu: bool = False,
        compile_model: bool = False,
        ray_storage: str = "",  # Ray Train checkpoints; "" = the settings' default for the backend
        backend: str = "local",
        rayjob_namespace: str = "kubeflow",
        rayjob_image: str = TRAIN_GPU_IMAGE,
        floors: str = "roc_auc=0.85",
        target_sensitivity: float = 0.9,  # the served threshold: the highest reaching it on val
        bootstrap_resamples: int = 1000,
        seed: int = 0,
        deploy_mode: str = "auto",  # off | auto (cluster in a pod, else the local stack) | cluster | local
        deploy_namespace: str = "",  # "" = the run's namespace
        canary_percent: int = 10,
        canary_period_s: float = 600.0,
        prometheus_url: str = DEFAULT_PROMETHEUS_URL,
        canary_limits: str = DEFAULT_LIMITS,
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
                          rayjob_image=rayjob_image, lr_scaling=lr_scaling, ray_storage=ray_storage)
        # local backend: Ray runs inside this pod; rayjob backend: the pod only submits and waits
        request_resources(trained, train_resources)
        evaluated = c.evaluate(model=trained.outputs["model"], splits=splits.outputs["splits"],
                               target_sensitivity=target_sensitivity, bootstrap_resamples=bootstrap_resamples,
                               seed=seed)
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
        deploy_after(exported, "pneumonia", deploy_mode, deploy_namespace, canary_percent, canary_period_s,
                     prometheus_url, canary_limits)
        return exported.output

    return pneumonia_pipeline


PIPELINE = build_pipeline()
DEFAULT_PROFILE = "quick"
PROFILES: dict[str, dict] = {
    # 2 CPU cores, ≤ 5 minutes: a few hundred 64 px phantoms, B0, 2 Ray workers, default + 1 Optuna trial
    "quick": {"n_trials": 2, "epochs": 10, "num_workers": 2},
    # a larger phantom set (or pass --set source=/data/chest_xray), bigger images, a real search
    "full": {"phantom_train": 2000, "phantom_val": 400, "phantom_test": 600, "phantom_size": 256,
             "image_size": 128, "epochs": 30, "patience": 6, "n_trials": 8, "num_workers": 2},
    # one GPU (backend=local; compile with --profile gpu so the pod gets it): 224 px, batch per GPU sized
    # for the variant, lr scaled (sqrt rule, AdamW), torch.compile; bf16, channels_last, cudnn.benchmark,
    # fused AdamW and the training set sampled on the GPU follow from use_gpu. More GPUs: num_workers=N.
    "gpu": {"phantom_train": 2000, "phantom_val": 400, "phantom_test": 600, "phantom_size": 256,
            "image_size": 224, "use_gpu": True, "compile_model": True, "batch_size": 0, "lr_scaling": "sqrt",
            "epochs": 30, "patience": 6, "n_trials": 8, "num_workers": 1},
    # the test suite's profile: smallest set that still learns
    "test": {"phantom_train": 192, "phantom_val": 64, "phantom_test": 64, "epochs": 5, "n_trials": 1,
             "num_workers": 2, "patience": 0, "floors": "roc_auc=0.5"},
}
